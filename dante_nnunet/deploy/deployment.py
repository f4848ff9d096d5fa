"""What the deployed model is, below training: the limited channels' model files.

- ``limited_dataset_json`` / ``limited_plans`` / ``save_deployment_files``: a limited-channel trainer's
  results folder describes only the limited channels (per-channel entries re-indexed), because
  nnU-Net's predictor takes its channel count and per-channel normalisation from them.
The trainers write these files (training/base.py); ``export.py`` builds the plugin-free model on them;
``predict_input_check.py`` checks nnUNetv2_predict's inputs against them.
"""
from __future__ import annotations

import copy
from typing import Sequence

from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.config import ChannelSplit

DEPLOYMENT_KEY = "dante_deployment"


def _reindex(seq_or_map, indices: Sequence[int]):
    if isinstance(seq_or_map, dict):
        return {str(new): seq_or_map[str(old)] for new, old in enumerate(indices)}
    return [seq_or_map[old] for old in indices]


def limited_dataset_json(dataset_json: dict, split: ChannelSplit) -> dict:
    """dataset.json of the deployed model: channel_names re-numbered over the limited channels; the
    ``dante`` block is replaced by a ``dante_deployment`` record of where the channels came from."""
    out = copy.deepcopy(dataset_json)
    out["channel_names"] = _reindex(dataset_json["channel_names"], split.limited_indices)
    out.pop("dante", None)
    out[DEPLOYMENT_KEY] = {
        "training_channel_names": {str(i): n for i, n in enumerate(split.channel_names)},
        "privileged_channels": list(split.privileged_names),
        "limited_channel_indices_in_training": list(split.limited_indices),
    }
    return out


def limited_plans(plans: dict, split: ChannelSplit) -> dict:
    """plans.json of the deployed model: every per-channel field re-indexed to the limited channels
    (``foreground_intensity_properties_per_channel``; per configuration ``normalization_schemes`` and
    ``use_mask_for_norm`` where the configuration sets them itself)."""
    out = copy.deepcopy(plans)
    idx = split.limited_indices
    n = split.num_channels
    fg = out.get("foreground_intensity_properties_per_channel")
    if fg is not None:
        if len(fg) != n:
            raise ValueError(f"plans: foreground_intensity_properties_per_channel has {len(fg)} channels, "
                             f"dataset.json {n}")
        out["foreground_intensity_properties_per_channel"] = _reindex(fg, idx)
    for name, cfg in out.get("configurations", {}).items():
        for key in ("normalization_schemes", "use_mask_for_norm"):
            if key in cfg:
                if len(cfg[key]) != n:
                    raise ValueError(f"plans: configuration {name!r} {key} has {len(cfg[key])} entries, "
                                     f"dataset.json {n} channels")
                cfg[key] = _reindex(cfg[key], idx)
    return out


def save_deployment_files(output_folder_base: str, plans: dict, dataset_json: dict, split: ChannelSplit) -> None:
    """Write the limited-channel plans.json and dataset.json into a results folder, and re-index the
    per-channel intensity properties of its dataset_fingerprint.json if there is one."""
    save_json(limited_plans(plans, split), join(output_folder_base, "plans.json"), sort_keys=False)
    save_json(limited_dataset_json(dataset_json, split), join(output_folder_base, "dataset.json"), sort_keys=False)
    fingerprint = join(output_folder_base, "dataset_fingerprint.json")
    if isfile(fingerprint):
        save_json(limited_plans(load_json(fingerprint), split), fingerprint, sort_keys=False)


# ------------------------------------------------------------------------------------------------
