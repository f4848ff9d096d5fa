"""Shim for nnUNet_extTrainer (see `dante_nnunet env`). nnU-Net imports every module of this folder
and drops it from sys.modules afterwards, so this file only re-exports the installed classes with
absolute imports; the real modules stay loaded once. Token names (``DANTETrainer_demo_seed1``,
dante_nnunet/trainer_names.py) resolve through the module ``__getattr__``; a name of one of the package's
families whose tokens name no trainer stops the lookup with the family's token list."""
from dante_nnunet.training import *  # noqa: F401,F403
from dante_nnunet.training.variants import __getattr__  # noqa: F401
