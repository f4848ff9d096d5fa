"""Privileged-exclusive Information Bottleneck loss (paper Eq. 3), as written and in a form relative to
the scale of the path it corrects."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


def pib_loss(corrections: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_PIB = sum_i ||proj_i(Z^A_i (+) Z^P_i)||_1 (Eq. 3), with each level's L1 norm normalised by
    its element count (batch x channels x voxels), i.e. sum over levels of mean |correction|.

    Why the mean: a raw L1 sum grows with patch size, batch size and channel width, so one lambda1
    would mean different things on a 2D and a 3D plan and the level-1 map (most voxels) would swamp
    the rest. The per-level mean keeps lambda1 = 0.3 portable across plans and weighs levels equally,
    as Eq. 3's plain sum over i does.

    Its minimum can be reached by shrinking Z^A (the correction shrinks with its input; how much of the
    drop that was in runs: docs/privileged_transfer.md). ``relative_pib_loss`` cannot.
    """
    if len(corrections) == 0:
        raise ValueError("pib_loss needs at least one correction map")
    return torch.stack([c.abs().mean() for c in corrections]).sum()


def relative_pib_loss(corrections: Sequence[torch.Tensor], z_alignable: Sequence[torch.Tensor],
                      floor: float = 1e-6) -> torch.Tensor:
    """sum_i mean |proj_i(Z^A_i (+) Z^P_i)| / mean |Z^A_i|: Eq. 3's per-level L1 (as ``pib_loss``) divided
    by the mean magnitude of the alignable map it corrects (floored at ``floor``). Both stay attached.

    Scaling the correction and Z^A together leaves it unchanged, so it falls only when the correction
    shrinks *relative to* the alignable path, which is what the bottleneck is meant to do. The scale must
    stay in the graph: the correction is computed from Z^A and Z^P, so with a detached denominator the
    gradient through proj_i's inputs still asks both encoders to shrink, and more strongly the smaller
    Z^A gets (docs/privileged_transfer.md has the run that showed it). Attached, a joint rescaling of Z^A and Z^P gets no gradient
    from a bias-free proj_i (tested); proj_i's bias leaves a small push towards larger features.
    """
    if len(corrections) == 0 or len(corrections) != len(z_alignable):
        raise ValueError(f"relative_pib_loss needs one Z^A map per correction map, got {len(corrections)} "
                         f"corrections and {len(z_alignable)} maps")
    return torch.stack([c.abs().mean() / a.float().abs().mean().clamp_min(floor)
                        for c, a in zip(corrections, z_alignable)]).sum()


def vib_kl(codes: Sequence[torch.Tensor]) -> torch.Tensor:
    """The variational bottleneck's compaction term: sum_i mean KL(N(mu_i, sigma_i^2) || N(0, 1)), with
    KL = 0.5 * (mu^2 + sigma^2 - log sigma^2 - 1) per case, channel and voxel, averaged over them (as
    ``pib_loss`` averages |correction|) and summed over levels. ``codes[i]`` = cat(mu_i, log sigma_i^2)
    on the channel axis (``networks.fusion.VariationalFusion``). Computed in float32.

    Scaling: mu and sigma are computed from scale-free inputs, so rescaling the features leaves this term
    unchanged (tested); it is 0 only for mu = 0, sigma = 1, a code that carries nothing."""
    if len(codes) == 0:
        raise ValueError("vib_kl needs at least one code")
    terms = []
    for code in codes:
        mu, log_var = code.float().chunk(2, dim=1)
        terms.append((0.5 * (mu.square() + log_var.exp() - log_var - 1.0)).mean())
    return torch.stack(terms).sum()


class PIB(nn.Module):
    """Eq. 3 as a module of (corrections, Z^A[, codes]): ``form`` 'l1' -> ``pib_loss``, 'relative' ->
    ``relative_pib_loss``, 'vib' -> ``vib_kl`` of a variational fusion's codes."""

    def __init__(self, relative: bool = False, form: str = ""):
        super().__init__()
        self.form = form or ("relative" if relative else "l1")
        self.relative = self.form == "relative"

    def forward(self, corrections: Sequence[torch.Tensor], z_alignable: Sequence[torch.Tensor],
                codes: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        if self.form == "vib":
            if codes is None:
                raise ValueError("the 'vib' PIB form needs a network built with a variational fusion "
                                 "(build_dual_pathway_network(..., variational=True))")
            return vib_kl(codes)
        return relative_pib_loss(corrections, z_alignable) if self.relative else pib_loss(corrections)


PIB_FORMS = ("l1", "relative", "vib")


def build_pib(kind: str) -> PIB:
    """'l1' -> Eq. 3 as written (``pib_loss``); 'relative' -> ``relative_pib_loss``; 'vib' -> ``vib_kl``."""
    if kind not in PIB_FORMS:
        raise ValueError(f"unknown PIB form {kind!r}; choose one of {', '.join(PIB_FORMS)}")
    return PIB(form=kind)
