"""A small synthetic 4-channel BraTS-like dataset in nnU-Net raw format, for the demo and the tests.

Each case is a noisy ellipsoidal "brain" holding one tumour: edema (label 1) around a core whose rim
enhances (label 3) around necrosis (label 2). Regions as in nnU-Net's Dataset137: whole tumour
(1, 2, 3), tumour core (2, 3), enhancing tumour (3). Channel cues:

- T1ce (privileged): the enhancing rim is bright, necrosis dark: ET is plainly visible.
- FLAIR: whole tumour bright; T2: edema bright, core mid; T1: core slightly dark.
  The limited channels show WT and TC, and ET only indirectly (it is the core's rim).

Deterministic by seed. Test cases come as limited-only inputs (T1, T2, FLAIR renumbered
_0000.._0002), plus the all-channel inputs and the labels.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, save_json

CHANNELS = ("T1", "T1ce", "T2", "FLAIR")
PRIVILEGED = ("T1ce",)


def _case(rng: np.random.Generator, shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    c = np.array(shape, dtype=np.float32) / 2
    brain = (((zz - c[0]) / (0.45 * shape[0])) ** 2 + ((yy - c[1]) / (0.45 * shape[1])) ** 2
             + ((xx - c[2]) / (0.45 * shape[2])) ** 2) <= 1
    r_core = rng.uniform(0.10, 0.16) * min(shape)
    r_edema = r_core + rng.uniform(0.06, 0.12) * min(shape)
    centre = c + rng.uniform(-0.12, 0.12, size=3) * np.array(shape)
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    rim = rng.uniform(1.2, 2.2)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[(d <= r_edema) & brain] = 1
    seg[(d <= r_core) & brain] = 3
    seg[(d <= r_core - rim) & brain] = 2

    base = {"T1": 0.8, "T1ce": 0.8, "T2": 0.5, "FLAIR": 0.5}
    tissue = {  # intensity per label 1 (edema), 2 (necrosis), 3 (enhancing)
        "T1": (0.75, 0.55, 0.6),
        "T1ce": (0.8, 0.35, 1.8),
        "T2": (1.3, 1.0, 1.0),
        "FLAIR": (1.4, 1.2, 1.2),
    }
    images = []
    for ch in CHANNELS:
        img = np.zeros(shape, dtype=np.float32)
        img[brain] = base[ch]
        for label, value in zip((1, 2, 3), tissue[ch]):
            img[seg == label] = value
        img += rng.normal(0, 0.08, size=shape).astype(np.float32)
        img[~brain] = 0
        images.append(img * 1000)
    return np.stack(images), seg


def _write(arr: np.ndarray, path: str, spacing=(1.0, 1.0, 1.0)) -> None:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in spacing))
    sitk.WriteImage(im, path)


def write_synthetic_dataset(raw_root: str, dataset_id: int = 990, name: str = "DANTESynthetic",
                            num_train: int = 8, num_test: int = 2, shape=(32, 32, 32), seed: int = 0) -> str:
    """Write Dataset{id}_{name} under ``raw_root`` and return its folder. Refuses to overwrite."""
    folder = join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    if os.path.exists(folder):
        raise FileExistsError(f"{folder} already exists")
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "imagesTs_allchannels", "labelsTs"):
        os.makedirs(join(folder, sub))
    limited = [i for i, c in enumerate(CHANNELS) if c not in PRIVILEGED]
    for i in range(num_train + num_test):
        img, seg = _case(rng, tuple(shape))
        test = i >= num_train
        cid = f"{name}_{i:03d}"
        img_dir = "imagesTs_allchannels" if test else "imagesTr"
        for ch in range(len(CHANNELS)):
            _write(img[ch], join(folder, img_dir, f"{cid}_{ch:04d}.nii.gz"))
        _write(seg, join(folder, "labelsTs" if test else "labelsTr", f"{cid}.nii.gz"))
        if test:
            for new, ch in enumerate(limited):
                _write(img[ch], join(folder, "imagesTs", f"{cid}_{new:04d}.nii.gz"))
    dataset_json: Dict = {
        "channel_names": {str(i): c for i, c in enumerate(CHANNELS)},
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
        "regions_class_order": [1, 2, 3],
        "numTraining": num_train,
        "file_ending": ".nii.gz",
        "dante": {"privileged_channels": list(PRIVILEGED)},
        "description": "dante-nnunet synthetic BraTS-like data; imagesTs holds limited channels only "
                       "(T1, T2, FLAIR as _0000.._0002)",
    }
    save_json(dataset_json, join(folder, "dataset.json"), sort_keys=False)
    return folder
