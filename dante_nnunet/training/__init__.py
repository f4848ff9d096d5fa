"""The trainer families nnU-Net can find through `dante_nnunet env`, and every token variant of them
(``DANTETrainer_demo``, ``LowerBoundTrainer_transfer_seed1``: training/variants.py) by name."""
from dante_nnunet.training.baselines import (DistillationTrainer, LowerBoundTrainer, ModalityDropoutTrainer,
                                             UpperBoundTrainer)
from dante_nnunet.training.base import DANTEBaseTrainer  # noqa: F401
from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.pretrain_trainer import DANTEPretrainTrainer
from dante_nnunet.training.variants import __getattr__  # noqa: F401  (``from dante_nnunet.training import X``)

__all__ = ["DANTETrainer", "DANTEPretrainTrainer", "UpperBoundTrainer", "LowerBoundTrainer",
           "ModalityDropoutTrainer", "DistillationTrainer"]
