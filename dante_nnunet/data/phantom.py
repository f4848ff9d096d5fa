"""Phantom datasets for the benchmark kit (``dante_nnunet phantom``), deterministic by seed.

**BraTS-like** (``kind="brats"``): channels T1, T1ce, T2, FLAIR (T1ce privileged); labels 1 edema,
2 necrosis / non-enhancing core, 3 enhancing; regions as nnU-Net's Dataset137. Each case is a noisy
ellipsoidal brain with one irregular tumour: edema around a core. Which parts of the core enhance is
drawn from a smooth random field (blobs, weakly favouring the core's outer shell), so geometry alone
does not tell them apart. Channel cues:

- T1ce (privileged): enhancing tumour bright, necrosis dark: ET plainly visible.
- T1: the core slightly dark; T2: edema bright, the core mid; FLAIR: the whole tumour bright.
- Indirect ET cues in the limited channels: T2 is 0.5 noise SDs brighter in enhancing voxels, and
  enhancement favours the shell. So WT and TC are easy without T1ce and ET is partly guessable.

**Rim** (``kind="rim"``): the BraTS-like anatomy with the enhancing tumour a rim (1.2-2.2 voxels) of
the core around necrosis, so geometry shows ET and the limited channels read it off the core's shell.
Easy: the data of the demo and the end-to-end tests, which show that the pipeline works, not what
DANTE gains.

**Partial** (``kind="partial"``): the BraTS-like case whose T1ce shows only 70% of the enhancing tumour
(the rest at the necrosis level), so that the all-channel model is a good but imperfect teacher (ET Dice
at most about 0.82, as BraTS's all-channel upper bound is 82.9 in the paper).

**Transfer** (``kind="transfer"``): the BraTS-like anatomy with something to transfer. A smooth
enhancement strength s (unit SD) runs through each case; ET is the core where s > 0.5 (about 30% of it).

- T1ce (privileged) shows the strength itself: 0.5 + 0.6 s in the core, continuous, so it carries more
  than the label: how far each voxel is from the threshold.
- T2 carries the same strength plainly (0.25 s, 3 noise SDs per unit), but on top of a per-case offset of
  the core's level (SD 0.3, about 4 noise SDs). ET is therefore present in the limited channels, but only
  relative to each case's own core: an absolute T2 threshold fails across cases. (Meant to be learned
  slowly from few cases; how it measured through nnU-Net: docs/privileged_transfer.md.)
- T1 and FLAIR: the core is uniform (necrosis-like), the edema as in the BraTS-like kind.

**Reference** (``kind="reference"``): the transfer design (same tumours and strengths for a seed) with the
per-case T2 offset (SD 0.5) on the whole tumour, edema included. The edema then shows each case's level,
so ET is fully determined by the limited channels, relative to a reference that moves from case to case
(its screen: docs/privileged_transfer.md).

**DP2E-like** (``kind="ct"``): channels non-contrast CT and CT pulmonary angiography, both named "CT"
(nnU-Net's CT normalisation), the CTPA given by number in the dante block; label 1 embolus. A body
with two lungs; pulmonary vessels as tubes through the lungs, about blood density without contrast
and bright with it; emboli are small blobs inside vessels: a dark filling defect in the CTPA,
about 1 noise SD brighter than blood in the non-contrast CT. Spacing 2.0 x 0.7 x 0.7 mm (z, y, x).

Every kind writes ``imagesTr``/``labelsTr`` and a held-out test split: ``imagesTs`` (limited channels only,
renumbered ``_0000..``, ready for nnUNetv2_predict), ``imagesTs_allchannels`` (for the upper bound)
and ``labelsTs``. The dataset is written to a temporary folder and renamed into place.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.data.converters import BRATS_CHANNEL_NAMES, BRATS_LABELS
from dante_nnunet.data.rawdata import check_new_dataset, new_dataset_folder, resolve_raw_root, sibling_roots

Case = Tuple[np.ndarray, np.ndarray]   # (channels x Z x Y x X float32, Z x Y x X uint8)


def _smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter   # here, not at import: the CLI imports this module for --kind
    f = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-8)


def _grid(shape):
    return np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")


# ---------------------------------------------------------------------------------------- BraTS-like
BRATS_CHANNELS = BRATS_CHANNEL_NAMES   # the converter's layout (Dataset137): T1, T1ce, T2, FLAIR
_BRAIN = {"T1": 0.8, "T1ce": 0.8, "T2": 0.5, "FLAIR": 0.5}
_TISSUE = {  # intensity of edema (1), necrosis (2), enhancing (3)
    "T1": (0.75, 0.55, 0.55),
    "T1ce": (0.8, 0.40, 1.6),
    "T2": (1.3, 1.0, 1.04),      # the weak, indirect ET cue: +0.04 = 0.5 noise SD
    "FLAIR": (1.4, 1.2, 1.2),
}
_NOISE = 0.08
ET_FRACTION = 0.45


def _brats_anatomy(rng: np.random.Generator, shape, shift: float = 0.1, core_size=(0.14, 0.2),
                   edema_size=(0.07, 0.12), wobble_amplitude=(1.2, 1.5)):
    """Brain ellipsoid, tumour core and edema of a BraTS-like case: (brain, core, tumour, distance to the
    tumour centre, core radius, depth inside the core's wobbly surface). Sizes are fractions of the
    shortest axis; the wobble amplitudes (core, edema) in voxels."""
    zz, yy, xx = _grid(shape)
    s = np.array(shape, dtype=np.float32)
    c = s / 2
    brain = sum(((g - c[i]) / (0.46 * s[i])) ** 2 for i, g in enumerate((zz, yy, xx))) <= 1
    centre = c + rng.uniform(-shift, shift, size=3) * s
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    wobble = _smooth_field(rng, shape, 3.0)
    r_core = rng.uniform(*core_size) * min(shape)
    r_edema = r_core + rng.uniform(*edema_size) * min(shape)
    depth = r_core - (d + wobble_amplitude[0] * wobble)
    core = (depth >= 0) & brain
    tumour = (d + wobble_amplitude[1] * wobble <= r_edema) & brain
    return brain, core, tumour, d, r_core, depth


def _render(rng: np.random.Generator, brain: np.ndarray, maps: Dict[str, np.ndarray]) -> np.ndarray:
    """BRATS_CHANNELS x volume: each channel's intensity map (x 1000) plus noise, zero outside the brain."""
    images = []
    for ch in BRATS_CHANNELS:
        img = maps[ch] + rng.normal(0, _NOISE, size=maps[ch].shape).astype(np.float32)
        img[~brain] = 0
        images.append(img * 1000)
    return np.stack(images).astype(np.float32)


def _tissue_maps(seg: np.ndarray) -> Dict[str, np.ndarray]:
    """Per channel, the noise-free intensity of each voxel from its label (``_BRAIN``, ``_TISSUE``)."""
    maps = {}
    for ch in BRATS_CHANNELS:
        img = np.full(seg.shape, _BRAIN[ch], dtype=np.float32)
        for label, value in zip((1, 2, 3), _TISSUE[ch]):
            img[seg == label] = value
        maps[ch] = img
    return maps


def _tumour_labels(core: np.ndarray, tumour: np.ndarray, enhancing: np.ndarray) -> np.ndarray:
    seg = np.zeros(core.shape, dtype=np.uint8)
    seg[tumour] = 1
    seg[core] = 2
    seg[core & enhancing] = 3
    return seg


def brats_case(rng: np.random.Generator, shape=(40, 40, 40)) -> Case:
    brain, core, tumour, d, r_core, _ = _brats_anatomy(rng, shape)
    # enhancing parts: blobs of a smooth field, weakly favouring the shell; ET_FRACTION of the core
    field = _smooth_field(rng, shape, 1.5) + 0.6 * (d / r_core)
    thr = np.quantile(field[core], 1 - ET_FRACTION) if core.any() else np.inf
    seg = _tumour_labels(core, tumour, field > thr)
    return _render(rng, brain, _tissue_maps(seg)), seg


# kind "partial": T1ce shows only part of the enhancing tumour
PARTIAL_HIDDEN = 0.3   # the share of ET voxels at the necrosis level in T1ce


def brats_partial_case(rng: np.random.Generator, shape=(40, 40, 40)) -> Case:
    """The BraTS-like case of the same stream (same anatomy, labels and noise) whose T1ce shows only part of
    the enhancing tumour: blobs of a further smooth field pick ``PARTIAL_HIDDEN`` of the ET voxels, and
    their T1ce is the necrosis level (0.40 instead of 1.6; the noise unchanged). The other channels, T2's
    weak ET cue included, are untouched. A model that reads ET off T1ce misses those voxels: its ET Dice
    is at most about 2 (1 - h) / (2 - h) = 0.82 for h = 0.3, a good but imperfect privileged teacher."""
    img, seg = brats_case(rng, shape)
    et = seg == 3
    if et.any():
        field = _smooth_field(rng, shape, 1.5)
        hidden = et & (field > np.quantile(field[et], 1 - PARTIAL_HIDDEN))
        t1ce = BRATS_CHANNELS.index("T1ce")
        img[t1ce][hidden] += (_TISSUE["T1ce"][1] - _TISSUE["T1ce"][2]) * 1000
    return img, seg


def brats_rim_case(rng: np.random.Generator, shape=(32, 32, 32)) -> Case:
    brain, core, tumour, d, r_core, _ = _brats_anatomy(rng, shape)
    rim = rng.uniform(1.2, 2.2)
    inner = np.zeros_like(core)
    inner[core] = d[core] <= r_core - rim
    seg = _tumour_labels(core, tumour, core & ~inner)
    return _render(rng, brain, _tissue_maps(seg)), seg


# the transfer phantom (kind "transfer"): ET = core & (s > STRENGTH_THRESHOLD) for a smooth strength field s
STRENGTH_SIGMA = 2.0        # smoothing of s (voxels); s has unit SD over the volume
STRENGTH_THRESHOLD = 0.5    # about 30% of the core enhances
T1CE_CORE = (0.5, 0.6)      # T1ce in the core: 0.5 + 0.6 s, the strength itself (7.5 noise SDs per unit)
T2_CORE = (1.0, 0.25)       # T2 in the core: 1.0 + offset + 0.25 s (3 noise SDs per unit of s)
T2_OFFSET_SD = 0.3          # per-case offset of the core's T2 level (about 4 noise SDs)


def _strength_case(rng: np.random.Generator, shape, offset_sd: float, offset_on_edema: bool) -> Case:
    """ET = core & (s > STRENGTH_THRESHOLD); T1ce shows s in the core, T2 shows it on top of a per-case
    offset of the core's level, or of the whole tumour's (edema included) if ``offset_on_edema``."""
    brain, core, tumour, _, _, _ = _brats_anatomy(rng, shape)
    strength = _smooth_field(rng, shape, STRENGTH_SIGMA)
    offset = rng.normal(0.0, offset_sd)
    seg = _tumour_labels(core, tumour, strength > STRENGTH_THRESHOLD)
    maps = _tissue_maps(seg)
    maps["T1ce"][core] = T1CE_CORE[0] + T1CE_CORE[1] * strength[core]
    maps["T2"][core] = T2_CORE[0] + (0.0 if offset_on_edema else offset) + T2_CORE[1] * strength[core]
    if offset_on_edema:
        maps["T2"][tumour] += offset
    maps["T1"][core] = _TISSUE["T1"][1]
    maps["FLAIR"][core] = _TISSUE["FLAIR"][1]
    return _render(rng, brain, maps), seg


def brats_transfer_case(rng: np.random.Generator, shape=(40, 40, 40)) -> Case:
    return _strength_case(rng, shape, T2_OFFSET_SD, offset_on_edema=False)


REFERENCE_OFFSET_SD = 0.5   # kind "reference": per-case offset of the whole tumour's T2 (about 6 noise SDs)


def brats_reference_case(rng: np.random.Generator, shape=(40, 40, 40)) -> Case:
    """The transfer design with the per-case T2 offset on the whole tumour (edema and core), so the
    edema is the core's reference: ET = core where T2 exceeds the edema's T2 by more than
    0.25 * STRENGTH_THRESHOLD - 0.3, fully determined by the limited channels, but only relative to a
    level that changes from case to case. Same random stream as ``brats_transfer_case``: the same
    tumours and strengths for the same seed."""
    return _strength_case(rng, shape, REFERENCE_OFFSET_SD, offset_on_edema=True)


# ---------------------------------------------------------------------------------------- tumour types
# kind "types": several tumour types in one dataset. Each type has its own enhancement pattern inside the
# core, and the limited channels announce the type by the core's T1 and FLAIR levels (an arbitrary table:
# an unseen type cannot be interpolated from the others). Labelled cases draw their type at random, test
# cases cycle through the types.
TUMOUR_TYPES = ("solid", "rim", "inner", "band", "patchy")
TYPE_CUES = {  # (T1 core level, FLAIR core level); brain T1 0.8, edema T1 0.75, FLAIR edema 1.4
    "solid": (0.40, 1.00),
    "rim": (0.70, 1.00),
    "inner": (0.55, 1.00),
    "band": (0.40, 1.25),
    "patchy": (0.70, 1.25),
}
PATCHY_T2 = 0.16   # patchy type: T2 of the enhancing blobs above the core's (2 noise SDs), their only local cue


def _type_enhancement(rng: np.random.Generator, kind: str, depth: np.ndarray, core: np.ndarray,
                      r_core: float, shape) -> np.ndarray:
    """The enhancing part of the core for one tumour type; ``depth`` is the distance inside the core's
    (wobbly) boundary in voxels."""
    if kind == "solid":
        return core.copy()
    if kind == "rim":
        return core & (depth < rng.uniform(1.3, 2.0))
    if kind == "inner":
        return core & (depth > 0.5 * r_core)
    if kind == "band":
        return core & (depth > 0.2 * r_core) & (depth < 0.5 * r_core)
    if kind == "patchy":
        return core & (_smooth_field(rng, shape, 1.5) > 0.6)
    raise ValueError(f"unknown tumour type {kind!r}; choose from {TUMOUR_TYPES}")


def brats_types_case(rng: np.random.Generator, shape=(32, 32, 32), tumour_type: Optional[int] = None) -> Case:
    """A BraTS-like case of one of ``TUMOUR_TYPES`` (drawn from ``rng`` unless ``tumour_type`` is given):
    ET is that type's pattern inside the core; T1ce (privileged) shows it plainly (bright ET, dark
    non-enhancing core). The limited channels show the core (T1 dark, FLAIR bright, as in the BraTS-like
    kind) at the type's levels (``TYPE_CUES``) and, apart from the patchy type's faint T2 blobs, nothing of
    where it enhances: ET follows from the type (read off T1/FLAIR) and the core's geometry, a rule learned
    per type, so from the number of labelled cases of each type."""
    img, seg, _ = _types_case(rng, shape, tumour_type)
    return img, seg


def _types_case(rng: np.random.Generator, shape, tumour_type: Optional[int]) -> Tuple[np.ndarray, np.ndarray, str]:
    """``brats_types_case`` and the name of its type."""
    drawn = int(rng.integers(len(TUMOUR_TYPES)))
    kind = TUMOUR_TYPES[drawn if tumour_type is None else tumour_type]
    # larger cores than the other kinds, so that each type's pattern has room inside them
    brain, core, tumour, _, r_core, depth = _brats_anatomy(rng, shape, shift=0.08, core_size=(0.18, 0.24),
                                                           edema_size=(0.07, 0.11), wobble_amplitude=(1.0, 1.3))
    enhancing = _type_enhancement(rng, kind, depth, core, r_core, shape)
    seg = _tumour_labels(core, tumour, enhancing)
    maps = _tissue_maps(seg)
    t1, flair = TYPE_CUES[kind]
    maps["T1"][core] = t1
    maps["FLAIR"][core] = flair
    maps["T2"][core] = _TISSUE["T2"][1]
    if kind == "patchy":
        maps["T2"][core & enhancing] += PATCHY_T2
    return _render(rng, brain, maps), seg, kind


# kind "imperfect": the tumour-types case whose T1ce is an imperfect measurement of ET (issue 46). The label is
# the tumour's biology (the type's pattern, as in kind "types"); T1ce shows it only as well as contrast uptake
# allows, for four physical reasons, each a source of the all-channel teacher's errors:
UPTAKE = {"solid": 1.0, "rim": 0.8, "inner": 0.45, "band": 0.6, "patchy": 0.35}   # how strongly each type
#   takes up contrast, as a share of kind "types"' full ET contrast (1.2 = 15 noise SDs): weakly enhancing
#   types show faint ET (a biological property, as low-grade tumours enhance weakly)
UPTAKE_CASE_SD = 0.3    # per-case log-normal factor on the uptake (bolus timing, perfusion)
UPTAKE_FIELD_SD = 0.5   # heterogeneous uptake inside ET: 1 + 0.5 x a smooth field (sigma 1.5), clipped at 0
LEAK_SIGMA = 0.8        # contrast leaks past ET's boundary: the enhancement is blurred (Gaussian, voxels)


def brats_imperfect_case(rng: np.random.Generator, shape=(32, 32, 32), tumour_type: Optional[int] = None) -> Case:
    """``brats_types_case`` (the same draws first: the same anatomy, type, labels, limited channels and noise
    for the same stream) with T1ce rebuilt: the enhancement E = blur(ET x u x h, ``LEAK_SIGMA``) with u the
    type's ``UPTAKE`` times a per-case log-normal factor and h the heterogeneity field, and T1ce = the
    non-enhancing core's level (0.40) + 1.2 E in the core, the surrounding tissue's level + 1.2 E elsewhere
    (the leak reaches the edema too). A reader of T1ce therefore misses the faint parts of weakly enhancing
    types and cases and misplaces thin rims and bands: its errors depend on the type, which the limited
    channels announce, so a student of its labels can learn them. The best fixed threshold on the scan's
    T1ce inside the true core scores ET Dice about 0.81 over the types (0.99 solid, 0.65 patchy; tested in
    tests/test_phantom.py), the level of BraTS's all-channel models (ET 82.9 in the paper)."""
    from scipy.ndimage import gaussian_filter
    img, seg, kind = _types_case(rng, shape, tumour_type)
    et = seg == 3
    uptake = UPTAKE[kind] * float(np.exp(rng.normal(0.0, UPTAKE_CASE_SD)))
    heterogeneity = np.clip(1.0 + UPTAKE_FIELD_SD * _smooth_field(rng, seg.shape, 1.5), 0.0, None)
    enhancement = gaussian_filter((et * uptake * heterogeneity).astype(np.float32), LEAK_SIGMA)
    full = _TISSUE["T1ce"][2] - _TISSUE["T1ce"][1]
    t1ce = BRATS_CHANNELS.index("T1ce")
    brain = img[t1ce] != 0
    img[t1ce][et] -= full * 1000                                   # ET back to the non-enhancing core's level
    img[t1ce][brain] += (full * enhancement[brain] * 1000).astype(np.float32)
    return img, seg


# ---------------------------------------------------------------------------------------- DP2E-like
CT_CHANNELS = ("CT", "CT")          # non-contrast CT (limited), CTPA (privileged, by number)
CT_SPACING = (2.0, 0.7, 0.7)
_HU = {"air": -1000.0, "body": 40.0, "lung": -850.0}
_BLOOD = (40.0, 350.0)              # (non-contrast, CTPA)
_CLOT = (60.0, 50.0)
_CT_NOISE = 20.0


def ct_case(rng: np.random.Generator, shape=(24, 64, 64)) -> Case:
    mm = [np.arange(n, dtype=np.float32) * sp for n, sp in zip(shape, CT_SPACING)]
    zz, yy, xx = np.meshgrid(*mm, indexing="ij")
    ext = np.array([n * sp for n, sp in zip(shape, CT_SPACING)], dtype=np.float32)
    c = ext / 2
    body = ((yy - c[1]) / (0.46 * ext[1])) ** 2 + ((xx - c[2]) / (0.48 * ext[2])) ** 2 <= 1
    lungs = np.zeros(shape, bool)
    for side in (-1, 1):
        lc = c[2] + side * 0.22 * ext[2]
        lungs |= ((yy - c[1]) / (0.32 * ext[1])) ** 2 + ((xx - lc) / (0.17 * ext[2])) ** 2 \
            + ((zz - c[0]) / (0.6 * ext[0])) ** 2 <= 1
    vessels = np.zeros(shape, bool)
    clots = np.zeros(shape, bool)
    pts = np.stack([zz, yy, xx], -1)
    for _ in range(int(rng.integers(5, 8))):
        # a straight vessel through a point of the lungs, radius 1.6-2.6 mm
        inside = np.argwhere(lungs)
        p0 = np.array([mm[i][j] for i, j in enumerate(inside[rng.integers(len(inside))])], dtype=np.float32)
        direction = rng.normal(size=3).astype(np.float32)
        direction[0] *= 0.3
        direction /= np.linalg.norm(direction)
        rel = pts - p0
        along = rel @ direction
        dist = np.linalg.norm(rel - along[..., None] * direction, axis=-1)
        radius = rng.uniform(1.6, 2.6)
        vessel = (dist <= radius) & lungs
        vessels |= vessel
        if rng.random() < 0.7:   # an embolus in this vessel: a blob centred on its axis
            t = rng.uniform(-6, 6)
            centre = p0 + t * direction
            clot = (np.linalg.norm(pts - centre, axis=-1) <= radius * rng.uniform(1.0, 1.4)) & vessel
            clots |= clot
    seg = clots.astype(np.uint8)
    images = []
    for k in range(2):
        img = np.full(shape, _HU["air"], dtype=np.float32)
        img[body] = _HU["body"]
        img[lungs] = _HU["lung"]
        img[vessels] = _BLOOD[k]
        img[clots] = _CLOT[k]
        img += rng.normal(0, _CT_NOISE, size=shape).astype(np.float32)
        images.append(img)
    return np.stack(images), seg


# ---------------------------------------------------------------------------------------- writing
_BRATS_SPEC = {"channels": BRATS_CHANNELS, "privileged": ["T1ce"], "spacing": (1.0, 1.0, 1.0),
               "labels": BRATS_LABELS, "regions_class_order": [1, 2, 3]}
KINDS: Dict[str, dict] = {
    "brats": {**_BRATS_SPEC, "case": brats_case, "name": "BraTSPhantom"},
    "rim": {**_BRATS_SPEC, "case": brats_rim_case, "name": "BraTSRimPhantom"},
    "partial": {**_BRATS_SPEC, "case": brats_partial_case, "name": "BraTSPartialPhantom"},
    "transfer": {**_BRATS_SPEC, "case": brats_transfer_case, "name": "BraTSTransferPhantom"},
    "reference": {**_BRATS_SPEC, "case": brats_reference_case, "name": "BraTSReferencePhantom"},
    "types": {**_BRATS_SPEC, "case": brats_types_case, "name": "BraTSTypesPhantom",
              "test_types": len(TUMOUR_TYPES)},
    "imperfect": {**_BRATS_SPEC, "case": brats_imperfect_case, "name": "BraTSImperfectPhantom",
                  "test_types": len(TUMOUR_TYPES)},
    "ct": {"case": ct_case, "channels": CT_CHANNELS, "privileged": [1], "spacing": CT_SPACING,
           "labels": {"background": 0, "embolus": 1}, "regions_class_order": None, "name": "DP2EPhantom"},
}


UNLABELLED_FOLDER = "imagesUnlabelled"


def _image(arr: np.ndarray, spacing_zyx: Sequence[float]) -> sitk.Image:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    return im


def cases_missing_privileged(num_train: int, fraction: float, seed: int) -> List[int]:
    """The training case numbers whose privileged scan a phantom with ``--missing-privileged fraction``
    leaves out: round(fraction x num_train) of them, drawn from their own seeded stream (so the images
    of every case are those of the complete phantom with the same seed)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the fraction of training cases without the privileged channel must be in [0, 1), "
                         f"got {fraction}")
    n = int(round(fraction * num_train))
    if n >= num_train:
        raise ValueError(f"--missing-privileged {fraction} of {num_train} training cases leaves none with the "
                         f"privileged channel")
    return sorted(int(i) for i in np.random.default_rng([seed, 2]).choice(num_train, n, replace=False))


def write_phantom(kind: str, dataset_id: int, name: Optional[str] = None, num_train: int = 24, num_test: int = 8,
                  seed: int = 0, shape: Optional[Sequence[int]] = None, raw_root: Optional[str] = None,
                  missing_privileged: float = 0.0, num_unlabelled: int = 0) -> str:
    """Write ``nnUNet_raw/DatasetXXX_NAME`` (refuses an id in use) and return its folder.

    ``num_unlabelled``: that many further cases, every channel and no label, in ``imagesUnlabelled/``
    (nnU-Net naming ``<name>U_<XXXX>_<CCCC>``, the input of ``dante_nnunet pretrain-dataset``).

    ``missing_privileged``: the fraction of training cases written without their privileged scan (its
    files are zeros, the cases listed in "dante" -> "cases_without_privileged"); test cases keep it."""
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {sorted(KINDS)}")
    if num_unlabelled < 0:
        raise ValueError(f"the number of unlabelled cases must be >= 0, got {num_unlabelled}")
    if num_train < 2 or num_test < 1:
        raise ValueError(f"need at least 2 training and 1 test case, got {num_train} and {num_test}")
    missing = cases_missing_privileged(num_train, missing_privileged, seed)
    spec = KINDS[kind]
    name = name or spec["name"]
    others = sibling_roots(raw_root)
    raw_root = resolve_raw_root(raw_root)
    folder_name = check_new_dataset(raw_root, dataset_id, name, others)
    dataset_json = {
        "channel_names": {str(i): c for i, c in enumerate(spec["channels"])},
        "labels": spec["labels"],
        "numTraining": num_train,
        "file_ending": ".nii.gz",
        "name": name,
        "dante": {"privileged_channels": spec["privileged"]},
        "description": f"dante_nnunet phantom --kind {kind} --seed {seed}; imagesTs holds the limited channels "
                       f"only, imagesTs_allchannels every channel",
    }
    if spec["regions_class_order"] is not None:
        dataset_json["regions_class_order"] = spec["regions_class_order"]
    split = ChannelSplit.from_dataset_json(dataset_json, f"phantom {kind}")
    if missing:
        dataset_json["dante"]["cases_without_privileged"] = [f"{name}_{i:03d}" for i in missing]
        dataset_json["description"] += (f"; --missing-privileged {missing_privileged}: the privileged channels of "
                                        f"{len(missing)} training cases are zeros")
    if num_unlabelled:
        dataset_json["description"] += (f"; {UNLABELLED_FOLDER} holds {num_unlabelled} unlabelled cases with every "
                                        f"channel (the scans of dante_nnunet teach and add-scans, or Stage-1 pre-training)")
    make_case: Callable = spec["case"]
    shape_args = () if shape is None else (tuple(shape),)
    with new_dataset_folder(raw_root, folder_name) as tmp:
        for sub in ("imagesTs", "imagesTs_allchannels", "labelsTs"):
            os.makedirs(join(tmp, sub))
        for i in range(num_train + num_test):
            test = i >= num_train
            # each case its own stream: training case k and test case j are the same whatever the counts
            rng = np.random.default_rng([seed, int(test), i - num_train if test else i])
            # the test set of a kind with tumour types cycles through them
            kw = {"tumour_type": (i - num_train) % spec["test_types"]} if test and spec.get("test_types") else {}
            img, seg = make_case(rng, *shape_args, **kw)
            cid = f"{name}_{i:03d}"
            if not test and i in missing:
                img = img.copy()
                img[list(split.privileged_indices)] = 0
            for ch in range(img.shape[0]):
                sitk.WriteImage(_image(img[ch], spec["spacing"]),
                                join(tmp, "imagesTs_allchannels" if test else "imagesTr", f"{cid}_{ch:04d}.nii.gz"))
            sitk.WriteImage(_image(seg, spec["spacing"]), join(tmp, "labelsTs" if test else "labelsTr",
                                                                f"{cid}.nii.gz"))
            if test:
                for new, ch in enumerate(split.limited_indices):
                    sitk.WriteImage(_image(img[ch], spec["spacing"]), join(tmp, "imagesTs", f"{cid}_{new:04d}.nii.gz"))
        if num_unlabelled:
            os.makedirs(join(tmp, UNLABELLED_FOLDER))
        for j in range(num_unlabelled):
            # their own stream (2 is the missing-privileged draw): the same scans whatever the other counts
            img, _ = make_case(np.random.default_rng([seed, 3, j]), *shape_args)
            for ch in range(img.shape[0]):
                sitk.WriteImage(_image(img[ch], spec["spacing"]),
                                join(tmp, UNLABELLED_FOLDER, f"{name}U_{j:04d}_{ch:04d}.nii.gz"))
        save_json(dataset_json, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)
