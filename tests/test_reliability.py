"""Faults and bad inputs during training, tried the way a user meets them (docs/reliability.md): a
second run into a busy results folder, kill -9 and --c, an edited channel split, a truncated
checkpoint, export of another checkpoint, NaN in the preprocessed data. Real nnUNetv2_* commands on
the shared synthetic dataset, on the CPU."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json, save_json

from tests.support import BIN, E2E_CONFIG, E2E_DATASET_ID, latest_after_a_best_epoch, newest_training_log, run
from dante_nnunet.guards import LOCK_NAME, CheckpointReadError, ResultsFolderLock, read_checkpoint

pytestmark = pytest.mark.e2e
TRAINER = "DANTETrainer_guard"


def _train_cmd(trainer=TRAINER, *extra):
    return ["nnUNetv2_train", E2E_DATASET_ID, E2E_CONFIG, 0, "-tr", trainer, "-device", "cpu", *extra]


def _fold(env, name, trainer=TRAINER):
    return join(env["nnUNet_results"], name, f"{trainer}__nnUNetPlans__{E2E_CONFIG}", "fold_0")


def _log(fold):
    logs = sorted(f for f in os.listdir(fold) if f.startswith("training_log"))
    return "".join(open(join(fold, f)).read() for f in logs)


def _wait_for(path, proc, seconds=600):
    t0 = time.time()
    while not os.path.isfile(path):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {path} appeared")
        if time.time() - t0 > seconds:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def env(e2e_dataset, tmp_path_factory):
    return dict(e2e_dataset["env"], nnUNet_results=str(tmp_path_factory.mktemp("reliability_results")))


def _stale_lock(fold):
    """A lock file left by a holder killed with -9: the kernel dropped its lock, the file stays."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dante_nnunet.guards import "
                               f"ResultsFolderLock\nResultsFolderLock({fold!r}).acquire('killed holder')\n"
                               "print('held', flush=True)\ntime.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert "killed holder" in open(join(fold, LOCK_NAME)).read()


def test_a_busy_results_folder_is_refused(env, e2e_dataset):
    fold = _fold(env, e2e_dataset["name"], "DANTETrainer_tiny")
    lock = ResultsFolderLock(fold)
    lock.acquire("test holder")                       # a live owner: this test process
    try:
        p = run(_train_cmd("DANTETrainer_tiny"), env, ok=False)
        assert p.returncode != 0
        assert "is in use by another run (test holder: host" in p.stderr and f"pid {os.getpid()}" in p.stderr
        assert not os.path.isfile(join(fold, "checkpoint_final.pth"))
    finally:
        lock.release()


def test_the_lock_belongs_to_the_process_that_took_it_not_to_its_forked_children(tmp_path):
    """A child forked while the lock is held (an augmentation worker) does not hold it: once the holder is
    killed alone, the folder is free although the child lives on; while the holder lives, the refusal
    names its pid."""
    code = ("import os, sys, time\nfrom dante_nnunet.guards import ResultsFolderLock\n"
            f"ResultsFolderLock({str(tmp_path)!r}).acquire('holder')\n"
            "child = os.fork()\n"
            "if child == 0:\n    time.sleep(600)\n    os._exit(0)\n"
            "print(child, flush=True)\ntime.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(Exception, match=f"held now by pid {holder.pid}\\)"):
            ResultsFolderLock(str(tmp_path)).acquire("second")
        holder.kill()
        holder.wait()
        os.kill(child, 0)                                # the child lives on
        lock = ResultsFolderLock(str(tmp_path))
        lock.acquire("after the kill")
        lock.release()
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_resume_split_change_truncation_and_export_of_another_checkpoint(env, e2e_dataset, tmp_path):
    name, fold = e2e_dataset["name"], _fold(env, e2e_dataset["name"])
    _stale_lock(fold)                                 # 0. a stale lock does not stop the run below
    # 1. kill -9 after the first checkpoint_latest (every epoch for a 4-epoch schedule), then --c
    proc = subprocess.Popen([os.path.join(BIN, "nnUNetv2_train")] + [str(c) for c in _train_cmd()[1:]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(join(fold, "checkpoint_latest.pth"), proc)
    os.kill(proc.pid, signal.SIGKILL)              # the trainer alone, as the OOM killer does: its forked
    proc.wait()                                    # augmentation workers live on, holding the lock file open
    try:
        os.killpg(proc.pid, 0)                     # raises ProcessLookupError if no worker is left
        epoch = read_checkpoint(join(fold, "checkpoint_latest.pth"))["current_epoch"]   # whole: written, then renamed
        assert 1 <= epoch < 4 and not os.path.isfile(join(fold, "checkpoint_final.pth"))
        p = run(_train_cmd(TRAINER, "--c"), env)
        assert f"Loaded {join(fold, 'checkpoint_latest.pth')} (trainer {TRAINER}, next epoch {epoch})" in p.stdout
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)     # the orphaned workers
        except ProcessLookupError:
            pass
    ck = read_checkpoint(join(fold, "checkpoint_final.pth"))
    assert ck["current_epoch"] == 4

    # 1b. --c after an epoch that was a new best: checkpoint_best is not replaced by a worse epoch
    best, final = join(fold, "checkpoint_best.pth"), join(fold, "checkpoint_final.pth")
    best_bytes = open(best, "rb").read()
    os.replace(final, join(fold, "final.bak"))
    epoch = latest_after_a_best_epoch(join(fold, "final.bak"), join(fold, "checkpoint_latest.pth"), "ema_fg_dice",
                                      1.0, stale_best=0.0)
    os.remove(join(fold, "final.bak"))
    p = run(_train_cmd(TRAINER, "--c"), env)
    log = newest_training_log(fold)
    assert f"next epoch {epoch})" in log and "New best EMA pseudo Dice" not in log and "train_loss" in log
    assert open(best, "rb").read() == best_bytes
    ck = read_checkpoint(final)
    assert ck["current_epoch"] == 4 and ck["_best_ema"] == 1.0
    assert ck["dante_channel_split"] == {"channel_names": ["T1", "T1ce", "T2", "FLAIR"], "privileged_indices": [1]}

    # 2. the privileged channel changed in dataset.json between the run and --c / --val: refused
    pre_json = join(env["nnUNet_preprocessed"], name, "dataset.json")
    results_json = join(os.path.dirname(fold), "dataset.json")
    original, deployed = load_json(pre_json), open(results_json).read()
    try:
        save_json(dict(original, dante={"privileged_channels": ["FLAIR"]}), pre_json)
        for flag in ("--c", "--val"):
            p = run(_train_cmd(TRAINER, flag), env, ok=False)
            assert p.returncode != 0, flag
            assert "the run was trained with channels ['T1', 'T1ce', 'T2', 'FLAIR'] and privileged channel(s) " \
                   "['T1ce'], but dataset.json now gives" in p.stderr, flag
        assert open(results_json).read() == deployed      # the deployed model's description is untouched
    finally:
        save_json(original, pre_json)

    # 3. export of checkpoint_best prints a predict command that works as printed
    out = run(["dante_nnunet", "export", "-d", E2E_DATASET_ID, "-c", E2E_CONFIG, "-tr", TRAINER, "-f", 0,
               "-o", tmp_path / "exported", "-chk", "checkpoint_best.pth"], env).stdout
    line = out.split("predict without the plugin: ")[1].strip()
    assert " -chk checkpoint_best.pth" in line
    words = line.replace("INPUT", join(e2e_dataset["raw"], "imagesTs")).replace("OUTPUT", str(tmp_path / "pred")) \
        .split()
    plain_env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    plain_env[words[0].split("=")[0]] = words[0].split("=", 1)[1]
    assert line.endswith(" -device cpu")             # this machine has no GPU: the command says so itself
    run(words[1:], plain_env)
    assert sorted(f for f in os.listdir(tmp_path / "pred") if f.endswith(".nii.gz")) == \
        sorted(os.listdir(join(e2e_dataset["raw"], "labelsTs")))

    # 4. a truncated checkpoint: --c and export name the file in one line
    final = join(fold, "checkpoint_final.pth")
    data = open(final, "rb").read()
    with open(final, "wb") as fh:
        fh.write(data[: len(data) // 2])
    p = run(_train_cmd(TRAINER, "--c"), env, ok=False)
    assert p.returncode != 0 and f"checkpoint {final} cannot be read" in p.stderr
    p = run(["dante_nnunet", "export", "-d", E2E_DATASET_ID, "-c", E2E_CONFIG, "-tr", TRAINER, "-f", 0,
             "-o", tmp_path / "exported2"], env, ok=False)
    assert p.returncode == 2 and p.stderr.startswith("dante_nnunet export: error: checkpoint ")
    assert "Traceback" not in p.stderr and not os.path.exists(tmp_path / "exported2")


def test_nan_in_the_data_stops_training_in_its_epoch_naming_the_cases(env, e2e_dataset, tmp_path):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    name = e2e_dataset["name"]
    pre = tmp_path / "pre"
    shutil.copytree(join(env["nnUNet_preprocessed"], name), pre / name)
    data_folder = join(pre / name, "nnUNetPlans_3d_fullres")
    cls = infer_dataset_class(data_folder)
    keys = cls.get_identifiers(data_folder)
    for key in keys:                                  # T2 (channel 2) of every case NaN, as an Inf read by
        data, seg, _, props = cls(data_folder, [key]).load_case(key)   # NibabelIO becomes after normalisation
        data = np.array(data[:])
        data[2] = np.nan
        seg = np.array(seg[:])
        for f in os.listdir(data_folder):
            if f.startswith(key + ".") or f.startswith(key + "_seg."):
                os.remove(join(data_folder, f))
        cls.save_case(data, seg, props, join(data_folder, key))
    env2 = dict(env, nnUNet_preprocessed=str(pre), nnUNet_results=str(tmp_path / "res"))
    p = run(_train_cmd("DANTETrainer_tiny"), env2, ok=False)
    assert p.returncode != 0
    text = p.stdout + p.stderr
    assert "epoch 0, step 0: the training loss is nan for the batch of cases [" in text
    assert "non-finite preprocessed data in DANTEe2e_0" in text and "(channel(s) [2])" in text
    fold = _fold(env2, name, "DANTETrainer_tiny")
    log = _log(fold)   # stopped at the failing step, on the CPU: no epoch summary, no checkpoint
    assert "train_loss" not in log and "Epoch 1" not in log and not os.path.isfile(join(fold, "checkpoint_final.pth"))


def test_unreadable_checkpoints_name_the_file(tmp_path):
    from dante_nnunet.training.transfer import stage1_encoder_weights
    bad = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {}}, bad)
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CheckpointReadError, match=rf"checkpoint {bad} cannot be read \(40 bytes"):
        stage1_encoder_weights(str(bad), None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(str(tmp_path / "missing.pth"))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root's mount; skipped where mounting is not allowed), unmounted afterwards; its
    parent is a normal folder."""
    path = tmp_path / "disk"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_and_a_read_only_results_folder_name_the_cause(env, e2e_dataset, small_disk):
    """A checkpoint that does not fit (1 MiB free): the error names the file, the free space and a full
    disk, and no .partial file is left; a results folder remounted read-only during training: one error
    naming the folder, not nnU-Net's five "failed to log" lines per log line; --c once it is writable."""
    env = dict(env, nnUNet_results=str(small_disk))
    fold = _fold(env, e2e_dataset["name"])
    p = run(_train_cmd(), env, ok=False)
    assert p.returncode != 0
    assert f"writing {join(fold, 'checkpoint_latest.pth')} failed" in p.stderr and "MiB free" in p.stderr
    assert "the disk is probably full" in p.stderr and "unexpected pos" in p.stderr
    assert not [f for f in os.listdir(fold) if f.endswith(".partial")]

    # the fold folder made read-only during training (a read-only bind mount over it)
    env = dict(env, nnUNet_results=str(small_disk.parent / "results"))
    fold = _fold(env, e2e_dataset["name"])
    proc = subprocess.Popen([os.path.join(BIN, "nnUNetv2_train")] + [str(c) for c in _train_cmd()[1:]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(join(fold, "checkpoint_latest.pth"), proc)
        subprocess.run(["mount", "--bind", fold, fold], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", fold], check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        subprocess.run(["umount", fold], capture_output=True)
    assert proc.returncode != 0 and f"{fold} is not writable" in err, err[-4000:]
    assert (out + err).count("failed to log") == 0
    p = run(_train_cmd(TRAINER, "--c"), env)
    assert "Loaded " in p.stdout and read_checkpoint(join(fold, "checkpoint_final.pth"))["current_epoch"] == 4
