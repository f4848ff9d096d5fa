"""DANTETrainer and DANTEPretrainTrainer variants, named the nnU-Net way; each changes attributes only.

Schedule variants scale the whole schedule: the regularisers still join at 20% of training
(epoch 10 of 50, 2 of 10, 1 of 5, 0 of 1) and transferred encoders stay frozen for 10% (5 of 50,
1 of 10, 0 of 5 or 1).

Regulariser forms (losses/alignment.py, losses/pib.py): DANTETrainer's default is Eq. 4 between
standardised maps towards a detached Z^A, Eq. 3 relative to |Z^A|, proj_i starting at 0. ``_paper`` is
Eqs. 3-4 exactly as printed (DANTETrainer's form before the feature-collapse measurements); ``_stdBidir``
the default with the alignment pulling both pathways (Z^A not detached). ``_synth`` adds the privileged
synthesis term (losses/synthesis.py), ``_synthOnly`` has it without Eqs. 3-4.
"""
from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.pretrain_trainer import DANTEPretrainTrainer
from dante_nnunet.training.baselines import (DistillationTrainer, LowerBoundTrainer, ModalityDropoutTrainer,
                                             UpperBoundTrainer)


class DANTETrainer_1epoch(DANTETrainer):
    epochs = 1


class DANTETrainer_5epochs(DANTETrainer):
    epochs = 5


class DANTETrainer_10epochs(DANTETrainer):
    epochs = 10


class DANTETrainer_50epochs(DANTETrainer):
    epochs = 50


class PaperLiteral:
    """Eqs. 3 and 4 as printed: L1 alignment of the raw maps in both directions, L1 of the raw correction,
    torch's default initialisation of proj_i. Measured to collapse features (README, "Privileged transfer")."""
    alignment = "l1"
    alignment_stop_gradient = False
    pib = "l1"
    fusion_zero_init = False


class StandardizedBidirectional:
    """The default form with the alignment pulling both pathways: Z^A is not detached. Measured to drag
    the teacher's features onto the student's (docs/privileged_transfer.md)."""
    alignment_stop_gradient = False


class PrivilegedSynthesis:
    """Adds the output-level term of losses/synthesis.py: a training-only head on D_L regresses the
    privileged channels (weight 1, from epoch 0). Not in the paper."""
    lambda_synthesis = 1.0


class SynthesisOnly(PrivilegedSynthesis):
    """Ablation: the synthesis term without Eqs. 3-4 (no PIB, no alignment)."""
    lambda_pib = 0.0
    lambda_align = 0.0


class DANTETrainer_paper(PaperLiteral, DANTETrainer):
    pass


class DANTETrainer_synth(PrivilegedSynthesis, DANTETrainer):
    pass


class DANTETrainer_stdBidir(StandardizedBidirectional, DANTETrainer):
    pass


class DANTETrainer_L2Align(DANTETrainer):
    """Eq. 4 with p = 2 (between standardised maps, as the default)."""
    alignment = "std_l2"


class DANTETrainer_InfoNCE(DANTETrainer):
    """Eq. 5, pixel-level InfoNCE."""
    alignment = "infonce"


class DANTETrainer_noPIB(DANTETrainer):
    """Ablation: lambda1 = 0 (no privileged information bottleneck)."""
    lambda_pib = 0.0


class DANTETrainer_noAlign(DANTETrainer):
    """Ablation: lambda2 = 0 (no mutual alignment)."""
    lambda_align = 0.0


class DANTETrainer_noFreeze(DANTETrainer):
    """Transferred Stage-1 encoders train from the first epoch (needed under DDP)."""
    encoder_freeze_fraction = 0.0


class DANTETrainer_checkpointing(DANTETrainer):
    """Activation checkpointing of every encoder, decoder and the fusion: trades time for memory
    (numbers in docs/performance.md)."""
    activation_checkpointing = True


class DemoSchedule:
    """The CPU demo's short schedule (mixed into the `_demo` variants): 10 epochs of 50 iterations,
    10 validation iterations; DANTE's regularisers from epoch 2. Far too short for real data."""
    epochs = 10
    iterations_per_epoch = 50
    val_iterations_per_epoch = 10


class DANTETrainer_demo(DemoSchedule, DANTETrainer):
    """`dante_nnunet demo`'s trainer."""


class GPUCheckSchedule:
    """scripts/gpu_check.py's schedule: 3 epochs of 20 iterations, 5 validation iterations (regularisers
    from epoch 1). A mechanics check, not a training."""
    epochs = 3
    iterations_per_epoch = 20
    val_iterations_per_epoch = 5


class DANTETrainer_gpuCheck(GPUCheckSchedule, DANTETrainer):
    """The GPU check's short DANTE run."""


class DANTETrainer_paper_demo(DemoSchedule, PaperLiteral, DANTETrainer):
    pass


class DANTETrainer_stdBidir_demo(DemoSchedule, StandardizedBidirectional, DANTETrainer):
    pass


class DANTETrainer_synth_demo(DemoSchedule, PrivilegedSynthesis, DANTETrainer):
    pass


class DANTETrainer_synthOnly_demo(DemoSchedule, SynthesisOnly, DANTETrainer):
    pass


class TransferSchedule:
    """The transfer phantom's CPU schedule (configs/phantom_transfer.json): 100 epochs of 50 iterations,
    5 validation iterations; regularisers from epoch 20, transferred encoders frozen for 10 epochs. Chosen
    so that the lower bound would be limited by its training cases rather than by its steps; through
    nnU-Net it is not (docs/privileged_transfer.md, section 5)."""
    epochs = 100
    iterations_per_epoch = 50
    val_iterations_per_epoch = 5


class DANTETrainer_transfer(TransferSchedule, DANTETrainer):
    pass


class DANTETrainer_transfer_S1(DANTETrainer_transfer):
    requires_pretrained_weights = True


class DANTETrainer_paper_transfer(TransferSchedule, PaperLiteral, DANTETrainer):
    pass


class DANTETrainer_stdBidir_transfer(TransferSchedule, StandardizedBidirectional, DANTETrainer):
    pass


class DANTETrainer_synth_transfer(TransferSchedule, PrivilegedSynthesis, DANTETrainer):
    pass


class DANTETrainer_synthOnly_transfer(TransferSchedule, SynthesisOnly, DANTETrainer):
    pass


class DANTEPretrainTrainer_transfer(TransferSchedule, DANTEPretrainTrainer):
    epochs = 50   # Stage 1: half the fine-tuning schedule


class DANTEPretrainTrainer_selfMAE_transfer(TransferSchedule, DANTEPretrainTrainer):
    epochs = 50
    cross_modal = False


class DANTEPretrainTrainer_limitedMAE_transfer(TransferSchedule, DANTEPretrainTrainer):
    epochs = 50
    cross_modal = False
    limited_only = True


class DANTETrainer_transfer_S1selfMAE(DANTETrainer_transfer_S1):
    """DANTETrainer_transfer_S1 under its own name, for a run from a self-reconstruction Stage 1 beside one
    from the cross-modal Stage 1 (one results folder each)."""


class DANTEPretrainTrainer_1epoch(DANTEPretrainTrainer):
    epochs = 1


class DANTEPretrainTrainer_5epochs(DANTEPretrainTrainer):
    epochs = 5


class DANTEPretrainTrainer_10epochs(DANTEPretrainTrainer):
    epochs = 10


class DANTEPretrainTrainer_50epochs(DANTEPretrainTrainer):
    epochs = 50


class DANTEPretrainTrainer_selfMAE(DANTEPretrainTrainer):
    """Ablation "w/o cross-modal pretrain" (paper Table 2): each pathway reconstructs only its own
    input (Eqs. 7 and 8), no L+P->F reconstruction (Eq. 9) and no Psi_2."""
    cross_modal = False


class DANTEPretrainTrainer_limitedMAE(DANTEPretrainTrainer):
    """Not DANTE: a masked autoencoder of the limited channels alone (E_L and D_L^REC, Eq. 7), what a user
    without privileged scans would pre-train on unlabelled ones (nnssl's recipe); fine-tune the lower bound
    from it with LowerBoundTrainer_S1."""
    cross_modal = False
    limited_only = True


class DANTETrainer_S1(DANTETrainer):
    """DANTE fine-tuned from Stage 1 (paper: DANTE with cross-modal pre-training): refuses to start
    without -pretrained_weights, and keeps its results apart from DANTETrainer's."""
    requires_pretrained_weights = True


class DANTETrainer_demo_S1(DANTETrainer_demo):
    requires_pretrained_weights = True


class DANTEPretrainTrainer_demo(DemoSchedule, DANTEPretrainTrainer):
    pass


# ---------------------------------------------------------------- baselines (training/baselines.py)

class UpperBoundTrainer_50epochs(UpperBoundTrainer):
    epochs = 50


class UpperBoundTrainer_demo(DemoSchedule, UpperBoundTrainer):
    pass


class LowerBoundTrainer_50epochs(LowerBoundTrainer):
    epochs = 50


class LowerBoundTrainer_demo(DemoSchedule, LowerBoundTrainer):
    pass


class LowerBoundTrainer_S1(LowerBoundTrainer):
    """The lower bound fine-tuned from a Stage-1 E_L (-pretrained_weights required): a cross-modal Stage 1's
    E_L separates Stage 1's gain from Stage 2's; a limited-only MAE's is self-supervised pre-training."""
    requires_pretrained_weights = True


class ModalityDropoutTrainer_50epochs(ModalityDropoutTrainer):
    epochs = 50


class ModalityDropoutTrainer_demo(DemoSchedule, ModalityDropoutTrainer):
    pass


class DistillationTrainer_50epochs(DistillationTrainer):
    epochs = 50
    teacher_trainer = "UpperBoundTrainer_50epochs"


class DistillationTrainer_demo(DemoSchedule, DistillationTrainer):
    teacher_trainer = "UpperBoundTrainer_demo"


class UpperBoundTrainer_transfer(TransferSchedule, UpperBoundTrainer):
    pass


class LowerBoundTrainer_transfer(TransferSchedule, LowerBoundTrainer):
    pass


class LowerBoundTrainer_transfer_S1(TransferSchedule, LowerBoundTrainer_S1):
    pass


class LowerBoundTrainer_transfer_SSL(LowerBoundTrainer_transfer_S1):
    """LowerBoundTrainer_transfer_S1 under its own name, for the lower bound fine-tuned from a limited-channel
    MAE (self-supervised pre-training without privileged scans) beside one from the cross-modal Stage 1."""


class ModalityDropoutTrainer_transfer(TransferSchedule, ModalityDropoutTrainer):
    pass


class DistillationTrainer_transfer(TransferSchedule, DistillationTrainer):
    teacher_trainer = "UpperBoundTrainer_transfer"


# ---------------------------------------------------------------- training cases without the privileged scan
class CompleteCasesOnly:
    """Trains and validates on the cases that have the privileged scan only (the cases listed in
    "cases_without_privileged" are left out, as a user without this plugin's support would drop them)."""
    complete_cases_only = True


class DANTETrainer_completeOnly(CompleteCasesOnly, DANTETrainer):
    pass


class DANTETrainer_completeOnly_demo(DemoSchedule, CompleteCasesOnly, DANTETrainer):
    pass


class DANTETrainer_synthOnly_completeOnly_demo(DemoSchedule, SynthesisOnly, CompleteCasesOnly, DANTETrainer):
    pass


class LowerBoundTrainer_completeOnly_demo(DemoSchedule, CompleteCasesOnly, LowerBoundTrainer):
    pass
