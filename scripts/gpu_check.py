#!/usr/bin/env python
"""Everything a first CUDA device should tell us, in one run of at most about 8 minutes.

    python scripts/gpu_check.py --out DIR              # on a machine with CUDA
    python scripts/gpu_check.py --out DIR --dry-run    # the same steps at a tiny size on the CPU (tests)

Writes ``DIR/gpu_check.json`` (after every step, so a killed run keeps what it measured) and
``DIR/gpu_check.md`` (one table). Steps, each timed, each failure recorded and the next step run:

1. ``pipeline_compiled`` / ``pipeline_eager``: the demo's job (``dante_nnunet.jobs.demo.run_demo``: phantom ->
   ``nnUNetv2_plan_and_preprocess`` -> ``nnUNetv2_train -tr DANTETrainer_gpuCheck -device cuda`` ->
   ``nnUNetv2_predict`` on limited-only scans -> ``dante_nnunet export`` -> plugin-free predict -> Dice)
   at a BraTS-sized configuration (phantom 128^3, widths 32..320, patch 128^3), once compiled as nnU-Net
   does by default and once with ``nnUNet_compile=f``; epoch times from the training log.
2. ``speed_eager``: ``scripts/bench_speed.py --device cuda --configuration brats`` with
   ``nnUNet_compile=f``: Stage-2 and Stage-1 step times against stock under AMP, FLOP ratios, deployed
   inference against stock, ``torch.cuda.max_memory_allocated`` per trainer.
3. ``speed_compiled``: stock, DANTE and Stage-1 train steps with the networks compiled as nnU-Net compiles
   them (``nnUNet_compile`` unset), same batch, alternated.
4. ``syncs``: host synchronisations per training step (``torch.cuda.set_sync_debug_mode("warn")``, warnings
   counted over steps after warm-up) for stock, DANTE and Stage 1.
5. ``memory``: max allocated per trainer next to the estimate of ``scripts/bench_memory.py`` committed in
   ``docs/results/memory_estimate.json`` (its tracked peak, and with its margin).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
ESTIMATE = os.path.join(ROOT, "docs", "results", "memory_estimate.json")
BUDGET_S = 8 * 60
SIZES = {   # phantom, first width, patch, bench_speed configuration, timed and warm-up steps, cases (5-fold: >= 5)
    "gpu": {"shape": (128, 128, 128), "width": 32, "patch": (128, 128, 128), "speed": "brats", "repeats": 5,
            "warmup": 2, "num_train": 5, "num_test": 2},
    "dry": {"shape": (32, 32, 32), "width": 8, "patch": (16, 16, 16), "speed": "tiny", "repeats": 1,
            "num_train": 5, "num_test": 1, "warmup": 1},
}
TRAINER = "DANTETrainer_gpuCheck"


class Check:
    def __init__(self, out: str, dry: bool):
        self.out, self.dry = out, dry
        self.size = SIZES["dry" if dry else "gpu"]
        self.device = "cpu" if dry else "cuda"
        self.t0 = time.perf_counter()
        self.result = {"dry_run": dry, "device": self.device, "steps": {}}

    def save(self) -> None:
        path = os.path.join(self.out, "gpu_check.json")
        with open(path + ".part", "w") as fh:
            json.dump(self.result, fh, indent=2, default=str)
        os.replace(path + ".part", path)

    def step(self, name: str, fn) -> None:
        elapsed = time.perf_counter() - self.t0
        if not self.dry and elapsed > BUDGET_S:   # the dry run checks every step, however slow the CPU
            self.result["steps"][name] = {"status": "skipped", "why": f"{elapsed:.0f} s spent of {BUDGET_S}"}
        else:
            t = time.perf_counter()
            try:
                self.result["steps"][name] = {"status": "ok", **fn()}
            except Exception as e:   # recorded; the next step still runs
                self.result["steps"][name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                              "traceback": traceback.format_exc()[-4000:]}
            self.result["steps"][name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"[gpu_check] {name}: {self.result['steps'][name]['status']} "
              f"({self.result['steps'][name].get('seconds', 0)} s)", flush=True)
        self.save()


def environment(device: str) -> dict:
    import torch
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    info["nnunetv2"] = _dist_version("nnunetv2")
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", total_memory_gib=round(p.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def epoch_times(log_folder: str) -> list:
    """nnU-Net's 'Epoch time: X s' lines of the training log."""
    import re
    times = []
    for f in sorted(os.listdir(log_folder)):
        if f.startswith("training_log") and f.endswith(".txt"):
            with open(os.path.join(log_folder, f)) as fh:
                times += [float(x) for x in re.findall(r"Epoch time: ([0-9.]+) s", fh.read())]
    return times


def pipeline(check: Check, compiled: bool) -> dict:
    from dante_nnunet.jobs.demo import run_demo
    s = check.size
    workdir = os.path.join(check.out, "pipeline_" + ("compiled" if compiled else "eager"))
    env = {} if compiled else {"nnUNet_compile": "f"}
    summary = run_demo(workdir, dataset_id=980 if compiled else 981, trainer=TRAINER, configuration="3d_check",
                       num_train=s["num_train"], num_test=s["num_test"], device=check.device, shape=s["shape"],
                       features_per_stage=s["width"], patch_size=s["patch"], extra_env=env)
    fold = os.path.join(workdir, "nnUNet_results")
    logs = [os.path.join(r, "") for r, _, files in os.walk(fold) if any(f.startswith("training_log") for f in files)]
    times = epoch_times(logs[0]) if logs else []
    return {"nnUNet_compile": "default" if compiled else "f", "seconds_by_step": summary["seconds"],
            "epoch_times_s": times, "dice_limited_only": summary["test_dice_limited_only_inputs"],
            "plain_nnunet_prediction_identical": summary["plain_nnunet_prediction_identical"]}


def speed_eager(check: Check) -> dict:
    out = os.path.join(check.out, "bench_speed.json")
    s = check.size
    cmd = [sys.executable, os.path.join(HERE, "bench_speed.py"), "--json", out, "--configuration", s["speed"],
           "--device", check.device, "--repeats", str(s["repeats"]), "--warmup", str(s["warmup"])]
    p = subprocess.run(cmd, env=dict(os.environ, nnUNet_compile="f"), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"bench_speed failed:\n{p.stderr[-3000:]}")
    with open(out) as fh:
        return json.load(fh)


def _trainers(check: Check, names):
    import bench_speed
    out = {}
    for name in names:
        t = bench_speed.make_trainer(bench_speed.trainer_class(name), check.size["speed"], check.device)
        bench_speed.regularisers_on(t)
        out[name] = (t, bench_speed.make_batch(t))
    return out


NAMES = ("nnUNetTrainer", "DANTETrainer", "DANTEPretrainTrainer")


def speed_compiled(check: Check) -> dict:
    """nnU-Net compiles in ``initialize`` on CUDA unless nnUNet_compile says no: the trainers here are
    built in this process, whose environment leaves it unset."""
    import bench_speed
    os.environ.pop("nnUNet_compile", None)
    trainers = _trainers(check, NAMES)
    compiled = {n: type(t.network).__name__ for n, (t, _) in trainers.items()}
    times = bench_speed.time_alternating({n: (lambda t=t, b=b: t.train_step(b)) for n, (t, b) in trainers.items()},
                                         check.device, 3, check.size["repeats"])
    return {"times_s": times, "network_types": compiled,
            "train_step_ratio": times["DANTETrainer"] / times["nnUNetTrainer"],
            "pretrain_step_ratio": times["DANTEPretrainTrainer"] / times["nnUNetTrainer"]}


def syncs(check: Check) -> dict:
    import torch
    os.environ["nnUNet_compile"] = "f"
    trainers = _trainers(check, NAMES)
    counts = {}
    for name, (t, b) in trainers.items():
        for _ in range(2):
            t.train_step(b)   # warm-up: lazy initialisations may synchronise once
        steps = 3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if check.device == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    t.train_step(b)
            finally:
                if check.device == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        msgs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
        counts[name] = {"per_step": len(msgs) / steps, "first": msgs[:3]}
    return {"syncs": counts, "counted": check.device == "cuda"}


def memory(check: Check) -> dict:
    speed = check.result["steps"].get("speed_eager", {})
    measured = {k: v.get("cuda_max_allocated_mb") for k, v in speed.get("memory_mb", {}).items()}
    est = {}
    if os.path.isfile(ESTIMATE):
        with open(ESTIMATE) as fh:
            e = json.load(fh)
        plain = next((c for c in e.get("configs", []) if c["name"] == "brats_plainconv"), None)
        if plain:
            est = {"nnUNetTrainer": plain.get("stock_tracked_gib"), "DANTETrainer": plain.get("dante_tracked_gib"),
                   "DANTETrainer_checkpointing": plain.get("dante_checkpointing_tracked_gib"),
                   "DANTEPretrainTrainer": plain.get("stage1_tracked_gib"), "margin_gib": plain.get("margin_gib")}
    rows = {}
    for k, mb in measured.items():
        rows[k] = {"max_allocated_gib": None if mb is None else round(mb / 1024, 3), "estimate_tracked_gib": est.get(k)}
        if mb is not None and est.get(k):
            rows[k]["measured_over_tracked"] = round(mb / 1024 / est[k], 3)
    return {"rows": rows, "estimate_file": ESTIMATE if est else None, "margin_gib": est.get("margin_gib"),
            "note": "estimate at brats_plainconv (128^3, batch 2, 32..320); meaningful on CUDA at the gpu size"}


def markdown(result: dict) -> str:
    lines = [f"# GPU check ({'dry run, CPU' if result['dry_run'] else result['environment'].get('gpu', 'CUDA')})", "",
             f"torch {result['environment'].get('torch')}, nnunetv2 {result['environment'].get('nnunetv2')}", "",
             "| step | status | seconds | key figures |", "| --- | --- | --- | --- |"]
    for name, s in result["steps"].items():
        figs = ""
        if s["status"] != "ok":
            figs = s.get("error", s.get("why", ""))[:120]
        elif name.startswith("pipeline"):
            et = s["epoch_times_s"]
            figs = (f"epoch times {', '.join(f'{x:.1f}' for x in et)} s; Dice {s['dice_limited_only']}; "
                    f"plain nnU-Net identical: {s['plain_nnunet_prediction_identical']}")
        elif name == "speed_eager":
            figs = (f"Stage-2 step x{s['train_step_ratio']:.2f} (FLOPs x{s['flop_ratio']:.2f}); Stage-1 "
                    f"x{s['pretrain_step_ratio']:.2f} (FLOPs x{s['pretrain_flop_ratio']:.2f}); inference "
                    f"x{s['inference_ratio']:.3f}; memory x{s['memory_ratio']:.2f}")
        elif name == "speed_compiled":
            figs = f"Stage-2 step x{s['train_step_ratio']:.2f}; Stage-1 x{s['pretrain_step_ratio']:.2f}"
        elif name == "syncs":
            figs = "; ".join(f"{k} {v['per_step']:.1f}/step" for k, v in s["syncs"].items())
            figs += "" if s["counted"] else " (not counted without CUDA)"
        elif name == "memory":
            figs = "; ".join(f"{k} {v['max_allocated_gib']} GiB (est. {v['estimate_tracked_gib']})"
                             for k, v in s["rows"].items())
        lines.append(f"| {name} | {s['status']} | {s.get('seconds', '')} | {figs} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="new or empty folder for the JSON, the table and the runs")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and os.listdir(out):
        print(f"{out} exists and is not empty; not overwriting it", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here; use --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    # nnU-Net reads its folders at import: the in-process trainers get a scratch environment, set first
    from dante_nnunet.jobs.nnunet_jobs import nnunet_environment
    os.environ.update(nnunet_environment(tempfile.mkdtemp(prefix="scratch_", dir=out)))
    check = Check(out, args.dry_run)
    check.result["environment"] = environment(check.device)
    check.save()
    check.step("pipeline_compiled", lambda: pipeline(check, compiled=True))
    if not args.dry_run:   # on the CPU nnU-Net never compiles: the second run would be the same
        check.step("pipeline_eager", lambda: pipeline(check, compiled=False))
    check.step("speed_eager", lambda: speed_eager(check))
    check.step("speed_compiled", lambda: speed_compiled(check))
    check.step("syncs", lambda: syncs(check))
    check.step("memory", lambda: memory(check))
    with open(os.path.join(out, "gpu_check.md"), "w") as fh:
        fh.write(markdown(check.result))
    print(markdown(check.result))
    failed = [n for n, s in check.result["steps"].items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
