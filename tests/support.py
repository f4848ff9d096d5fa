"""What the tests share: the end-to-end dataset's constants, the installed commands run through the
project's job layer (``dante_nnunet.jobs.nnunet_jobs``), and checkpoints written as a CUDA run writes them.
In-memory plans, trainers and batches: ``dante_nnunet.jobs.inmemory``."""
import os
from contextlib import contextmanager

import torch
import torch.serialization as serialization

from dante_nnunet.jobs.nnunet_jobs import BIN, CommandResult, run_command

__all__ = ["BIN", "E2E_CONFIG", "E2E_DATASET_ID", "TEST_TRAINERS", "cpu_storages_tagged_cuda", "resave_as_if_on_cuda",
           "run", "save_as_if_on_cuda"]

TEST_TRAINERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet_trainers")
E2E_DATASET_ID, E2E_CONFIG = 991, "3d_tiny"


def run(cmd, env, ok=True) -> CommandResult:
    """Run an installed command (nnUNetv2_*, dante_nnunet) of this environment, its output captured
    (``.stdout``, ``.stderr``); ``ok``: a non-zero exit fails the test with the output's tail."""
    return run_command(cmd, env, check=ok)


# ------------------------------------------------------------------ checkpoints as a GPU writes them
# ``torch.save`` records each storage's device ("cuda:0" for a GPU run's tensors) and ``torch.load``
# without ``map_location`` restores it there, which fails on a CPU-only machine ("Attempting to
# deserialize object on a CUDA device"). ``save_as_if_on_cuda`` writes CPU tensors under the tag
# "cuda:0", so loading the file fails in exactly that way unless the loader maps it to the CPU.

def _cuda_tag(storage):
    return "cuda:0" if storage.device.type == "cpu" else None


@contextmanager
def cpu_storages_tagged_cuda():
    entry = (-1, _cuda_tag, lambda storage, location: None)   # first tagger; loading goes to torch's own
    serialization._package_registry.insert(0, entry)
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def save_as_if_on_cuda(obj, path) -> None:
    with cpu_storages_tagged_cuda():
        torch.save(obj, str(path))


def resave_as_if_on_cuda(src, dst) -> dict:
    """Copy a checkpoint file, its tensors tagged as CUDA tensors; returns its content."""
    ck = torch.load(str(src), map_location="cpu", weights_only=False)
    save_as_if_on_cuda(ck, dst)
    return ck


# ------------------------------------------------------------------ a run killed after a new best epoch
def latest_after_a_best_epoch(final: str, latest: str, curve: str, best_value: float, stale_best: float) -> int:
    """Write ``latest`` from a finished run's ``final`` checkpoint as nnUNetTrainer.on_epoch_end (2.8.1)
    leaves it when the epoch before the kill was a new best: every curve cut to all epochs but the last,
    that epoch's ``curve`` value set to ``best_value`` (unbeatable), and ``_best_ema`` still holding the
    best before it (``stale_best``), because checkpoint_latest is written before _best_ema is updated.
    Returns the epoch a --c resumes at."""
    ck = torch.load(final, map_location="cpu", weights_only=False)
    epoch = ck["current_epoch"] - 1
    ck["logging"] = {k: list(v)[:epoch] for k, v in ck["logging"].items()}
    ck["logging"][curve][-1] = best_value
    ck["_best_ema"], ck["current_epoch"] = stale_best, epoch
    torch.save(ck, latest)
    return epoch


def newest_training_log(fold: str) -> str:
    """The text of the fold's most recent nnU-Net training log (each run, --c included, starts a new one)."""
    logs = [os.path.join(fold, f) for f in os.listdir(fold) if f.startswith("training_log")]
    return open(max(logs, key=os.path.getmtime)).read()
