"""The distillation baseline's loss (CMFD / PMKL style): a student on the limited channels learns
from the task and from a frozen all-channel teacher of the same architecture.

    L = L_task(student) + w_feat * L_feat + w_logit * L_logit

- ``feature_distillation``: sum over encoder levels of the mean squared difference between student
  and teacher feature maps (same shapes: same plans). Mean over batch x channels x voxels, so the
  weight does not depend on the patch size.
- ``logit_distillation``: T^2 x the mean over voxels of KL(teacher || student) of the temperature-
  softened outputs: softmax over classes for label training; for nnU-Net's region training
  (sigmoid outputs) the Bernoulli KL of each region, summed over regions. Full-resolution output only.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dante_nnunet.losses.cases import HasPrivileged, complete_cases_mask, select_cases


def feature_distillation(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    if len(student) != len(teacher) or len(student) == 0:
        raise ValueError(f"need the same non-zero number of levels, got {len(student)} and {len(teacher)}")
    return torch.stack([(s.float() - t.float()).pow(2).mean() for s, t in zip(student, teacher)]).sum()


def logit_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0,
                       regions: bool = False) -> torch.Tensor:
    s, t = student.float() / temperature, teacher.float() / temperature
    if regions:
        # KL(Bern(q) || Bern(p)) = q (log q - log p) + (1-q) (log(1-q) - log(1-p)), summed over regions
        q, log_q, log_1q = torch.sigmoid(t), F.logsigmoid(t), F.logsigmoid(-t)
        kl = q * (log_q - F.logsigmoid(s)) + (1 - q) * (log_1q - F.logsigmoid(-s))
    else:
        log_q = F.log_softmax(t, 1)
        kl = log_q.exp() * (log_q - F.log_softmax(s, 1))
    return kl.sum(1).mean() * temperature ** 2


class DistillationLoss(nn.Module):
    """nnU-Net's task loss on the student plus the two distillation terms; ``last_terms`` keeps the
    unweighted terms (detached) for logging.

    ``has_privileged`` (one bool per case, or None): a case without the privileged scan shows the teacher
    a placeholder, so it gets the task loss only; the distillation terms are means over the other cases
    (NaN in ``last_terms`` and 0 in the loss when there are none)."""

    def __init__(self, task_loss: nn.Module, feature_weight: float = 1.0, logit_weight: float = 1.0,
                 temperature: float = 2.0, regions: bool = False):
        super().__init__()
        self.task_loss = task_loss
        self.feature_weight, self.logit_weight = feature_weight, logit_weight
        self.temperature, self.regions = temperature, regions
        self.last_terms = {}

    def forward(self, student_out, teacher_out, student_features, teacher_features, target,
                has_privileged: HasPrivileged = None) -> torch.Tensor:
        task = self.task_loss(student_out, target)
        s = student_out[0] if isinstance(student_out, (list, tuple)) else student_out
        t = teacher_out[0] if isinstance(teacher_out, (list, tuple)) else teacher_out
        keep = complete_cases_mask(has_privileged, s.shape[0])
        if keep is not None:
            if not bool(keep.any()):
                nan = torch.full((), float("nan"), device=task.device)
                self.last_terms = {"task": task.detach(), "feature": nan, "logit": nan}
                return task
            index = keep.nonzero().flatten()
            s, t = select_cases(s, index), select_cases(t, index)
            student_features, teacher_features = select_cases(student_features, index), select_cases(teacher_features,
                                                                                                    index)
        feat = feature_distillation(student_features, teacher_features)
        logit = logit_distillation(s, t, self.temperature, self.regions)
        self.last_terms = {"task": task.detach(), "feature": feat.detach(), "logit": logit.detach()}
        return task + self.feature_weight * feat + self.logit_weight * logit
