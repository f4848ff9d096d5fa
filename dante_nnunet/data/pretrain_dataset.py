"""An nnU-Net raw dataset for Stage-1 pre-training built from images alone (``dante_nnunet
pretrain-dataset``), e.g. BraTS 2021's 1,251 cases to pre-train for BraTS 2018, or unlabelled normal
CT pairs.

Input: one or more folders of images named the nnU-Net way, ``<case>_<XXXX><file_ending>`` with one
file per channel (for example another dataset's ``imagesTr``). Output:
``nnUNet_raw/DatasetXXX_NAME/{imagesTr,labelsTr,dataset.json}`` ready for
``nnUNetv2_plan_and_preprocess`` (or ``nnUNetv2_extract_fingerprint`` + plans moved from the
fine-tuning dataset) and ``nnUNetv2_train ... -tr DANTEPretrainTrainer``.

**Placeholder labels.** nnU-Net needs a label file per case, and its fingerprint needs some
foreground: it takes intensity percentiles of foreground voxels (used by CT normalisation) and
fails on an empty foreground. Each case's label is therefore 1 wherever any channel is above that
channel's minimum in the case (the scan's non-background: the brain of a skull-stripped MRI, the
field of view of a CT) and 0 elsewhere. Stage 1 never reads labels; the label only steers nnU-Net's
foreground oversampling towards the non-background and its CT intensity statistics.

Everything is checked before anything is written (each case has exactly the channel files, one
geometry across its channels, finite intensities, unique case names across folders, a dataset id unused in
nUNet_raw, nnUNet_preprocessed and nnUNet_results); the dataset is written into a
temporary folder and renamed into place, and an existing dataset id is never overwritten.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, load_json, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.data.rawdata import (check_image, check_new_dataset, check_same_geometry, new_dataset_folder,
                                  placeholder_image, resolve_raw_root, sibling_roots)

PLACEHOLDER_LABEL = "non-background (placeholder)"


def _find_cases(source_dirs: Sequence[str], file_ending: str, num_channels: int,
                optional: Sequence[int] = ()) -> Dict[str, List[Optional[str]]]:
    """{case: one file per channel}; the channels in ``optional`` may be absent as a group (None)."""
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(file_ending) + "$")
    found: Dict[str, Dict[int, str]] = defaultdict(dict)
    origin: Dict[str, str] = {}
    for src in source_dirs:
        if not os.path.isdir(src):
            raise FileNotFoundError(f"source folder {src} does not exist")
        for f in sorted(os.listdir(src)):
            path = join(src, f)
            if f.startswith(".") or os.path.isdir(path):
                continue
            m = pattern.match(f)
            if m is None:
                raise ValueError(f"{path}: not an image named <case>_XXXX{file_ending}")
            case = m["case"]
            if origin.setdefault(case, src) != src:
                raise ValueError(f"case {case!r} is in both {origin[case]} and {src}")
            found[case][int(m["ch"])] = path
    if not found:
        raise ValueError(f"no images named <case>_XXXX{file_ending} in {list(source_dirs)}")
    cases = {}
    for case, files in sorted(found.items()):
        without_optional = [c for c in range(num_channels) if c not in optional]
        if sorted(files) != list(range(num_channels)) and not (optional and sorted(files) == without_optional):
            raise ValueError(f"case {case!r} ({origin[case]}) has channel files {sorted(files)}; expected "
                             f"exactly {list(range(num_channels))} (one per channel)"
                             + (f" or, without the privileged scan, {without_optional}" if optional else ""))
        cases[case] = [files.get(c) for c in range(num_channels)]
    return cases


def placeholder_label(images: Sequence[sitk.Image]) -> sitk.Image:
    """1 where any channel exceeds its own minimum, else 0 (uint8, the first channel's geometry)."""
    arrays = [sitk.GetArrayFromImage(im) for im in images]
    fg = np.zeros(arrays[0].shape, dtype=bool)
    for a in arrays:
        fg |= a > a.min()
    label = sitk.GetImageFromArray(fg.astype(np.uint8))
    label.CopyInformation(images[0])
    return label


def write_pretrain_dataset(source_dirs: Sequence[str], dataset_id: int, name: str,
                           channel_names: Optional[Sequence[str]] = None,
                           privileged_channels: Optional[Sequence[str]] = None,
                           like: Optional[str] = None, file_ending: Optional[str] = None,
                           raw_root: Optional[str] = None, allow_missing_privileged: bool = False) -> str:
    """Write the dataset (see the module docstring) and return its folder.

    Channels come either from ``like`` (a dataset.json to copy channel_names, the dante block and
    file_ending from) or from ``channel_names`` + ``privileged_channels``. ``allow_missing_privileged``:
    a case with the limited channels' files only gets zero placeholders for the privileged ones and is
    listed under "dante" -> "cases_without_privileged" (Stage 1 trains Eq. 7 only on it)."""
    if like is not None:
        if channel_names is not None or privileged_channels is not None:
            raise ValueError("give either a dataset.json to copy channels from, or channel names and privileged "
                             "channels, not both")
        ref = load_json(like)
        split = ChannelSplit.from_dataset_json(ref, like)
        file_ending = file_ending or ref.get("file_ending")
    else:
        if not channel_names or not privileged_channels:
            raise ValueError("name the channels (in file order _0000, _0001, ...) and the privileged channel(s), "
                             "or give a dataset.json to copy them from")
        split = ChannelSplit.from_names(channel_names, privileged_channels, "the channel arguments")
    file_ending = file_ending or ".nii.gz"
    others = sibling_roots(raw_root)
    raw_root = resolve_raw_root(raw_root)
    folder_name = check_new_dataset(raw_root, dataset_id, name, others)
    cases = _find_cases(source_dirs, file_ending, split.num_channels,
                        split.privileged_indices if allow_missing_privileged else ())
    missing = sorted(c for c, files in cases.items() if None in files)
    if missing and len(missing) == len(cases):
        raise ValueError(f"no case in {list(source_dirs)} has its privileged channel(s) "
                         f"{list(split.privileged_names)}; Stage 1 needs them for some cases")
    for case, files in cases.items():
        present = [f for f in files if f is not None]
        check_same_geometry(case, present)
        for f in present:
            check_image(case, f)

    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case, files in cases.items():
            reference = next(f for f in files if f is not None)
            for c, f in enumerate(files):
                out = join(tmp, "imagesTr", f"{case}_{c:04d}{file_ending}")
                if f is None:
                    sitk.WriteImage(placeholder_image(sitk.ReadImage(reference)), out, True)
                else:
                    shutil.copyfile(f, out)
            label = placeholder_label([sitk.ReadImage(f) for f in files if f is not None])
            sitk.WriteImage(label, join(tmp, "labelsTr", f"{case}{file_ending}"), True)
        save_json({
            "channel_names": {str(i): n for i, n in enumerate(split.channel_names)},
            "labels": {"background": 0, PLACEHOLDER_LABEL: 1},
            "numTraining": len(cases),
            "file_ending": file_ending,
            "name": name,
            "description": "DANTE Stage-1 pre-training images; labels are placeholders (non-background), "
                           "not annotations",
            "dante": {**split.dante_block(), **({"cases_without_privileged": missing} if missing else {})},
        }, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)
