"""The Stage-2 objective (paper Eq. 6), with an optional privileged-synthesis term (not in the paper)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from dante_nnunet.losses.pib import PIB
from dante_nnunet.losses.synthesis import synthesis_loss
from dante_nnunet.networks.dual_pathway import DualPathwayOutput


class DANTELoss(nn.Module):
    """L = L_task(f_L) + L_task(f_F) + lambda1 * L_PIB + lambda2 * L_Align (Eq. 6) [+ lambda_syn * L_Syn].

    ``task_loss`` is nnU-Net's own loss as its trainer builds it (Dice+CE, or Dice+BCE for regions,
    wrapped for deep supervision), applied to each pathway with the same target. ``alignment`` is one
    of ``losses/alignment.py``'s forms, ``pib`` one of ``losses/pib.py``'s (default: Eq. 3 as written). The regulariser
    weights are plain attributes so that the trainer can switch them on at the scheduled epoch; a
    term whose weight is 0 is not computed (and is reported as NaN). ``lambda_synthesis`` weighs
    ``losses/synthesis.py``'s term, which needs a network built with a synthesis head.

    After each call, ``last_terms`` holds the detached value of every term (no host sync).
    """

    def __init__(self, task_loss: nn.Module, alignment: nn.Module, lambda_pib: float, lambda_align: float,
                 pib: Optional[nn.Module] = None, lambda_synthesis: float = 0.0):
        super().__init__()
        self.task_loss = task_loss
        self.alignment = alignment
        self.pib = pib if pib is not None else PIB()
        self.lambda_pib = lambda_pib
        self.lambda_align = lambda_align
        self.lambda_synthesis = lambda_synthesis
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, output: DualPathwayOutput, target) -> torch.Tensor:
        seg_l = self.task_loss(output.seg_limited, target)
        seg_f = self.task_loss(output.seg_full, target)
        total = seg_l + seg_f
        nan = torch.full((), float("nan"), device=seg_l.device)
        pib = align = syn = nan
        if self.lambda_pib > 0:
            pib = self.pib(output.corrections, output.z_alignable)
            total = total + self.lambda_pib * pib
        if self.lambda_align > 0:
            align = self.alignment(output.z_alignable, output.z_limited)
            total = total + self.lambda_align * align
        if self.lambda_synthesis > 0:
            if output.synthesis is None:
                raise ValueError("lambda_synthesis > 0 but the network has no synthesis head "
                                 "(build_dual_pathway_network(..., synthesis=True))")
            syn = synthesis_loss(output.synthesis, output.privileged_input)
            total = total + self.lambda_synthesis * syn
        self.last_terms = {"seg_limited": seg_l.detach(), "seg_full": seg_f.detach(),
                           "pib": pib.detach(), "align": align.detach(), "synthesis": syn.detach()}
        return total
