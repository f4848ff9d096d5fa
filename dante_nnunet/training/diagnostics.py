"""Feature diagnostics of the Stage-2 network: does the privileged transfer reach the limited encoder,
or are the regularisers being satisfied by shrinking features?

Per encoder level i (1 = full resolution), on detached tensors:

- ``abs_zl``, ``abs_za``: mean |Z^L_i|, mean |Z^A_i| (over batch, channels and voxels): the feature scale.
- ``align_dist``: a scale-invariant alignment distance, the mean |std(Z^A_i) - std(Z^L_i)|, with std() the
  per-case, per-channel standardisation over voxels (``losses.alignment.standardize``). Rescaling either map does not
  move it; only agreement in shape does. About 1.13 for unrelated maps (E|x - y| of two independent
  standard normals), 0 for maps equal up to a per-channel affine map.
- ``dead_zl``, ``dead_za``: the fraction of channels whose mean |activation| over the batch and voxels is
  below ``DEAD_ACTIVATION`` (0.01): channels that carry nothing any more.
- ``corr_ratio``: mean |proj_i(Z^A_i (+) Z^P_i)| / mean |Z^A_i|: the size of the fusion's correction
  (what PIB penalises) relative to the alignable path it corrects.

``feature_statistics`` returns them as one (levels x 6) tensor per step, so a trainer can stack steps
on the device and move one tensor to the host per epoch. ``diagnostic_warnings`` turns a history of
epoch means into the warnings the training log prints.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from dante_nnunet.losses.alignment import standardize

FEATURE_STATS = ("abs_zl", "abs_za", "align_dist", "dead_zl", "dead_za", "corr_ratio")
STAT_LABELS = {"abs_zl": "mean |Z^L|", "abs_za": "mean |Z^A|", "align_dist": "L1 of standardised Z^A - Z^L",
               "dead_zl": "dead channels of Z^L", "dead_za": "dead channels of Z^A",
               "corr_ratio": "|correction| / |Z^A|"}
DEAD_ACTIVATION = 0.01    # a channel whose mean |activation| is below this is dead
DEAD_WARN_FRACTION = 0.2  # warn when more than this fraction of a level's channels is dead
SCALE_WARN_FACTOR = 5.0   # warn when a level's mean |Z| falls by more than this since the regularisers started
# one line per diagnostic for diagnostics.png (Z^L: the deployed limited encoder; Z^A: the full pathway's
# encoder of every channel; the correction: what the fusion adds to Z^A from Z^P)
STAT_TITLES = {
    "abs_zl": f"feature scale of the deployed encoder, mean |Z^L| (log scale; a fall of {SCALE_WARN_FACTOR:g}x after "
              f"the regularisers start is warned)",
    "abs_za": "feature scale of the all-channel encoder, mean |Z^A| (log scale)",
    "align_dist": "alignment that rescaling cannot fake: mean |std(Z^A) - std(Z^L)| (0 = same up to scale, about "
                  "1.13 = unrelated)",
    "dead_zl": f"fraction of Z^L channels that are dead (mean |activation| < {DEAD_ACTIVATION:g}); above the line is "
               f"warned",
    "dead_za": f"fraction of Z^A channels that are dead (mean |activation| < {DEAD_ACTIVATION:g}); above the line is "
               f"warned",
    "corr_ratio": "size of the fusion's privileged correction, mean |proj(Z^A, Z^P)| / mean |Z^A| (what PIB "
                  "penalises)",
}


def dead_fraction(z: torch.Tensor, threshold: float = DEAD_ACTIVATION) -> torch.Tensor:
    """Fraction of the channels of ``z`` (B, C, *spatial) whose mean |z| over batch and voxels < threshold."""
    per_channel = z.float().abs().mean(dim=[d for d in range(z.ndim) if d != 1])
    return (per_channel < threshold).float().mean()


@torch.no_grad()
def feature_statistics(z_limited: Sequence[torch.Tensor], z_alignable: Sequence[torch.Tensor],
                       corrections: Sequence[torch.Tensor]) -> torch.Tensor:
    """(levels x len(FEATURE_STATS)) float32 tensor on the features' device; no host synchronisation."""
    rows = []
    for zl, za, c in zip(z_limited, z_alignable, corrections):
        zl, za = zl.detach(), za.detach()
        abs_zl, abs_za = zl.float().abs().mean(), za.float().abs().mean()
        dist = (standardize(za) - standardize(zl)).abs().mean()
        ratio = c.detach().float().abs().mean() / abs_za.clamp_min(1e-12)
        rows.append(torch.stack([abs_zl, abs_za, dist, dead_fraction(zl), dead_fraction(za), ratio]))
    return torch.stack(rows)


def diagnostic_warnings(history: Dict[str, List[List[float]]], epoch: int,
                        reference_epoch: Optional[int]) -> List[str]:
    """Warnings for ``epoch`` from per-epoch, per-level values (``history[stat][epoch][level]``):
    a dead-channel fraction above ``DEAD_WARN_FRACTION``, and a mean |Z| that fell by more than
    ``SCALE_WARN_FACTOR`` since ``reference_epoch`` (the last epoch before the regularisers switched on;
    None: no scale check yet). Levels are named from 1 (full resolution)."""
    out = []
    for stat, who in (("dead_zl", "Z^L"), ("dead_za", "Z^A")):
        for i, v in enumerate(history[stat][epoch]):
            if v > DEAD_WARN_FRACTION:
                out.append(f"level {i + 1}: {v:.0%} of the {who} channels are dead (mean |activation| < "
                           f"{DEAD_ACTIVATION})")
    if reference_epoch is not None and 0 <= reference_epoch < epoch:
        for stat, who in (("abs_zl", "Z^L"), ("abs_za", "Z^A")):
            for i, (now, then) in enumerate(zip(history[stat][epoch], history[stat][reference_epoch])):
                if now * SCALE_WARN_FACTOR < then:
                    out.append(f"level {i + 1}: mean |{who}| fell {then / max(now, 1e-12):.1f}x since epoch "
                               f"{reference_epoch} ({then:.3g} -> {now:.3g})")
    return out
