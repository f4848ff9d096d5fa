#!/usr/bin/env python
"""Peak GPU training memory of stock nnU-Net, DANTE Stage 2 and Stage 1, estimated without a GPU.

    python scripts/bench_memory.py --json OUT.json [--plans brats_plainconv,brats_resenc_m,brats_resenc_l]
    python scripts/bench_memory.py --json OUT.json --calibrate      # estimate vs measured, on the CPU

Plans: nnU-Net's own planners (``ExperimentPlanner``, ``nnUNetPlannerResEncM``, ``nnUNetPlannerResEncL``)
run on a BraTS-like fingerprint (``dante_nnunet.jobs.inmemory.brats_like_plans``: 4 channels at 1 mm, median
cropped shape 140x171x137, region labels; T1ce privileged). The real trainer classes are built on those
plans with the speed benchmark's builder (``bench_speed.make_trainer``) inside torch's ``FakeTensorMode``:
every tensor has its true shape and dtype and no storage. Two full ``trainer.train_step`` calls (forward,
loss with deep supervision, backward, gradient clipping, SGD with momentum; the second one holds the
momentum buffers) run under autocast with float16, as nnU-Net's CUDA step does, and
``torch.distributed._tools.mem_tracker.MemTracker`` records the peak of what they hold (parameters,
gradients, optimiser state, activations, temporaries).

What fake tensors cannot see is the margin (``MARGIN_GIB``, in the JSON as ``margin_gib``): the CUDA
context and the cuDNN / cuBLAS workspaces, and the caching allocator's rounding and fragmentation. The
figures ``stock_gib``, ``dante_gib``, ``dante_checkpointing_gib``, ``stage1_gib`` are tracked peak + margin.
``docs/performance.md`` says how the margin was chosen (nnU-Net's stated memory use of its default and
ResEnc plans) and how far the tracker is from a measured peak (``--calibrate``: the same estimate in
float32 against torch.profiler's memory timeline of real steps on the CPU).

Each estimate runs in its own process (``--probe``) so that fake-mode state never leaks between them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_speed  # noqa: E402  (the speed benchmark's scratch environment and trainer builder)

GIB = 2 ** 30
MARGIN_GIB = 3.0
PLANS = {   # name: nnU-Net planner class (run on the BraTS-like fingerprint)
    "brats_plainconv": "ExperimentPlanner",
    "brats_resenc_m": "nnUNetPlannerResEncM",
    "brats_resenc_l": "nnUNetPlannerResEncL",
}
TRAINERS = {   # JSON key: trainer class name in dante_nnunet.training (or nnU-Net's)
    "stock": "nnUNetTrainer",
    "dante": "DANTETrainer",
    "dante_checkpointing": "DANTETrainer_checkpointing",
    "stage1": "DANTEPretrainTrainer",
}
CALIBRATION = "small:48"   # bench_speed configuration and cubic patch edge the CPU runs for real


def _steps(trainer, batch, n: int = 2, before_each=None) -> None:
    """``n`` of nnU-Net's training iterations. nnUNetTrainer.train_step ends with ``loss.cpu().numpy()``
    after its optimiser step, which a fake tensor refuses: that one error, after the step, is expected."""
    for _ in range(n):
        if before_each is not None:
            before_each()
        try:
            trainer.train_step(batch)
        except RuntimeError as e:
            if ".numpy() is not supported for tensor subclasses" not in str(e):
                raise


class _RealMasker:
    """Stage 1's masker draws block sizes with a CPU generator and ``int()``: under fake mode it runs on
    real tensors, and its mask (a few MB) enters the fake step as a fake tensor."""

    def __init__(self, masker, mode):
        self.masker, self.mode = masker, mode

    def __call__(self, *args, **kwargs):
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        with unset_fake_temporarily():
            mask = self.masker(*args, **kwargs)
        return self.mode.from_tensor(mask)


def estimate(trainer_name: str, plans: dict, configuration: str, amp: bool = True) -> Dict[str, float]:
    """Tracked peak (bytes, by kind) of two training steps of ``trainer_name`` on ``plans``, on fake
    CPU tensors. (Fake CUDA tensors fail in backward without a CUDA context; the sizes are the same.)"""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    t0 = time.perf_counter()
    mode = FakeTensorMode()
    with mode:
        # nnUNetTrainer.initialize moves the network with .to(device): on fake parameters that is a swap
        # torch refuses, and here the device is already the CPU
        to = torch.nn.Module.to
        torch.nn.Module.to = lambda self, *a, **k: self
        try:
            trainer = bench_speed.make_trainer(bench_speed.trainer_class(trainer_name), configuration, "cpu", plans_dict=plans)
        finally:
            torch.nn.Module.to = to
        bench_speed.regularisers_on(trainer)
        if hasattr(trainer, "masker"):
            trainer.masker = _RealMasker(trainer.masker, mode)
        batch = bench_speed.make_batch(trainer)
        tracker = MemTracker()
        tracker.track_external(trainer.network, trainer.optimizer)
        autocast = torch.autocast("cpu", dtype=torch.float16) if amp else torch.autocast("cpu", enabled=False)
        with tracker, autocast:
            _steps(trainer, batch, before_each=tracker.reset_mod_stats)
        peak = tracker.get_tracker_snapshot("peak")
    (_, kinds), = peak.items()
    out = {str(getattr(k, "value", k)): v for k, v in kinds.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def measured_peak(trainer_name: str, plans: dict, configuration: str) -> Dict[str, float]:
    """Peak bytes of two real float32 training steps on the CPU, from torch.profiler's memory timeline
    (every allocation and free the profiler sees; tensors alive before it starts are added from the
    trainer: parameters and the batch)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    trainer = bench_speed.make_trainer(bench_speed.trainer_class(trainer_name), configuration, "cpu", plans_dict=plans)
    bench_speed.regularisers_on(trainer)
    batch = bench_speed.make_batch(trainer)
    before = sum(p.numel() * p.element_size() for p in trainer.network.parameters())
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        _steps(trainer, batch)
    timeline = MemoryProfileTimeline(prof._memory_profile())
    _, sizes = timeline._coalesce_timeline(torch.device("cpu"))
    peak = max(sum(s) for s in sizes)
    return {"profiler_peak": float(peak), "parameters": float(before)}


def run_probe(kind: str, trainer_name: str, plans_file: str, configuration: str, amp: bool) -> Dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--json", "-", "--probe", kind, trainer_name,
           plans_file, configuration] + ([] if amp else ["--fp32"])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} probe of {trainer_name} on {plans_file} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _configuration(plans: dict, name: str) -> dict:
    c = plans["configurations"][name]
    arch = c["architecture"]
    return {"patch_size": c["patch_size"], "batch_size": c["batch_size"],
            "network": arch["network_class_name"].rsplit(".", 1)[-1],
            "features_per_stage": arch["arch_kwargs"]["features_per_stage"]}


def estimate_plans(names: List[str], trainers: List[str], workdir: str, save=None) -> List[dict]:
    """One entry per plan; ``save(configs)`` after every estimate (a long run keeps what it measured)."""
    from dante_nnunet.jobs.inmemory import brats_like_plans
    configs = []
    for name in names:
        plans = brats_like_plans(PLANS[name])
        plans_file = os.path.join(workdir, f"{name}.json")
        with open(plans_file, "w") as fh:
            json.dump(plans, fh)
        entry = {"name": name, "planner": PLANS[name], **_configuration(plans, "3d_fullres"),
                 "margin_gib": MARGIN_GIB, "amp": "float16 autocast"}
        configs.append(entry)
        for key in trainers:
            r = run_probe("estimate", TRAINERS[key], plans_file, "3d_fullres", amp=True)
            tracked = r["Total"] / GIB
            entry[f"{key}_tracked_gib"] = round(tracked, 3)
            entry[f"{key}_gib"] = round(tracked + MARGIN_GIB, 2)
            entry[f"{key}_seconds"] = round(r["seconds"], 1)
            print(f"[memory] {name} {TRAINERS[key]}: tracked {tracked:.2f} GiB, with margin "
                  f"{tracked + MARGIN_GIB:.2f} GiB ({r['seconds']:.0f} s)", flush=True)
            if save is not None:
                save(configs)
        for key in trainers:
            if key != "stock" and "stock" in trainers:
                entry[f"{key}_ratio"] = round(entry[f"{key}_gib"] / entry["stock_gib"], 3)
                entry[f"{key}_tracked_ratio"] = round(entry[f"{key}_tracked_gib"] / entry["stock_tracked_gib"], 3)
    return configs


def calibrate(trainers: List[str], workdir: str, size: str = CALIBRATION) -> List[dict]:
    configuration, edge = size.split(":")
    edge = int(edge)
    plans = bench_speed.phantom_plans(configuration, edge)
    plans_file = os.path.join(workdir, "calibration.json")
    with open(plans_file, "w") as fh:
        json.dump(plans, fh)
    rows = []
    for key in trainers:
        est = run_probe("estimate", TRAINERS[key], plans_file, configuration, amp=False)
        real = run_probe("measure", TRAINERS[key], plans_file, configuration, amp=False)
        row = {"trainer": TRAINERS[key], "patch_size": [edge] * 3, "estimate_mib": round(est["Total"] / 2 ** 20, 1),
               "profiler_peak_mib": round(real["profiler_peak"] / 2 ** 20, 1)}
        row["estimate_over_measured"] = round(row["estimate_mib"] / row["profiler_peak_mib"], 3)
        print(f"[calibrate] {TRAINERS[key]} at {edge}^3 float32: fake-tensor estimate {row['estimate_mib']:.0f} MiB, "
              f"profiler peak {row['profiler_peak_mib']:.0f} MiB ({row['estimate_over_measured']:.3f})", flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="output file")
    p.add_argument("--plans", default=",".join(PLANS), help=f"comma-separated, of {sorted(PLANS)}")
    p.add_argument("--trainers", default=",".join(TRAINERS), help=f"comma-separated, of {sorted(TRAINERS)}")
    p.add_argument("--calibrate", action="store_true", help="estimate vs measured peak on the CPU, float32")
    p.add_argument("--calibration-size", default=CALIBRATION,
                   help=f"CONFIGURATION:EDGE of scripts/bench_speed.py for --calibrate (default {CALIBRATION})")
    p.add_argument("--fp32", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe", nargs=4, help=argparse.SUPPRESS)   # internal: KIND TRAINER PLANS_FILE CONFIGURATION
    args = p.parse_args(argv)
    if args.probe:
        kind, trainer_name, plans_file, configuration = args.probe
        bench_speed._scratch_environment()
        with open(plans_file) as fh:
            plans = json.load(fh)
        if kind == "estimate":
            result = estimate(trainer_name, plans, configuration, amp=not args.fp32)
        else:
            result = measured_peak(trainer_name, plans, configuration)
        print(json.dumps(result))
        return 0
    names = [n for n in args.plans.split(",") if n]
    trainers = [n for n in args.trainers.split(",") if n]
    for n in names:
        if n not in PLANS:
            p.error(f"--plans: unknown plan {n!r}; known: {sorted(PLANS)}")
    for n in trainers:
        if n not in TRAINERS:
            p.error(f"--trainers: unknown trainer key {n!r}; known: {sorted(TRAINERS)}")
    if os.path.exists(args.json):
        print(f"{args.json} exists; not overwriting it", file=sys.stderr)
        return 2
    bench_speed._scratch_environment()
    import torch
    workdir = tempfile.mkdtemp(prefix="dante_memory_")
    result = {"torch": torch.__version__, "margin_gib": MARGIN_GIB, "steps": 2, "configs": []}
    partial = args.json + ".part"   # what a killed run measured; renamed to --json when the run completes

    def save(configs):
        with open(partial, "w") as fh:
            json.dump(dict(result, configs=configs, partial=True), fh, indent=2)

    if args.calibrate:
        result["calibration"] = calibrate(trainers, workdir, args.calibration_size)
    else:
        result["configs"] = estimate_plans(names, trainers, workdir, save)
    with open(partial, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(partial, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
