"""The Stage-1 reconstruction objective (paper Eqs. 7-9), and the privileged synthesis a limited-only
Stage 1 may add (not in the paper)."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from dante_nnunet.losses.cases import HasPrivileged, complete_cases_mask
from dante_nnunet.losses.synthesis import synthesis_loss
from dante_nnunet.networks.input_channels import channel_index

RECONSTRUCTION_TERMS = ("l_to_l", "ap_to_f", "lp_to_f", "synthesis")


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """||M (.) (prediction - target)||_2^2 of Eqs. 7-9, normalised to a mean squared error over the
    masked voxels: the sum of squared errors at masked voxels, over all channels and cases of the
    batch, divided by (number of masked voxels in the batch) x (number of channels).

    ``mask`` is (B, 1, *spatial) with 1 = masked, shared by all channels. Visible voxels do not count.
    Computed in float32 (also under autocast). A batch with no masked voxel gives 0.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"reconstruction has shape {tuple(prediction.shape)}, target {tuple(target.shape)}")
    m = mask.float()
    sq = (prediction.float() - target.float()) ** 2 * m
    denom = (m.sum() * prediction.shape[1]).clamp_min(1.0)
    return sq.sum() / denom


class ReconstructionLoss(nn.Module):
    """L_Stage1 = L_{L->L} + L_{A+P->F} + L_{L+P->F} (Eqs. 7, 8, 9), each a ``masked_mse``.

    - Eq. 7 compares D_L^REC(E_L(X^L)) with the limited channels of the unmasked input;
    - Eqs. 8 and 9 compare D_F^REC(...) with all channels of the unmasked input.

    ``cross_modal=False`` drops Eq. 9 (the ablation in which each pathway reconstructs only its own
    input; paper Table 2, "w/o cross-modal pretrain"); its term is then reported as NaN. For a network
    without the full pathway (a limited-only MAE, ``rec_full_ap`` None; ``cross_modal`` False) the loss is
    Eq. 7 alone and Eqs. 8-9 are reported as NaN.
    Cases without the privileged scan (``has_privileged`` False; their privileged channels are a
    placeholder) train Eq. 7 only: their voxels leave the masks of Eqs. 8 and 9, which are normalised over
    the masked voxels of the other cases. A batch with no complete case reports Eqs. 8-9 as NaN (they
    add 0, with the full pathway kept in the graph for DDP).

    A limited-only network with privileged synthesis (``syn_privileged`` set; not in the paper) adds
    ``synthesis_loss`` (losses/synthesis.py: the mean squared error over every voxel, masked or not, and
    every privileged channel of the complete cases; weight 1) between it and the unmasked privileged
    channels: L = Eq. 7 + L_Syn. Its term is NaN for every other network, and for a batch without a
    complete case (it then adds 0).

    After each call ``last_terms`` holds the detached value of every term (no host sync).
    """

    def __init__(self, limited_indices: Sequence[int], cross_modal: bool = True,
                 privileged_indices: Sequence[int] = ()):
        super().__init__()
        self.register_buffer("limited_index", channel_index(limited_indices),
                             persistent=False)
        self.register_buffer("privileged_index", channel_index(privileged_indices), persistent=False)
        self.cross_modal = cross_modal
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, output, x_full: torch.Tensor, mask: torch.Tensor,
                has_privileged: HasPrivileged = None) -> torch.Tensor:
        """``output``: a ``CrossModalMAEOutput``; ``x_full``: the unmasked input, all channels;
        ``has_privileged``: one bool per case (None: every case has its privileged scan)."""
        x_limited = x_full.index_select(1, self.limited_index.to(x_full.device))
        l_to_l = masked_mse(output.rec_limited, x_limited, mask)
        full_mask, any_complete = mask, True
        keep = complete_cases_mask(has_privileged, mask.shape[0])
        if keep is not None:
            any_complete = bool(keep.any())
            full_mask = mask * keep.to(mask.device, mask.dtype).view(-1, *([1] * (mask.ndim - 1)))
        nan = torch.full((), float("nan"), device=l_to_l.device)
        if output.rec_full_ap is None:   # a limited-only MAE: Eq. 7 alone
            if self.cross_modal:
                raise ValueError("cross-modal loss needs the full pathway's reconstructions; the network is a "
                                 "limited-only MAE")
            if output.syn_privileged is None:
                self.last_terms = {"l_to_l": l_to_l.detach(), "ap_to_f": nan, "lp_to_f": nan, "synthesis": nan}
                return l_to_l
            syn = self._synthesis(output.syn_privileged, x_full, keep)
            self.last_terms = {"l_to_l": l_to_l.detach(), "ap_to_f": nan, "lp_to_f": nan,
                               "synthesis": syn.detach() if any_complete else nan}
            return l_to_l + syn
        ap_to_f = masked_mse(output.rec_full_ap, x_full, full_mask)
        total = l_to_l + ap_to_f
        lp_to_f = nan
        if self.cross_modal:
            if output.rec_full_lp is None:
                raise ValueError("cross-modal loss needs the L+P->F reconstruction (Eq. 9); the network "
                                 "was built without it")
            lp_to_f = masked_mse(output.rec_full_lp, x_full, full_mask)
            total = total + lp_to_f
        self.last_terms = {"l_to_l": l_to_l.detach(), "ap_to_f": ap_to_f.detach() if any_complete else nan,
                           "lp_to_f": lp_to_f.detach() if any_complete else nan, "synthesis": nan}
        return total

    def _synthesis(self, prediction: torch.Tensor, x_full: torch.Tensor, keep) -> torch.Tensor:
        if self.privileged_index.numel() != prediction.shape[1]:
            raise ValueError(f"the network synthesises {prediction.shape[1]} privileged channel(s); the loss was "
                             f"given {self.privileged_index.numel()} privileged index(es)")
        target = x_full.index_select(1, self.privileged_index.to(x_full.device))
        if keep is None:
            return synthesis_loss(prediction, target)
        if not bool(keep.any()):
            return 0.0 * prediction.float().sum()
        k = keep.to(prediction.device)
        return synthesis_loss(prediction[k], target[k])
