"""Guards against silent loss of work or silently wrong training (the faults tried: docs/reliability.md).

- ``read_checkpoint``: ``torch.load`` with an error that names the file (a truncated or foreign file
  otherwise ends in torch's "failed finding central directory" without it).
- ``ResultsFolderLock``: an exclusive POSIX record lock (``fcntl.lockf``) on
  ``<fold folder>/.dante_training.lock``, held by the process that trains (and validates) into that
  folder. A record lock belongs to the process that took it: the augmentation workers nnU-Net forks do
  not inherit it (an ``flock`` would be shared with them and outlive a trainer killed alone, as the OOM
  killer kills), and the kernel drops it when that process ends, however it ends. The file keeps the
  owner's host, pid and start time for the refusal message, which also names the live holder the kernel
  reports. One lock object per folder and process: closing any descriptor of the file drops a record
  lock, so a second ``acquire`` of the same folder in the holding process reuses the first.
- the run record, ``<fold folder>/dante_run.json``, what a run was started with (channel split,
  Stage-1 weights), so that a ``--c`` that finds no checkpoint cannot silently start another run.
- ``ConstantChannelCache``: which preprocessed cases have constant (placeholder) privileged channels,
  kept in a JSON file beside the preprocessed data so that the read of every case happens once.
- ``first_non_finite`` / ``non_finite_cases``: which training step's loss went NaN/Inf and which of
  its cases hold non-finite preprocessed data.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read; the message names the file."""


def read_checkpoint(path: str, map_location="cpu", mmap: bool = False) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as e:   # truncated zip, not a torch file, pickle of unknown classes
        raise CheckpointReadError(f"checkpoint {path} cannot be read ({os.path.getsize(path)} bytes; "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): truncated "
                                  f"(a run killed while saving?) or not a checkpoint") from None
    if not isinstance(ck, dict):
        raise CheckpointReadError(f"checkpoint {path} holds a {type(ck).__name__}, not an nnU-Net checkpoint dict")
    return ck


class CheckpointWriteError(OSError):
    """A checkpoint, export or progress plot that could not be written; the message names the file, the
    cause and the folder's free space (or that it is not writable)."""


def write_failure(path: str, error: BaseException, needed: Optional[int] = None) -> CheckpointWriteError:
    """The error to raise when writing ``path`` failed: torch reports a full disk as ``[enforce fail at
    inline_container.cc] unexpected pos``, without a word of space, so the folder's free space is named."""
    import shutil
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointWriteError(f"writing {path} failed ({type(error).__name__}: {detail[:200]}): {folder} is "
                                    f"not writable (a read-only disk or permissions). Make it writable and run again")
    space = "" if free is None else f"; {folder} has {free / 2 ** 20:.1f} MiB free"
    need = f" (the file needs about {needed / 2 ** 20:.1f} MiB)" if needed else ""
    likely = (" - the disk is probably full" if free is not None and (needed is None or free < 2 * needed)
              else "")
    return CheckpointWriteError(f"writing {path} failed ({type(error).__name__}: {detail[:200]}){space}{need}"
                                f"{likely}. Free space there (or point the output elsewhere) and run again")


class ResultsFolderNotWritable(OSError):
    """The training log (and so the results folder) cannot be written any more."""


def save_whole(obj, path: str) -> None:
    """``torch.save`` to ``path.partial``, renamed onto ``path``: a run killed while saving leaves the
    previous file whole. A failed write (a full disk) removes the partial file and raises
    CheckpointWriteError naming the file and the free space."""
    partial = path + ".partial"
    try:
        torch.save(obj, partial)
        os.replace(partial, path)
    except (RuntimeError, OSError) as e:
        written = os.path.getsize(partial) if os.path.isfile(partial) else 0
        try:
            os.remove(partial)
        except OSError:
            pass
        previous = os.path.getsize(path) if os.path.isfile(path) else 0
        raise write_failure(path, e, max(written, previous) or None) from None


# ------------------------------------------------------------------------------------------------ lock
LOCK_NAME = ".dante_training.lock"


class ResultsFolderBusy(RuntimeError):
    """Another live process trains into the same results folder."""


def lock_holders(path: str) -> List[int]:
    """Pids of the processes the kernel reports as holding a lock on ``path`` (Linux ``/proc/locks``;
    an empty list where it cannot tell)."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:   # "1: POSIX  ADVISORY  WRITE 1234 fd:00:5472449 0 EOF"; waiters carry "->"
        parts = line.split()
        if len(parts) >= 6 and "->" not in parts and parts[4].isdigit() and parts[5].rsplit(":", 1)[-1] == str(inode):
            pids.append(int(parts[4]))
    return sorted(set(pids))


_HELD: Dict[str, list] = {}   # realpath of a lock file -> [open file holding its record lock, holders in this process]


class ResultsFolderLock:
    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_NAME)
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, what: str) -> None:
        """Take the lock or raise ResultsFolderBusy naming its owner. Idempotent within a process."""
        import fcntl
        if self._fh is not None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        key = os.path.realpath(self.path)
        if key in _HELD:   # this process holds it already: a second descriptor's close would drop it
            _HELD[key][1] += 1
            self._fh, self._key = _HELD[key][0], key
            return
        fh = open(self.path, "a+")
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown owner"
            holders = lock_holders(self.path)
            fh.close()
            live = f"; held now by pid {', '.join(map(str, holders))}" if holders else ""
            raise ResultsFolderBusy(f"{os.path.dirname(self.path)} is in use by another run ({owner}{live}); two "
                                    f"runs into one results folder overwrite each other's checkpoints and log. Wait "
                                    f"for it, or train into another folder (another fold, trainer or seed).") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what}: host {socket.gethostname()}, pid {os.getpid()}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        _HELD[key] = [fh, 1]
        self._fh, self._key = fh, key

    def release(self) -> None:
        if self._fh is not None:
            _HELD[self._key][1] -= 1
            if _HELD[self._key][1] == 0:
                del _HELD[self._key]
                self._fh.close()   # closing drops the record lock; the file stays (its content is only informative)
            self._fh = None


# ------------------------------------------------------------------------------------------------ run record
RUN_RECORD = "dante_run.json"


def write_run_record(folder: str, record: dict) -> None:
    tmp = os.path.join(folder, RUN_RECORD + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, indent=2)
    os.replace(tmp, os.path.join(folder, RUN_RECORD))


def read_run_record(folder: str) -> Optional[dict]:
    path = os.path.join(folder, RUN_RECORD)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def split_record(channel_names: Sequence[str], privileged_indices: Sequence[int]) -> dict:
    return {"channel_names": list(channel_names), "privileged_indices": [int(i) for i in privileged_indices]}


def split_mismatch(recorded: Optional[dict], current: dict) -> Optional[str]:
    """A sentence saying how the recorded channel split differs from the current one, or None."""
    if recorded is None or recorded == current:
        return None
    return (f"the run was trained with channels {recorded['channel_names']} and privileged channel(s) "
            f"{[recorded['channel_names'][i] for i in recorded['privileged_indices']]}, but dataset.json now gives "
            f"{current['channel_names']} with privileged "
            f"{[current['channel_names'][i] for i in current['privileged_indices']]}")


# ------------------------------------------------------------------------------------------------ placeholders
class ConstantChannelCache:
    """Which cases of a preprocessed folder have constant channels among ``channels``, each case read once:
    the answer per case is stored in ``path`` with the size and modification time of its ``.pkl`` (written
    by every preprocessing of the case), and a case whose file changed is read again."""

    def __init__(self, path: str, folder: str):
        self.path, self.folder = path, folder

    def _signature(self, case: str) -> Optional[List[int]]:
        """Size and modification time of the case's .pkl; None without one (not a whole preprocessed case:
        nnU-Net reports it when it loads the case)."""
        try:
            st = os.stat(os.path.join(self.folder, case + ".pkl"))
        except FileNotFoundError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def constant_channels(self, cases: Sequence[str], non_constant, channels: Sequence[int]) -> Dict[str, List[int]]:
        """{case: its constant channels among ``channels``} for the cases that have any;
        ``non_constant(case)`` returns the non-constant ones (a full read of the case)."""
        try:
            with open(self.path) as fh:
                stored = json.load(fh)
        except (OSError, ValueError):
            stored = {}
        key = ",".join(map(str, channels))
        known = stored.get(key, {})
        changed = False
        out = {}
        for case in cases:
            sig = self._signature(case)
            if sig is None:
                continue
            entry = known.get(case)
            if entry is None or entry["signature"] != sig:
                moving = set(non_constant(case))
                entry = {"signature": sig, "constant": [c for c in channels if c not in moving]}
                known[case] = entry
                changed = True
            if entry["constant"]:
                out[case] = list(entry["constant"])
        if changed:
            stored[key] = known
            try:
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w") as fh:
                    json.dump(stored, fh)
                os.replace(tmp, self.path)
            except OSError:
                pass   # a read-only preprocessed folder: checked again next time
        return out


# ------------------------------------------------------------------------------------------------ non-finite
class NonFiniteTrainingError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the batch's cases."""


def first_non_finite(step_losses: Sequence) -> Optional[int]:
    """Index of the first step whose loss is NaN or Inf, else None."""
    for i, v in enumerate(step_losses):
        if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
            return i
    return None


def non_finite_cases(load_data, keys: Sequence[str]) -> Dict[str, List[int]]:
    """{case: channels holding NaN/Inf} among ``keys``; ``load_data(key)`` returns the (C, ...) array."""
    out = {}
    for key in dict.fromkeys(keys):
        data = np.asarray(load_data(key))
        channels = [c for c in range(data.shape[0]) if not np.isfinite(data[c]).all()]
        if channels:
            out[key] = channels
    return out


def strip_ddp_prefix(weights) -> dict:
    """Network weights without the ``module.`` prefix of a state dict saved from a DDP-wrapped network."""
    return {k.removeprefix("module."): v for k, v in weights.items()}
