"""Seeded training runs. nnU-Net 2.8.1 does not seed training (its maintainers keep it nondeterministic
on purpose, PR #2871), so a trainer with a ``seed`` seeds three things itself:

1. the main process (``random``, NumPy, torch) when it is initialised, before the network is built:
   weight initialisation, the single-threaded data path (``nnUNet_n_proc_DA=0``), InfoNCE anchors,
   modality dropout;
2. the augmentation workers. ``nnUNetTrainer.get_dataloaders`` (2.8.1) builds its two
   ``NonDetMultiThreadedAugmenter``s with ``seeds=None``, and a batchgenerators worker given ``None``
   calls ``np.random.seed(None)``, i.e. reseeds itself from the operating system. There is no hook for
   the seeds, so ``seeded_augmenter_workers`` swaps that one name in nnU-Net's trainer module, for the
   duration of the call only, for a factory that fills in seeds derived from ours (the trainer's and
   validation's workers get different ones). ``tests/test_seeding.py`` checks that nnU-Net still builds
   its augmenters that way, so a new nnU-Net that changes it is noticed;
3. cuDNN on a GPU: deterministic kernels, no benchmark autotuning (``run_training`` turns benchmark on).

What stays nondeterministic: with more than one augmentation worker (``nnUNet_n_proc_DA`` > 1) the
order in which their batches arrive varies (hence nnU-Net's "NonDet" augmenter); ``torch.compile`` and
some CUDA kernels (atomic adds in backward) are not bitwise reproducible. On the CPU with at most one
worker, the same seed gives the same weights.
"""
from __future__ import annotations

import contextlib
import itertools
import random
from typing import Iterator

import numpy as np
import torch

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module

AUGMENTER_NAME = "NonDetMultiThreadedAugmenter"   # the name get_dataloaders looks up in that module


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from a tuple of integers (NumPy's ``SeedSequence``): distinct tuples give
    independent streams, and the value fits ``np.random.seed``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(derived_seed(seed))
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_augmenter_workers(seed: int) -> Iterator[None]:
    """Within the context, every ``NonDetMultiThreadedAugmenter`` that nnU-Net's trainer module builds
    without seeds gets ``seeds = [derived_seed(seed, k, i) for worker i]``, k counting the augmenters
    built (0: training, 1: validation)."""
    original = getattr(nnunet_trainer_module, AUGMENTER_NAME)
    built = itertools.count()

    def seeded_augmenter(*args, **kwargs):
        k = next(built)
        if kwargs.get("seeds") is None:
            n = kwargs["num_processes"] if "num_processes" in kwargs else args[2]
            kwargs["seeds"] = [derived_seed(seed, k, i) for i in range(n)]
        return original(*args, **kwargs)

    setattr(nnunet_trainer_module, AUGMENTER_NAME, seeded_augmenter)
    try:
        yield
    finally:
        setattr(nnunet_trainer_module, AUGMENTER_NAME, original)


def make_cudnn_deterministic() -> None:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
