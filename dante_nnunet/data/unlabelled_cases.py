"""Unlabelled scans as cases of a labelled dataset, the nnU-Net way (``dante_nnunet add-scans``; issue 40).

A new raw dataset holds the labelled dataset's cases unchanged and each scan (every channel) as a case whose
label file is nnU-Net's ignore label everywhere: nnU-Net's loss then takes nothing from it, and a trainer
that learns from unlabelled cases (``DANTETrainer_teach``) supplies its own target there. The dataset.json
gains the ``"ignore"`` label (the highest value, as nnU-Net requires; kept if the source has one) and lists
the scans in ``"dante" -> "unlabelled_cases"``, so that every trainer of the package keeps them out of
validation, and out of training unless it learns from them (``training/base.py``).

The scans are checked as the gated recipe checks its scans (``teach_dataset.check_scans`` and
``check_not_labelled_or_test``: every channel, no name of a labelled case, no voxels of a labelled or test
case) before anything is written; the dataset is written into a temporary folder and renamed.

Preprocess it with the labelled dataset's plans (``jobs/nnunet_jobs.preprocess_with_plans_of``): nnU-Net's
fingerprint counts every voxel > 0 of a label file as foreground, the ignore label included, so a
fingerprint of its own would take the scans' whole volume into the CT intensity statistics.
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Sequence

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, load_json, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.data.pseudo_label_dataset import _case_files, _labelled_cases
from dante_nnunet.data.rawdata import new_dataset_folder
from dante_nnunet.data.teach_dataset import check_not_labelled_or_test, check_scans


def labels_with_ignore(labels: Dict[str, object]) -> Dict[str, object]:
    """``labels`` with ``"ignore"``: the source's if it has one, else one above the highest label value."""
    if "ignore" in labels:
        return dict(labels)
    values = [v for x in labels.values() for v in (x if isinstance(x, (list, tuple)) else [x])]
    return {**labels, "ignore": int(max(values)) + 1}


def ignore_label_image(reference_file: str, ignore: int) -> sitk.Image:
    """A label map of ``ignore`` everywhere on the geometry of ``reference_file``: an unlabelled case's label."""
    ref = sitk.ReadImage(reference_file)
    lab = sitk.GetImageFromArray(np.full(sitk.GetArrayViewFromImage(ref).shape, ignore, dtype=np.uint8))
    lab.CopyInformation(ref)
    return lab


def write_dataset_with_scans(source: str, scans_dir: str, raw_root: str, folder_name: str,
                             test_dirs: Sequence[str] = (), voxels_checked: bool = False) -> str:
    """``raw_root/folder_name``: ``source``'s labelled cases and the scans of ``scans_dir`` as unlabelled
    cases (module docstring). Returns the folder. ``voxels_checked``: the caller has already run
    ``check_not_labelled_or_test`` on these scans (it reads every scan and case whole)."""
    dj = load_json(join(source, "dataset.json"))
    ending = dj["file_ending"]
    split = ChannelSplit.from_dataset_json(dj, join(source, "dataset.json"))
    scans = check_scans(scans_dir, source)
    if not voxels_checked:
        check_not_labelled_or_test(scans, source, test_dirs)
    labelled = _labelled_cases(source, ending)
    listed = list(dj.get("dante", {}).get("unlabelled_cases", []))
    labels = labels_with_ignore(dj["labels"])
    ignore = int(labels["ignore"])
    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case in labelled:
            for f in _case_files(source, case, split, ending):
                shutil.copyfile(f, join(tmp, "imagesTr", os.path.basename(f)))
            shutil.copyfile(join(source, "labelsTr", case + ending), join(tmp, "labelsTr", case + ending))
        for scan, files in sorted(scans.items()):
            for c, f in enumerate(files):
                shutil.copyfile(f, join(tmp, "imagesTr", f"{scan}_{c:04d}{ending}"))
            sitk.WriteImage(ignore_label_image(files[0], ignore), join(tmp, "labelsTr", scan + ending))
        out = dict(dj)
        dante = dict(dj.get("dante", {}))
        dante["unlabelled_cases"] = sorted(set(listed) | set(scans))
        out.update({"labels": labels, "numTraining": len(labelled) + len(scans),
                    "name": folder_name.split("_", 1)[1], "dante": dante,
                    "description": f"dante_nnunet add-scans: the {len(labelled)} cases of {os.path.basename(source)} "
                                   f"and {len(scans)} unlabelled scans of {scans_dir} (label: the ignore label "
                                   f"{ignore} everywhere; listed in dante.unlabelled_cases)"})
        save_json(out, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)


def check_dataset_with_scans(folder: str, source: str, scans: Sequence[str]) -> None:
    """Refuses (ValueError naming the folder) a raw dataset that is not what ``write_dataset_with_scans``
    writes for ``source`` and these scans: the source's labelled cases and every scan, the scans listed as
    unlabelled cases. A job that finds its dataset id taken reuses the folder only when it passes."""
    dj_file = join(folder, "dataset.json")
    if not os.path.isfile(dj_file):
        raise ValueError(f"{folder} has no dataset.json")
    dj = load_json(dj_file)
    src = load_json(join(source, "dataset.json"))
    ending = src["file_ending"]
    listed = set(dj.get("dante", {}).get("unlabelled_cases", []))
    missing = sorted(set(scans) - listed)
    if missing:
        raise ValueError(f"{dj_file} does not list the scans {missing[:5]}{' ...' if len(missing) > 5 else ''} as "
                         f"unlabelled cases: it is not the labelled dataset plus these scans")
    have = set(_labelled_cases(folder, ending))
    lacking = sorted(set(_labelled_cases(source, ending)) - have)
    if lacking:
        raise ValueError(f"{folder} lacks the labelled cases {lacking[:5]}{' ...' if len(lacking) > 5 else ''} of "
                         f"{source}")
