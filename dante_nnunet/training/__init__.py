"""Every trainer class nnU-Net can find through `dante_nnunet env` (the shim re-exports __all__)."""
from dante_nnunet.training import variants as _variants
from dante_nnunet.training.baselines import (DistillationTrainer, LowerBoundTrainer, ModalityDropoutTrainer,
                                             UpperBoundTrainer)
from dante_nnunet.training.base import DANTEBaseTrainer
from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.pretrain_trainer import DANTEPretrainTrainer

_bases = (DANTETrainer, DANTEPretrainTrainer, UpperBoundTrainer, LowerBoundTrainer, ModalityDropoutTrainer,
          DistillationTrainer)
_found = {n: c for n, c in vars(_variants).items()
          if isinstance(c, type) and issubclass(c, DANTEBaseTrainer) and c.__module__ == _variants.__name__}
globals().update(_found)

__all__ = [c.__name__ for c in _bases] + sorted(_found)
