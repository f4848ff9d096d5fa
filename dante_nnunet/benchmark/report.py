"""The benchmark's report: results.json, table.md and the figures (Fig. 1 bars, the Fig. 4 lambda sweep,
the Fig. 5 t-SNE), from results and measurements only: nothing here runs nnU-Net."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join, save_json

# the gap closure (DANTE - lower) / (upper - lower) is reported only where upper - lower is at least this
GAP_MIN_DICE = 0.02


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run without a display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def build_results(cfg: dict, seeds: Sequence[Optional[int]], regions: List[str],
                  metrics: Dict[str, Dict[Optional[int], dict]], dataset_id: int, times: Dict[str, float]) -> dict:
    """results.json's content. ``metrics[method][seed]`` is one run's ``dante_nnunet evaluate`` output;
    ``seeds`` ``[None]`` for one unseeded run per method."""
    seeded = list(seeds) != [None]
    methods = {}
    for m in cfg["methods"]:
        runs = metrics[m["name"]]
        if not runs:   # a partial report: this method has not run yet
            continue
        entry = {"trainer": m["trainer"], "inputs": m.get("inputs", "limited")}
        if "fold" in m:
            entry["fold"] = str(m["fold"])
        if m.get("stage1"):
            entry["stage1"] = m["stage1"]
        if m.get("pseudo_labels"):
            entry["pseudo_labels"] = m["pseudo_labels"]
        if m.get("teach"):   # the gated recipe: its block and, per seed, what the gate chose and why
            entry["teach"] = m["teach"]
            entry["gate"] = {str(seed): runs[seed]["gate"] for seed in runs if runs[seed].get("gate")}
        if seeded:
            entry.update(summarize_seeds({str(seed): runs[seed]["mean"] for seed in seeds if seed in runs}, regions))
        else:
            entry["mean"] = runs[None]["mean"]
        methods[m["name"]] = entry
    if seeded:
        lower = methods[cfg["lower"]]["per_seed"]
        for name, entry in methods.items():
            if name != cfg["lower"] and entry["inputs"] == "limited":
                entry["vs_lower"] = paired_difference(entry["per_seed"], lower, regions)
    gap = None
    if cfg.get("upper") in methods and cfg.get("dante") in methods:
        lo, up, da = (methods[cfg[k]]["mean"] for k in ("lower", "upper", "dante"))
        gap = {}
        for r in regions:   # undefined where the privileged channels add (almost) nothing: n/a
            d = up[r]["dice"] - lo[r]["dice"]
            gap[r] = (da[r]["dice"] - lo[r]["dice"]) / d if d >= GAP_MIN_DICE else None
    results = {"name": cfg["name"], "dataset_id": dataset_id, "configuration": cfg["configuration"],
               "fold": str(cfg.get("fold", 0)), "regions": regions, "seeds": list(seeds) if seeded else None,
               "methods": methods, "gap_closure": gap, "seconds": times}
    if seeded:
        results["paired"] = methods[cfg["dante"]].get("vs_lower") if cfg.get("dante") in methods else None
        results["lower"] = cfg["lower"]
    return results


def write_report(results: dict, out: str) -> None:
    """``out``/results.json, table.md, dice_bars.png."""
    save_json(results, join(out, "results.json"))
    with open(join(out, "table.md"), "w") as fh:
        fh.write(results_table(results))
    bar_chart(results, join(out, "dice_bars.png"))


def summarize_seeds(per_seed: Dict[str, dict], regions: List[str]) -> dict:
    """``per_seed[seed][region]`` (one run's test-case means) -> ``{"per_seed": seed -> region -> {dice, hd95},
    "mean": region -> {dice, hd95: means over seeds; dice_std, hd95_std: SDs over seeds (n - 1; 0 for one
    seed)}}``."""
    out = {"per_seed": {s: {r: {"dice": m[r]["dice"], "hd95": m[r]["hd95"]} for r in regions}
                        for s, m in per_seed.items()}, "mean": {}}
    for r in regions:
        row = {}
        for k in ("dice", "hd95"):
            v = np.array([m[r][k] for m in per_seed.values()], dtype=float)
            row[k] = float(v.mean())
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out["mean"][r] = row
    return out


def paired_difference(a: Dict[str, dict], b: Dict[str, dict], regions: List[str]) -> dict:
    """Per region, the Dice difference a - b over the seeds both ran (paired by seed): mean, its standard
    error (SD / sqrt(n), None for one seed) and n."""
    seeds = [s for s in a if s in b]
    out = {}
    for r in regions:
        d = np.array([a[s][r]["dice"] - b[s][r]["dice"] for s in seeds], dtype=float)
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
        out[r] = {"mean": float(d.mean()), "se": se, "n": len(d)}
    return out


def results_table(results: dict) -> str:
    regions = results["regions"]
    head = "| Method | inputs at test | " + " | ".join(f"{r} Dice | {r} HD95 (mm)" for r in regions) + " |\n"
    head += "| --- | --- |" + " --- | --- |" * len(regions) + "\n"
    rows = []
    for name, m in results["methods"].items():
        cells = [f"{m['mean'][r]['dice'] * 100:.1f} ± {m['mean'][r]['dice_std'] * 100:.1f} | "
                 f"{m['mean'][r]['hd95']:.2f}" for r in regions]
        rows.append(f"| {name} (`{m['trainer']}`) | {m['inputs']} | " + " | ".join(cells) + " |")
    if results["gap_closure"] is not None:
        gap = " | ".join(("n/a" if g is None else f"{g * 100:.0f}%") + " | -" for g in
                         (results["gap_closure"][r] for r in regions))
        rows.append(f"| gap closed by DANTE: (DANTE - lower) / (upper - lower), Dice | | {gap} |")
    seeds = results.get("seeds")
    partial = results.get("partial")
    if partial:
        text_partial = ("\n\n**Partial**: the run is not finished; seeds per method: "
                        + "; ".join(f"{n} {', '.join(s) or 'none'}" for n, s in partial.items()) + ".")
        earlier = results.get("earlier_runs")
        if earlier and earlier["runs"]:
            text_partial += (f" Taken from an earlier results.json ({earlier['file']}): "
                             + "; ".join(f"{n} {', '.join(s)}" for n, s in earlier["runs"].items()) + ".")
    which = "the seeds each method has run (listed below)" if partial else f"{len(seeds) if seeds else 0} training seeds"
    spread = (f"mean ± SD over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) of each run's mean over "
              f"the test cases" if seeds and not partial else
              f"mean ± SD over {which} of each run's mean over the test cases" if seeds else "mean ± SD over test cases")
    text = head + "\n".join(rows) + (f"\n\nDice in %, {spread}; HD95 mean in mm. The gap closure is n/a where the "
                                     f"upper bound is less than {GAP_MIN_DICE * 100:.0f} Dice points above the lower "
                                     f"bound.{text_partial if partial else ''}\n")
    paired = {n: m["vs_lower"] for n, m in results["methods"].items() if "vs_lower" in m}
    if paired:
        text += (f"\nPaired difference to the lower bound ({results['lower']}), Dice points: mean ± standard error "
                 f"over {'the seeds both have run' if partial else f'the {len(seeds)} seeds'} (each seed's run minus the lower "
                 f"bound's run of the same seed).\n\n")
        text += "| Method | " + " | ".join(f"{r}" for r in regions) + " |\n| --- |" + " --- |" * len(regions) + "\n"
        for name, d in paired.items():
            cells = [f"{d[r]['mean'] * 100:+.1f} ± {d[r]['se'] * 100:.1f}" if d[r]["se"] is not None
                     else f"{d[r]['mean'] * 100:+.1f}" for r in regions]
            text += f"| {name} | " + " | ".join(cells) + " |\n"
    return text


def bar_chart(results: dict, path: str) -> None:
    plt = _pyplot()
    regions, methods = results["regions"], list(results["methods"])
    fig, ax = plt.subplots(figsize=(3.5 + 1.3 * len(regions) * max(1, len(methods)) / 3, 3.6))
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        vals = [results["methods"][name]["mean"][r]["dice"] * 100 for r in regions]
        err = [results["methods"][name]["mean"][r]["dice_std"] * 100 for r in regions] if results.get("seeds") \
            else None   # SD over seeds; an SD over test cases would not be comparable between methods
        ax.bar(np.arange(len(regions)) + i * width, vals, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(np.arange(len(regions)) + 0.4 - width / 2)
    ax.set_xticklabels(regions)
    ax.set_ylabel("Dice (%)")
    ax.set_title(f"{results['name']}: test Dice")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_report(rows: List[dict], out: str) -> None:
    """``rows``: one per sweep point (``lambda``, ``value``, ``trainer``, ``mean``: region -> test metrics) ->
    ``out``/sweep.json, sweep.md, sweep.png (Fig. 4)."""
    save_json(rows, join(out, "sweep.json"))
    regions = list(rows[0]["mean"])
    lines = ["| lambda | value | trainer | " + " | ".join(f"{r} Dice" for r in regions) + " |",
             "| --- | --- | --- |" + " --- |" * len(regions)]
    lines += [f"| {r['lambda']} | {r['value']:g} | `{r['trainer']}` | " +
              " | ".join(f"{r['mean'][g]['dice'] * 100:.1f}" for g in regions) + " |" for r in rows]
    with open(join(out, "sweep.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, lam in zip(axes, ("lambda_pib", "lambda_align")):
        pts = sorted((r for r in rows if r["lambda"] == lam), key=lambda r: r["value"])
        for g in regions:
            ax.plot([r["value"] for r in pts], [r["mean"][g]["dice"] * 100 for r in pts], "o-", label=g)
        ax.set_xlabel({"lambda_pib": "lambda1 (PIB)", "lambda_align": "lambda2 (alignment)"}[lam])
        ax.set_ylabel("test Dice (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(join(out, "sweep.png"), dpi=120)
    plt.close(fig)


def tsne_figure(rows: Dict[str, List[np.ndarray]], out_dir: str, num_cases: int, points_per_encoder: int = 600,
                seed: int = 0) -> str:
    """t-SNE of encoder features (Fig. 5): ``rows[encoder]`` lists (voxels, channels) arrays, one per case;
    ``points_per_encoder`` voxels drawn per encoder. Writes ``out_dir``/tsne.png and returns its path."""
    from sklearn.manifold import TSNE
    rng = np.random.default_rng(seed)
    X, labels = [], []
    for name, parts in rows.items():
        f = np.concatenate(parts)
        take = rng.choice(len(f), size=min(points_per_encoder, len(f)), replace=False)
        X.append(f[take])
        labels += [name] * len(take)
    emb = TSNE(n_components=2, random_state=seed, init="pca", perplexity=30).fit_transform(np.concatenate(X))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    labels = np.array(labels)
    for name, colour in (("Z_L", "tab:blue"), ("Z_A", "tab:orange"), ("Z_P", "tab:green")):
        sel = labels == name
        ax.scatter(emb[sel, 0], emb[sel, 1], s=4, c=colour, label=name, alpha=0.7)
    ax.set_title(f"t-SNE of deepest encoder features ({num_cases} cases)")
    ax.legend(markerscale=3)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    out = join(out_dir, "tsne.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
