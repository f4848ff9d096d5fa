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


def _multilevel_features(encoder, x: torch.Tensor) -> torch.Tensor:
    """Every encoder level's output upsampled (trilinear / bilinear) to the input's size and stacked:
    (channels summed over levels, *spatial)."""
    with torch.no_grad():
        skips = encoder(x)
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    return torch.cat([torch.nn.functional.interpolate(s, size=x.shape[2:], mode=mode, align_corners=False)
                      if s.shape[2:] != x.shape[2:] else s for s in skips], 1)[0]


def r2_score(prediction: np.ndarray, target: np.ndarray) -> float:
    """1 - SSE / SST over the given values (SST about the target's own mean); NaN for fewer than 2."""
    if target.size < 2:
        return float("nan")
    sst = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((prediction - target) ** 2).sum()) / max(sst, 1e-12)


def ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             ridge: float = 1e-3) -> float:
    """R^2 on (x_test, y_test) of a ridge regression with bias fitted on (x_fit, y_fit); features are
    standardised with the fitting set's mean and SD, ``ridge`` is relative to the mean feature variance
    (so 1.0 after standardisation)."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a, b = (x_fit - mu) / sd, (x_test - mu) / sd
    a = np.concatenate([a, np.ones((len(a), 1))], 1)
    b = np.concatenate([b, np.ones((len(b), 1))], 1)
    reg = ridge * len(a) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0   # no penalty on the bias
    w = np.linalg.solve(a.T @ a + reg, a.T @ y_fit)
    return r2_score(b @ w, y_test)


def _padded_case_reader(preprocessed_folder: str, configuration: str):
    """(configuration manager, channel split, ``load``) for one nnU-Net preprocessed configuration, where
    ``load(case)`` gives the case's data (float32, channels first) and its label map, both zero-padded at the
    end of each axis to a multiple of the network's stride (the product of the pooling kernels)."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from dante_nnunet.config import ChannelSplit

    cm = PlansManager(join(preprocessed_folder, "nnUNetPlans.json")).get_configuration(configuration)
    split = ChannelSplit.from_dataset_json(load_json(join(preprocessed_folder, "dataset.json")), preprocessed_folder)
    data_folder = join(preprocessed_folder, cm.data_identifier)
    ds = infer_dataset_class(data_folder)(data_folder)
    stride = np.prod(np.array(cm.pool_op_kernel_sizes, dtype=int), axis=0)

    def load(case: str):
        data, seg = ds.load_case(case)[:2]
        data, seg = np.asarray(data, dtype=np.float32), np.asarray(seg)[0]
        pad = [(0, 0)] + [(0, int(-n % s)) for n, s in zip(data.shape[1:], stride)]
        return np.pad(data, pad), np.pad(seg, pad[1:])

    return cm, split, load


def privileged_probe(encoders: Dict[str, "torch.nn.Module"], preprocessed_folder: str, configuration: str,
                     fit_cases: List[str], test_cases: List[str], max_voxels_per_case: int = 4000,
                     seed: int = 0) -> Dict[str, Dict[str, float]]:
    """How well each encoder's features (all levels, upsampled) predict the privileged channel of scans it
    never saw: a ridge regression from the features of ``fit_cases`` to their (nnU-Net-normalised)
    privileged channel, scored by R^2 on ``test_cases`` over the brain and over the tumour (label > 0).
    ``encoders`` maps a name to a stock encoder on the limited channels (E_L of a Stage 1, or a random one);
    the name ``"inputs"`` given None uses the limited channels themselves as features."""
    _, split, load = _padded_case_reader(preprocessed_folder, configuration)
    rng = np.random.default_rng(seed)
    rows: Dict[str, Dict[str, list]] = {}
    for part, cases in (("fit", fit_cases), ("test", test_cases)):
        for case in cases:
            x, labels = load(case)
            limited = x[list(split.limited_indices)]
            target = x[split.privileged_indices[0]]
            brain = np.any(limited != 0, axis=0)
            tumour = labels > 0
            idx = np.flatnonzero(brain)
            if len(idx) > max_voxels_per_case:
                idx = np.sort(rng.choice(idx, max_voxels_per_case, replace=False))
            for name, enc in encoders.items():
                feats = limited if enc is None else \
                    _multilevel_features(enc.eval(), torch.from_numpy(limited)[None]).numpy()
                f = feats.reshape(feats.shape[0], -1).T
                r = rows.setdefault(name, {})
                r.setdefault(f"{part}_x", []).append(f[idx])
                r.setdefault(f"{part}_y", []).append(target.reshape(-1)[idx])
                r.setdefault(f"{part}_tumour", []).append(tumour.reshape(-1)[idx])
    out = {}
    for name, r in rows.items():
        xf, yf = np.concatenate(r["fit_x"]), np.concatenate(r["fit_y"])
        xt, yt, tt = np.concatenate(r["test_x"]), np.concatenate(r["test_y"]), np.concatenate(r["test_tumour"])
        out[name] = {"r2_brain": ridge_r2(xf, yf, xt, yt), "r2_tumour": ridge_r2(xf, yf, xt[tt], yt[tt]),
                     "features": int(xf.shape[1])}
    return out


def synthesis_r2(checkpoint, preprocessed_folder: str, configuration: str,
                 cases: List[str]) -> Dict[str, float]:
    """How well a Stage 1 with privileged synthesis (``limitedSynth`` / ``denseSynth``) synthesises the
    privileged channel of ``cases`` (scans it never saw), from their whole unmasked limited channels: R^2
    of its ``syn_privileged`` against the nnU-Net-normalised privileged channel, pooled over the cases,
    over the brain (any limited channel non-zero) and the tumour (label > 0); and the mean synthesised and
    true value in the highest label (ET in the BraTS-like phantoms). Each case is zero-padded to the
    network's stride. ``checkpoint`` is the Stage-1 checkpoint file or what ``read_checkpoint`` read of it."""
    from dante_nnunet.guards import read_checkpoint, strip_ddp_prefix
    from dante_nnunet.networks.builder import build_cross_modal_mae

    cm, split, load = _padded_case_reader(preprocessed_folder, configuration)
    ck = read_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    net = build_cross_modal_mae(cm, split, cross_modal=False, limited_only=True, synthesis=True)
    net.load_state_dict(strip_ddp_prefix(ck["network_weights"]))
    net.eval()
    pred, target, region = [], [], []
    for case in cases:
        x, labels = load(case)
        with torch.no_grad():
            syn = net(torch.from_numpy(x)[None]).syn_privileged[0, 0].numpy()
        brain = np.any(x[list(split.limited_indices)] != 0, axis=0)
        pred.append(syn[brain])
        target.append(x[split.privileged_indices[0]][brain])
        region.append(labels[brain])
    p, t, r = np.concatenate(pred), np.concatenate(target), np.concatenate(region)
    top = r.max()
    return {"r2_brain": r2_score(p, t), "r2_tumour": r2_score(p[r > 0], t[r > 0]),
            "top_label_synthesised": float(p[r == top].mean()), "top_label_true": float(t[r == top].mean()),
            "mse_brain": float(((p - t) ** 2).mean()), "cases": len(cases)}
