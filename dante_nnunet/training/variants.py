"""DANTETrainer variants, named the nnU-Net way; each changes attributes only.

Schedule variants scale the whole schedule: the regularisers still join at 20% of training
(epoch 10 of 50, 2 of 10, 1 of 5, 0 of 1).
"""
from dante_nnunet.training.dante_trainer import DANTETrainer


class DANTETrainer_1epoch(DANTETrainer):
    epochs = 1


class DANTETrainer_5epochs(DANTETrainer):
    epochs = 5


class DANTETrainer_10epochs(DANTETrainer):
    epochs = 10


class DANTETrainer_50epochs(DANTETrainer):
    epochs = 50


class DANTETrainer_L2Align(DANTETrainer):
    """Eq. 4 with p = 2."""
    alignment = "l2"


class DANTETrainer_InfoNCE(DANTETrainer):
    """Eq. 5, pixel-level InfoNCE."""
    alignment = "infonce"


class DANTETrainer_noPIB(DANTETrainer):
    """Ablation: lambda1 = 0 (no privileged information bottleneck)."""
    lambda_pib = 0.0


class DANTETrainer_noAlign(DANTETrainer):
    """Ablation: lambda2 = 0 (no mutual alignment)."""
    lambda_align = 0.0


class DANTETrainer_demo(DANTETrainer):
    """The CPU demo's short schedule (`dante_nnunet demo`): 10 epochs of 50 iterations, regularisers
    from epoch 2. Far too short for real data."""
    epochs = 10
    iterations_per_epoch = 50
    val_iterations_per_epoch = 10
