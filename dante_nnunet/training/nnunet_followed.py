"""The parts of ``nnUNetTrainer`` (nnunetv2 2.8.1) that DANTE's trainers restate, in one place.

Each restates a piece of one nnUNetTrainer method that cannot be reached through ``super()``:

- ``_to_device``, ``_autocast``, ``_backward_and_step``: ``train_step`` (batch to the device, autocast on
  CUDA only, scaled backward, gradient norm clipped at 12, SGD step). DANTE's steps keep the loss terms
  as device tensors (nnU-Net's step returns ``loss.cpu()``: one host synchronisation per step) and
  compute other losses on other networks.
- ``_hard_counts``: the online-evaluation half of ``validation_step`` (tp/fp/fn of the hard
  segmentation, ignore label, background dropped), which DANTE applies to two outputs (deployed and
  teacher) of one forward pass.
- ``_checkpoint_dict``: the checkpoint of ``save_checkpoint`` with other ``network_weights`` (the
  deployed pathway; nnU-Net saves the whole training network).
- ``_restore_training_state``: ``load_checkpoint`` without the network (DANTE loads its training
  network from ``dante_network_weights``).
- ``_latest_checkpoint_due``: ``on_epoch_end``'s periodic ``checkpoint_latest`` rule (Stage 1 has its
  own best-checkpoint criterion, so it cannot call nnU-Net's ``on_epoch_end``).

It also holds the one setting DANTE changes inside a method it does not restate:

- ``cpu_validation_workers``: ``perform_actual_validation`` opens two spawn pools of
  ``default_num_processes`` workers (8 unless ``nnUNet_def_n_proc`` is set), one to export the predictions
  and one for the metrics; each spawned worker imports torch and nnU-Net anew. On a CPU those workers
  share the cores with the sliding-window prediction itself, so on a small machine the final validation is
  mostly worker start-up (docs/performance.md). On the CPU, unless the user set ``nnUNet_def_n_proc``, the
  pools get ``max(1, min(default, cores // 2))`` workers for the duration of the validation; what is
  computed does not change.

``NNUNET_SOURCES`` holds a hash of each followed method's source in 2.8.1; tests/test_nnunet_followed.py
fails when one changes (re-read it against this module) and checks each piece against the method it
follows, on nnU-Net's own trainer.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from contextlib import contextmanager

import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.helpers import dummy_context

FOLLOWED_VERSION = "2.8.1"
# nnUNetTrainer method -> first 16 hex digits of the sha256 of its source in FOLLOWED_VERSION
NNUNET_SOURCES = {
    "train_step": "c8993de84c8c419f",
    "validation_step": "3d415b41f6f7cd90",
    "save_checkpoint": "de4f196c42e6bcf5",
    "load_checkpoint": "a386bed4eafaa4fa",
    "on_epoch_end": "988deef2bd79d339",
    "perform_actual_validation": "2bd52ada76cd3185",   # cpu_validation_workers: its pools' size
}


def source_hash(method) -> str:
    return hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]


def cpu_validation_processes(default: int, cores: int) -> int:
    """Worker processes of each of ``perform_actual_validation``'s pools on a CPU: half the cores, at most
    nnU-Net's default, at least 1."""
    return max(1, min(int(default), int(cores) // 2))


@contextmanager
def cpu_validation_workers(device: torch.device):
    """While open, nnUNetTrainer's final validation on the CPU uses ``cpu_validation_processes`` workers per
    pool (the module docstring says why); on other devices, or where ``nnUNet_def_n_proc`` is set, nothing
    changes. ``perform_actual_validation`` reads the name ``default_num_processes`` from its module's
    globals at each call, so the module attribute is set and restored."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as module
    if device.type != "cpu" or "nnUNet_def_n_proc" in os.environ:
        yield module.default_num_processes
        return
    old = module.default_num_processes
    module.default_num_processes = cpu_validation_processes(old, os.cpu_count() or 1)
    try:
        yield module.default_num_processes
    finally:
        module.default_num_processes = old


class NNUNetFollowed:
    """Mixed into DANTEBaseTrainer (an nnUNetTrainer); every method names what it follows."""

    # ---- nnUNetTrainer.train_step
    def _to_device(self, batch: dict):
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        return data, target

    def _autocast(self):
        """Mixed precision: autocast on CUDA only."""
        return torch.autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context()

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        """(Scaled) backward, gradient norm clipped at 12, SGD step."""
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

    # ---- nnUNetTrainer.validation_step
    def _hard_counts(self, seg, target):
        """tp/fp/fn of a hard segmentation for the pseudo Dice (foreground classes or regions), from the
        highest-resolution output when deep supervision gives a list."""
        if isinstance(seg, (list, tuple)):
            seg, target = seg[0], target[0]
        lm = self.label_manager
        axes = [0] + list(range(2, seg.ndim))
        if lm.has_regions:
            pred = (torch.sigmoid(seg) > 0.5).long()
        else:
            pred = torch.zeros(seg.shape, device=seg.device, dtype=torch.float16)
            pred.scatter_(1, seg.argmax(1, keepdim=True), 1)
        mask = None
        if lm.has_ignore_label:
            if lm.has_regions:
                mask = ~target[:, -1:] if target.dtype == torch.bool else 1 - target[:, -1:]
                target = target[:, :-1]
            else:
                mask = (target != lm.ignore_label).float()
                target = torch.where(target == lm.ignore_label, torch.zeros_like(target), target)
        tp, fp, fn, _ = get_tp_fp_fn_tn(pred, target, axes=axes, mask=mask)
        tp, fp, fn = (t.detach().cpu().numpy() for t in (tp, fp, fn))
        if not lm.has_regions:
            tp, fp, fn = tp[1:], fp[1:], fn[1:]
        return tp, fp, fn

    # ---- nnUNetTrainer.save_checkpoint
    def _checkpoint_dict(self, network_weights: dict) -> dict:
        """nnU-Net's checkpoint keys with the given ``network_weights``."""
        return {
            'network_weights': network_weights,
            'optimizer_state': self.optimizer.state_dict(),
            'grad_scaler_state': self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            'logging': self.logger.get_checkpoint(),
            '_best_ema': self._best_ema,
            'current_epoch': self.current_epoch + 1,
            'init_args': self.my_init_kwargs,
            'trainer_name': self.__class__.__name__,
            'inference_allowed_mirroring_axes': self.inference_allowed_mirroring_axes,
        }

    # ---- nnUNetTrainer.load_checkpoint
    def _restore_training_state(self, ck: dict) -> None:
        """Everything load_checkpoint restores but the network."""
        self.my_init_kwargs = ck['init_args']
        self.current_epoch = ck['current_epoch']
        self.logger.load_checkpoint(ck['logging'])
        self._best_ema = ck['_best_ema']
        self.inference_allowed_mirroring_axes = ck.get('inference_allowed_mirroring_axes',
                                                       self.inference_allowed_mirroring_axes)
        self.optimizer.load_state_dict(ck['optimizer_state'])
        if self.grad_scaler is not None and ck.get('grad_scaler_state') is not None:
            self.grad_scaler.load_state_dict(ck['grad_scaler_state'])

    # ---- nnUNetTrainer.on_epoch_end
    def _latest_checkpoint_due(self) -> bool:
        """checkpoint_latest is written after every save_every-th epoch, except the last one."""
        e = self.current_epoch
        return (e + 1) % self.save_every == 0 and e != self.num_epochs - 1

