"""Checkpoints as a CUDA run writes them, on a machine without CUDA.

``torch.save`` records each storage's device ("cuda:0" for a GPU run's tensors) and ``torch.load``
without ``map_location`` restores it there, which fails on a CPU-only machine ("Attempting to
deserialize object on a CUDA device"). ``save_as_if_on_cuda`` writes CPU tensors under the tag
"cuda:0", so loading the file fails in exactly that way unless the loader maps it to the CPU.
"""
from contextlib import contextmanager

import torch
import torch.serialization as serialization


def _cuda_tag(storage):
    return "cuda:0" if storage.device.type == "cpu" else None


@contextmanager
def _cpu_storages_tagged_cuda():
    entry = (-1, _cuda_tag, lambda storage, location: None)   # first tagger; loading goes to torch's own
    serialization._package_registry.insert(0, entry)
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def save_as_if_on_cuda(obj, path) -> None:
    with _cpu_storages_tagged_cuda():
        torch.save(obj, str(path))


def resave_as_if_on_cuda(src, dst) -> dict:
    """Copy a checkpoint file, its tensors tagged as CUDA tensors; returns its content."""
    ck = torch.load(str(src), map_location="cpu", weights_only=False)
    save_as_if_on_cuda(ck, dst)
    return ck
