"""``dante_nnunet export``: the deployed limited pathway of a trained DANTE (or limited-channel
baseline) model as a plain nnU-Net model folder (trainer ``nnUNetTrainer``, stock state-dict keys) that
predicts without the plugin. A job on top of training: it reads the results folder the trainer wrote
(``deployment.py``'s limited-channel files and the checkpoints)."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Sequence

import torch
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json

from dante_nnunet.deploy.deployment import DEPLOYMENT_KEY
from dante_nnunet.guards import read_checkpoint, write_failure

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
            try:
                torch.save(ck, join(fdir, checkpoint_name))
            except (RuntimeError, OSError) as e:   # a full disk: torch's message names no cause
                raise write_failure(join(dest, f"fold_{fold}", checkpoint_name), e) from None
            for extra in ("progress.png", "debug.json", join("validation", "summary.json")):
                if isfile(join(src, f"fold_{fold}", extra)):
                    shutil.copyfile(join(src, f"fold_{fold}", extra), join(fdir, extra))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
