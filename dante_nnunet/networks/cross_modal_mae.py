"""The Stage-1 network (paper, Cross-Modal Self-Supervised Learning): the encoders E_L, E_A, E_P of
Stage 2, two fusions Psi_1, Psi_2 of the design of Eq. 2 with their own parameters, and two
reconstruction decoders: D_L^REC for the limited channels and one shared D_F^REC for all channels."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn

from dante_nnunet.networks.fusion import ResidualFusion
from dante_nnunet.networks.input_channels import channel_index

# the parts Stage 2 takes over (their names are the checkpoint contract, see training/transfer.py)
TRANSFERRED_PARTS = ("encoder_l", "encoder_a", "encoder_p")


class CrossModalMAEOutput(NamedTuple):
    rec_limited: torch.Tensor              # D_L^REC(E_L(X^L)), Eq. 7
    rec_full_ap: Optional[torch.Tensor]    # D_F^REC(Psi_1(E_A(X^F), E_P(X^F))), Eq. 8; None: limited only
    rec_full_lp: Optional[torch.Tensor]    # D_F^REC(Psi_2(E_L(X^L), E_P(X^F))), Eq. 9; None without it
    syn_privileged: Optional[torch.Tensor] = None   # D_L^REC's extra outputs: X^P synthesised from E_L(X^L)


class CrossModalMAE(nn.Module):
    """Takes the *masked* full input X^F (all channels, dataset order) and cuts X^L off it by index,
    so both views hide the same voxels (see ``dante_nnunet.networks.masking``).

    ``fusion_lp`` (Psi_2) is None for the self-reconstruction ablation; the L+P->F branch is then not
    computed (and has no parameters, so DDP sees no unused ones). E_L's features Z^L are computed once
    and feed both D_L^REC (Eq. 7) and Psi_2 (Eq. 9).

    ``encoder_a``, ``encoder_p``, ``fusion_ap`` and ``decoder_f_rec`` all None: a masked autoencoder of the
    limited channels alone (E_L and D_L^REC, Eq. 7 only), what a user without privileged scans would
    pre-train; privileged channels are never read.

    ``synthesis_channels`` > 0 (a limited-only MAE only; not in the paper): D_L^REC has that many more
    outputs, the privileged channels synthesised from E_L's features (``syn_privileged``), so that
    privileged scans without labels give E_L a dense target it must infer from the limited channels.
    The network still reads no privileged channel; the loss compares with them.
    """

    def __init__(self, encoder_l: nn.Module, encoder_a: Optional[nn.Module], encoder_p: Optional[nn.Module],
                 fusion_ap: Optional[ResidualFusion], fusion_lp: Optional[ResidualFusion],
                 decoder_l_rec: nn.Module, decoder_f_rec: Optional[nn.Module], limited_indices: Sequence[int],
                 synthesis_channels: int = 0):
        super().__init__()
        full = (encoder_a, encoder_p, fusion_ap, decoder_f_rec)
        if any(m is None for m in full) and not all(m is None for m in full) or (encoder_a is None and fusion_lp is not None):
            raise ValueError("the full pathway (E_A, E_P, Psi_1, D_F^REC) is given whole or not at all, and Psi_2 "
                             "needs it")
        if synthesis_channels and encoder_a is not None:
            raise ValueError("privileged synthesis is a limited-only MAE's extra task: build it without the full "
                             "pathway")
        self.synthesis_channels = synthesis_channels
        self.num_limited = len(limited_indices)
        self.encoder_l = encoder_l
        self.encoder_a = encoder_a
        self.encoder_p = encoder_p
        self.fusion_ap = fusion_ap
        self.fusion_lp = fusion_lp
        self.decoder_l_rec = decoder_l_rec
        self.decoder_f_rec = decoder_f_rec
        self.register_buffer("limited_index", channel_index(limited_indices),
                             persistent=False)

    @property
    def cross_modal(self) -> bool:
        return self.fusion_lp is not None

    @property
    def limited_only(self) -> bool:
        return self.encoder_a is None

    def forward(self, x_masked: torch.Tensor) -> CrossModalMAEOutput:
        z_l = self.encoder_l(x_masked.index_select(1, self.limited_index))
        if self.limited_only:
            out = self.decoder_l_rec(z_l)
            if self.synthesis_channels:
                return CrossModalMAEOutput(out[:, :self.num_limited], None, None, out[:, self.num_limited:])
            return CrossModalMAEOutput(out, None, None)
        z_a = self.encoder_a(x_masked)
        z_p = self.encoder_p(x_masked)
        rec_l = self.decoder_l_rec(z_l)
        fused_ap, _ = self.fusion_ap(z_a, z_p)
        rec_ap = self.decoder_f_rec(fused_ap)
        rec_lp = None
        if self.fusion_lp is not None:
            fused_lp, _ = self.fusion_lp(z_l, z_p)
            rec_lp = self.decoder_f_rec(fused_lp)
        return CrossModalMAEOutput(rec_l, rec_ap, rec_lp)
