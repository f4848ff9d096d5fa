"""Encoders and decoders from nnU-Net plans: the one module that knows dynamic-network-architectures'
internals (the ``encoder``/``decoder`` attributes of its UNets and the keys of their state dicts).

Every pathway part is cut from a stock network that nnU-Net's own ``get_network_from_plans`` builds
from the plans (same class, kwargs and weight initialisation as plain nnU-Net), so E_L/D_L are exactly
the network a plain nnU-Net would deploy on the limited channels.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict

import torch
from torch import nn

from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from dante_nnunet.config import ChannelSplit
from dante_nnunet.losses.independence import CLUBEstimator
from dante_nnunet.networks.cross_modal_mae import CrossModalMAE
from dante_nnunet.networks.dual_pathway import DualPathwayNet
from dante_nnunet.networks.fusion import ResidualFusion, VariationalFusion

# attributes of an encoder that UNetDecoder reads when it is built
_ENCODER_SPEC_ATTRS = ("output_channels", "strides", "conv_op", "kernel_sizes", "conv_bias", "norm_op",
                       "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin", "nonlin_kwargs")


def build_stock_network(configuration_manager, num_input_channels: int, num_output_channels: int,
                        deep_supervision: bool) -> nn.Module:
    """The plain nnU-Net network of the plans (what nnUNetTrainer.build_network_architecture builds)."""
    return get_network_from_plans(configuration_manager.network_arch_class_name,
                                  configuration_manager.network_arch_init_kwargs,
                                  configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, num_output_channels, allow_init=True,
                                  deep_supervision=deep_supervision)


def _split_unet(net: nn.Module, arch_name: str):
    """Return (encoder, decoder) of a stock UNet, with the decoder no longer registering the encoder."""
    decoder = getattr(net, "decoder", None)
    encoder = getattr(net, "encoder", None)
    if not isinstance(decoder, UNetDecoder) or encoder is None or not getattr(encoder, "return_skips", False):
        raise TypeError(f"DANTE needs a UNet with an encoder returning skips and a UNetDecoder "
                        f"(PlainConvUNet, ResidualEncoderUNet); the plans name {arch_name}")
    spec = SimpleNamespace(**{a: getattr(encoder, a) for a in _ENCODER_SPEC_ATTRS})
    del decoder.encoder          # drop the registered submodule ...
    decoder.encoder = spec       # ... and keep the plain attributes the decoder may read later
    return encoder, decoder


def build_dual_pathway_network(configuration_manager, split: ChannelSplit, num_output_channels: int,
                               deep_supervision: bool = True, fusion_zero_init: bool = False,
                               synthesis: bool = False, variational: bool = False,
                               club: bool = False) -> DualPathwayNet:
    """E_L on the limited channels; E_A and E_P on all channels; residual fusion at every encoder
    level (proj_i zero-initialised if ``fusion_zero_init``); D_L on Z^L and D_F on Z^F; each part of the
    plans' architecture (2D or 3D). ``synthesis``: a 1x1 convolution (with bias) from D_L's last feature
    map to the privileged channels (losses/synthesis.py), He-initialised as the plans' UNets are.
    ``variational``: the fusion's correction is a Gaussian code (fusion.VariationalFusion). ``club``: with the
    CLUB term's estimator q(Z^P | Z^A) (losses/independence.py)."""
    arch = configuration_manager.network_arch_class_name
    n_lim, n_all = len(split.limited_indices), split.num_channels
    enc_l, dec_l = _split_unet(build_stock_network(configuration_manager, n_lim, num_output_channels,
                                                   deep_supervision), arch)
    enc_a, dec_f = _split_unet(build_stock_network(configuration_manager, n_all, num_output_channels,
                                                   deep_supervision), arch)
    enc_p, _ = _split_unet(build_stock_network(configuration_manager, n_all, num_output_channels,
                                               deep_supervision), arch)
    fusion = (VariationalFusion if variational else ResidualFusion)(enc_a.output_channels, enc_a.conv_op,
                                                                    zero_init=fusion_zero_init)
    head = None
    if synthesis:
        head = enc_l.conv_op(enc_l.output_channels[0], len(split.privileged_indices), 1, 1, 0, bias=True)
        head.apply(InitWeights_He(1e-2))
    estimator = CLUBEstimator(enc_a.output_channels) if club else None
    return DualPathwayNet(enc_l, dec_l, enc_a, enc_p, fusion, dec_f, split.limited_indices, head,
                          split.privileged_indices, estimator)


def _drop_unused_heads(decoder: nn.Module) -> nn.Module:
    """A UNetDecoder built without deep supervision still holds one output convolution per stage but
    uses only the last (``seg_layers[-1]``). The unused ones are replaced by parameter-free identities:
    under DDP, parameters that never receive a gradient stop the second step ("Expected to have
    finished reduction"), and nnU-Net builds its DDP without ``find_unused_parameters``."""
    decoder.seg_layers = nn.ModuleList([nn.Identity() for _ in decoder.seg_layers[:-1]] + [decoder.seg_layers[-1]])
    return decoder


def build_cross_modal_mae(configuration_manager, split: ChannelSplit, cross_modal: bool = True,
                          limited_only: bool = False, synthesis: bool = False) -> CrossModalMAE:
    """The Stage-1 network: E_L, E_A, E_P built exactly as ``build_dual_pathway_network`` builds them
    (so their state dicts transfer key for key), Psi_1 and Psi_2 (Psi_2 only if ``cross_modal``),
    D_L^REC with one output per limited channel and D_F^REC with one per channel. The reconstruction
    decoders are the plans' UNet decoders without deep supervision (and without its unused heads); their
    1x1 output convolutions are linear, so they regress intensities. ``limited_only``: E_L and D_L^REC
    alone (a masked autoencoder of the limited channels; ``cross_modal`` must then be False). ``synthesis``
    (limited-only; not in the paper): D_L^REC has one more output per privileged channel, which it
    synthesises (see ``CrossModalMAE``)."""
    arch = configuration_manager.network_arch_class_name
    n_lim, n_all = len(split.limited_indices), split.num_channels
    if synthesis and not limited_only:
        raise ValueError("privileged synthesis in Stage 1 needs limited_only=True (E_L and D_L^REC alone)")
    n_syn = n_all - n_lim if synthesis else 0
    enc_l, dec_l = _split_unet(build_stock_network(configuration_manager, n_lim, n_lim + n_syn, False), arch)
    if limited_only:
        if cross_modal:
            raise ValueError("a limited-only MAE has no cross-modal branch: pass cross_modal=False")
        return CrossModalMAE(enc_l, None, None, None, None, _drop_unused_heads(dec_l), None, split.limited_indices,
                             synthesis_channels=n_syn)
    enc_a, dec_f = _split_unet(build_stock_network(configuration_manager, n_all, n_all, False), arch)
    enc_p, _ = _split_unet(build_stock_network(configuration_manager, n_all, n_all, False), arch)
    fusion_ap = ResidualFusion(enc_a.output_channels, enc_a.conv_op)
    fusion_lp = ResidualFusion(enc_a.output_channels, enc_a.conv_op) if cross_modal else None
    return CrossModalMAE(enc_l, enc_a, enc_p, fusion_ap, fusion_lp, _drop_unused_heads(dec_l),
                         _drop_unused_heads(dec_f), split.limited_indices)


def deployed_state_dict(dual: DualPathwayNet) -> Dict[str, torch.Tensor]:
    """The limited pathway's weights under the keys of the stock network (``encoder.*``,
    ``decoder.*`` and the stock decoder's second registration of its encoder, ``decoder.encoder.*``),
    so that they load strictly into ``build_stock_network(..., n_limited, ...)``."""
    enc = dual.encoder_l.state_dict()
    out = {f"encoder.{k}": v for k, v in enc.items()}
    out.update({f"decoder.encoder.{k}": v for k, v in enc.items()})
    out.update({f"decoder.{k}": v for k, v in dual.decoder_l.state_dict().items()})
    return out
