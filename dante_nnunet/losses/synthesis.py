"""Privileged synthesis: an output-level transfer term (not in the paper).

The limited pathway gets a training-only 1x1 head on D_L's last feature map that regresses the
privileged channels of its input patch. Its target is the densest privileged signal there is (the
image itself, continuous, in every voxel), where Eq. 4 asks E_L to match features of an encoder that
sees the privileged channels. In the screen of docs/privileged_transfer.md (section 3) this "oracle"
was the only form that moved the limited pathway on the transfer phantom.
"""
from __future__ import annotations

import torch


def synthesis_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_Syn = mean over batch, privileged channels and voxels of (prediction - X^P)^2.

    ``target`` is the privileged part of the network's input: nnU-Net-normalised (z-scored for MRI,
    clipped and z-scored for CT) and augmented with the limited channels, and detached here. The mean
    (not a sum) keeps its weight independent of patch size, batch size and the number of privileged
    channels. It is not scale-free and should not be: the target's scale is fixed by normalisation, and
    the head is a linear map of features that InstanceNorm keeps at unit scale.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"synthesis prediction {tuple(prediction.shape)} and privileged target "
                         f"{tuple(target.shape)} differ in shape")
    return (prediction.float() - target.detach().float()).pow(2).mean()
