"""Which cases of a batch have their privileged scan: the one mask every loss with privileged terms reads
(training cases listed in dataset.json's "cases_without_privileged" carry a placeholder instead)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

HasPrivileged = Optional[Union[Sequence[bool], torch.Tensor]]


def complete_cases_mask(has_privileged: HasPrivileged, batch_size: int) -> Optional[torch.Tensor]:
    """None when every case of the batch has its privileged scan (``has_privileged`` None or all True);
    otherwise ``has_privileged`` as a bool tensor on the CPU (host values: no device synchronisation)."""
    if has_privileged is None:
        return None
    keep = torch.as_tensor(has_privileged, dtype=torch.bool).cpu()
    if keep.numel() != batch_size:
        raise ValueError(f"has_privileged gives {keep.numel()} values for a batch of {batch_size}")
    return None if bool(keep.all()) else keep


def select_cases(x, index: torch.Tensor):
    """The cases ``index`` (a long tensor) of a batch tensor, of each tensor of a list (deep supervision,
    feature levels), or None."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [t.index_select(0, index.to(t.device)) for t in x]
    return x.index_select(0, index.to(x.device))
