"""Shim for nnUNet_extTrainer (see `dante_nnunet env`). nnU-Net imports every module of this folder
and drops it from sys.modules afterwards, so this file only re-exports the installed classes with
absolute imports; the real modules stay loaded once."""
from dante_nnunet.training import *  # noqa: F401,F403
from dante_nnunet.training import __all__ as _trainers
from dante_nnunet.training.sweep import resolve_sweep_trainer as _resolve


def __getattr__(name):
    # sweep trainers such as DANTETrainer_pib0.1_align1.0 (dante_nnunet.training.sweep)
    cls = _resolve(name, {n: globals()[n] for n in _trainers})
    if cls is None:
        raise AttributeError(name)
    return cls
