"""Test-only trainers, found through nnUNet_extTrainer like the package's own."""
from dante_nnunet.training import (DANTEPretrainTrainer, DANTETrainer, DistillationTrainer, LowerBoundTrainer,
                                   ModalityDropoutTrainer, UpperBoundTrainer)


class DANTETrainer_e2e(DANTETrainer):
    """3 epochs of 4 iterations: regularisers off in epoch 0, on from epoch 1 (round(0.2 * 3))."""
    epochs = 3
    iterations_per_epoch = 4
    val_iterations_per_epoch = 2


class DANTETrainer_e2eTransfer(DANTETrainer_e2e):
    """With -pretrained_weights: encoders frozen in epoch 0 (round(0.34 * 3) = 1), trained in epochs 1-2."""
    encoder_freeze_fraction = 0.34
    validate_full_pathway = False


class DANTEPretrainTrainer_e2e(DANTEPretrainTrainer):
    epochs = 2
    iterations_per_epoch = 4
    val_iterations_per_epoch = 2


# ---- the benchmark runner's end-to-end test: every method on a 2 x 3 iteration schedule
class _Tiny:
    epochs = 2
    iterations_per_epoch = 3
    val_iterations_per_epoch = 1


class LowerBoundTrainer_tiny(_Tiny, LowerBoundTrainer):
    pass


class UpperBoundTrainer_tiny(_Tiny, UpperBoundTrainer):
    pass


class ModalityDropoutTrainer_tiny(_Tiny, ModalityDropoutTrainer):
    pass


class DistillationTrainer_tiny(_Tiny, DistillationTrainer):
    teacher_trainer = "UpperBoundTrainer_tiny"


class DANTETrainer_tiny(_Tiny, DANTETrainer):
    validate_full_pathway = False


class DANTETrainer_tinyS1(DANTETrainer_tiny):
    requires_pretrained_weights = True


class DANTEPretrainTrainer_tiny(_Tiny, DANTEPretrainTrainer):
    pass


class DANTEPretrainTrainer_limitedMAE_tiny(_Tiny, DANTEPretrainTrainer):
    cross_modal = False
    limited_only = True


class LowerBoundTrainer_tinyS1(LowerBoundTrainer_tiny):
    """Encoder frozen in epoch 0 (round(0.5 * 2) = 1), trained in epoch 1."""
    requires_pretrained_weights = True
    encoder_freeze_fraction = 0.5


def __getattr__(name):
    # token names (<trainer>_pib<l1>_seed<n>) of this module's trainers (dante_nnunet/trainer_names.py)
    from dante_nnunet.training.variants import variant_of
    cls = variant_of(name, globals())
    if cls is None:
        raise AttributeError(name)
    return cls


class DANTETrainer_guard(DANTETrainer):
    """4 epochs of 6 iterations (checkpoint_latest after every epoch): long enough to be killed mid-run."""
    epochs = 4
    iterations_per_epoch = 6
    val_iterations_per_epoch = 1
    validate_full_pathway = False


# ---- DDP under gloo on the CPU (tests/ddp_worker.py)
class _GlooDDP:
    """nnU-Net 2.8.1's DDP is CUDA-only: under a process group nnUNetTrainer.__init__ moves the trainer to
    cuda:<rank> (and makes a CUDA GradScaler), and initialize wraps the network in DDP(device_ids=[rank]).
    For the test's gloo group on a CPU-only machine exactly these are undone (trainer on the CPU, no
    GradScaler, DDP without device_ids); every other DDP code path is nnU-Net's and the plugin's own."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=None):
        import torch
        super().__init__(plans, configuration, fold, dataset_json, torch.device("cpu"))
        self.device, self.grad_scaler = torch.device("cpu"), None

    def initialize(self):
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as stock
        ddp = stock.DDP
        stock.DDP = lambda module, device_ids=None, **kwargs: ddp(module, **kwargs)
        try:
            super().initialize()
        finally:
            stock.DDP = ddp


class DANTEPretrainTrainer_ddp(_GlooDDP, DANTEPretrainTrainer_e2e):
    pass


class DANTETrainer_ddp(_GlooDDP, DANTETrainer_e2e):
    """Transferred encoders train from the start (freezing is refused under DDP)."""
    encoder_freeze_fraction = 0.0
    validate_full_pathway = False   # the teacher's validation is the same nnU-Net call on another view


class DANTETrainer_ddpFreeze(_GlooDDP, DANTETrainer_e2eTransfer):
    pass
