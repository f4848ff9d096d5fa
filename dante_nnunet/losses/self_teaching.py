"""The full pathway as the deployed pathway's teacher on unlabelled cases (issue 40; not in the paper).

Generalized distillation (Lopez-Paz et al., 2016) at the output, online: on a case without a label (nnU-Net's
ignore label everywhere), the target of the limited pathway's task loss is the full pathway's own
prediction, detached, where the full pathway is sure, and nnU-Net's ignore label elsewhere; labelled cases
keep their labels. The same nnU-Net loss (Dice + CE, or Dice + BCE for regions, with its ignore handling)
then scores the limited pathway against the mixed target, so nothing of nnU-Net's loss is restated.

Targets, in nnU-Net's two formats (what its loss receives after its transforms):

- **regions** (``regions=True``; Dice + BCE): the target has one channel per region plus the ignore channel
  last (1 = ignored). The teacher's target is p_r > 0.5 for each region r (p = sigmoid of the full
  pathway's logits); a voxel is kept when every region is sure, min_r max(p_r, 1 - p_r) >= ``threshold``,
  and ignored otherwise (one ignore channel serves every region, as in nnU-Net).
- **labels** (``regions=False``; Dice + CE): the target is one channel of label values. The teacher's target
  is argmax_c p_c (p = softmax), kept when max_c p_c >= ``threshold``, else ``ignore_label``.

Per deep-supervision level the teacher's logits of that level give that level's target.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def _levels(x: Tensors) -> List[torch.Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


@torch.no_grad()
def teacher_target(logits: torch.Tensor, regions: bool, threshold: float,
                   ignore_label: Optional[int] = None) -> torch.Tensor:
    """One level's target from the full pathway's logits (B x C x ...), as the module docstring says.
    ``threshold`` in [0.5, 1] (regions) or [0, 1] (labels); above 1 every voxel is ignored (a warm-up)."""
    logits = logits.detach().float()
    if regions:
        p = torch.sigmoid(logits)
        sure = torch.maximum(p, 1 - p).amin(1, keepdim=True) >= threshold
        return torch.cat([(p > 0.5).float(), (~sure).float()], 1)
    if ignore_label is None:
        raise ValueError("a label-based teacher target needs nnU-Net's ignore label")
    p = torch.softmax(logits, 1)
    conf, hard = p.max(1, keepdim=True)
    return torch.where(conf >= threshold, hard, torch.full_like(hard, ignore_label)).float()


def mixed_target(real: Tensors, teacher_logits: Tensors, unlabelled: torch.Tensor, regions: bool, threshold: float,
                 ignore_label: Optional[int] = None) -> Tensors:
    """Per level: the real target for labelled cases, the teacher's (``teacher_target``) for the cases where
    ``unlabelled`` (one bool per case) is True. Returns the same structure as ``real``."""
    real_l, teacher_l = _levels(real), _levels(teacher_logits)
    if len(real_l) != len(teacher_l):
        raise ValueError(f"{len(real_l)} target levels but {len(teacher_l)} teacher levels")
    out = []
    for r, t in zip(real_l, teacher_l):
        mask = unlabelled.to(r.device).view(-1, *([1] * (r.ndim - 1)))
        out.append(torch.where(mask, teacher_target(t, regions, threshold, ignore_label).to(r.dtype), r))
    return out if isinstance(real, (list, tuple)) else out[0]


@torch.no_grad()
def teaching_statistics(teacher_logits: torch.Tensor, student_logits: torch.Tensor, regions: bool,
                        threshold: float, num_classes: int) -> Dict[str, torch.Tensor]:
    """Diagnostics on the unlabelled cases of a batch (full resolution): ``passed``, per region, the share of
    voxels whose confidence in that region passes ``threshold`` (labels: per foreground class c, the share
    of the voxels the teacher assigns to c whose confidence passes it), and ``passed_all`` the
    share kept by the rule; ``agreement``, per region / class, the Dice of the teacher's and the deployed
    pathway's hard predictions (1 where both are empty). Detached device tensors."""
    t, s = teacher_logits.detach().float(), student_logits.detach().float()
    if regions:
        pt, ps = torch.sigmoid(t), torch.sigmoid(s)
        conf = torch.maximum(pt, 1 - pt)
        passed = (conf >= threshold).float().mean(dim=[0, *range(2, t.ndim)])
        passed_all = (conf.amin(1) >= threshold).float().mean()
        ht, hs = pt > 0.5, ps > 0.5
    else:
        pt = torch.softmax(t, 1)
        conf, lt = pt.max(1)
        ls = s.argmax(1)
        classes = range(1, num_classes)
        passed_all = (conf >= threshold).float().mean()
        passed = torch.stack([((conf >= threshold) & (lt == c)).float().sum() / (lt == c).float().sum().clamp(min=1)
                              for c in classes])
        ht = torch.stack([lt == c for c in classes], 1)
        hs = torch.stack([ls == c for c in classes], 1)
    dims = [0, *range(2, ht.ndim)]
    inter = (ht & hs).float().sum(dims)
    total = ht.float().sum(dims) + hs.float().sum(dims)
    agreement = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return {"passed": passed, "passed_all": passed_all, "agreement": agreement}
