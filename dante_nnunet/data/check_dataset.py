"""``dante_nnunet check-dataset``: read every file of an nnU-Net raw dataset whole, before nnU-Net's
own commands (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_predict``) do, and report every problem with
its case and file. Writes nothing.

nnU-Net reads NIfTI through SimpleITK, which fills the missing part of a truncated file with zeros and
turns NaN/Inf into 0 without an error (``rawdata.read_whole``, called by ``check_image``); its ``--verify_dataset_integrity``
checks names, shapes and label values, not that a file is whole. This check adds: every image and label
read whole and finite; one grid (size and spacing) per case; label values that dataset.json defines; the
"dante" block's channel split; the cases it lists without the privileged scan hold constant privileged
files and no other case does.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np

from dante_nnunet.config import (ChannelSplit, DanteConfigError, cases_without_privileged, non_constant_channels,
                                 unlabelled_cases)

from dante_nnunet.data.rawdata import label_values_from_dataset_json, check_image, size_and_spacing


def _case_files(folder: str, ending: str, problems: List[str]) -> Dict[str, Dict[int, str]]:
    """{case: {channel: path}} of ``CASE_XXXX<ending>`` files; files of other endings are problems."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$")
    cases: Dict[str, Dict[int, str]] = defaultdict(dict)
    other = []
    for f in sorted(os.listdir(folder)):
        m = pattern.match(f)
        if m:
            cases[m["case"]][int(m["channel"])] = os.path.join(folder, f)
        elif not f.startswith("."):
            other.append(f)
    if other:
        problems.append(f"{folder}: {len(other)} file(s) not named CASE_XXXX{ending} (dataset.json's file_ending), "
                        f"which nnU-Net leaves out: {other[:6]}{' ...' if len(other) > 6 else ''}")
    return cases


def _read(case: str, path: str, problems: List[str]) -> Optional[np.ndarray]:
    """The file's voxels (``rawdata.check_image``: whole and finite), or None with the problem recorded."""
    try:
        return check_image(case, path)
    except ValueError as e:
        problems.append(str(e))
        return None


def check_raw_dataset(folder: str, progress=None) -> List[str]:
    """Every problem found in the raw dataset ``folder`` (empty: none), each naming its case and file."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    problems: List[str] = []
    dj_path = os.path.join(folder, "dataset.json")
    if not os.path.isfile(dj_path):
        return [f"{folder} has no dataset.json"]
    dj = load_json(dj_path)
    ending = dj.get("file_ending", ".nii.gz")
    try:
        split = ChannelSplit.from_dataset_json(dj, dj_path)
        listed = set(cases_without_privileged(dj, dj_path))
    except DanteConfigError as e:
        problems.append(str(e))
        split, listed = None, set()
    try:
        unlabelled = set(unlabelled_cases(dj, dj_path))
    except DanteConfigError as e:
        problems.append(str(e))
        unlabelled = set()
    ignore = dj.get("labels", {}).get("ignore")
    n = len(dj.get("channel_names", {}))
    allowed = set(label_values_from_dataset_json(dj)) if "labels" in dj else None
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", None)):
        img_dir = os.path.join(folder, images)
        if not os.path.isdir(img_dir):
            if images == "imagesTr":
                problems.append(f"{folder} has no imagesTr folder")
            continue
        cases = _case_files(img_dir, ending, problems)
        lab_dir = os.path.join(folder, labels) if labels else None
        if lab_dir and os.path.isdir(lab_dir):
            label_files = {f[:-len(ending)] for f in os.listdir(lab_dir) if f.endswith(ending)}
            extra = sorted(label_files - set(cases))
            if extra:
                problems.append(f"{lab_dir}: label(s) without images: {extra[:6]}")
        for case, channels in sorted(cases.items()):
            if progress:
                progress(case)
            counts = [n] if images == "imagesTr" or split is None else [n, len(split.limited_indices)]
            if sorted(channels) not in [list(range(k)) for k in counts]:
                what = " or its limited channels only" if len(counts) > 1 else ""
                problems.append(f"case {case!r} ({img_dir}): channel files {sorted(channels)}, but dataset.json has "
                                f"{n} channels (_0000.._{n - 1:04d}){what}")
            files = [channels[c] for c in sorted(channels)]
            label = os.path.join(lab_dir, case + ending) if lab_dir else None
            if label is not None:
                if os.path.isfile(label):
                    files.append(label)
                else:
                    problems.append(f"case {case!r}: {label} is missing")
            grids = {f: size_and_spacing(f) for f in files}
            if len({g for g in grids.values() if g is not None}) > 1:
                described = ", ".join(f"{os.path.basename(f)}: size {g[0]}, spacing {g[1]}"
                                      for f, g in grids.items() if g is not None)
                problems.append(f"case {case!r}: its files are on different grids ({described})")
            arrays = {f: _read(case, f, problems) for f in files}
            if label is not None and arrays.get(label) is not None and allowed is not None:
                bad = sorted(set(np.unique(arrays[label]).tolist()) - allowed)
                if bad:
                    problems.append(f"case {case!r}: {label} holds values {bad[:8]} that dataset.json's labels do "
                                    f"not define (defined: {sorted(allowed)})")
                if case in unlabelled and not (arrays[label] == ignore).all():
                    problems.append(f"case {case!r} is listed in \"unlabelled_cases\", but {label} is not the ignore "
                                    f"label ({ignore}) everywhere")
            if split is not None and images == "imagesTr" and all(c in channels for c in split.privileged_indices):
                stack = {c: arrays.get(channels[c]) for c in split.privileged_indices}
                if all(a is not None for a in stack.values()):
                    moving = set(non_constant_channels(stack, list(stack)))
                    constant = [split.channel_names[c] for c in stack if c not in moving]
                    if case in listed and moving:
                        problems.append(f"case {case!r} is listed in \"cases_without_privileged\", but its "
                                        f"privileged file(s) {[os.path.basename(channels[c]) for c in moving]} hold "
                                        f"an image, not a constant placeholder")
                    elif case not in listed and constant:
                        problems.append(f"case {case!r}: privileged channel(s) {constant} are constant (no scan), "
                                        f"but the case is not listed in dataset.json's \"dante\" -> "
                                        f"\"cases_without_privileged\"")
        if images == "imagesTr":
            unknown = sorted(listed - set(cases))
            if unknown:
                problems.append(f"{dj_path}: \"cases_without_privileged\" names cases imagesTr lacks: {unknown[:6]}")
            unknown = sorted(unlabelled - set(cases))
            if unknown:
                problems.append(f"{dj_path}: \"unlabelled_cases\" names cases imagesTr lacks: {unknown[:6]}")
    return problems


def dataset_folder(dataset: str) -> str:
    """A raw dataset folder from a path, or a dataset name or id under nnUNet_raw."""
    if os.path.isdir(dataset):
        return dataset
    from nnunetv2.paths import nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    return os.path.join(str(nnUNet_raw), maybe_convert_to_dataset_name(dataset))


def summary(folder: str, problems: Sequence[str]) -> str:
    if not problems:
        return f"{folder}: no problem found (every file read whole)"
    return f"{folder}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
