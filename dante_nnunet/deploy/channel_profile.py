"""Which input channel is which, from intensities alone: a check for channels given in each other's place
(T1 and T2 swapped), which file names cannot show and nnU-Net does not notice.

A channel's *profile* is a scale-free summary of its intensity distribution inside the body: the
quantiles ``QUANTILES`` (percent) minus the median, divided by the 10-90 inter-quantile range. It does
not change under ``a * x + b`` with ``a > 0`` (scanner gain, per-case offsets, nnU-Net's z-score
normalisation), so a reference taken from the preprocessed training data compares with raw inputs.
The body is where any channel is non-zero (nnU-Net's non-zero mask, without its hole filling), or every
voxel where that is under 1% of the image (CT). The distance between two profiles is the L1 norm of
their difference.

A channel *looks like* another when its distance to that channel's reference is under ``1 / RATIO``
of its distance to its own reference and its own distance is above ``FLOOR``, and a swap is reported
only when it shows from both sides (the other channel looks like the first). Channels whose reference
profiles lie within ``ALIKE`` of each other (the phantoms' T2 and FLAIR) are not compared: the check
says nothing about them rather than guess. docs/reliability.md has the measurement on the phantoms.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join, save_json

QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
RATIO, FLOOR, ALIKE = 3.0, 1.0, 1.0
STRIDE = 2   # every second voxel per axis: the quantiles of 1/8 of the voxels


def intensity_profile(values: np.ndarray) -> np.ndarray:
    """(q_k - q_50) / (q_90 - q_10) for k in QUANTILES; the spread is taken as 1 where it is 0."""
    q = np.percentile(np.asarray(values, dtype=np.float64).ravel(), QUANTILES)
    spread = q[QUANTILES.index(90)] - q[QUANTILES.index(10)]
    return (q - q[QUANTILES.index(50)]) / (spread if spread > 0 else 1.0)


def body_mask(channels: Sequence[np.ndarray]) -> np.ndarray:
    mask = np.zeros(np.shape(channels[0]), dtype=bool)
    for c in channels:
        mask |= np.asarray(c) != 0
    if mask.mean() < 0.01:
        mask[...] = True
    return mask


def case_profiles(channels: Sequence[np.ndarray], mask: Optional[np.ndarray] = None) -> np.ndarray:
    """(C, len(QUANTILES)) profiles of one case's channels (same grid), inside ``mask`` (default: the body),
    on every STRIDE-th voxel per axis."""
    sub = tuple(slice(None, None, STRIDE) for _ in np.shape(channels[0]))
    arrays = [np.asarray(c)[sub] for c in channels]
    m = body_mask(arrays) if mask is None else np.asarray(mask)[sub]
    return np.stack([intensity_profile(a[m]) for a in arrays])


def distances(profiles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(input channel, reference channel) L1 distances between profiles."""
    return np.abs(np.asarray(profiles)[:, None, :] - np.asarray(reference)[None, :, :]).sum(-1)


def swap_evidence(profiles: np.ndarray, reference: np.ndarray, floor: float = FLOOR,
                  alike: float = ALIKE) -> Dict[int, Tuple[int, float]]:
    """{input channel: (the other reference channel it is nearest to, distance to its own reference /
    distance to that one)} for channels above ``floor`` from their own reference. Only reference
    channels more than ``alike`` apart from the channel's own count as others: between alike channels
    (the phantoms' T2 and FLAIR) the ratio is noise."""
    d = distances(profiles, reference)
    between = distances(reference, reference)
    out = {}
    for i in range(d.shape[0]):
        others = [j for j in range(d.shape[1]) if j != i and between[i, j] > alike]
        if not others or d[i, i] <= floor:
            continue
        j = min(others, key=lambda k: d[i, k])
        out[i] = (j, float(d[i, i] / max(d[i, j], 1e-12)))
    return out


def looks_swapped(profiles: np.ndarray, reference: np.ndarray, ratio: float = RATIO,
                  floor: float = FLOOR) -> Dict[int, int]:
    """{input channel: the reference channel it looks like} for channels that fit another (not alike)
    channel's reference ``ratio`` times better than their own (and sit above ``floor`` from their own),
    kept only where the exchange shows from both sides: channel i looks like j, and a channel alike to j
    looks like one alike to i. One channel alone that resembles another is an unusual case, not a swap
    (it is what fired on correct inputs of the reference phantom)."""
    between = distances(reference, reference)
    group = lambda c: {k for k in range(len(reference)) if between[c, k] <= ALIKE}  # noqa: E731
    flagged = {i: j for i, (j, r) in swap_evidence(profiles, reference, floor).items() if r > ratio}
    return {i: j for i, j in flagged.items()
            if any(k in group(j) and flagged[k] in group(i) for k in flagged if k != i)}


def reference_profiles(load_case, keys: Sequence[str], channels: Sequence[int]) -> np.ndarray:
    """The median over ``keys`` of each case's profiles of ``channels``; ``load_case(key)`` returns that
    case's (data (C, ...), body mask) - for nnU-Net's preprocessed data the mask is seg >= 0 (its
    non-zero mask)."""
    profiles = []
    for k in keys:
        data, mask = load_case(k)
        profiles.append(case_profiles([np.asarray(data[c]) for c in channels], mask))
    return np.median(np.stack(profiles), 0)


# ------------------------------------------------------------------ the saved profile of a model
CHANNEL_PROFILE = "dante_channel_profile.json"


def save_channel_profile(model_folder: str, channel_names: Sequence[str], reference, num_cases: int) -> None:
    """The deployed channels' reference intensity profiles (``channel_profile.py``), beside the model's
    dataset.json, for the swapped-channel warning of nnUNetv2_predict."""
    tmp = join(model_folder, CHANNEL_PROFILE + ".tmp")
    save_json({"channel_names": list(channel_names), "quantiles": list(QUANTILES),
               "reference": [[float(v) for v in row] for row in reference], "training_cases": int(num_cases)}, tmp)
    os.replace(tmp, join(model_folder, CHANNEL_PROFILE))
