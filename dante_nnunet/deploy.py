"""Deployment of the limited pathway as a model nnU-Net predicts with.

- ``limited_dataset_json`` / ``limited_plans``: the results folder's dataset.json and plans.json
  describe only the limited channels (per-channel entries re-indexed), because nnU-Net's predictor
  takes its channel count and per-channel normalisation from them.
- ``check_case_files``: a clear error for a prediction folder whose cases do not hold exactly the
  limited channels' files.
- ``export_model``: a plain nnU-Net model folder (trainer ``nnUNetTrainer``, stock state-dict keys)
  that needs no plugin to predict.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.guards import read_checkpoint

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


# ------------------------------------------------------------------------------------------------
# prediction inputs

_CASE_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\..+)$")


def check_case_files(folder: str, num_channels: int, channel_names: Optional[Sequence[str]] = None) -> List[str]:
    """Raise ValueError naming the first case whose files are not exactly ``_0000`` ..
    ``_{num_channels-1:04d}`` (and the channels expected), or a folder without any case; return the
    case identifiers. Files that do not look like nnU-Net
    image files (``CASE_XXXX.ending``) are ignored, as nnU-Net ignores them."""
    if not isdir(folder):
        raise FileNotFoundError(f"input folder {folder} does not exist")
    cases: Dict[str, List[int]] = defaultdict(list)
    files: Dict[str, List[str]] = defaultdict(list)
    for f in sorted(os.listdir(folder)):
        m = _CASE_FILE.match(f)
        if m is None:
            continue
        cases[m["case"]].append(int(m["channel"]))
        files[m["case"]].append(f)
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
    return sorted(cases)


_PREDICT_OPTIONS = ("-i", "-o", "-m", "-d", "-p", "-tr", "-c", "-f", "-step_size", "-chk", "-npp", "-nps",
                    "-prev_stage_predictions", "-num_parts", "-part_id", "-device")


def _predict_arguments(argv: Sequence[str]):
    """The -i folder and the model's limited channel names (from its results folder's dataset.json,
    when -d/-tr/-c/-p or -m name one) of an nnUNetv2_predict command line, parsed the way argparse
    parses it (``-i DIR``, ``-iDIR``, ``-i=DIR``). The single-dash options of both predict commands
    (2.8.1) are declared so that ``-chk x`` is not read as ``-c hk``."""
    import argparse
    p = argparse.ArgumentParser(add_help=False)
    for opt in _PREDICT_OPTIONS:
        p.add_argument(opt, nargs="+" if opt == "-f" else None)
    ns, _ = p.parse_known_args(list(argv[1:]))
    names = None
    try:
        if ns.m:
            folder = ns.m
        else:
            from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
            from nnunetv2.utilities.file_path_utilities import get_output_folder
            folder = get_output_folder(maybe_convert_to_dataset_name(ns.d), ns.tr or "nnUNetTrainer",
                                       ns.p or "nnUNetPlans", ns.c)
        names = list(load_json(join(folder, "dataset.json"))["channel_names"].values())
    except Exception:   # the names only enrich the message; nnU-Net reports a bad model folder itself
        pass
    return ns.i, names


def check_inputs_of_predict_command(num_input_channels: int, argv: Optional[Sequence[str]] = None) -> None:
    """When the running process is ``nnUNetv2_predict`` (or ``..._from_modelfolder``), check its ``-i``
    folder before any preprocessing starts. nnU-Net's predictor does not check channel counts; with one
    file too many it fails deep in normalisation, one too few in a convolution, and an empty folder
    exits 0 having predicted nothing."""
    argv = sys.argv if argv is None else argv
    if not argv or not os.path.basename(argv[0]).startswith("nnUNetv2_predict"):
        return
    folder, names = _predict_arguments(argv)
    if folder is not None:
        check_case_files(folder, num_input_channels, names if names and len(names) == num_input_channels else None)


# ------------------------------------------------------------------------------------------------
# export

def export_model(dataset: str, configuration: str, trainer: str, folds: Sequence[str], output_root: str,
                 plans_identifier: str = "nnUNetPlans", checkpoint_name: str = "checkpoint_final.pth") -> str:
    """Write ``output_root/<Dataset>/nnUNetTrainer__<plans>__<configuration>/`` holding the deployed
    limited pathway as a plain nnU-Net model and return that folder.

    ``output_root`` is laid out like ``nnUNet_results``, so that ``nnUNet_results=output_root
    nnUNetv2_predict -d D -c C -f F`` and ``nnUNetv2_export_model_to_zip`` work on it without the
    plugin. Every check runs before anything is written; the folder is assembled in a temporary
    sibling and renamed into place, and an existing model folder is never overwritten.
    """
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from dante_nnunet.networks.builder import build_stock_network

    dataset_name = maybe_convert_to_dataset_name(dataset)
    src = get_output_folder(dataset_name, trainer, plans_identifier, configuration)
    if not isdir(src):
        raise FileNotFoundError(f"no trained model folder {src}")
    for f in ("dataset.json", "plans.json"):
        if not isfile(join(src, f)):
            raise FileNotFoundError(f"{join(src, f)} is missing: was the training started with this trainer?")
    dataset_json = load_json(join(src, "dataset.json"))
    if DEPLOYMENT_KEY not in dataset_json:
        raise ValueError(f"{join(src, 'dataset.json')} has no '{DEPLOYMENT_KEY}' record: {trainer} is not a DANTE "
                         f"or baseline trainer whose results folder describes the limited channels")
    plans = load_json(join(src, "plans.json"))
    plans_manager = PlansManager(plans)
    cm = plans_manager.get_configuration(configuration)
    num_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    num_in = len(dataset_json["channel_names"])

    dest_name = f"nnUNetTrainer__{plans_identifier}__{configuration}"
    dest = join(output_root, dataset_name, dest_name)
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} already exists; remove it or choose another output folder")

    net = build_stock_network(cm, num_in, num_out, deep_supervision=False)
    checkpoints = {}
    for fold in folds:
        ck_file = join(src, f"fold_{fold}", checkpoint_name)
        if not isfile(ck_file):
            raise FileNotFoundError(f"{ck_file} does not exist")
        ck = read_checkpoint(ck_file)
        try:
            net.load_state_dict(ck["network_weights"])  # strict: proves the weights fit the stock network
        except RuntimeError as e:
            raise ValueError(f"{ck_file}: network_weights do not load into the plain {cm.network_arch_class_name} "
                             f"with {num_in} input channels: {e}") from None
        init_args = dict(ck["init_args"])
        init_args.update(plans=plans, dataset_json=dataset_json, configuration=configuration)
        checkpoints[fold] = {
            "network_weights": ck["network_weights"],
            "trainer_name": nnUNetTrainer.__name__,
            "init_args": init_args,
            "inference_allowed_mirroring_axes": ck.get("inference_allowed_mirroring_axes"),
            "current_epoch": ck.get("current_epoch"),
            "exported_from": {"trainer_name": ck["trainer_name"], "checkpoint": ck_file},
        }

    os.makedirs(join(output_root, dataset_name), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{dest_name}.", dir=join(output_root, dataset_name))
    try:
        for f in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
            if isfile(join(src, f)):
                shutil.copyfile(join(src, f), join(tmp, f))
        for fold, ck in checkpoints.items():
            fdir = join(tmp, f"fold_{fold}")
            os.makedirs(join(fdir, "validation"))
            torch.save(ck, join(fdir, checkpoint_name))
            for extra in ("progress.png", "debug.json", join("validation", "summary.json")):
                if isfile(join(src, f"fold_{fold}", extra)):
                    shutil.copyfile(join(src, f"fold_{fold}", extra), join(fdir, extra))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def save_deployment_files(output_folder_base: str, plans: dict, dataset_json: dict, split: ChannelSplit) -> None:
    """Write the limited-channel plans.json and dataset.json into a results folder, and re-index the
    per-channel intensity properties of its dataset_fingerprint.json if there is one."""
    save_json(limited_plans(plans, split), join(output_folder_base, "plans.json"), sort_keys=False)
    save_json(limited_dataset_json(dataset_json, split), join(output_folder_base, "dataset.json"), sort_keys=False)
    fingerprint = join(output_folder_base, "dataset_fingerprint.json")
    if isfile(fingerprint):
        save_json(limited_plans(load_json(fingerprint), split), fingerprint, sort_keys=False)
