"""Stage-1 diagnostics for a benchmark config with Stage-1 blocks (issue 25): for one seed, how well each
pre-trained E_L predicts the privileged channel of labelled scans that no Stage 1 saw (a ridge probe on all
encoder levels, R^2 over the brain and over the tumour), beside a randomly initialised E_L and the limited
channels themselves; for a Stage 1 with privileged synthesis, R^2 of its own synthesis on those scans; and
each Stage 1's reconstruction terms (Eqs. 7-9, synthesis) at its first and last epoch.

    .venv/bin/python scripts/probe_stage1.py --config configs/phantom_unlabelled.json --seed 0 [--json OUT]

Run after the benchmark has trained the Stage-1 blocks of that seed (it reads the runner's folders)."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json

from dante_nnunet.benchmark import Runner, load_config
from dante_nnunet.benchmark.config import stage1_blocks
from dante_nnunet.benchmark.features import privileged_probe, synthesis_r2
from dante_nnunet.config import ChannelSplit
from dante_nnunet.guards import read_checkpoint
from dante_nnunet.losses.reconstruction import RECONSTRUCTION_TERMS
from dante_nnunet.networks.builder import build_stock_network
from dante_nnunet.training.transfer import load_stage1_limited_encoder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="results")
    p.add_argument("--cases", type=int, default=32, help="labelled cases to fit the probe on (as many to test)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    runner = Runner(cfg, a.results)
    pre = join(runner.env["nnUNet_preprocessed"], os.path.basename(runner.raw_folder()))
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    cm = PlansManager(join(pre, "nnUNetPlans.json")).get_configuration(cfg["configuration"])
    split = ChannelSplit.from_dataset_json(load_json(join(pre, "dataset.json")), pre)
    n_lim = len(split.limited_indices)
    torch.manual_seed(a.seed)
    encoders = {"inputs (limited channels)": None,
                "random E_L": build_stock_network(cm, n_lim, 1, False).encoder}
    stage1, synthesis = {}, {}
    for block in stage1_blocks(cfg):
        ck_file = runner.stage1_checkpoint(a.seed, block)
        if not isfile(ck_file):
            print(f"stage1 {block['name']!r}: {ck_file} not trained yet, left out", file=sys.stderr)
            continue
        ck = read_checkpoint(ck_file)   # read once: E_L, the synthesis check and the log come from it
        net = build_stock_network(cm, n_lim, 1, False)
        load_stage1_limited_encoder(net, ck)
        encoders[f"E_L of stage1 {block['name']!r}"] = net.encoder
        if ck.get("dante_stage1", {}).get("privileged_synthesis"):
            synthesis[block["name"]] = ck
        log = ck["logging"]
        stage1[block["name"]] = {f"{s}_{t}": [round(float(log[f"{s}_{t}"][0]), 4), round(float(log[f"{s}_{t}"][-1]), 4)]
                                 for s in ("train", "val") for t in RECONSTRUCTION_TERMS if f"{s}_{t}" in log}
    folds = load_json(join(pre, "splits_final.json"))
    cases = max(folds, key=lambda f: len(f["train"]))["train"]
    if len(cases) < 2 * a.cases:
        raise SystemExit(f"{pre}: {len(cases)} training cases, fewer than 2 x --cases {a.cases}")
    probe = privileged_probe(encoders, pre, cfg["configuration"], cases[:a.cases], cases[a.cases:2 * a.cases],
                             seed=a.seed)
    print("| features | R^2 brain | R^2 tumour | features |\n| --- | --- | --- | --- |")
    for name, r in probe.items():
        print(f"| {name} | {r['r2_brain']:.3f} | {r['r2_tumour']:.3f} | {r['features']} |")
    for name, ck in list(synthesis.items()):   # the synthesis Stage 1s' own output on the probe's test scans
        synthesis[name] = synthesis_r2(ck, pre, cfg["configuration"], cases[a.cases:2 * a.cases])
        print(f"stage1 {name!r} synthesis of the privileged channel: " +
              ", ".join(f"{k} {v:.3f}" for k, v in synthesis[name].items() if k != "cases"))
    for name, terms in stage1.items():
        print(f"stage1 {name!r} first -> last epoch: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in terms.items()
                                                                   if not any(np.isnan(v))))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"seed": a.seed, "probe": probe, "stage1_terms": stage1, "synthesis": synthesis}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
