"""Mutual alignment between Z^L and Z^A (paper Eqs. 4 and 5), and a form of Eq. 4 that rescaling cannot
satisfy.

- ``RegressionAlignment``: Eq. 4 as written, on the raw feature maps. Its minimum can be reached by
  shrinking both maps: every encoder stage ends in InstanceNorm + LeakyReLU and feeds a convolution
  followed by InstanceNorm, so the task loss hardly sees a stage's scale, and runs shrank Z^A and killed
  channels (the measurements: docs/privileged_transfer.md).
- ``StandardizedAlignment``: Eq. 4 between per-case, per-channel standardised maps (as PKD /
  data2vec normalise feature targets). Invariant to any positive per-channel scale and any shift of
  either map, so only agreement in shape lowers it; a dead channel facing a live one costs the most.
- ``InfoNCEAlignment``: Eq. 5 (cosine similarity: invariant to the scale of each feature vector).

By default gradients reach both E_L and E_A (the paper's bidirectional alignment). With
``stop_gradient=True`` Z^A is a detached target: the limited pathway is pulled towards the full one,
never the reverse.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

STANDARDIZE_EPS = 1e-5    # variance floor of ``standardize`` (InstanceNorm's eps)


def standardize(z: torch.Tensor, eps: float = STANDARDIZE_EPS) -> torch.Tensor:
    """Per case and channel, zero mean and unit variance over the voxels: (z - mean) / sqrt(var + eps),
    var the biased variance. Parameter-free (an InstanceNorm without affine parameters), in float32."""
    z = z.float()
    dims = tuple(range(2, z.ndim))
    mean = z.mean(dim=dims, keepdim=True)
    var = z.var(dim=dims, keepdim=True, unbiased=False)
    return (z - mean) * torch.rsqrt(var + eps)


def _check_levels(z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> None:
    if len(z_a) != len(z_l) or len(z_a) == 0:
        raise ValueError(f"alignment needs the same non-zero number of levels, got {len(z_a)} and {len(z_l)}")
    for i, (a, l) in enumerate(zip(z_a, z_l)):
        if a.shape != l.shape:
            raise ValueError(f"level {i + 1}: Z^A has shape {tuple(a.shape)} but Z^L has {tuple(l.shape)}")


class _Alignment(nn.Module):
    """Checks the levels, detaches Z^A if ``stop_gradient``, and sums or averages ``distance`` over levels."""

    def __init__(self, stop_gradient: bool = False):
        super().__init__()
        self.stop_gradient = stop_gradient

    def distance(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        _check_levels(z_a, z_l)
        if self.stop_gradient:
            z_a = [a.detach() for a in z_a]
        return self.distance(z_a, z_l)


def _power_mean(d: torch.Tensor, p: int) -> torch.Tensor:
    """(mean |d|^p)^(1/p) over all elements, p in {1, 2}; the p = 2 gradient at d == 0 is taken as 0."""
    if p == 1:
        return d.abs().mean()
    return torch.linalg.vector_norm(d.float()) / d.numel() ** 0.5


def _check_p(p: int) -> None:
    if p not in (1, 2):
        raise ValueError(f"regression alignment supports p=1 or p=2, got p={p}")


class RegressionAlignment(_Alignment):
    """L^Reg_Align = sum_i ||Z^A_i - Z^L_i||_p, p in {1, 2} (Eq. 4).

    Normalisation: each level's p-norm is divided by N_i^(1/p), N_i its element count (batch x
    channels x voxels), giving the power mean (mean |d|^p)^(1/p): mean absolute difference for p=1,
    root-mean-square difference for p=2. This is Eq. 4's norm up to a constant factor per level, so
    its minimiser is unchanged, while lambda2 stays portable across patch sizes and widths (see
    pib_loss). Levels are summed, as in Eq. 4.
    """

    def __init__(self, p: int = 1, stop_gradient: bool = False):
        super().__init__(stop_gradient)
        _check_p(p)
        self.p = p

    def distance(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([_power_mean(a - l, self.p) for a, l in zip(z_a, z_l)]).sum()


class StandardizedAlignment(_Alignment):
    """sum_i (mean |std(Z^A_i) - std(Z^L_i)|^p)^(1/p): Eq. 4, normalised as ``RegressionAlignment``, between
    maps that ``standardize`` has brought to zero mean and unit variance per case
    and channel over the voxels (variance floor eps = 1e-5, so the invariance holds for feature scales
    well above sqrt(eps) ~ 0.003).

    For p = 2 each level is sqrt(2 (1 - r)), r the mean Pearson correlation between corresponding
    channels of the two maps (PKD's loss); p = 1 is its robust counterpart (the paper's default norm).
    Unrelated maps give about 1.13 (p = 1) or 1.41 (p = 2) per level.
    """

    def __init__(self, p: int = 1, stop_gradient: bool = False):
        super().__init__(stop_gradient)
        _check_p(p)
        self.p = p

    def distance(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([_power_mean(standardize(a) - standardize(l), self.p) for a, l in zip(z_a, z_l)]).sum()


class InfoNCEAlignment(_Alignment):
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
                 generator: Optional[torch.Generator] = None, stop_gradient: bool = False):
        super().__init__(stop_gradient)
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

    def distance(self, z_a: Sequence[torch.Tensor], z_l: Sequence[torch.Tensor]) -> torch.Tensor:
        losses = [self.anchor_losses(a, l, self.sample_positions(a)) for a, l in zip(z_a, z_l)]
        return torch.cat(losses).mean()


ALIGNMENTS = ("l1", "l2", "std_l1", "std_l2", "infonce")


def build_alignment(kind: str, temperature: float = 0.1, num_anchors: int = 1024,
                    stop_gradient: bool = False) -> nn.Module:
    """'l1' / 'l2' -> Eq. 4 with p = 1 / 2 on raw maps; 'std_l1' / 'std_l2' -> the same on standardised
    maps; 'infonce' -> Eq. 5."""
    if kind in ("l1", "l2"):
        return RegressionAlignment(int(kind[-1]), stop_gradient)
    if kind in ("std_l1", "std_l2"):
        return StandardizedAlignment(int(kind[-1]), stop_gradient)
    if kind == "infonce":
        return InfoNCEAlignment(temperature, num_anchors, stop_gradient=stop_gradient)
    raise ValueError(f"unknown alignment {kind!r}; choose one of {', '.join(ALIGNMENTS)}")
