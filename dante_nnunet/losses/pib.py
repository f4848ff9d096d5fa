"""Privileged-exclusive Information Bottleneck loss (paper Eq. 3)."""
from __future__ import annotations

from typing import Sequence

import torch


def pib_loss(corrections: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_PIB = sum_i ||proj_i(Z^A_i (+) Z^P_i)||_1 (Eq. 3), with each level's L1 norm normalised by
    its element count (batch x channels x voxels), i.e. sum over levels of mean |correction|.

    Why the mean: a raw L1 sum grows with patch size, batch size and channel width, so one lambda1
    would mean different things on a 2D and a 3D plan and the level-1 map (most voxels) would swamp
    the rest. The per-level mean keeps lambda1 = 0.3 portable across plans and weighs levels equally,
    as Eq. 3's plain sum over i does.
    """
    if len(corrections) == 0:
        raise ValueError("pib_loss needs at least one correction map")
    return torch.stack([c.abs().mean() for c in corrections]).sum()
