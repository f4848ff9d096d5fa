"""The benchmark's optional figures: the lambda1 / lambda2 sweep (paper Fig. 4) and the t-SNE of the
three encoders' features (Fig. 5). Both run on a ``benchmark.Runner`` after its main steps."""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.training.sweep import sweep_trainer_name


def sweep_points(sweep_cfg: dict) -> List[dict]:
    """One lambda at a time around the trainer's defaults, as in Fig. 4: ``<trainer>_pib<l1>`` for each
    lambda1 and ``<trainer>_align<l2>`` for each lambda2."""
    base = sweep_cfg["trainer"]
    pts = [{"lambda": "lambda_pib", "value": float(v), "trainer": sweep_trainer_name(base, lambda_pib=v)}
           for v in sweep_cfg.get("lambda_pib", [])]
    pts += [{"lambda": "lambda_align", "value": float(v), "trainer": sweep_trainer_name(base, lambda_align=v)}
            for v in sweep_cfg.get("lambda_align", [])]
    if not pts:
        raise ValueError("the config's 'sweep' block lists no lambda_pib or lambda_align values")
    return pts


def run_sweep(runner, test: dict) -> Dict:
    sw = runner.cfg.get("sweep")
    if not sw:
        raise ValueError(f"config {runner.cfg['name']!r} has no 'sweep' block")
    rows = []
    for p in sweep_points(sw):
        m = runner.step_method({"name": f"sweep {p['trainer']}", "trainer": p["trainer"]}, test)
        rows.append({**p, "mean": m["mean"]})
    save_json(rows, join(runner.out, "sweep.json"))
    regions = list(rows[0]["mean"])
    lines = ["| lambda | value | trainer | " + " | ".join(f"{r} Dice" for r in regions) + " |",
             "| --- | --- | --- |" + " --- |" * len(regions)]
    lines += [f"| {r['lambda']} | {r['value']:g} | `{r['trainer']}` | " +
              " | ".join(f"{r['mean'][g]['dice'] * 100:.1f}" for g in regions) + " |" for r in rows]
    with open(join(runner.out, "sweep.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, lam in zip(axes, ("lambda_pib", "lambda_align")):
        pts = sorted((r for r in rows if r["lambda"] == lam), key=lambda r: r["value"])
        for g in regions:
            ax.plot([r["value"] for r in pts], [r["mean"][g]["dice"] * 100 for r in pts], "o-", label=g)
        ax.set_xlabel({"lambda_pib": "lambda1 (PIB)", "lambda_align": "lambda2 (alignment)"}[lam])
        ax.set_ylabel("test Dice (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(join(runner.out, "sweep.png"), dpi=120)
    plt.close(fig)
    return {"points": rows}


def _dante_model(runner):
    """(DualPathwayNet with the trained weights, ChannelSplit, configuration manager, preprocessed folder)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.networks.builder import build_dual_pathway_network

    method = next(m for m in runner.cfg["methods"] if m["name"] == runner.cfg["dante"])
    trainer = runner.seeded(method["trainer"], runner.seeds[0])   # the first seed's model when seeded
    ck_file = join(runner.results_folder(trainer), f"fold_{runner.fold}", "checkpoint_final.pth")
    if not isfile(ck_file):
        raise FileNotFoundError(f"t-SNE needs the trained DANTE model: {ck_file} does not exist")
    name = os.path.basename(runner.raw_folder())
    pre = join(runner.env["nnUNet_preprocessed"], name)
    pm = PlansManager(join(pre, "nnUNetPlans.json"))
    dj = load_json(join(pre, "dataset.json"))
    cm = pm.get_configuration(runner.configuration)
    split = ChannelSplit.from_dataset_json(dj, join(pre, "dataset.json"))
    net = build_dual_pathway_network(cm, split, pm.get_label_manager(dj).num_segmentation_heads, False)
    ck = torch.load(ck_file, map_location="cpu", weights_only=False)
    net.load_state_dict(ck["dante_network_weights"])
    return net.eval(), split, cm, join(pre, cm.data_identifier)


def encoder_features(net, x_full: torch.Tensor, level: int = -1) -> Dict[str, torch.Tensor]:
    """Z_L, Z_A, Z_P at one encoder level (default: the deepest) as (voxels, channels) rows."""
    with torch.no_grad():
        feats = {"Z_L": net.encoder_l(net.select_limited(x_full))[level], "Z_A": net.encoder_a(x_full)[level],
                 "Z_P": net.encoder_p(x_full)[level]}
    return {k: v.movedim(1, -1).reshape(-1, v.shape[1]) for k, v in feats.items()}


def tsne_figure(runner, num_cases: int = 4, points_per_encoder: int = 600, seed: int = 0) -> str:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from sklearn.manifold import TSNE

    net, split, cm, data_folder = _dante_model(runner)
    ds = infer_dataset_class(data_folder)(data_folder)
    keys = sorted(ds.identifiers)[:num_cases]
    rng = np.random.default_rng(seed)
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
    X, labels = [], []
    for name, parts in rows.items():
        f = np.concatenate(parts)
        take = rng.choice(len(f), size=min(points_per_encoder, len(f)), replace=False)
        X.append(f[take])
        labels += [name] * len(take)
    emb = TSNE(n_components=2, random_state=seed, init="pca", perplexity=30).fit_transform(np.concatenate(X))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    labels = np.array(labels)
    for name, colour in (("Z_L", "tab:blue"), ("Z_A", "tab:orange"), ("Z_P", "tab:green")):
        sel = labels == name
        ax.scatter(emb[sel, 0], emb[sel, 1], s=4, c=colour, label=name, alpha=0.7)
    ax.set_title(f"t-SNE of deepest encoder features ({len(keys)} cases)")
    ax.legend(markerscale=3)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    out = join(runner.out, "tsne.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    runner.log(f"t-SNE: {out}")
    return out
