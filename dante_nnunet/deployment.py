"""What the deployed model is, below training: the limited channels' model files and prediction inputs.

- ``limited_dataset_json`` / ``limited_plans`` / ``save_deployment_files``: a limited-channel trainer's
  results folder describes only the limited channels (per-channel entries re-indexed), because
  nnU-Net's predictor takes its channel count and per-channel normalisation from them.
- ``check_case_files``: a clear error for a prediction folder whose cases do not hold exactly the
  limited channels' files.

The trainers write these files (training/base.py); ``export.py`` builds the plugin-free model on them.
"""
from __future__ import annotations

import copy
import os
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

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
# prediction inputs

_CASE_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\..+)$")


def check_case_files(folder: str, num_channels: int, channel_names: Optional[Sequence[str]] = None,
                     file_ending: Optional[str] = None) -> List[str]:
    """Raise ValueError naming the case and files when a case's files are not exactly ``_0000`` ..
    ``_{num_channels-1:04d}`` (with the channels expected), when files do not end in the model's
    ``file_ending`` (nnU-Net would skip them or feed a case too few channels), when a case's files
    differ in size or spacing (nnU-Net stops far up its log, and its last line blames memory), or when
    the folder holds no case; return the case identifiers. Files that do not look like nnU-Net image
    files (``CASE_XXXX.ending``) are ignored, as nnU-Net ignores them."""
    if not isdir(folder):
        raise FileNotFoundError(f"input folder {folder} does not exist")
    cases: Dict[str, List[int]] = defaultdict(list)
    files: Dict[str, List[str]] = defaultdict(list)
    other_ending: List[str] = []
    ours = _CASE_FILE if file_ending is None else \
        re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}})(?P<ending>{re.escape(file_ending)})$")
    for f in sorted(os.listdir(folder)):
        m = ours.match(f)
        if m is None:
            if _CASE_FILE.match(f) is not None:
                other_ending.append(f)
            continue
        cases[m["case"]].append(int(m["channel"]))
        files[m["case"]].append(f)
    if other_ending:
        raise ValueError(f"{folder}: {len(other_ending)} image file(s) do not end in {file_ending!r}, the file ending "
                         f"this model was trained with (its dataset.json's file_ending): {other_ending[:6]}"
                         f"{' ...' if len(other_ending) > 6 else ''}. nnU-Net would leave them out; convert them to "
                         f"{file_ending}")
    if not cases:
        raise ValueError(f"{folder} holds no image files named CASE_XXXX.ending (e.g. case_0000.nii.gz): nothing to "
                         f"predict")
    expected = list(range(num_channels))
    names = f" ({', '.join(channel_names)})" if channel_names else ""
    for case, chans in cases.items():
        if sorted(chans) != expected:
            raise ValueError(
                f"{folder}: case '{case}' has {len(chans)} image file(s) {files[case]}, but this model is deployed "
                f"on {num_channels} limited channel(s){names}, which must be the files _0000.._{num_channels - 1:04d} "
                f"in that order. Privileged channels are not inputs of the deployed model: leave their files out "
                f"and number the remaining channels consecutively.")
    for case in cases:
        _check_same_size_and_spacing(folder, case, files[case])
    return sorted(cases)


def _check_same_size_and_spacing(folder: str, case: str, names: Sequence[str]) -> None:
    from dante_nnunet.rawdata import size_and_spacing
    geometry = {f: size_and_spacing(join(folder, f)) for f in names}
    known = {f: g for f, g in geometry.items() if g is not None}
    if len(set(known.values())) > 1:
        described = ", ".join(f"{f}: size {g[0]}, spacing {g[1]}" for f, g in known.items())
        raise ValueError(f"{folder}: case '{case}' has images of different size or spacing ({described}); nnU-Net "
                         f"needs every channel of a case on one grid: resample them to one")


# ------------------------------------------------------------------ the channels' intensity profiles
CHANNEL_PROFILE = "dante_channel_profile.json"


def save_channel_profile(model_folder: str, channel_names: Sequence[str], reference, num_cases: int) -> None:
    """The deployed channels' reference intensity profiles (``channel_profile.py``), beside the model's
    dataset.json, for the swapped-channel warning of nnUNetv2_predict."""
    from dante_nnunet.channel_profile import QUANTILES
    tmp = join(model_folder, CHANNEL_PROFILE + ".tmp")
    save_json({"channel_names": list(channel_names), "quantiles": list(QUANTILES),
               "reference": [[float(v) for v in row] for row in reference], "training_cases": int(num_cases)}, tmp)
    os.replace(tmp, join(model_folder, CHANNEL_PROFILE))


def swapped_channel_warnings(folder: str, cases: Sequence[str], file_ending: str, model_folder: str) -> List[str]:
    """One line per input case whose channel files look swapped against the model's reference profiles
    (none when the model folder has no profile, or deploys a single channel)."""
    import numpy as np
    import SimpleITK as sitk
    from dante_nnunet.channel_profile import QUANTILES, case_profiles, distances, looks_swapped
    path = join(model_folder, CHANNEL_PROFILE)
    if not isfile(path):
        return []
    profile = load_json(path)
    names, reference = profile["channel_names"], np.asarray(profile["reference"])
    if len(names) < 2 or tuple(profile.get("quantiles", ())) != QUANTILES:
        return []
    lines = []
    for case in cases:
        files = [join(folder, f"{case}_{c:04d}{file_ending}") for c in range(len(names))]
        try:
            arrays = [sitk.GetArrayFromImage(sitk.ReadImage(f)).astype(np.float32) for f in files]
        except RuntimeError:
            continue   # unreadable files are nnU-Net's to report
        profiles = case_profiles(arrays)
        swapped = looks_swapped(profiles, reference)
        if swapped:
            d = distances(profiles, reference)
            which = "; ".join(f"{os.path.basename(files[i])} (given as {names[i]}) looks like {names[j]} "
                              f"(profile distance {d[i, j]:.2f}, to {names[i]}: {d[i, i]:.2f})"
                              for i, j in sorted(swapped.items()))
            lines.append(f"case '{case}': {which}. Check the channel order: the files must be "
                         f"{', '.join(f'_{c:04d} = {n}' for c, n in enumerate(names))}")
    return lines
