"""scripts/bench_speed.py runs on the CPU without a dataset and writes every ratio it promises."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench_speed.py")
KEYS = ("train_step_ratio", "pretrain_step_ratio", "flop_ratio", "pretrain_flop_ratio", "inference_ratio",
        "memory_ratio", "step_memory_ratio", "pretrain_memory_ratio", "frozen_step_ratio",
        "checkpointing_step_ratio", "checkpointing_memory_ratio")


@pytest.mark.e2e
def test_bench_speed_writes_all_ratios(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, SCRIPT, "--json", str(out), "--configuration", "tiny", "--repeats", "1",
                        "--warmup", "0"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert all(r[k] > 0 for k in KEYS)
    assert r["flop_ratio"] > 2 and r["pretrain_flop_ratio"] > r["flop_ratio"]   # 3 encoders + 2 decoders, ...
    assert set(r["memory_mb"]) == {"nnUNetTrainer", "DANTETrainer", "DANTETrainer_checkpointing",
                                   "DANTEPretrainTrainer"}
    again = subprocess.run([sys.executable, SCRIPT, "--json", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "not overwriting" in again.stderr
