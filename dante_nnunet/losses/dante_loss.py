"""The Stage-2 objective (paper Eq. 6), with an optional privileged-synthesis term (not in the paper), and
its per-case masking for training cases without the privileged scan."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from dante_nnunet.losses.cases import HasPrivileged, complete_cases_mask, select_cases
from dante_nnunet.losses.independence import CLUBEstimator, club_terms
from dante_nnunet.losses.pib import PIB
from dante_nnunet.losses.synthesis import synthesis_loss
from dante_nnunet.networks.dual_pathway import DualPathwayOutput

# the terms of Eq. 6 (and the synthesis term) that DANTELoss reports in ``last_terms``, in log order
# (club: the CLUB bound on I(Z^A; Z^P); club_q: its estimator's own loss, losses/independence.py)
LOSS_TERMS = ("seg_limited", "seg_full", "pib", "align", "synthesis", "club", "club_q")


def privileged_part(output: DualPathwayOutput, target, has_privileged) -> Optional[tuple]:
    """(output, target) restricted to the cases that have their privileged scan, or None when no case has
    it. ``has_privileged``: one bool per case (host values; None = every case has it)."""
    keep = complete_cases_mask(has_privileged, output.z_limited[0].shape[0])
    if keep is None:
        return output, target
    if not bool(keep.any()):
        return None
    index = keep.nonzero().flatten()
    return DualPathwayOutput(*(select_cases(x, index) for x in output)), select_cases(target, index)


def _privileged_graph_zero(output: DualPathwayOutput, club: Optional[nn.Module] = None) -> torch.Tensor:
    """0 x (sum of every output that only the privileged terms read): adds nothing, but keeps the full
    pathway's and the synthesis head's parameters in the graph (DDP requires every parameter to get a
    gradient in every step, also in a step whose batch has no case with the privileged scan)."""
    seg_full = output.seg_full if isinstance(output.seg_full, (list, tuple)) else [output.seg_full]
    parts = list(seg_full) + list(output.corrections) + list(output.z_alignable) + list(output.z_privileged)
    if output.synthesis is not None:
        parts.append(output.synthesis)
    if club is not None:
        parts.extend(club.parameters())
    return 0.0 * torch.stack([p.float().sum() for p in parts]).sum()


class DANTELoss(nn.Module):
    """L = L_task(f_L) + L_task(f_F) + lambda1 * L_PIB + lambda2 * L_Align (Eq. 6) [+ lambda_syn * L_Syn].

    ``task_loss`` is nnU-Net's own loss as its trainer builds it (Dice+CE, or Dice+BCE for regions,
    wrapped for deep supervision), applied to each pathway with the same target. ``alignment`` is one
    of ``losses/alignment.py``'s forms, ``pib`` one of ``losses/pib.py``'s (default: Eq. 3 as written). The regulariser
    weights are plain attributes so that the trainer can switch them on at the scheduled epoch; a
    term whose weight is 0 is not computed (and is reported as NaN). ``lambda_synthesis`` weighs
    ``losses/synthesis.py``'s term, which needs a network built with a synthesis head.

    Cases without the privileged scan (``has_privileged`` False; their privileged channels are a
    placeholder): L_task(f_L) uses every case; L_task(f_F), L_PIB, L_Align and L_Syn use only the cases
    that have it, each normalised over those cases (the same per-element means on the smaller batch).
    A batch with none of them is L_task(f_L) alone, and its other terms are logged as NaN.

    ``club`` (optional): the estimator q(Z^P | Z^A) of ``losses/independence.py``; then every step adds its
    own loss (features detached: it trains q only, from the first epoch, so q is fitted when the bound
    starts) and ``lambda_club`` x the CLUB bound on I(Z^A; Z^P) (q detached: it trains the encoders only),
    on the cases with the privileged scan. Both are logged (``club``, ``club_q``).

    After each call, ``last_terms`` holds the detached value of every term (no host sync).
    """

    def __init__(self, task_loss: nn.Module, alignment: nn.Module, lambda_pib: float, lambda_align: float,
                 pib: Optional[nn.Module] = None, lambda_synthesis: float = 0.0,
                 club: Optional[CLUBEstimator] = None, lambda_club: float = 0.0, club_samples: int = 256):
        super().__init__()
        self.task_loss = task_loss
        self.alignment = alignment
        self.pib = pib if pib is not None else PIB()
        self.lambda_pib = lambda_pib
        self.lambda_align = lambda_align
        self.lambda_synthesis = lambda_synthesis
        self.club = club
        self.lambda_club = lambda_club
        self.club_samples = club_samples
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, output: DualPathwayOutput, target, has_privileged: HasPrivileged = None,
                limited_target=None) -> torch.Tensor:
        """``limited_target`` (optional): the limited pathway's own target, e.g. the full pathway's predictions
        on unlabelled cases (losses/self_teaching.py ``mixed_target``); every other term reads ``target``."""
        seg_l = self.task_loss(output.seg_limited, target if limited_target is None else limited_target)
        nan = torch.full((), float("nan"), device=seg_l.device)
        seg_f = pib = align = syn = club = club_q = nan
        part = privileged_part(output, target, has_privileged)
        if part is None:
            total = seg_l + _privileged_graph_zero(output, self.club)
            self.last_terms = {"seg_limited": seg_l.detach(), "seg_full": nan, "pib": nan, "align": nan,
                               "synthesis": nan, "club": nan, "club_q": nan}
            return total
        output, target = part
        seg_f = self.task_loss(output.seg_full, target)
        total = seg_l + seg_f
        if self.lambda_pib > 0:
            pib = self.pib(output.corrections, output.z_alignable, output.codes)
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
        if self.club is not None:
            club, club_q = club_terms(self.club, output.z_alignable, output.z_privileged, self.club_samples)
            total = total + club_q + (self.lambda_club * club if self.lambda_club > 0 else 0.0 * club)
        self.last_terms = {"seg_limited": seg_l.detach(), "seg_full": seg_f.detach(),
                           "pib": pib.detach(), "align": align.detach(), "synthesis": syn.detach(),
                           "club": club.detach(), "club_q": club_q.detach()}
        return total
