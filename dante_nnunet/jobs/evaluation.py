"""Dice and HD95 per case and region (``dante_nnunet evaluate``), with the BraTS conventions.

Regions come from dataset.json: for a region dataset (BraTS: whole tumor [1, 2, 3], tumor core
[2, 3], enhancing tumor [3]) each labels entry that is a list is a region; otherwise every
foreground label is its own region. The ignore label, if any, is left out.

Per case and region:

- **Dice** = 2|A and B| / (|A| + |B|); both empty: 1 (nnU-Net reports NaN there).
- **HD95** in millimetres, with the reference image's spacing: the larger of the two directed 95th
  percentiles of the distances between the boundary voxels of prediction and reference, computed by
  MONAI (``monai.metrics.compute_hausdorff_distance``, percentile 95, Euclidean, spacing given) rather
  than by code of our own. Both empty: 0. Exactly one empty: ``HD95_EMPTY_PENALTY_MM`` = 373.13 mm,
  the diagonal of a BraTS volume (240 x 240 x 155 at 1 mm), the value the BraTS challenge assigns.

Optionally, the BraTS enhancing-tumour post-processing is applied to the predictions first and
reported separately (``mean_et_postprocessed``): when a predicted case has fewer than
``et_threshold`` enhancing voxels (label 3) in total, they are relabelled as necrosis / non-enhancing
core (label 2). This is the common rule of BraTS submissions: a few scattered enhancing voxels are
more often noise than tumour, and an empty reference scores 0 otherwise.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from dante_nnunet.data.rawdata import check_image, label_values_from_dataset_json

HD95_EMPTY_PENALTY_MM = float(np.sqrt(240 ** 2 + 240 ** 2 + 155 ** 2))   # 373.13


def regions_from_dataset_json(dataset_json: Mapping) -> Dict[str, List[int]]:
    """Region name -> label values that make it up (see the module docstring)."""
    labels = dataset_json.get("labels")
    if not labels:
        raise ValueError('dataset.json has no "labels"')
    ignore = labels.get("ignore")
    out = {}
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
        values = [v for v in values if v != 0 and v != ignore]
        if values:
            out[name] = values
    if not out:
        raise ValueError(f"dataset.json labels {dict(labels)} define no foreground region")
    return out


def _check_values(case: str, which: str, path: str, arr: np.ndarray, allowed: Sequence[int]) -> None:
    found = np.unique(arr)
    bad = [v for v in found.tolist() if not (np.isfinite(v) and float(v).is_integer() and int(v) in allowed)]
    if bad:
        raise ValueError(f"case {case!r}: {which} {path} holds values {bad[:8]} that dataset.json's labels do not "
                         f"define (defined: {list(allowed)})")


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    a, b = reference.astype(bool), prediction.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom)


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float], percentile: float = 95) -> float:
    """Symmetric 95th-percentile Hausdorff distance in the units of ``spacing`` (one value per array
    axis, in array order), with the empty-mask conventions of the module docstring."""
    a, b = reference.astype(bool), prediction.astype(bool)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return HD95_EMPTY_PENALTY_MM
    import warnings
    import torch
    y = torch.from_numpy(a)[None, None].float()
    y_pred = torch.from_numpy(b)[None, None].float()
    with warnings.catch_warnings():
        # MONAI 1.5+ warns about an argument it passes to itself; importing MONAI's networks with a newer torch
        # warns that torch.jit.interface is deprecated (monai/networks/nets/dints.py): neither is ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        from monai.metrics import compute_hausdorff_distance
        d = compute_hausdorff_distance(y_pred, y, include_background=True, distance_metric="euclidean",
                                       percentile=percentile, directed=False, spacing=[float(s) for s in spacing])
    return float(d.item())


def postprocess_enhancing(seg: np.ndarray, threshold: int, enhancing: int = 3, replacement: int = 2) -> np.ndarray:
    """BraTS rule: fewer than ``threshold`` enhancing voxels in the case -> relabel them ``replacement``."""
    n = int((seg == enhancing).sum())
    if 0 < n < threshold:
        seg = seg.copy()
        seg[seg == enhancing] = replacement
    return seg


def _read(path: str):
    img = sitk.ReadImage(path)
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing())), img


def _score_case(ref: np.ndarray, pred: np.ndarray, spacing, regions) -> Dict[str, Dict[str, float]]:
    return {r: {"dice": dice(np.isin(ref, v), np.isin(pred, v)),
                "hd95": hd95(np.isin(ref, v), np.isin(pred, v), spacing)} for r, v in regions.items()}


def _means(per_case: Mapping[str, Mapping[str, Mapping[str, float]]], regions) -> Dict[str, Dict[str, float]]:
    out = {}
    for r in regions:
        d = np.array([c[r]["dice"] for c in per_case.values()])
        h = np.array([c[r]["hd95"] for c in per_case.values()])
        out[r] = {"dice": float(d.mean()), "hd95": float(h.mean()), "dice_std": float(d.std()),
                  "hd95_std": float(h.std())}
    return out


def evaluate_folders(reference_dir: str, prediction_dir: str, dataset_json: Mapping,
                     et_threshold: Optional[int] = None) -> dict:
    """Score every reference case against the prediction of the same file name. Missing predictions,
    unreadable files, shape or spacing mismatches and label values that dataset.json does not define
    (in the reference or the prediction; NaN included) are reported, naming the case and file, before
    any case is scored."""
    ending = dataset_json.get("file_ending", ".nii.gz")
    regions = regions_from_dataset_json(dataset_json)
    for d in (reference_dir, prediction_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"{d} is not a folder")
    cases = sorted(f[:-len(ending)] for f in os.listdir(reference_dir) if f.endswith(ending))
    if not cases:
        raise ValueError(f"{reference_dir} holds no *{ending} files")
    missing = [c for c in cases if not os.path.isfile(os.path.join(prediction_dir, c + ending))]
    if missing:
        present = os.listdir(prediction_dir)
        other = sorted({f[len(c):] for c in missing for f in present
                        if f.startswith(c + ".") and f != c + ending})
        raise FileNotFoundError(f"{prediction_dir} lacks the prediction of case(s) {missing[:5]}"
                                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                                + (f": it holds them with the file ending(s) {other}, but {ending} is expected "
                                   f"(dataset.json's file_ending); convert the predictions or give the matching "
                                   f"dataset.json" if other else ""))
    allowed = label_values_from_dataset_json(dataset_json)
    pairs = {}
    for c in cases:
        ref_path, pred_path = os.path.join(reference_dir, c + ending), os.path.join(prediction_dir, c + ending)
        for path in (ref_path, pred_path):
            check_image(c, path)    # whole and finite: SimpleITK reads a truncated file's rest and NaN/Inf as 0
        ref, spacing, ref_img = _read(ref_path)
        pred, pred_spacing, _ = _read(pred_path)
        for which, path, arr in (("reference", ref_path, ref), ("prediction", pred_path, pred)):
            _check_values(c, which, path, arr, allowed)
        if ref.shape != pred.shape or not np.allclose(spacing, pred_spacing, rtol=1e-4):
            raise ValueError(f"case {c!r}: prediction has shape {pred.shape} and spacing {pred_spacing}, reference "
                             f"{ref.shape} and {spacing}")
        pairs[c] = (ref, pred, spacing)
    per_case = {c: _score_case(ref, pred, sp, regions) for c, (ref, pred, sp) in pairs.items()}
    result = {"regions": regions, "hd95_empty_penalty_mm": HD95_EMPTY_PENALTY_MM, "per_case": per_case,
              "mean": _means(per_case, regions)}
    if et_threshold is not None:
        pp = {c: _score_case(ref, postprocess_enhancing(pred, et_threshold), sp, regions)
              for c, (ref, pred, sp) in pairs.items()}
        result["et_threshold"] = et_threshold
        result["per_case_et_postprocessed"] = pp
        result["mean_et_postprocessed"] = _means(pp, regions)
    return result


def validation_dice(source: str, trainer_dir: str, val_cases: Mapping[int, Sequence[str]]) -> Dict[str, Dict[str, float]]:
    """Dice per validation case and region of a trained model's final-validation predictions
    (``trainer_dir/fold_<k>/validation/<case><ending>``, written by ``nnUNetv2_train``) against the raw
    dataset ``source``'s ``labelsTr``, for the cases ``val_cases[k]`` of each fold k (the package's
    convention: a region empty in both scores 1). A missing prediction names the fold and the command that
    writes it."""
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
    from dante_nnunet.data.rawdata import read_whole
    dj = load_json(join(source, "dataset.json"))
    ending = dj["file_ending"]
    regions = regions_from_dataset_json(dj)
    trainer = os.path.basename(trainer_dir.rstrip("/")).split("__")[0]
    out: Dict[str, Dict[str, float]] = {}
    for k, cases in val_cases.items():
        folder = join(trainer_dir, f"fold_{k}", "validation")
        for case in cases:
            pred = join(folder, case + ending)
            if not isfile(pred):
                raise FileNotFoundError(f"{pred} does not exist: the final validation of {trainer} fold {k} did "
                                        f"not finish (rerun: nnUNetv2_train ... {k} -tr {trainer} --val)")
            ref = read_whole(case, join(source, "labelsTr", case + ending))
            p = read_whole(case, pred)
            out[case] = {r: dice(np.isin(ref, v), np.isin(p, v)) for r, v in regions.items()}
    return out
