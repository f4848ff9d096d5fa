"""The embedded default job: synthetic 4-channel data -> plan -> DANTE training -> prediction on
limited-only scans -> export -> plugin-free prediction -> Dice, all through the stock nnUNetv2_*
commands on the CPU."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.evaluation import evaluate_folders
from dante_nnunet.synthetic import write_synthetic_dataset

TRAINER_FOLDER = join(os.path.dirname(os.path.abspath(__file__)), "nnunet_trainers")


def ext_trainer_value(existing: Optional[str] = None) -> str:
    """nnUNet_extTrainer with this package's trainer folder first and the existing entries kept."""
    parts = [p for p in (existing or "").split(os.pathsep) if p and os.path.abspath(p) != TRAINER_FOLDER]
    return os.pathsep.join([TRAINER_FOLDER] + parts)


def _check_patch_fits_strides(plans_file: str, name: str, base: str, patch: List[int], strides) -> None:
    """The U-Net's skips only line up when every patch axis is a multiple of the product of the strides
    along it; otherwise training fails at the first decoder concatenation, after preprocessing and
    data loading. Refuse up front, with the nearest sizes that fit."""
    dim = len(patch)
    per_stage = [[s] * dim if isinstance(s, int) else list(s) for s in strides]
    if any(len(s) != dim for s in per_stage):
        raise ValueError(f"{plans_file}: patch_size {patch} for {name!r} has {dim} axes; {base}'s network has "
                         f"{len(per_stage[0])}")
    total = [int(np.prod([s[a] for s in per_stage])) for a in range(dim)]
    if any(p % t for p, t in zip(patch, total)):
        fit = [max(t, int(round(p / t)) * t) for p, t in zip(patch, total)]
        raise ValueError(f"{plans_file}: patch_size {patch} for {name!r} does not fit {base}'s network: each axis "
                         f"must be a multiple of the total stride {total}; nearest that fits: {fit}")


def add_configuration(plans_file: str, name: str, base: str = "3d_fullres",
                      features_per_stage: Optional[Union[int, Sequence[int]]] = None,
                      patch_size: Optional[Sequence[int]] = None) -> None:
    """Add a configuration that ``inherits_from`` ``base`` (same preprocessed data) with other
    widths and patch size; refuse to change an existing configuration of that name.
    ``features_per_stage`` as one int is the first stage's width, doubled per stage up to 320 (as
    nnU-Net's widths grow)."""
    if not os.path.isfile(plans_file):
        raise FileNotFoundError(f"{plans_file} does not exist: plan and preprocess the dataset first "
                                f"(nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres)")
    plans = load_json(plans_file)
    cfgs = plans["configurations"]
    if base not in cfgs:
        raise KeyError(f"{plans_file}: no configuration {base!r} to inherit from")
    arch = json.loads(json.dumps(cfgs[base]["architecture"]))
    new: Dict = {"inherits_from": base}
    n = arch["arch_kwargs"]["n_stages"]
    if isinstance(features_per_stage, int):
        features_per_stage = [min(features_per_stage * 2 ** i, 320) for i in range(n)]
    if features_per_stage is not None:
        if len(features_per_stage) != n:
            raise ValueError(f"{base} has {n} stages; got {len(features_per_stage)} widths {list(features_per_stage)}")
        arch["arch_kwargs"]["features_per_stage"] = list(features_per_stage)
        new["architecture"] = arch
    if patch_size is not None:
        _check_patch_fits_strides(plans_file, name, base, list(patch_size), arch["arch_kwargs"]["strides"])
        new["patch_size"] = list(patch_size)
    if name in cfgs:
        if cfgs[name] != new:
            raise ValueError(f"{plans_file}: configuration {name!r} exists with other settings")
        return
    cfgs[name] = new
    save_json(plans, plans_file, sort_keys=False)


# the lines of nnU-Net's output the demo echoes while a step runs (all of it goes to the step's log)
_PROGRESS = re.compile(r"Epoch \d+\s*$|train_loss|val_loss|Pseudo dice|Epoch time|Validation Dice|regularisers on|"
                       r"WARNING|Training done|Fingerprint|Preprocessing|Predicting|exported")


def _run(cmd: List[str], env: Dict[str, str], log: str) -> float:
    """Run a step: its whole output into ``log`` (named before it starts), its progress lines echoed."""
    t0 = time.time()
    print(f"$ {' '.join(cmd)}\n  log: {log}", flush=True)
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, env=dict(env, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in p.stdout:
            fh.write(line)
            if _PROGRESS.search(line):
                print("    " + line.rstrip()[:150], flush=True)
        p.wait()
    if p.returncode != 0:
        with open(log) as fh:
            tail = fh.read()[-4000:]
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\n--- last output ({log}) ---\n{tail}")
    dt = time.time() - t0
    print(f"  done in {dt:.1f} s", flush=True)
    return dt


def run_demo(workdir: str, dataset_id: int = 990, trainer: str = "DANTETrainer_demo",
             configuration: str = "3d_demo", num_train: int = 10, num_test: int = 4, seed: int = 0) -> dict:
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and os.listdir(workdir):
        raise FileExistsError(f"{workdir} exists and is not empty; choose a new --workdir or remove it")
    bindir = os.path.dirname(sys.executable)
    paths = {k: join(workdir, k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "logs")}
    for p in paths.values():
        os.makedirs(p)
    env = dict(os.environ, nnUNet_raw=paths["nnUNet_raw"], nnUNet_preprocessed=paths["nnUNet_preprocessed"],
               nnUNet_results=paths["nnUNet_results"], nnUNet_extTrainer=ext_trainer_value(),
               nnUNet_n_proc_DA=os.environ.get("nnUNet_n_proc_DA", "1"),
               nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "1"))
    logs = paths["logs"]
    times: Dict[str, float] = {}

    raw = write_synthetic_dataset(paths["nnUNet_raw"], dataset_id, num_train=num_train, num_test=num_test, seed=seed)
    dataset_name = os.path.basename(raw)
    times["plan_and_preprocess"] = _run(
        [join(bindir, "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres", "-np", "1",
         "--verify_dataset_integrity"], env, join(logs, "plan.log"))
    add_configuration(join(paths["nnUNet_preprocessed"], dataset_name, "nnUNetPlans.json"), configuration,
                      features_per_stage=[8, 16, 32, 64], patch_size=[16, 16, 16])
    times["train"] = _run([join(bindir, "nnUNetv2_train"), str(dataset_id), configuration, "0", "-tr", trainer,
                           "-device", "cpu"], env, join(logs, "train.log"))
    pred_dante = join(workdir, "pred_dante")
    times["predict"] = _run([join(bindir, "nnUNetv2_predict"), "-i", join(raw, "imagesTs"), "-o", pred_dante,
                             "-d", str(dataset_id), "-c", configuration, "-tr", trainer, "-f", "0", "-device", "cpu"],
                            env, join(logs, "predict.log"))
    export_root = join(workdir, "exported")
    times["export"] = _run([join(bindir, "dante_nnunet"), "export", "-d", str(dataset_id), "-c", configuration,
                            "-tr", trainer, "-f", "0", "-o", export_root], env, join(logs, "export.log"))
    plain_env = dict(env, nnUNet_results=export_root)
    plain_env.pop("nnUNet_extTrainer")
    pred_plain = join(workdir, "pred_plain")
    times["predict_plain"] = _run([join(bindir, "nnUNetv2_predict"), "-i", join(raw, "imagesTs"), "-o", pred_plain,
                                   "-d", str(dataset_id), "-c", configuration, "-f", "0", "-device", "cpu"],
                                  plain_env, join(logs, "predict_plain.log"))

    identical = all(
        np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(join(pred_dante, f))),
                       sitk.GetArrayFromImage(sitk.ReadImage(join(pred_plain, f))))
        for f in sorted(os.listdir(join(raw, "labelsTs"))))
    metrics = evaluate_folders(join(raw, "labelsTs"), pred_dante, load_json(join(raw, "dataset.json")))
    dice = {r: round(m["dice"], 4) for r, m in metrics["mean"].items()}
    hd95 = {r: round(m["hd95"], 2) for r, m in metrics["mean"].items()}
    val_summary = join(paths["nnUNet_results"], dataset_name, f"{trainer}__nnUNetPlans__{configuration}", "fold_0")
    val = {k: load_json(join(val_summary, *p, "validation", "summary.json"))["foreground_mean"]["Dice"]
           for k, p in (("limited", ()), ("full_teacher", ("full_pathway",)))
           if isfile(join(val_summary, *p, "validation", "summary.json"))}
    outputs = {"predictions_dante": pred_dante, "predictions_plain_nnunet": pred_plain,
               "exported_model": join(export_root, dataset_name, f"nnUNetTrainer__nnUNetPlans__{configuration}"),
               "training_curves": join(val_summary, "progress.png"),
               "feature_diagnostics": join(val_summary, "diagnostics.png"), "logs": logs,
               "summary": join(workdir, "summary.json")}
    summary = {"workdir": workdir, "trainer": trainer, "configuration": configuration, "seconds": times,
               "test_dice_limited_only_inputs": dice, "test_hd95_mm_limited_only_inputs": hd95,
               "validation_mean_dice": val,
               "plain_nnunet_prediction_identical": identical, "outputs": outputs}
    save_json(summary, join(workdir, "summary.json"))
    print(json.dumps(summary, indent=2))
    if not identical:
        raise RuntimeError("the exported plain nnU-Net model predicted differently from the DANTE model")
    return summary
