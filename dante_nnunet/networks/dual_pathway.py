"""The Stage-2 network of paper Fig. 2: limited pathway (E_L, D_L) and full pathway (E_A, E_P, psi, D_F)."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dante_nnunet.networks.fusion import ResidualFusion
from dante_nnunet.networks.input_channels import channel_index

Seg = Union[torch.Tensor, List[torch.Tensor]]


class DualPathwayOutput(NamedTuple):
    """Everything one forward pass yields. Segmentations are lists (full resolution first) when deep
    supervision is on, single tensors otherwise; feature lists run from level 1 (full resolution) to
    the bottleneck."""
    seg_limited: Seg                 # D_L(E_L(X^L)): the deployed prediction
    seg_full: Seg                    # D_F(psi(E_A(X^F), E_P(X^F))): the teacher prediction
    z_limited: List[torch.Tensor]    # Z^L_i
    z_alignable: List[torch.Tensor]  # Z^A_i
    z_privileged: List[torch.Tensor]  # Z^P_i
    corrections: List[torch.Tensor]  # proj_i(Z^A_i (+) Z^P_i), the PIB target
    # with a synthesis head (losses/synthesis.py): its prediction of X^P from D_L's last features, and X^P
    synthesis: Optional[torch.Tensor] = None
    privileged_input: Optional[torch.Tensor] = None
    # with a variational fusion (fusion.VariationalFusion): cat(mu_i, log sigma_i^2) per level, the KL's input
    codes: Optional[List[torch.Tensor]] = None


class DualPathwayNet(nn.Module):
    """Takes the full input X^F (all channels, dataset order) and splits X^L off it by index.

    The decoders are built from encoder *specifications*, not encoder modules, so every parameter
    appears exactly once in ``state_dict()`` (a stock UNetDecoder registers its encoder again).

    ``activation_checkpointing``: when True, a training forward keeps only the inputs and outputs of
    each encoder, decoder and the fusion, and recomputes their insides during backward
    (``torch.utils.checkpoint``, non-reentrant): less activation memory for about one more forward
    pass of time. Results and gradients are unchanged.

    ``synthesis_head`` (optional, training only like the full pathway): a module from D_L's last feature
    map (full resolution, before the segmentation layer) to the privileged channels, ``privileged_indices``
    of the input. It is not part of the deployed network. ``club_estimator`` (optional, training only): the
    variational network of the CLUB term, held here so that nnU-Net's optimizer trains it.
    """

    def __init__(self, encoder_l: nn.Module, decoder_l: nn.Module, encoder_a: nn.Module, encoder_p: nn.Module,
                 fusion: ResidualFusion, decoder_f: nn.Module, limited_indices: Sequence[int],
                 synthesis_head: Optional[nn.Module] = None, privileged_indices: Sequence[int] = (),
                 club_estimator: Optional[nn.Module] = None):
        super().__init__()
        self.encoder_l = encoder_l
        self.decoder_l = decoder_l
        self.encoder_a = encoder_a
        self.encoder_p = encoder_p
        self.fusion = fusion
        self.decoder_f = decoder_f
        self.register_buffer("limited_index", channel_index(limited_indices),
                             persistent=False)
        if synthesis_head is not None and len(privileged_indices) == 0:
            raise ValueError("a synthesis head needs the privileged channels' indices")
        self.synthesis_head = synthesis_head
        self.register_buffer("privileged_index", channel_index(privileged_indices),
                             persistent=False)
        # training only: q(Z^P | Z^A) of the CLUB term (losses/independence.py), read by the loss, not by forward
        self.club_estimator = club_estimator
        # the Stage-1 checkpoint E_L/E_A/E_P were loaded from (set by training.transfer), else None
        self.transferred_from: Optional[str] = None
        self.activation_checkpointing = False

    def _run(self, part: nn.Module, *args):
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(part, *args, use_reentrant=False)
        return part(*args)

    def select_limited(self, x_full: torch.Tensor) -> torch.Tensor:
        return x_full.index_select(1, self.limited_index)

    def forward_limited(self, x_limited: torch.Tensor) -> Seg:
        """The deployed network f_L = D_L o E_L on the limited channels alone."""
        return self.decoder_l(self.encoder_l(x_limited))

    def forward_full(self, x_full: torch.Tensor) -> Seg:
        """The teacher f_F = D_F o psi(E_A, E_P) on all channels (no limited pathway computed)."""
        fused = self.fusion(self.encoder_a(x_full), self.encoder_p(x_full))[0]
        return self.decoder_f(fused)

    def _decode_limited(self, z_l: List[torch.Tensor]):
        """D_L(Z^L) and, with a synthesis head, its prediction from D_L's last stage output (caught by a
        forward hook for this call only: a recomputation under activation checkpointing does not fire it)."""
        if self.synthesis_head is None:
            return self._run(self.decoder_l, z_l), None
        caught = []
        handle = self.decoder_l.stages[-1].register_forward_hook(lambda _m, _i, out: caught.append(out))
        try:
            seg = self._run(self.decoder_l, z_l)
        finally:
            handle.remove()
        return seg, self.synthesis_head(caught[0])

    def forward(self, x_full: torch.Tensor) -> DualPathwayOutput:
        z_l = self._run(self.encoder_l, self.select_limited(x_full))
        z_a = self._run(self.encoder_a, x_full)
        z_p = self._run(self.encoder_p, x_full)
        fusion = self._run(self.fusion, z_a, z_p)   # (fused, corrections[, codes of a variational fusion])
        z_f, corrections = fusion[0], fusion[1]
        seg_l, synthesis = self._decode_limited(z_l)
        privileged = x_full.index_select(1, self.privileged_index) if synthesis is not None else None
        return DualPathwayOutput(seg_l, self._run(self.decoder_f, z_f), z_l, z_a, z_p, corrections, synthesis,
                                 privileged, fusion[2] if len(fusion) > 2 else None)

    def set_deep_supervision(self, enabled: bool) -> None:
        self.decoder_l.deep_supervision = enabled
        self.decoder_f.deep_supervision = enabled


class LimitedPathway(nn.Module):
    """A view of a DualPathwayNet that takes all channels and runs only the deployed pathway on the
    limited ones: what end-of-training validation feeds to nnU-Net's predictor."""

    def __init__(self, dual: DualPathwayNet):
        super().__init__()
        self.dual = dual

    def forward(self, x_full: torch.Tensor) -> Seg:
        return self.dual.forward_limited(self.dual.select_limited(x_full))


class FullPathway(nn.Module):
    """A view that runs only the full (teacher) pathway."""

    def __init__(self, dual: DualPathwayNet):
        super().__init__()
        self.dual = dual

    def forward(self, x_full: torch.Tensor) -> Seg:
        return self.dual.forward_full(x_full)
