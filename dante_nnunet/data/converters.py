"""BraTS and paired CT collections to nnU-Net raw datasets for DANTE (``dante_nnunet convert-brats``,
``dante_nnunet convert-ct-pairs``).

**BraTS.** 
Input layout (BraTS 2018, 2020 and 2021 training data as distributed): one folder per case, possibly
grouped (BraTS 2018's ``HGG/`` and ``LGG/``), each holding ``<case>_t1``, ``<case>_t1ce``,
``<case>_t2``, ``<case>_flair`` and ``<case>_seg`` as ``.nii.gz`` or ``.nii``. A case folder is any
folder with a ``*_flair.nii(.gz)`` file; the case id is the folder name.

Output: ``nnUNet_raw/DatasetXXX_NAME`` the way nnU-Net's Dataset137 conversion lays BraTS out:
channels T1 ``_0000``, T1ce ``_0001``, T2 ``_0002``, FLAIR ``_0003``; labels 2 -> 1 (edema),
1 -> 2 (necrosis / non-enhancing core), 4 -> 3 (enhancing); a region dataset.json (whole tumor [1,2,3],
tumor core [2,3], enhancing tumor [3], ``regions_class_order`` [1,2,3]) with the dante block naming
T1ce as the privileged channel.

**Paired CT** (non-contrast CT + CT pulmonary angiography, DP2E-like): one folder per case holding
``<case>_ncct``, ``<case>_ctpa`` (co-registered to the NCCT: same size, spacing, origin, direction) and
``<case>_seg`` (0 background, 1 embolus), ``.nii.gz`` or ``.nii``; a case folder is any folder with a
``*_ncct.nii(.gz)`` file. Output: channels NCCT ``_0000`` and CTPA ``_0001``, both named "CT" so that
nnU-Net applies its CT normalisation to each; the dante block gives the CTPA by number (``[1]``).
dataset.json also records the paper's plan for DP2E under ``dante_plans``: target spacing 2.0 x 0.7
x 0.7 mm and patch 64 x 160 x 192, which ``configs/dp2e.json`` applies (``nnUNetv2_plan_and_preprocess
-overwrite_target_spacing`` and an added configuration). Unlabelled pairs for Stage 1 go through
``dante_nnunet pretrain-dataset`` instead.

**Cases without the privileged scan** (``--allow-missing-privileged``): a case folder that lacks only the
privileged file (``<case>_t1ce``, ``<case>_ctpa``) is converted with a placeholder for it (zeros, the
geometry of the case's other images) and listed in dataset.json under ``"dante"`` ->
``"cases_without_privileged"``, which DANTE's trainers read (docs/reference.md, "Training cases without the privileged
scan"). Without the option such a case is an error, as any other missing file.

**Cases without a label** (``--allow-unlabelled``; issue 40): a case folder that lacks only its ``_seg`` file
must have every image, the privileged one included; its label file is written as nnU-Net's ignore label
everywhere (``"ignore"`` is added to the labels, one above the highest) and the case is listed under
``"dante"`` -> ``"unlabelled_cases"``, as ``dante_nnunet add-scans`` does: every trainer of the package keeps
it out of validation, and only ``DANTETrainer_teach`` trains on it. Without the option such a case is an
error.

Everything is checked before anything is written: exactly the expected files per case (a folder holding
any of them is a case, so a missing file of any kind is reported, not skipped), one geometry across them,
finite intensities, label values within the known set, a dataset id unused in nnUNet_raw,
nnUNet_preprocessed and nnUNet_results. An error names the case and file.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, save_json

from dante_nnunet.data.rawdata import (check_image, check_new_dataset, check_same_geometry, new_dataset_folder,
                                  placeholder_image, resolve_raw_root, sibling_roots)
from dante_nnunet.data.unlabelled_cases import ignore_label_image, labels_with_ignore

BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")     # -> _0000.._0003
BRATS_CHANNEL_NAMES = ("T1", "T1ce", "T2", "FLAIR")
BRATS_LABEL_MAP = {0: 0, 2: 1, 1: 2, 4: 3}           # BraTS value -> nnU-Net (Dataset137) value
BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def _case_folders(src: str, kinds: Sequence[str], marker: str, layout: str,
                  optional: Sequence[str] = ()) -> Dict[str, Dict[str, str]]:
    """{case: {kind: file}} for every folder under ``src`` holding a ``<folder>_<kind>.nii(.gz)`` file of
    any kind (so that a case lacking one file, ``marker`` included, is reported rather than skipped);
    each such folder must hold exactly one ``<folder>_<kind>.nii(.gz)`` per kind and nothing else, except
    that kinds in ``optional`` may be absent."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src} is not a folder")
    pattern = re.compile(r"^(?P<case>.+)_(?P<kind>" + "|".join(map(re.escape, kinds)) + r")\.nii(?:\.gz)?$")
    cases: Dict[str, Dict[str, str]] = {}
    for folder, _, files in sorted(os.walk(src)):
        case = os.path.basename(folder)
        if not any((m := pattern.match(f)) is not None and m["case"] == case for f in files):
            continue
        if case in cases:
            raise ValueError(f"case {case!r} appears twice under {src}")
        found: Dict[str, str] = {}
        for f in sorted(files):
            if f.startswith("."):
                continue
            m = pattern.match(f)
            if m is None or m["case"] != case:
                raise ValueError(f"case {case!r}: unexpected file {f} (expected {layout})")
            if m["kind"] in found:
                raise ValueError(f"case {case!r}: two {m['kind']} files ({os.path.basename(found[m['kind']])}, {f})")
            found[m["kind"]] = join(folder, f)
        missing = [k for k in kinds if k not in found and k not in optional]
        if missing:
            raise ValueError(f"case {case!r} ({folder}) lacks {', '.join(f'{case}_{k}' for k in missing)}")
        cases[case] = found
    if not cases:
        raise ValueError(f"no case folders (a folder <case> holding <case>_{marker}.nii.gz and its siblings) under {src}")
    return cases


def _brats_cases(src: str, allow_missing_privileged: bool = False,
                 allow_unlabelled: bool = False) -> Dict[str, Dict[str, str]]:
    return _case_folders(src, BRATS_MODALITIES + ("seg",), "flair",
                         "<case>_t1, _t1ce, _t2, _flair, _seg .nii.gz",
                         optional=(("t1ce",) if allow_missing_privileged else ())
                         + (("seg",) if allow_unlabelled else ()))


def _unlabelled(cases: Dict[str, Dict[str, str]], privileged: str, src: str) -> List[str]:
    """The cases without a ``seg`` file (sorted); each must have its ``privileged`` image (a case with neither
    teaches nothing) and some case must be labelled."""
    unlabelled = sorted(c for c, files in cases.items() if "seg" not in files)
    bare = [c for c in unlabelled if privileged not in cases[c]]
    if bare:
        raise ValueError(f"case {bare[0]!r} under {src} has neither a label nor its {privileged} image: an unlabelled "
                         f"case needs every image")
    if unlabelled and len(unlabelled) == len(cases):
        raise ValueError(f"no case under {src} has a label (<case>_seg); at least one labelled case is needed")
    return unlabelled


def _labels_and_dante(labels: dict, dante: dict, unlabelled: List[str]):
    """dataset.json's labels and dante block, with nnU-Net's ignore label and the unlabelled cases if any."""
    if not unlabelled:
        return labels, dante
    return labels_with_ignore(labels), {**dante, "unlabelled_cases": unlabelled}


def _missing_privileged(cases: Dict[str, Dict[str, str]], privileged: str, src: str,
                        allow: bool) -> list:
    """The cases without their ``privileged`` file (sorted), refused when that is every case."""
    missing = sorted(c for c, files in cases.items() if privileged not in files)
    if allow and missing and len(missing) == len(cases):
        raise ValueError(f"no case under {src} has its {privileged} image; DANTE needs it for some training cases")
    return missing


def _write_image(files: Dict[str, str], kind: str, reference_kind: str, path: str) -> None:
    """Copy the case's ``kind`` image to ``path``, or write a placeholder (zeros on the geometry of its
    ``reference_kind`` image) if the case has none."""
    if kind in files:
        sitk.WriteImage(sitk.ReadImage(files[kind]), path, True)
    else:
        sitk.WriteImage(placeholder_image(sitk.ReadImage(files[reference_kind])), path, True)


def _mapped_labels(case: str, seg_file: str) -> sitk.Image:
    img = sitk.ReadImage(seg_file)
    arr = sitk.GetArrayFromImage(img)
    values = set(np.unique(arr).tolist())
    unknown = sorted(values - set(BRATS_LABEL_MAP))
    if unknown:
        raise ValueError(f"case {case!r}: {os.path.basename(seg_file)} has label values {unknown}; BraTS uses "
                         f"0, 1, 2, 4")
    out = np.zeros(arr.shape, dtype=np.uint8)
    for src, dst in BRATS_LABEL_MAP.items():
        out[arr == src] = dst
    label = sitk.GetImageFromArray(out)
    label.CopyInformation(img)
    return label


MAPPING_COLUMNS = ("BraTS2021", "BraTS2018")   # default (id, in) columns of an exclusion mapping CSV


def read_exclusion(path: str, columns: Optional[Sequence[str]] = None) -> List[str]:
    """Case names to leave out of a conversion. A CSV (first line a header with commas): the rows whose
    ``columns[1]`` is filled (not empty, ``NA`` or ``nan``) give their ``columns[0]`` (default
    ``MAPPING_COLUMNS``: the BraTS 2021 cases that are BraTS 2018 cases, from the organisers' name-mapping
    file); any other file: one case name per line (``#`` comments and blank lines skipped)."""
    import csv
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exclusion file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        text = fh.read()
    first = text.splitlines()[0] if text.strip() else ""
    if "," not in first:
        if columns:
            raise ValueError(f"{path} is a list of names, not a CSV; --exclude-columns applies to a CSV")
        return sorted({line.split("#")[0].strip() for line in text.splitlines()} - {""})
    rows = list(csv.DictReader(text.splitlines()))
    id_col, in_col = columns or MAPPING_COLUMNS
    header = [h.strip() for h in first.split(",")]
    for col in (id_col, in_col):
        if col not in header:
            raise ValueError(f"{path}: no column {col!r}; its columns are {header} (name the id column and the "
                             f"column that marks the cases to leave out with --exclude-columns ID IN)")
    filled = lambda v: (v or "").strip() not in ("", "NA", "nan", "NaN", "None")   # noqa: E731
    return sorted({r[id_col].strip() for r in rows if filled(r.get(in_col)) and filled(r.get(id_col))})


def convert_brats(src: str, dataset_id: int, name: str = "BraTS", raw_root: Optional[str] = None,
                  allow_missing_privileged: bool = False, exclude: Optional[Sequence[str]] = None,
                  allow_unlabelled: bool = False) -> str:
    """``exclude``: case (folder) names left out, e.g. BraTS 2021's copies of the BraTS 2018 cases when 2021
    is the unlabelled pool of a model tested on 2018 (``read_exclusion``); recorded in dataset.json
    (``"excluded_cases"``)."""
    others = sibling_roots(raw_root)
    raw_root = resolve_raw_root(raw_root)
    folder_name = check_new_dataset(raw_root, dataset_id, name, others)
    cases = _brats_cases(src, allow_missing_privileged, allow_unlabelled)
    excluded = sorted(set(exclude or ()) & set(cases))
    if exclude is not None and not excluded:
        raise ValueError(f"none of the {len(set(exclude))} case(s) to exclude (e.g. {sorted(exclude)[:2]}) is a case "
                         f"of {src} (e.g. {sorted(cases)[:2]}): wrong mapping column or file?")
    cases = {c: f for c, f in cases.items() if c not in set(excluded)}
    if not cases:
        raise ValueError(f"every case of {src} is excluded")
    unlabelled = _unlabelled(cases, "t1ce", src)
    missing = _missing_privileged({c: f for c, f in cases.items() if c not in unlabelled}, "t1ce", src,
                                  allow_missing_privileged)
    for case, files in cases.items():   # all checks first (files are read twice rather than held in memory)
        check_same_geometry(case, [files[k] for k in BRATS_MODALITIES + ("seg",) if k in files])
        for kind in BRATS_MODALITIES + ("seg",):
            if kind in files:
                check_image(case, files[kind])   # every voxel read: a truncated file is not data
        if "seg" in files:
            _mapped_labels(case, files["seg"])
    labels, dante = _labels_and_dante(BRATS_LABELS, {"privileged_channels": ["T1ce"],
                                                     **({"cases_without_privileged": missing} if missing else {})},
                                      unlabelled)
    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case, files in cases.items():
            for c, kind in enumerate(BRATS_MODALITIES):
                _write_image(files, kind, "t1", join(tmp, "imagesTr", f"{case}_{c:04d}.nii.gz"))
            label = (_mapped_labels(case, files["seg"]) if "seg" in files
                     else ignore_label_image(files["t1"], int(labels["ignore"])))
            sitk.WriteImage(label, join(tmp, "labelsTr", f"{case}.nii.gz"), True)
        save_json({
            "channel_names": {str(i): n for i, n in enumerate(BRATS_CHANNEL_NAMES)},
            "labels": labels,
            "regions_class_order": [1, 2, 3],
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
            "name": name,
            "description": f"BraTS converted by dante_nnunet convert-brats from {os.path.abspath(src)}; labels "
                           f"2->1 edema, 1->2 necrosis/non-enhancing, 4->3 enhancing (as Dataset137)"
                           + (f"; {len(excluded)} case(s) excluded" if excluded else ""),
            "dante": dante,
            **({"excluded_cases": excluded} if excluded else {}),
        }, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)


CT_KINDS = ("ncct", "ctpa")           # -> _0000 (limited), _0001 (privileged)
CT_LABELS = {"background": 0, "embolus": 1}
DP2E_TARGET_SPACING = [2.0, 0.7, 0.7]
DP2E_PATCH_SIZE = [64, 160, 192]


def _checked_labels(case: str, seg_file: str, allowed) -> None:
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(seg_file))).tolist())
    unknown = sorted(values - set(allowed))
    if unknown:
        raise ValueError(f"case {case!r}: {os.path.basename(seg_file)} has label values {unknown}; expected "
                         f"{sorted(allowed)}")


def convert_ct_pairs(src: str, dataset_id: int, name: str = "DP2E", raw_root: Optional[str] = None,
                     allow_missing_privileged: bool = False, allow_unlabelled: bool = False) -> str:
    others = sibling_roots(raw_root)
    raw_root = resolve_raw_root(raw_root)
    folder_name = check_new_dataset(raw_root, dataset_id, name, others)
    cases = _case_folders(src, CT_KINDS + ("seg",), "ncct", "<case>_ncct, _ctpa, _seg .nii.gz",
                          optional=(("ctpa",) if allow_missing_privileged else ())
                          + (("seg",) if allow_unlabelled else ()))
    unlabelled = _unlabelled(cases, "ctpa", src)
    missing = _missing_privileged({c: f for c, f in cases.items() if c not in unlabelled}, "ctpa", src,
                                  allow_missing_privileged)
    for case, files in cases.items():
        check_same_geometry(case, [files[k] for k in CT_KINDS + ("seg",) if k in files])
        for kind in CT_KINDS + ("seg",):
            if kind in files:
                check_image(case, files[kind])   # every voxel read: a truncated file is not data
        if "seg" in files:
            _checked_labels(case, files["seg"], CT_LABELS.values())
    labels, dante = _labels_and_dante(CT_LABELS, {"privileged_channels": [1],
                                                  **({"cases_without_privileged": missing} if missing else {})},
                                      unlabelled)
    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case, files in cases.items():
            for c, kind in enumerate(CT_KINDS):
                _write_image(files, kind, "ncct", join(tmp, "imagesTr", f"{case}_{c:04d}.nii.gz"))
            label = (sitk.ReadImage(files["seg"], sitk.sitkUInt8) if "seg" in files
                     else ignore_label_image(files["ncct"], int(labels["ignore"])))
            sitk.WriteImage(label, join(tmp, "labelsTr", f"{case}.nii.gz"), True)
        save_json({
            "channel_names": {"0": "CT", "1": "CT"},
            "labels": labels,
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
            "name": name,
            "description": f"paired CT converted by dante_nnunet convert-ct-pairs from {os.path.abspath(src)}; "
                           f"_0000 non-contrast CT (limited), _0001 CTPA (privileged)",
            "dante": dante,
            "dante_plans": {"target_spacing": DP2E_TARGET_SPACING, "patch_size": DP2E_PATCH_SIZE},
        }, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)
