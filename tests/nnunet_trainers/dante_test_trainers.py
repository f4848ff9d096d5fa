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


def __getattr__(name):
    # sweep names (<trainer>_pib<l1>_align<l2>) of this module's trainers, as the package's shim does
    from dante_nnunet.training.sweep import resolve_sweep_trainer
    cls = resolve_sweep_trainer(name, globals())
    if cls is None:
        raise AttributeError(name)
    return cls


class DANTETrainer_guard(DANTETrainer):
    """4 epochs of 6 iterations (checkpoint_latest after every epoch): long enough to be killed mid-run."""
    epochs = 4
    iterations_per_epoch = 6
    val_iterations_per_epoch = 1
    validate_full_pathway = False
