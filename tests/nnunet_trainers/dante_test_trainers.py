"""Test-only trainers, found through nnUNet_extTrainer like the package's own."""
from dante_nnunet.training import DANTEPretrainTrainer, DANTETrainer


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
