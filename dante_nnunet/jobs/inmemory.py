"""nnU-Net plans, dataset.json, trainers and batches built in memory, without a dataset: for building
the real trainer classes where no planned dataset is at hand (the speed benchmark, the tests).

The plans are a BraTS-like 4-channel dataset (T1, T1ce, T2, FLAIR; T1ce privileged unless told
otherwise; region labels WT, TC, ET) with one PlainConvUNet or ResidualEncoderUNet configuration.
``initialisable_trainer`` makes the one preprocessed-folder file ``nnUNetTrainer.initialize`` inspects
(it only picks the file format from it) under the environment's ``nnUNet_preprocessed``.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

ARCH = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
}
DATA_IDENTIFIER = "nnUNetPlans_test"
_RESAMPLING = {   # nnU-Net's defaults; only the predictor reads them
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
}


def configuration(arch: str = "PlainConvUNet", dim: int = 3, features: Sequence[int] = (4, 8, 16),
                  patch: Optional[Sequence[int]] = None, batch_size: int = 2, n_conv_decoder: int = 1,
                  use_mask_for_norm: bool = False) -> dict:
    """One plans configuration: stride 1 then 2 per stage, 3^dim kernels, InstanceNorm, LeakyReLU."""
    n = len(features)
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if dim == 3 else \
        "torch.nn.modules.instancenorm.InstanceNorm2d"
    kw = {"n_stages": n, "features_per_stage": list(features), "conv_op": conv,
          "kernel_sizes": [[3] * dim] * n, "strides": [[1] * dim] + [[2] * dim] * (n - 1),
          "n_conv_per_stage_decoder": [n_conv_decoder] * (n - 1), "conv_bias": True, "norm_op": norm,
          "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
          "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    if arch == "PlainConvUNet":
        kw["n_conv_per_stage"] = [2] * n
    else:
        kw["n_blocks_per_stage"] = [1] * n
    return {"data_identifier": DATA_IDENTIFIER, "preprocessor_name": "DefaultPreprocessor", "batch_size": batch_size,
            "patch_size": list(patch or [16] * dim), "median_image_size_in_voxels": [32] * dim,
            "spacing": [1.0] * dim, "normalization_schemes": ["ZScoreNormalization"] * 4,
            "use_mask_for_norm": [use_mask_for_norm] * 4, "batch_dice": False, **_RESAMPLING,
            "architecture": {"network_class_name": ARCH[arch], "arch_kwargs": kw,
                             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}


def configuration_manager(*args, **kwargs):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
    return ConfigurationManager(configuration(*args, **kwargs))


def plans(dataset_name: str = "Dataset999_Unit", configuration_name: str = "3d_fullres", **kwargs) -> dict:
    """Plans with ``configuration_name`` (``configuration(**kwargs)``) and ``3d_small``, which inherits
    it with an 8^3 patch."""
    fg = {str(i): {"mean": float(i), "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0} for i in range(4)}
    return {"dataset_name": dataset_name, "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
            "original_median_shape_after_transp": [32, 32, 32], "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": fg,
            "configurations": {configuration_name: configuration(**kwargs),
                               "3d_small": {"inherits_from": configuration_name, "patch_size": [8, 8, 8]}}}


def dataset_json(privileged=("T1ce",), regions: bool = True) -> dict:
    labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]} if regions \
        else {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3}
    d = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}, "labels": labels,
         "numTraining": 8, "file_ending": ".nii.gz"}
    if regions:
        d["regions_class_order"] = [1, 2, 3]
    if privileged is not None:
        d["dante"] = {"privileged_channels": list(privileged)}
    return d


def trainer(cls, dataset_name: str = "Dataset999_Unit", plans_dict: Optional[dict] = None,
            configuration_name: str = "3d_fullres", device: str = "cpu", **dj):
    """A real trainer of ``cls`` on these plans (``plans_dict`` or ``plans(dataset_name)``), not initialised."""
    p = dict(plans_dict or plans(dataset_name))
    p["continue_training"] = False
    return cls(p, configuration_name, 0, dataset_json(**dj), device=torch.device(device))


def initialisable_trainer(cls, dataset_name: str = "Dataset997_Baselines", features=(4, 8, 16),
                          plans_dict: Optional[dict] = None, configuration_name: str = "3d_fullres",
                          device: str = "cpu", **dj):
    """A real trainer of ``cls`` that ``initialize()`` can build (network, optimiser, loss):
    nnUNetTrainer.initialize only inspects the preprocessed folder's file format."""
    from nnunetv2.paths import nnUNet_preprocessed
    p = plans_dict or plans(dataset_name, configuration_name, features=features)
    folder = os.path.join(str(nnUNet_preprocessed), p["dataset_name"],
                          p["configurations"][configuration_name]["data_identifier"])
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "case.b2nd"), "w").close()
    return trainer(cls, p["dataset_name"], p, configuration_name, device, **dj)


def _regions(seg: torch.Tensor) -> torch.Tensor:
    return torch.cat([(seg >= 1), (seg >= 2), (seg == 3)], 1).float()   # WT, TC, ET


def region_batch(n: int = 2, seed: int = 1) -> dict:
    """A batch as nnU-Net's loader gives it for the 3-stage plans above: 4 channels, 16^3, BraTS regions at
    the three deep-supervision scales (torch's global generator seeded with ``seed``)."""
    torch.manual_seed(seed)
    data = torch.randn(n, 4, 16, 16, 16)
    regions = _regions(torch.randint(0, 4, (n, 1, 16, 16, 16)))
    return {"data": data, "target": [regions, F.max_pool3d(regions, 2), F.max_pool3d(regions, 4)]}


def trainer_batch(t, seed: int = 0) -> dict:
    """A random batch shaped like nnU-Net's loader output for trainer ``t`` (its patch and batch size;
    region targets at each of its deep-supervision scales), from a private generator."""
    g = torch.Generator().manual_seed(seed)
    patch = t.configuration_manager.patch_size
    b = t.configuration_manager.batch_size
    data = torch.randn(b, 4, *patch, generator=g)
    regions = _regions(torch.randint(0, 4, (b, 1, *patch), generator=g).float())
    scales = t._get_deep_supervision_scales() if t.enable_deep_supervision else None
    if scales is None:
        return {"data": data, "target": regions}
    return {"data": data, "target": [F.interpolate(regions, size=[round(p * s) for p, s in zip(patch, sc)],
                                                   mode="nearest") for sc in scales]}


BRATS_MEDIAN_SHAPE = (140, 171, 137)   # BraTS 2021 after cropping to the brain, 1 mm isotropic


def brats_like_plans(planner: str = "ExperimentPlanner", num_cases: int = 1251,
                     dataset_name: str = "Dataset998_BraTSLike") -> dict:
    """The plans nnU-Net's ``planner`` (a class of nnunetv2.experiment_planning, e.g. ``ExperimentPlanner``,
    ``nnUNetPlannerResEncM``, ``nnUNetPlannerResEncL``) makes for a BraTS-like dataset: 4 channels at 1 mm,
    every case ``BRATS_MEDIAN_SHAPE`` after cropping, ``num_cases`` cases, region labels. The planner reads a
    dataset.json and a dataset fingerprint; both are written under the environment's nnUNet_raw and
    nnUNet_preprocessed (set them to a scratch folder), with two tiny images for its reader check."""
    import json

    import numpy as np
    import SimpleITK as sitk
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    import nnunetv2

    raw = os.path.join(str(nnUNet_raw), dataset_name)
    pre = os.path.join(str(nnUNet_preprocessed), dataset_name)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(raw, sub), exist_ok=True)
    os.makedirs(pre, exist_ok=True)
    for case in ("B_000", "B_001"):
        for ch in range(4):
            sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)),
                            os.path.join(raw, "imagesTr", f"{case}_{ch:04d}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)),
                        os.path.join(raw, "labelsTr", f"{case}.nii.gz"))
    dj = dataset_json(privileged=None)
    dj["numTraining"] = num_cases
    with open(os.path.join(raw, "dataset.json"), "w") as fh:
        json.dump(dj, fh)
    props = {"max": 1.0, "mean": 0.0, "median": 0.0, "min": 0.0, "percentile_00_5": 0.0,
             "percentile_99_5": 1.0, "std": 1.0}
    fingerprint = {"spacings": [[1.0, 1.0, 1.0]] * num_cases, "shapes_after_crop": [list(BRATS_MEDIAN_SHAPE)] * num_cases,
                   "foreground_intensity_properties_per_channel": {str(i): dict(props) for i in range(4)},
                   "median_relative_size_after_cropping": 0.37}
    with open(os.path.join(pre, "dataset_fingerprint.json"), "w") as fh:
        json.dump(fingerprint, fh)
    cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"), planner,
                                      "nnunetv2.experiment_planning")
    if cls is None:
        raise ValueError(f"no nnU-Net planner class named {planner!r}")
    p = cls(dataset_name)
    p.plan_experiment()
    with open(os.path.join(pre, p.plans_identifier + ".json")) as fh:
        return json.load(fh)
