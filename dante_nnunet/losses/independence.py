"""An upper bound on I(Z^A; Z^P) per encoder level, CLUB (Cheng et al., ICML 2020), as IndiSeek uses it to
keep modality-specific features independent of the shared ones.

With a variational network q(z_p | z_a) = N(mu(z_a), diag(exp(logvar(z_a)))):

    CLUB = E_{p(a, p)}[log q(p | a)] - E_{p(a)} E_{p(p)}[log q(p | a)]
         = mean_i mean_c [ -(p_ic - mu_ic)^2 / (2 var_ic) + mean_j (p_jc - mu_ic)^2 / (2 var_ic) ]

over N sampled voxel pairs (a_i, p_i) (the log-variance terms cancel). Per level, ``sample_pairs`` takes
N voxels uniformly over the batch's cases and positions (``samples``), each a pair of C-vectors of the
per-case, per-channel standardised maps (``alignment.standardize``), so the estimate does not move when
the encoders rescale their features. The inner mean over j is computed from the samples' first and
second moments per channel (O(N C), not O(N^2 C)). Levels are summed, as PIB's are.

Two losses come out of one call, both meant for the same backward pass:
- ``bound``: CLUB with q's parameters detached: its gradient reaches the encoders only, which minimise it;
- ``nll``: q's own loss, the negative log-likelihood mean_i mean_c [(p_ic - mu_ic)^2 / var_ic + logvar_ic] / 2
  on detached features: its gradient reaches q only, which fits the conditional.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dante_nnunet.losses.alignment import standardize


class CLUBEstimator(nn.Module):
    """q(z_p | z_a) per level: mu and logvar from two-layer perceptrons on C-vectors (hidden width C,
    ReLU; logvar through tanh, so variances stay within [e^-1, e] of the standardised features')."""

    def __init__(self, channels_per_level: Sequence[int]):
        super().__init__()
        self.mu = nn.ModuleList(nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c))
                                for c in channels_per_level)
        self.logvar = nn.ModuleList(nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c), nn.Tanh())
                                    for c in channels_per_level)

    @staticmethod
    def _run(seq: nn.Sequential, x: torch.Tensor, detach: bool) -> torch.Tensor:
        for layer in seq:
            if isinstance(layer, nn.Linear):
                w, b = (layer.weight.detach(), layer.bias.detach()) if detach else (layer.weight, layer.bias)
                x = F.linear(x, w, b)
            else:
                x = layer(x)
        return x

    def conditional(self, level: int, a: torch.Tensor, detach_params: bool = False
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(. | a) for the N x C samples ``a`` of ``level``."""
        return (self._run(self.mu[level], a, detach_params), self._run(self.logvar[level], a, detach_params))


def sample_pairs(z_a: torch.Tensor, z_p: torch.Tensor, samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``samples`` voxel positions drawn uniformly (with replacement) over the cases and voxels of one level,
    as two N x C matrices of the standardised maps (torch's global random stream, on the maps' device)."""
    if z_a.shape[:2] != z_p.shape[:2] or z_a.shape[2:] != z_p.shape[2:]:
        raise ValueError(f"CLUB needs Z^A and Z^P of one shape, got {tuple(z_a.shape)} and {tuple(z_p.shape)}")
    b, c = z_a.shape[:2]
    a = standardize(z_a).reshape(b, c, -1)
    p = standardize(z_p).reshape(b, c, -1)
    v = a.shape[2]
    idx = torch.randint(0, b * v, (samples,), device=z_a.device)
    pick = lambda m: m.permute(0, 2, 1).reshape(b * v, c).index_select(0, idx)   # noqa: E731
    return pick(a), pick(p)


def club_bound(mu: torch.Tensor, logvar: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """CLUB for N samples: mu, logvar (from the a_i) and p, each N x C (module docstring)."""
    inv = torch.exp(-logvar)
    positive = -0.5 * (p - mu).square() * inv
    mean_p, mean_p2 = p.mean(dim=0, keepdim=True), p.square().mean(dim=0, keepdim=True)
    negative = -0.5 * (mean_p2 - 2 * mean_p * mu + mu.square()) * inv   # mean_j (p_j - mu_i)^2, per channel
    return (positive - negative).mean()


def club_nll(mu: torch.Tensor, logvar: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """q's negative log-likelihood of the true pairs (without log 2 pi), averaged over samples and channels."""
    return 0.5 * ((p - mu).square() * torch.exp(-logvar) + logvar).mean()


def club_terms(estimator: CLUBEstimator, z_a: Sequence[torch.Tensor], z_p: Sequence[torch.Tensor],
               samples: int = 256) -> Tuple[torch.Tensor, torch.Tensor]:
    """(bound, nll), each summed over levels: the encoders' term (q frozen) and q's own loss (features
    detached), from one draw of ``samples`` voxels per level. Computed in float32."""
    if len(z_a) != len(z_p) or len(z_a) != len(estimator.mu):
        raise ValueError(f"CLUB has {len(estimator.mu)} levels, got {len(z_a)} Z^A and {len(z_p)} Z^P maps")
    bounds: List[torch.Tensor] = []
    nlls: List[torch.Tensor] = []
    with torch.autocast(z_a[0].device.type, enabled=False):
        for i, (za, zp) in enumerate(zip(z_a, z_p)):
            a, p = sample_pairs(za, zp, samples)
            mu, logvar = estimator.conditional(i, a, detach_params=True)
            bounds.append(club_bound(mu, logvar, p))
            mu_q, logvar_q = estimator.conditional(i, a.detach())
            nlls.append(club_nll(mu_q, logvar_q, p.detach()))
    return torch.stack(bounds).sum(), torch.stack(nlls).sum()
