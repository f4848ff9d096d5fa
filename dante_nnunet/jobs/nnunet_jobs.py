"""Driving nnU-Net as a job: the one place that knows how to start it.

- ``nnunet_environment``: the environment nnU-Net's commands read (``nnUNet_raw``,
  ``nnUNet_preprocessed``, ``nnUNet_results``; this package's trainer folder first on
  ``nnUNet_extTrainer``; one process for augmentation and preprocessing unless the user set more).
- ``run_command``: run one of this environment's commands (``nnUNetv2_*``, ``dante_nnunet``) with its
  whole output in a log named before it starts and nnU-Net's progress lines echoed; a failure raises
  with the log's tail. Without a log the output is captured and returned (the tests read it).
- ``add_configuration``: a configuration that inherits the preprocessed data of another one, with other
  widths or patch size (``dante_nnunet add-configuration``).
- ``trainer_lookup``: nnU-Net's trainer lookup in this process, as ``nnUNetv2_train`` does it in an
  environment (names checked before any work).
- ``preprocess_with_plans_of``: a dataset preprocessed with another dataset's plans (fingerprint, plans
  moved, preprocessing), so that networks trained on either have the same shapes; ``copy_split_of`` gives
  it the other dataset's folds.

Used by the demo, the benchmark runner, the speed benchmark and the tests.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join, load_json, save_json

# the folder nnUNetv2_train searches for trainer classes (nnUNet_extTrainer), shipped with the package
TRAINER_FOLDER = join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nnunet_trainers")
# where this interpreter's commands live (nnUNetv2_*, dante_nnunet): the environment the job runs in
BIN = os.path.dirname(sys.executable)
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")

# the lines of nnU-Net's output echoed while a command runs (all of it goes to the command's log)
PROGRESS = re.compile(r"Epoch \d+\s*$|train_loss|val_loss|Pseudo dice|Epoch time|Validation Dice|regularisers on|"
                      r"WARNING|Training done|Fingerprint|Preprocessing|Predicting|done with|exported")


def ext_trainer_value(existing: Optional[str] = None, *more_folders: str) -> str:
    """nnUNet_extTrainer: ``more_folders``, then the existing entries, then this package's trainer folder (each
    once). The package's folder comes last: its module resolves every ``<Family>_<tokens>`` name and refuses
    unknown tokens, so one's own classes of those families (``DANTETrainer_mine``) must be found first."""
    parts: list = []
    for p in list(more_folders) + (existing or "").split(os.pathsep) + [TRAINER_FOLDER]:
        if p and os.path.abspath(p) not in {os.path.abspath(q) for q in parts}:
            parts.append(p)
    return os.pathsep.join(parts)


def nnunet_environment(root: Optional[str] = None, base: Optional[Mapping[str, str]] = None,
                       trainer_folders: Sequence[str] = ()) -> Dict[str, str]:
    """The environment of an nnU-Net job, built on ``base`` (default: this process's environment).
    With ``root``, ``nnUNet_raw``/``_preprocessed``/``_results`` are folders under it (created), so a job
    never writes into the user's; without it, the base's are kept."""
    env = dict(os.environ if base is None else base)
    if root is not None:
        for k in NNUNET_FOLDERS:
            env[k] = join(os.path.abspath(root), k)
            os.makedirs(env[k], exist_ok=True)
    env["nnUNet_extTrainer"] = ext_trainer_value(env.get("nnUNet_extTrainer"), *trainer_folders)
    env.setdefault("nnUNet_n_proc_DA", "1")
    env.setdefault("nnUNet_def_n_proc", "1")
    env["PYTHONUNBUFFERED"] = "1"   # progress lines as they come
    return env


def _executable(name: str) -> str:
    """A command of this environment by name (``nnUNetv2_train``); a path is taken as it is."""
    return join(BIN, name) if os.sep not in name and os.path.isfile(join(BIN, name)) else name


@dataclass
class CommandResult:
    returncode: int
    seconds: float
    stdout: str = ""    # captured runs only (no log)
    stderr: str = ""


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message holds the command and the end of its output."""


def run_command(cmd: Sequence[Union[str, os.PathLike, int]], env: Mapping[str, str], log: Optional[str] = None,
                check: bool = True, append: bool = False, echo: bool = True) -> CommandResult:
    """Run ``cmd`` (its first word a command of this environment, or a path) in ``env``.

    With ``log``: the log's path is printed before the command starts, the whole output (stdout and
    stderr) goes into it, and ``PROGRESS`` lines are echoed (``echo``). Without: the output is
    captured into the result. ``check``: a non-zero exit raises CommandFailed with the output's tail."""
    args = [_executable(str(cmd[0]))] + [str(c) for c in cmd[1:]]
    text = " ".join(args)
    t0 = time.time()
    if log is None:
        p = subprocess.run(args, env=dict(env), capture_output=True, text=True)
        result = CommandResult(p.returncode, time.time() - t0, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise CommandFailed(f"command failed ({p.returncode}): {text}\n--- last output ---\n"
                                f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return result
    if echo:
        print(f"$ {text}\n  log: {log}", flush=True)
    with open(log, "a" if append else "w") as fh:
        p = subprocess.Popen(args, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
        for line in p.stdout:
            fh.write(line)
            if echo and PROGRESS.search(line):
                print("    " + line.rstrip(), flush=True)   # whole: a cut hint line is a broken command
        rc = p.wait()
    result = CommandResult(rc, time.time() - t0)
    if check and rc != 0:
        with open(log) as fh:
            tail = fh.read()[-4000:]
        raise CommandFailed(f"command failed ({rc}): {text}\n--- last output ({log}) ---\n{tail}")
    if echo:
        print(f"  done in {result.seconds:.1f} s", flush=True)
    return result


@contextlib.contextmanager
def trainer_lookup(env: Mapping[str, str]) -> Iterator[Callable[[str], type]]:
    """Yields nnU-Net's ``recursive_find_trainer_class_by_name`` as ``nnUNetv2_train`` runs it in ``env``:
    ``nnUNet_extTrainer`` is ``env``'s while open (restored after) and nnU-Net's narration of its search is
    silenced. Errors are nnU-Net's (RuntimeError: no such class) or ``TrainerNameError`` (a bad token)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    def find(name: str) -> type:
        # nnU-Net's search imports every trainer module; its Primus trainers import timm, whose hrnet module
        # uses torch.jit.interface, which newer torch versions call deprecated (a FutureWarning on every
        # command that looks a trainer up; nnUNetv2_train itself prints it too). Not ours: silenced here.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.interface.*", category=FutureWarning)
            return recursive_find_trainer_class_by_name(name)

    old = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = env.get("nnUNet_extTrainer", "")
    try:
        yield find
    finally:
        if old is None:
            os.environ.pop("nnUNet_extTrainer", None)
        else:
            os.environ["nnUNet_extTrainer"] = old


PREPROCESSED_MARKER = ".dante_preprocessed"   # written into a preprocessed folder when its preprocessing finished


def preprocess_with_plans_of(source_id: int, target_id: int, env: Mapping[str, str],
                             run: Callable[[str, List[str]], None], configuration: str, key: str = "",
                             plans: str = "nnUNetPlans") -> bool:
    """Dataset ``target_id`` (in ``env``'s nnUNet_raw) preprocessed with dataset ``source_id``'s plans, its
    added configurations included: ``nnUNetv2_extract_fingerprint``, ``nnUNetv2_move_plans_between_datasets``,
    its raw dataset.json copied beside them (``nnUNetv2_preprocess`` reads it there: nnU-Net issue #2560),
    ``nnUNetv2_preprocess -c configuration``; each command through ``run(key_step, cmd)``. Skipped (False)
    when the marker of an earlier finished run is there; True when it ran."""
    from dante_nnunet.data.rawdata import dataset_folders
    raw = dataset_folders(env["nnUNet_raw"], target_id)[0]
    pre = join(env["nnUNet_preprocessed"], os.path.basename(raw))
    if os.path.isfile(join(pre, PREPROCESSED_MARKER)):
        return False
    t, s = str(target_id), str(source_id)
    run(f"{key}_fingerprint", ["nnUNetv2_extract_fingerprint", "-d", t, "-np", "1"])
    run(f"{key}_plans", ["nnUNetv2_move_plans_between_datasets", "-s", s, "-t", t, "-sp", plans, "-tp", plans])
    shutil.copyfile(join(raw, "dataset.json"), join(pre, "dataset.json"))
    run(f"{key}_preprocess", ["nnUNetv2_preprocess", "-d", t, "-plans_name", plans, "-c", configuration, "-np", "1"])
    open(join(pre, PREPROCESSED_MARKER), "w").close()
    return True


def copy_split_of(source_id: int, target_id: int, env: Mapping[str, str]) -> bool:
    """Dataset ``source_id``'s ``splits_final.json`` into dataset ``target_id``'s preprocessed folder (the same
    folds), unless the target has one or the source has none; True when copied."""
    from dante_nnunet.data.rawdata import dataset_folders
    src, dst = (join(env["nnUNet_preprocessed"], os.path.basename(dataset_folders(env["nnUNet_raw"], d)[0]),
                     "splits_final.json") for d in (source_id, target_id))
    if os.path.isfile(dst) or not os.path.isfile(src):
        return False
    shutil.copyfile(src, dst)
    return True


# ------------------------------------------------------------------------------------------ plans
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
                      patch_size: Optional[Sequence[int]] = None, replace: bool = False) -> None:
    """Add a configuration that ``inherits_from`` ``base`` (same preprocessed data) with other
    widths and patch size; refuse to change an existing configuration of that name, unless ``replace``
    and it is one this function wrote (``inherits_from`` with only an architecture and a patch size).
    ``features_per_stage`` as one int is the first stage's width, doubled per stage up to 320 (as
    nnU-Net's widths grow). Widths and patch sizes must be positive, checked before anything is written."""
    for what, values in (("width", [features_per_stage] if isinstance(features_per_stage, int)
                          else features_per_stage), ("patch size", patch_size)):
        if values is not None and any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                                      for v in values):
            raise ValueError(f"configuration {name!r}: every {what} must be a positive whole number; got "
                             f"{list(values)}")
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
    if name in cfgs and cfgs[name] != new:
        ours = "inherits_from" in cfgs[name] and set(cfgs[name]) <= {"inherits_from", "architecture", "patch_size"}
        if not replace:
            raise ValueError(f"{plans_file}: configuration {name!r} exists with other settings"
                             + ("; --replace replaces it (results trained with it no longer match their plans)"
                                if ours else ""))
        if not ours:
            raise ValueError(f"{plans_file}: configuration {name!r} was not written by add-configuration (it has "
                             f"{sorted(cfgs[name])}); it is not replaced")
    elif name in cfgs:
        return
    cfgs[name] = new
    save_json(plans, plans_file, sort_keys=False)
