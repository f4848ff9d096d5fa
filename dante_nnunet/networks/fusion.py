"""Multi-level residual fusion psi (paper Eq. 2)."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Type

import torch
from torch import nn


class ResidualFusion(nn.Module):
    """psi_i(Z^A_i, Z^P_i) = proj_i(Z^A_i (+) Z^P_i) + Z^A_i at every encoder level i (Eq. 2).

    (+) is channel concatenation and proj_i a 1x1 (2D) or 1x1x1 (3D) convolution with bias from
    2*C_i to C_i channels, C_i the width of level i. The residual makes Z^A the primary path; the
    first term is the *correction* that should carry only indispensable privileged information and
    is what the PIB loss (Eq. 3) penalises, so ``forward`` returns it beside the fused maps.

    ``zero_init``: proj_i's weight and bias start at 0, so the correction starts at exactly 0 and Z^F = Z^A
    until the task asks for privileged information (with torch's default initialisation the correction
    started at 0.8-1.6x the size of Z^A). The gradient reaching proj_i is unaffected by its own zero value.
    """

    def __init__(self, channels_per_level: Sequence[int], conv_op: Type[nn.Module], zero_init: bool = False):
        super().__init__()
        self.proj = nn.ModuleList(conv_op(2 * c, c, kernel_size=1, stride=1, padding=0, bias=True)
                                  for c in channels_per_level)
        if zero_init:
            for p in self.proj:
                nn.init.zeros_(p.weight)
                nn.init.zeros_(p.bias)

    def forward(self, z_a: Sequence[torch.Tensor], z_p: Sequence[torch.Tensor]
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        if len(z_a) != len(self.proj) or len(z_p) != len(self.proj):
            raise ValueError(f"ResidualFusion has {len(self.proj)} levels, got {len(z_a)} alignable and "
                             f"{len(z_p)} privileged feature maps")
        corrections = [proj(torch.cat((a, p), dim=1)) for proj, a, p in zip(self.proj, z_a, z_p)]
        fused = [c + a for c, a in zip(corrections, z_a)]
        return fused, corrections
