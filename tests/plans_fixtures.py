"""Plans-like configurations for building networks and trainers without a dataset."""
import os

import torch
import torch.nn.functional as F
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

ARCH = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
}


def configuration(arch: str = "PlainConvUNet", dim: int = 3, features=(4, 8, 16), patch=None) -> dict:
    n = len(features)
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if dim == 3 else \
        "torch.nn.modules.instancenorm.InstanceNorm2d"
    kw = {"n_stages": n, "features_per_stage": list(features), "conv_op": conv,
          "kernel_sizes": [[3] * dim] * n, "strides": [[1] * dim] + [[2] * dim] * (n - 1),
          "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True, "norm_op": norm,
          "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
          "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    if arch == "PlainConvUNet":
        kw["n_conv_per_stage"] = [2] * n
    else:
        kw["n_blocks_per_stage"] = [1] * n
    return {"data_identifier": "nnUNetPlans_test", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch or [16] * dim), "median_image_size_in_voxels": [32] * dim,
            "spacing": [1.0] * dim, "normalization_schemes": ["ZScoreNormalization"] * 4,
            "use_mask_for_norm": [False] * 4, "batch_dice": False,
            "architecture": {"network_class_name": ARCH[arch], "arch_kwargs": kw,
                             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}


def configuration_manager(*args, **kwargs) -> ConfigurationManager:
    return ConfigurationManager(configuration(*args, **kwargs))


def plans(dataset_name: str = "Dataset999_Unit", **kwargs) -> dict:
    fg = {str(i): {"mean": float(i), "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0} for i in range(4)}
    return {"dataset_name": dataset_name, "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
            "original_median_shape_after_transp": [32, 32, 32], "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": fg,
            "configurations": {"3d_fullres": configuration(**kwargs),
                               "3d_small": {"inherits_from": "3d_fullres", "patch_size": [8, 8, 8]}}}


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


def initialisable_trainer(cls, dataset_name: str = "Dataset997_Baselines", features=(4, 8, 16), **dj):
    """A real trainer of ``cls`` on these plans, on the CPU, that ``initialize()`` can build (network,
    optimiser, loss); nnUNetTrainer.initialize only inspects the preprocessed folder's file format."""
    p = plans(dataset_name, features=features)
    p["continue_training"] = False
    folder = os.path.join(os.environ["nnUNet_preprocessed"], dataset_name, "nnUNetPlans_test")
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "case.b2nd"), "w").close()
    return cls(p, "3d_fullres", 0, dataset_json(**dj), device=torch.device("cpu"))


def region_batch(n: int = 2, seed: int = 1) -> dict:
    """A batch as nnU-Net's loader gives it for the 3-stage plans above: 4 channels, 16^3, BraTS regions at
    the three deep-supervision scales."""
    torch.manual_seed(seed)
    data = torch.randn(n, 4, 16, 16, 16)
    seg = torch.randint(0, 4, (n, 1, 16, 16, 16))
    regions = torch.cat([(seg >= 1), (seg >= 2), (seg == 3)], 1).float()
    return {"data": data, "target": [regions, F.max_pool3d(regions, 2), F.max_pool3d(regions, 4)]}
