"""Input-channel handling of the baselines' stock networks (no nnU-Net trainer knowledge).

The baselines train a stock nnU-Net network on the same preprocessed data as DANTE, which holds
every channel, but deploy it on the limited channels only. Two forward pre-hooks on the network's
encoder do this without changing its state-dict keys:

- ``select_channels``: the encoder sees only the given channels (lower bound, distillation student).
- ``ModalityDropout``: in training mode each case loses all privileged channels with probability p
  (they are set to 0, the channel mean after nnU-Net's z-scoring); in eval mode they are always 0,
  because they are absent at test time (missing-modality baseline).

``drop_input_channels`` turns an all-channel network whose dropped channels are zero into the stock
network on the remaining channels: a convolution of an all-zero input channel contributes nothing (its
padding is zero too), so slicing the first convolution's weight gives exactly the same output.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd


def channel_index(indices: Sequence[int]) -> torch.Tensor:
    """The channel indices of a split (``config.ChannelSplit``) as the index tensor of ``index_select``;
    modules register it as a non-persistent buffer, so it follows ``.to(device)`` and stays out of
    checkpoints."""
    return torch.as_tensor([int(i) for i in indices], dtype=torch.long)


def select_channels(encoder: nn.Module, indices: Sequence[int]):
    """Make ``encoder`` take only the channels ``indices`` of its input; returns the hook handle."""
    idx = [int(i) for i in indices]

    def hook(module, args):
        x = args[0]
        return (x[:, idx],) + tuple(args[1:])
    return encoder.register_forward_pre_hook(hook)


class ModalityDropout:
    """Forward pre-hook: zero the channels ``dropped`` of a case with probability ``p`` in training,
    of every case in eval mode. Cases are drawn independently; all dropped channels go together.
    ``absent`` (a bool per case of the next batch, or None): cases whose channels are dropped whatever
    the draw (training cases without the privileged scan)."""

    def __init__(self, dropped: Sequence[int], p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must be in [0, 1], got {p}")
        self.dropped = list(dropped)
        self.p = float(p)
        self.absent: Optional[torch.Tensor] = None

    def __call__(self, module: nn.Module, args):
        x = args[0]
        if module.training:
            keep = (torch.rand(x.shape[0], device=x.device) >= self.p).to(x.dtype)
            if self.absent is not None:
                if self.absent.shape != (x.shape[0],):
                    raise ValueError(f"ModalityDropout.absent has shape {tuple(self.absent.shape)}, the batch "
                                     f"{x.shape[0]} cases")
                keep = keep * (~self.absent.to(x.device)).to(x.dtype)
        else:
            keep = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        x = x.clone()
        x[:, self.dropped] = x[:, self.dropped] * keep.view(-1, *([1] * (x.ndim - 1)))
        return (x,) + tuple(args[1:])


def first_convolution(encoder: nn.Module) -> Tuple[str, _ConvNd]:
    """(name, module) of the first convolution registered in a stock nnU-Net encoder, which is the
    first operation applied to its input (PlainConvEncoder: stages.0.0.convs.0.conv;
    ResidualEncoder: stem.convs.0.conv)."""
    for name, m in encoder.named_modules():
        if isinstance(m, _ConvNd):
            return name, m
    raise TypeError(f"{type(encoder).__name__} has no convolution")


def first_convolution_keys(net: nn.Module) -> list:
    """Every state-dict key of the first convolution's weight in a stock UNet: dynamic-network-
    architectures registers a module under several names (``convs.0.conv`` and ``convs.0.all_modules.0``,
    ``encoder.*`` and ``decoder.encoder.*``), so one tensor appears under several keys."""
    _, conv = first_convolution(net.encoder)
    w = conv.weight
    return [k for k, v in net.state_dict().items() if v.data_ptr() == w.data_ptr() and v.shape == w.shape]


def drop_input_channels(state_dict: Dict[str, torch.Tensor], first_conv_keys: Sequence[str],
                        keep: Sequence[int]) -> Dict[str, torch.Tensor]:
    """A copy of ``state_dict`` whose first-convolution weights (``first_conv_keys``, each
    [out, in, *kernel]) keep only the input channels ``keep``; every other tensor is shared."""
    out = dict(state_dict)
    for k in first_conv_keys:
        if k not in out:
            raise KeyError(f"no tensor {k!r} in the state dict")
        out[k] = out[k][:, list(keep)].clone()
    return out
