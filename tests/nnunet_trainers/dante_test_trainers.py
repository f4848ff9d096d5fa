"""Test-only trainers, found through nnUNet_extTrainer like the package's own."""
from dante_nnunet.training import DANTETrainer


class DANTETrainer_e2e(DANTETrainer):
    """3 epochs of 4 iterations: regularisers off in epoch 0, on from epoch 1 (round(0.2 * 3))."""
    epochs = 3
    iterations_per_epoch = 4
    val_iterations_per_epoch = 2
