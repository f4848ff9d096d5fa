"""Mutual alignment between Z^L and Z^A (paper Eqs. 4 and 5).

Neither form detaches either side: gradients reach both E_L and E_A (the paper's bidirectional
alignment).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check_levels(z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> None:
    if len(z_a) != len(z_l) or len(z_a) == 0:
        raise ValueError(f"alignment needs the same non-zero number of levels, got {len(z_a)} and {len(z_l)}")
    for i, (a, l) in enumerate(zip(z_a, z_l)):
        if a.shape != l.shape:
            raise ValueError(f"level {i + 1}: Z^A has shape {tuple(a.shape)} but Z^L has {tuple(l.shape)}")


class RegressionAlignment(nn.Module):
    """L^Reg_Align = sum_i ||Z^A_i - Z^L_i||_p, p in {1, 2} (Eq. 4).

    Normalisation: each level's p-norm is divided by N_i^(1/p), N_i its element count (batch x
    channels x voxels), giving the power mean (mean |d|^p)^(1/p): mean absolute difference for p=1,
    root-mean-square difference for p=2. This is Eq. 4's norm up to a constant factor per level, so
    its minimiser is unchanged, while lambda2 stays portable across patch sizes and widths (see
    pib_loss). Levels are summed, as in Eq. 4.
    """

    def __init__(self, p: int = 1):
        super().__init__()
        if p not in (1, 2):
            raise ValueError(f"regression alignment supports p=1 or p=2, got p={p}")
        self.p = p

    def forward(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        _check_levels(z_a, z_l)
        per_level = []
        for a, l in zip(z_a, z_l):
            d = a - l
            if self.p == 1:
                per_level.append(d.abs().mean())
            else:
                # the norm's gradient at d == 0 is taken as 0 by torch.linalg.vector_norm
                per_level.append(torch.linalg.vector_norm(d.float()) / d.numel() ** 0.5)
        return torch.stack(per_level).sum()


class InfoNCEAlignment(nn.Module):
    """L^Contra_Align (Eq. 5): pixel-level InfoNCE with cosine similarity and temperature tau.

    At each level, ``num_anchors`` voxel positions are drawn uniformly without replacement from all
    voxels of all cases in the batch (all positions when the level has fewer). For an anchor z^a, the
    Z^A_i vector at a drawn position (case b, voxel v), the positive is Z^L_i at the same (b, v) and
    the negatives are Z^L_i at the other drawn positions, of the same and of other cases. Sampling
    keeps memory at num_anchors^2 similarities per level whatever the patch size (a 128^3 patch has
    2M voxels per case at level 1).

    Normalisation: the mean of the per-anchor losses over all anchors of all levels (the 1/|A| of
    Eq. 5), not a per-level mean.
    """

    def __init__(self, temperature: float = 0.1, num_anchors: int = 1024,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"InfoNCE temperature must be > 0, got {temperature}")
        if num_anchors < 2:
            raise ValueError(f"InfoNCE needs at least 2 anchors per level (one positive, >= 1 negative), "
                             f"got {num_anchors}")
        self.temperature = temperature
        self.num_anchors = num_anchors
        self.generator = generator

    def sample_positions(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0] * z[0, 0].numel()
        if n <= self.num_anchors:
            return torch.arange(n, device=z.device)
        gen_device = self.generator.device if self.generator is not None else z.device
        return torch.randperm(n, generator=self.generator, device=gen_device)[:self.num_anchors].to(z.device)

    def anchor_losses(self, a: torch.Tensor, l: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Per-anchor InfoNCE losses at flat (case, voxel) ``positions`` of one level."""
        voxels = a[0, 0].numel()
        b, v = positions // voxels, positions % voxels
        # gather (K, C) without copying the whole feature map
        za = a.flatten(2)[b, :, v].float()
        zl = l.flatten(2)[b, :, v].float()
        logits = F.normalize(za, dim=1) @ F.normalize(zl, dim=1).t() / self.temperature
        return F.cross_entropy(logits, torch.arange(len(positions), device=logits.device), reduction="none")

    def forward(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        _check_levels(z_a, z_l)
        losses = [self.anchor_losses(a, l, self.sample_positions(a)) for a, l in zip(z_a, z_l)]
        return torch.cat(losses).mean()


def build_alignment(kind: str, temperature: float = 0.1, num_anchors: int = 1024) -> nn.Module:
    """'l1' / 'l2' -> Eq. 4 with p = 1 / 2; 'infonce' -> Eq. 5."""
    if kind == "l1":
        return RegressionAlignment(1)
    if kind == "l2":
        return RegressionAlignment(2)
    if kind == "infonce":
        return InfoNCEAlignment(temperature, num_anchors)
    raise ValueError(f"unknown alignment {kind!r}; choose 'l1', 'l2' or 'infonce'")
