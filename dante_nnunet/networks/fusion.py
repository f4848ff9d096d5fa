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


class VariationalFusion(ResidualFusion):
    """psi_i with the correction drawn from a Gaussian code (a variational information bottleneck, as
    RedCore bounds what a representation keeps): Z^F_i = Z^A_i + s^A_i * z_i, z_i ~ N(mu_i, diag(sigma_i^2)).

    - The inputs are made scale-free first: u_i = (Z^A_i / s^A_i) (+) (Z^P_i / s^P_i), with s the per-case,
      per-channel mean |Z| over voxels (floored at ``floor``; computed in float32, kept in the graph).
    - proj_i, a 1x1 convolution from 2*C_i to 2*C_i channels, gives (mu_i, log sigma_i^2) from u_i; in
      training z_i = mu_i + sigma_i * eps (reparameterised, eps ~ N(0, I)), in evaluation (validation, the
      teacher's prediction) z_i = mu_i.
    - The correction s^A_i * z_i is in units of Z^A_i's own channel scale.

    Under any positive per-case, per-channel rescaling of Z^A and Z^P, u, mu, sigma and therefore the KL
    term (``losses.pib.vib_kl``) are unchanged, and the correction scales with Z^A: the bottleneck cannot
    be passed by shrinking or growing features, only by making the code carry less (mu -> 0, sigma -> 1:
    noise of Z^A's own scale, which the task loss pays for). ``zero_init`` starts the mean half of proj at
    0; the log-variance half starts at weight 0 and bias ``log_var_init`` (sigma = 0.14 for -4), so the
    teacher is not drowned in unit noise at the first step.

    ``forward`` returns (fused, corrections, codes): codes[i] is cat(mu_i, log sigma_i^2) on channels
    (B x 2C_i x ...), what the KL term reads."""

    def __init__(self, channels_per_level: Sequence[int], conv_op: Type[nn.Module], zero_init: bool = False,
                 log_var_init: float = -4.0, floor: float = 1e-6):
        nn.Module.__init__(self)
        self.proj = nn.ModuleList(conv_op(2 * c, 2 * c, kernel_size=1, stride=1, padding=0, bias=True)
                                  for c in channels_per_level)
        self.floor = floor
        for p, c in zip(self.proj, channels_per_level):
            with torch.no_grad():
                if zero_init:
                    p.weight[:c].zero_()
                    p.bias[:c].zero_()
                p.weight[c:].zero_()
                p.bias[c:].fill_(log_var_init)

    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, z.ndim))
        return z.float().abs().mean(dim=dims, keepdim=True).clamp_min(self.floor)

    def forward(self, z_a: Sequence[torch.Tensor], z_p: Sequence[torch.Tensor]):
        if len(z_a) != len(self.proj) or len(z_p) != len(self.proj):
            raise ValueError(f"VariationalFusion has {len(self.proj)} levels, got {len(z_a)} alignable and "
                             f"{len(z_p)} privileged feature maps")
        fused, corrections, codes = [], [], []
        for proj, a, p in zip(self.proj, z_a, z_p):
            s_a = self._scale(a)
            u = torch.cat((a.float() / s_a, p.float() / self._scale(p)), dim=1).to(a.dtype)
            code = proj(u)
            mu, log_var = code.float().chunk(2, dim=1)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu) if self.training else mu
            correction = (s_a * z).to(a.dtype)
            corrections.append(correction)
            fused.append(correction + a)
            codes.append(code)
        return fused, corrections, codes
