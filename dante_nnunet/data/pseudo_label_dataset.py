"""An nnU-Net raw dataset that adds pseudo-labelled scans to a labelled one (``dante_nnunet
pseudo-label-dataset``): the privileged teacher's route from unlabelled multi-sequence scans to cases.

The recipe (docs/unlabelled_scans.md, section 6): an all-channel model (``UpperBoundTrainer``, the
privileged channel among its inputs) trained on the labelled cases predicts the unlabelled scans
(``nnUNetv2_predict``); its predictions become their labels; a limited-channel model (or DANTE) then
trains on the labelled cases plus these pseudo-labelled ones and is deployed on the limited channels
alone. The teacher needs every channel at prediction time, so the unlabelled scans must have them all;
the student's dataset keeps every channel too (its trainers pick the ones they read).

Output: ``nnUNet_raw/DatasetXXX_NAME/{imagesTr,labelsTr,dataset.json}`` holding the chosen labelled cases
of the source dataset (all of them, or one fold's training and validation cases) and the pseudo-labelled
scans; dataset.json is the source's with ``numTraining``, ``name`` and ``description`` changed and the
scans listed under ``"pseudo_labelled_cases"`` (nnU-Net ignores the key). With a fold, the new dataset's
``splits_final.json`` has one fold: that fold's training cases plus every pseudo-labelled scan, and the
same validation cases, so validation stays on annotated cases.

Everything is checked before anything is written: each scan has exactly one file per channel and one
prediction, each prediction one scan, on the scan's grid, with label values that dataset.json defines;
no scan shares a name with a labelled case; the new id is unused. The dataset is written into a
temporary folder and renamed into place (``rawdata.new_dataset_folder``).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.data.pretrain_dataset import _find_cases
from dante_nnunet.data.rawdata import (check_image, check_new_dataset, check_same_geometry, geometry,
                                       label_values_from_dataset_json, new_dataset_folder, read_whole,
                                       resolve_raw_root, sibling_roots)


def _labelled_cases(source: str, ending: str) -> List[str]:
    labels = join(source, "labelsTr")
    return sorted(f[:-len(ending)] for f in os.listdir(labels) if f.endswith(ending) and not f.startswith("."))


def _case_files(source: str, case: str, split: ChannelSplit, ending: str) -> List[str]:
    """The image files of a labelled case (a privileged channel may be absent, as nnU-Net's raw folder has it)."""
    return [p for p in (join(source, "imagesTr", f"{case}_{c:04d}{ending}") for c in range(split.num_channels))
            if isfile(p)]


def check_pseudo_labels(images_dir: str, labels_dir: str, dataset_json: dict, source: str) -> Dict[str, List[str]]:
    """{scan: its channel files} of the scans in ``images_dir`` with their predictions in ``labels_dir``
    (files ending in the dataset's file ending; nnUNetv2_predict's json files are ignored), checked as the
    module docstring says. Errors name the scan and file."""
    ending = dataset_json["file_ending"]
    split = ChannelSplit.from_dataset_json(dataset_json, join(source, "dataset.json"))
    scans = _find_cases([images_dir], ending, split.num_channels)
    if not os.path.isdir(labels_dir):
        raise FileNotFoundError(f"pseudo-label folder {labels_dir} does not exist")
    labels = sorted(f[:-len(ending)] for f in os.listdir(labels_dir) if f.endswith(ending) and not f.startswith("."))
    no_label = sorted(set(scans) - set(labels))
    if no_label:
        raise ValueError(f"{len(no_label)} scan(s) of {images_dir} have no prediction in {labels_dir}, e.g. "
                         f"{no_label[0]!r} (no {no_label[0]}{ending}); predict every scan, or remove the scan")
    no_scan = sorted(set(labels) - set(scans))
    if no_scan:
        raise ValueError(f"{join(labels_dir, no_scan[0] + ending)} has no scan {no_scan[0]!r} in {images_dir}")
    taken = sorted(set(scans) & set(_labelled_cases(source, ending)))
    if taken:
        raise ValueError(f"scan {taken[0]!r} of {images_dir} has the name of a labelled case of {source}; rename it")
    allowed = set(label_values_from_dataset_json(dataset_json))
    for case, files in scans.items():
        check_same_geometry(case, files)
        for f in files:
            check_image(case, f)
        label = join(labels_dir, case + ending)
        if geometry(label) != geometry(files[0]):
            raise ValueError(f"{label}: grid {geometry(label)} differs from its scan's {geometry(files[0])} "
                             f"({os.path.basename(files[0])}); the predictions must come from these scans")
        extra = sorted(set(np.unique(read_whole(case, label)).tolist()) - allowed)
        if extra:
            raise ValueError(f"{label}: label value(s) {extra} are not in {join(source, 'dataset.json')}'s labels "
                             f"{sorted(allowed)}; were the scans predicted by a model of this dataset?")
    return scans


def write_pseudo_label_dataset(source: str, images_dir: str, labels_dir: str, dataset_id: int, name: str,
                               labelled_cases: Optional[Sequence[str]] = None,
                               raw_root: Optional[str] = None) -> Tuple[str, List[str]]:
    """Write the dataset (module docstring) from the raw dataset folder ``source``; ``labelled_cases``: the
    labelled cases to keep (default all). Returns (folder, the pseudo-labelled scans)."""
    dj_file = join(source, "dataset.json")
    dj = load_json(dj_file)
    ending = dj["file_ending"]
    split = ChannelSplit.from_dataset_json(dj, dj_file)
    have = _labelled_cases(source, ending)
    keep = have if labelled_cases is None else sorted(labelled_cases)
    missing = sorted(set(keep) - set(have))
    if missing:
        raise ValueError(f"labelled case {missing[0]!r} is not in {join(source, 'labelsTr')}")
    others = sibling_roots(raw_root)
    raw_root = resolve_raw_root(raw_root)
    folder_name = check_new_dataset(raw_root, dataset_id, name, others)
    scans = check_pseudo_labels(images_dir, labels_dir, dj, source)

    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case in keep:
            for f in _case_files(source, case, split, ending):
                shutil.copyfile(f, join(tmp, "imagesTr", os.path.basename(f)))
            shutil.copyfile(join(source, "labelsTr", case + ending), join(tmp, "labelsTr", case + ending))
        for case, files in scans.items():
            for c, f in enumerate(files):
                shutil.copyfile(f, join(tmp, "imagesTr", f"{case}_{c:04d}{ending}"))
            shutil.copyfile(join(labels_dir, case + ending), join(tmp, "labelsTr", case + ending))
        out = dict(dj)
        out.update({"numTraining": len(keep) + len(scans), "name": name, "dante": dante_block_of(dj, keep),
                    "description": f"{len(keep)} labelled cases of {os.path.basename(source)} and {len(scans)} "
                                   f"scans of {images_dir} labelled by a model's predictions ({labels_dir})",
                    "pseudo_labelled_cases": sorted(scans)})
        save_json(out, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name), sorted(scans)


def dante_block_of(dataset_json: dict, kept_cases) -> dict:
    """The source's "dante" block for a dataset that keeps only ``kept_cases`` of its labelled cases (the
    scans added beside them have every channel): ``cases_without_privileged`` cut to the kept ones."""
    dante = dict(dataset_json.get("dante", {}))
    if "cases_without_privileged" in dante:
        dante["cases_without_privileged"] = [c for c in dante["cases_without_privileged"] if c in kept_cases]
        if not dante["cases_without_privileged"]:
            del dante["cases_without_privileged"]
    return dante


def pseudo_label_split(fold: dict, pseudo_cases: Sequence[str]) -> List[dict]:
    """The new dataset's splits_final.json: one fold, ``fold``'s training cases plus the pseudo-labelled
    scans, validated on ``fold``'s validation cases."""
    return [{"train": sorted(list(fold["train"]) + list(pseudo_cases)), "val": sorted(fold["val"])}]


def limited_channel_copies(images_dir: str, out_dir: str, dataset_json_file: str) -> str:
    """Copies of the scans in ``images_dir`` with only the limited channels, renumbered _0000, _0001, ...
    (what a limited-channel model's ``nnUNetv2_predict`` reads: the self-training control's teacher).
    Written into ``out_dir``.tmp and renamed; an existing ``out_dir`` is refused."""
    dj = load_json(dataset_json_file)
    split = ChannelSplit.from_dataset_json(dj, dataset_json_file)
    ending = dj["file_ending"]
    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} exists; remove it to write the limited-channel copies again")
    scans = _find_cases([images_dir], ending, split.num_channels)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for case, files in scans.items():
        for new, c in enumerate(split.limited_indices):
            shutil.copyfile(files[c], join(tmp, f"{case}_{new:04d}{ending}"))
    os.rename(tmp, out_dir)
    return out_dir
