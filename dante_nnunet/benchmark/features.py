"""Encoder features of a trained DANTE model on preprocessed cases, for the benchmark's t-SNE (Fig. 5)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json


def load_dante_model(checkpoint_file: str, preprocessed_folder: str, configuration: str):
    """(DualPathwayNet with the checkpoint's ``dante_network_weights``, its configuration manager, the
    configuration's preprocessed data folder)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.guards import read_checkpoint
    from dante_nnunet.networks.builder import build_dual_pathway_network

    pm = PlansManager(join(preprocessed_folder, "nnUNetPlans.json"))
    dj = load_json(join(preprocessed_folder, "dataset.json"))
    cm = pm.get_configuration(configuration)
    split = ChannelSplit.from_dataset_json(dj, join(preprocessed_folder, "dataset.json"))
    weights = read_checkpoint(checkpoint_file)["dante_network_weights"]
    net = build_dual_pathway_network(cm, split, pm.get_label_manager(dj).num_segmentation_heads, False,
                                     synthesis=any(k.startswith("synthesis_head.") for k in weights))
    net.load_state_dict(weights)
    return net.eval(), cm, join(preprocessed_folder, cm.data_identifier)


def encoder_features(net, x_full: torch.Tensor, level: int = -1) -> Dict[str, torch.Tensor]:
    """Z_L, Z_A, Z_P at one encoder level (default: the deepest) as (voxels, channels) rows."""
    with torch.no_grad():
        feats = {"Z_L": net.encoder_l(net.select_limited(x_full))[level], "Z_A": net.encoder_a(x_full)[level],
                 "Z_P": net.encoder_p(x_full)[level]}
    return {k: v.movedim(1, -1).reshape(-1, v.shape[1]) for k, v in feats.items()}


def encoder_feature_rows(checkpoint_file: str, preprocessed_folder: str, configuration: str,
                         num_cases: int = 4) -> Dict[str, List[np.ndarray]]:
    """Z_L, Z_A, Z_P (deepest level) on the centre patch of the first ``num_cases`` preprocessed cases:
    encoder -> one (voxels, channels) array per case."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    net, cm, data_folder = load_dante_model(checkpoint_file, preprocessed_folder, configuration)
    ds = infer_dataset_class(data_folder)(data_folder)
    keys = sorted(ds.identifiers)[:num_cases]
    rows: Dict[str, List[np.ndarray]] = {"Z_L": [], "Z_A": [], "Z_P": []}
    patch = cm.patch_size
    for k in keys:
        data = np.asarray(ds.load_case(k)[0], dtype=np.float32)
        # the centre patch (padded if the case is smaller)
        crop = []
        for ax, p in enumerate(patch):
            n = data.shape[ax + 1]
            s = max(0, (n - p) // 2)
            crop.append(slice(s, s + p))
        x = np.zeros((data.shape[0], *patch), np.float32)
        c = data[(slice(None), *crop)]
        x[(slice(None), *[slice(0, n) for n in c.shape[1:]])] = c
        for name, f in encoder_features(net, torch.from_numpy(x)[None]).items():
            rows[name].append(f.numpy())
    return rows
