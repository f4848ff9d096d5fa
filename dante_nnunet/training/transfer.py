"""Stage 1 -> Stage 2 transfer through nnU-Net's stock ``-pretrained_weights`` flag.

``nnUNetv2_train ... -tr DANTETrainer -pretrained_weights STAGE1/checkpoint_final.pth`` makes
nnU-Net call ``nnunetv2.run.run_training.load_pretrained_weights(trainer.network, path)`` right after
``trainer.initialize()``. The stock function cannot serve DANTE: it demands every tensor of the
network in the file (Stage 2's decoders and fusion must start fresh, as in the paper), it would
copy any same-named decoder tensors, and it loads without ``map_location`` (a checkpoint written on
a GPU then fails on a CPU-only machine).

``install_pretrained_weights_hook`` therefore wraps that one module attribute: for a network that
is (or wraps) a ``DualPathwayNet`` it calls ``load_stage1_encoders``; for any other network it calls
the stock function unchanged. DANTETrainer installs the hook when it is constructed, which nnU-Net
does before it loads weights (both for ``nnUNetv2_train`` and for ``run_training`` called from Python).
LowerBoundTrainer installs it too: given a Stage-1 checkpoint, it loads E_L into its encoder.
"""
from __future__ import annotations

from typing import Dict, Mapping, Union

import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from dante_nnunet.guards import read_checkpoint, strip_ddp_prefix
from dante_nnunet.networks.cross_modal_mae import TRANSFERRED_PARTS, CrossModalMAE
from dante_nnunet.networks.dual_pathway import DualPathwayNet


class PretrainedWeightsError(ValueError):
    """A -pretrained_weights checkpoint that does not fit the Stage-2 network; names the tensor."""


def _unwrap(network: nn.Module) -> nn.Module:
    while isinstance(network, (DDP, OptimizedModule)):
        network = network.module if isinstance(network, DDP) else network._orig_mod
    return network


def _checkpoint_weights(checkpoint: Union[str, Mapping]):
    """(name for messages, checkpoint dict, its network weights without DDP's ``module.`` prefix)."""
    source = checkpoint if isinstance(checkpoint, str) else "checkpoint"
    ck = read_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    if not isinstance(ck, Mapping) or "network_weights" not in ck:
        raise PretrainedWeightsError(f"{source}: not an nnU-Net checkpoint (no 'network_weights')")
    return source, ck, strip_ddp_prefix(ck["network_weights"])


def _check_fit(source: str, wanted: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
               missing_why: str) -> None:
    """Every tensor of ``wanted`` (this network's, by checkpoint key) is in ``given`` (the checkpoint's
    tensors of the transferred parts) with the same shape, and ``given`` has no other; else
    ``PretrainedWeightsError`` naming the first tensor at fault."""
    for key, ours in wanted.items():
        if key not in given:
            raise PretrainedWeightsError(f"{source}: tensor {key!r} of this network is missing from the checkpoint "
                                         f"{missing_why}")
        if tuple(given[key].shape) != tuple(ours.shape):
            raise PretrainedWeightsError(f"{source}: tensor {key!r} has shape {tuple(given[key].shape)} in the "
                                         f"checkpoint but {tuple(ours.shape)} in this network: another "
                                         f"architecture, width or channel count")
    for key in given:
        if key not in wanted:
            raise PretrainedWeightsError(f"{source}: the checkpoint has tensor {key!r}, which this network's "
                                         f"encoders lack: another architecture (more stages or blocks)")


def stage1_encoder_weights(checkpoint: Union[str, Mapping], dual: DualPathwayNet) -> Dict[str, torch.Tensor]:
    """Check a Stage-1 checkpoint against ``dual``'s encoders and return the tensors to load, keyed
    like ``dual.state_dict()``. Raises ``PretrainedWeightsError`` naming the first tensor that is
    missing, has another shape, or is extra (a deeper or wider encoder)."""
    source, ck, weights = _checkpoint_weights(checkpoint)
    wanted = {f"{p}.{k}": v for p in TRANSFERRED_PARTS for k, v in getattr(dual, p).state_dict().items()}
    given = {k: v for k, v in weights.items() if k.startswith(tuple(f"{p}." for p in TRANSFERRED_PARTS))}
    trainer = ck.get("trainer_name")
    why = (f"(trainer_name {trainer!r}); it has no {'/'.join(TRANSFERRED_PARTS)} tensors at all: -pretrained_weights "
           f"with a DANTE trainer takes a DANTEPretrainTrainer checkpoint (a limited-channel MAE has E_L only)"
           if not given else f"(trainer_name {trainer!r}); another architecture")
    _check_fit(source, wanted, given, why)
    return {k: weights[k] for k in wanted}


def stage1_limited_encoder_weights(checkpoint: Union[str, Mapping], encoder: nn.Module) -> Dict[str, torch.Tensor]:
    """E_L of a Stage-1 checkpoint (``encoder_l.*``, any Stage-1 kind: cross-modal, self-reconstruction or
    limited-only) for the encoder of a stock network on the limited channels, keyed like
    ``encoder.state_dict()``. Raises ``PretrainedWeightsError`` naming the first tensor that is missing,
    has another shape, or is extra."""
    source, ck, weights = _checkpoint_weights(checkpoint)
    given = {k: v for k, v in weights.items() if k.startswith("encoder_l.")}
    if not given:
        raise PretrainedWeightsError(f"{source}: no encoder_l (E_L) tensors (trainer_name {ck.get('trainer_name')!r}): "
                                     f"a Stage-1 start of the lower bound takes a DANTEPretrainTrainer checkpoint")
    ours = encoder.state_dict()
    _check_fit(source, {f"encoder_l.{k}": v for k, v in ours.items()}, given,
               f"(trainer_name {ck.get('trainer_name')!r}); another architecture")
    return {k: given[f"encoder_l.{k}"] for k in ours}


def load_stage1_encoders(dual: DualPathwayNet, checkpoint: Union[str, Mapping]) -> int:
    """Copy E_L, E_A and E_P from a Stage-1 checkpoint into ``dual`` (in place, on dual's device);
    decoders and fusion keep their fresh initialisation. Nothing is copied unless every encoder
    tensor fits. Returns the number of tensors copied."""
    weights = stage1_encoder_weights(checkpoint, dual)
    with torch.no_grad():
        state = dual.state_dict()
        for k, v in weights.items():
            state[k].copy_(v)
    dual.transferred_from = checkpoint if isinstance(checkpoint, str) else "checkpoint"
    return len(weights)


def load_stage1_limited_encoder(network: nn.Module, checkpoint: Union[str, Mapping]) -> int:
    """Copy E_L of a Stage-1 checkpoint into ``network.encoder`` (a stock UNet on the limited channels; its
    decoder keeps its fresh initialisation, as nnssl's fine-tuning and DANTE's Stage 2 do). Nothing is
    copied unless every tensor fits. Sets ``network.transferred_from``; returns the number of tensors."""
    weights = stage1_limited_encoder_weights(checkpoint, network.encoder)
    with torch.no_grad():
        state = network.encoder.state_dict()
        for k, v in weights.items():
            state[k].copy_(v)
    network.transferred_from = checkpoint if isinstance(checkpoint, str) else "checkpoint"
    return len(weights)


def load_whole_network(network: nn.Module, checkpoint: Union[str, Mapping]) -> int:
    """Copy every tensor of an nnU-Net checkpoint of the same network into ``network`` (segmentation layers
    included, unlike nnU-Net's stock loading, which starts them fresh for another task): the start of a
    fine-tune on the same task. Nothing is copied unless every tensor fits. Sets ``network.transferred_from``;
    returns the number of tensors."""
    source, ck, weights = _checkpoint_weights(checkpoint)
    _check_fit(source, network.state_dict(), weights,
               f"(trainer_name {ck.get('trainer_name')!r}); a fine-tune starts from a model of the same network")
    network.load_state_dict(weights)
    network.transferred_from = checkpoint if isinstance(checkpoint, str) else "checkpoint"
    return len(weights)


def is_stage1_checkpoint(checkpoint: Union[str, Mapping]) -> bool:
    ck = read_checkpoint(checkpoint, mmap=True) if isinstance(checkpoint, str) else checkpoint
    return isinstance(ck, Mapping) and "dante_stage1" in ck


_HOOK_FLAG = "_dante_pretrained_weights_hook"


def install_pretrained_weights_hook() -> None:
    """Route nnU-Net's ``-pretrained_weights`` loading to ``load_stage1_encoders`` for DANTE's
    Stage-2 network and, for a stock network given a Stage-1 checkpoint, to ``load_stage1_limited_encoder``
    (E_L into its encoder: the lower bound fine-tuned from Stage 1); everything else goes to the stock
    function, which also loads a Stage-1 network's weights, then recorded in ``transferred_from`` (the run
    record keeps it, so that a --c without a checkpoint cannot silently start from scratch). Idempotent."""
    import nnunetv2.run.run_training as run_training
    current = run_training.load_pretrained_weights
    if getattr(current, _HOOK_FLAG, False):
        return
    stock = current

    def load_pretrained_weights(network, fname, verbose=False):
        target = _unwrap(network)
        if isinstance(target, DualPathwayNet):
            n = load_stage1_encoders(target, fname)
            print(f"DANTE: loaded {n} encoder tensors (E_L, E_A, E_P) from {fname}; decoders and fusion start "
                  f"fresh")
            return
        if isinstance(target, CrossModalMAE):   # Stage 1 continued from weights: nnU-Net's loading, recorded
            stock(network, fname, verbose=verbose)
            target.transferred_from = fname
            return
        if getattr(target, "finetune_whole", False):   # a fine-tune (token tune<x>): every tensor, checked
            n = load_whole_network(target, fname)
            print(f"DANTE: loaded all {n} tensors of the network from {fname} (a fine-tune)")
            return
        if hasattr(target, "encoder") and is_stage1_checkpoint(fname):
            n = load_stage1_limited_encoder(target, fname)
            print(f"DANTE: loaded {n} tensors of E_L into the encoder from {fname}; the decoder starts fresh")
            return
        return stock(network, fname, verbose=verbose)

    setattr(load_pretrained_weights, _HOOK_FLAG, True)
    load_pretrained_weights.__wrapped__ = stock
    run_training.load_pretrained_weights = load_pretrained_weights
