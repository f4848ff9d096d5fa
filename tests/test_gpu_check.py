"""The prepared GPU check (scripts/gpu_check.py) in its CPU dry run, so that it keeps working until a
device is lent, and the memory estimate (scripts/bench_memory.py): nnU-Net's planners on the BraTS-like
fingerprint, and the fake-tensor estimate against the profiler's measured peak of real steps."""
import json
import os
import subprocess
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")
GPU_CHECK = os.path.join(SCRIPTS, "gpu_check.py")
BENCH_MEMORY = os.path.join(SCRIPTS, "bench_memory.py")
SPEED_KEYS = ("train_step_ratio", "pretrain_step_ratio", "flop_ratio", "pretrain_flop_ratio", "inference_ratio",
              "memory_ratio", "step_memory_ratio", "pretrain_memory_ratio", "frozen_step_ratio",
              "checkpointing_step_ratio", "checkpointing_memory_ratio")


@pytest.mark.e2e
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "check"
    p = subprocess.run([sys.executable, GPU_CHECK, "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["dry_run"] and r["device"] == "cpu" and r["environment"]["nnunetv2"]
    assert {n: s["status"] for n, s in r["steps"].items()} == {
        "pipeline_compiled": "ok", "speed_eager": "ok", "speed_compiled": "ok", "syncs": "ok", "memory": "ok"}
    pipe = r["steps"]["pipeline_compiled"]
    # the real nnUNetv2_train of DANTETrainer_gpuCheck (3 epochs), predict, export, plugin-free predict
    assert len(pipe["epoch_times_s"]) == 3 and pipe["plain_nnunet_prediction_identical"]
    assert set(pipe["dice_limited_only"]) == {"whole tumor", "tumor core", "enhancing tumor"}
    speed = r["steps"]["speed_eager"]   # scripts/bench_speed.py: every ratio it promises
    assert all(speed[k] > 0 for k in SPEED_KEYS)
    assert speed["flop_ratio"] > 2 and speed["pretrain_flop_ratio"] > speed["flop_ratio"]
    assert set(speed["memory_mb"]) == {"nnUNetTrainer", "DANTETrainer", "DANTETrainer_checkpointing",
                                       "DANTEPretrainTrainer"}
    assert set(r["steps"]["speed_compiled"]["times_s"]) == {"nnUNetTrainer", "DANTETrainer", "DANTEPretrainTrainer"}
    assert "| pipeline_compiled | ok |" in (out / "gpu_check.md").read_text()
    again = subprocess.run([sys.executable, GPU_CHECK, "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert again.returncode == 2 and "not overwriting" in again.stderr
    bench = tmp_path / "bench.json"
    bench.write_text("{}")
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "bench_speed.py"), "--json", str(bench)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "not overwriting" in p.stderr and bench.read_text() == "{}"


def test_gpu_check_without_cuda_asks_for_dry_run(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run([sys.executable, GPU_CHECK, "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert p.returncode == 2 and "--dry-run" in p.stderr


@pytest.mark.slow   # runs nnU-Net's planner
def test_brats_like_plans_are_nnunets_brats_plans():
    """nnU-Net's default planner on the BraTS-like fingerprint gives the paper's setting (128^3, batch 2,
    PlainConvUNet 32..320, 6 stages); ResEnc M keeps the patch, ResEnc L enlarges it for 24 GB."""
    from dante_nnunet.jobs.inmemory import brats_like_plans
    default = brats_like_plans("ExperimentPlanner")["configurations"]["3d_fullres"]
    assert default["patch_size"] == [128, 128, 128] and default["batch_size"] == 2
    arch = default["architecture"]
    assert arch["network_class_name"].endswith("PlainConvUNet")
    assert arch["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    m = brats_like_plans("nnUNetPlannerResEncM")["configurations"]["3d_fullres"]
    large = brats_like_plans("nnUNetPlannerResEncL")["configurations"]["3d_fullres"]
    assert m["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    assert m["patch_size"] == [128, 128, 128]
    import numpy as np
    assert np.prod(large["patch_size"]) * large["batch_size"] > np.prod(m["patch_size"]) * m["batch_size"]
    with pytest.raises(ValueError, match="NoSuchPlanner"):
        brats_like_plans("NoSuchPlanner")


@pytest.mark.e2e
def test_memory_estimate_matches_the_profilers_peak(tmp_path):
    """Fake tensors + MemTracker against torch.profiler's memory timeline of the same two real float32
    steps (tiny plans): the estimate the GPU table rests on counts what a step really allocates."""
    out = tmp_path / "cal.json"
    p = subprocess.run([sys.executable, BENCH_MEMORY, "--json", str(out), "--calibrate", "--calibration-size",
                        "tiny:16", "--trainers", "dante"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(out.read_text())["calibration"]
    assert row["trainer"] == "DANTETrainer" and row["profiler_peak_mib"] > 5
    assert 0.85 < row["estimate_over_measured"] < 1.15
    again = subprocess.run([sys.executable, BENCH_MEMORY, "--json", str(out), "--plans", "nope"],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "unknown plan 'nope'" in again.stderr
