"""DANTEPretrainTrainer: Stage 1 of DANTE (cross-modal MAE, paper Eqs. 7-9) inside nnU-Net v2's own
training loop, data pipeline and augmentation. Labels are ignored.

What changes against nnUNetTrainer, hook by hook:

- ``__init__`` (DANTEBaseTrainer): channel split from dataset.json, checked before anything is
  written; deep supervision off (the reconstruction decoders have none); a seeded mask generator.
- ``initialize`` (DANTEBaseTrainer): nnU-Net's one network-building call builds the CrossModalMAE,
  whose E_L/E_A/E_P are those of Stage 2 (``networks/builder.py``).
- ``build_network_architecture``: refuses, with a message, to build a segmentation network for
  ``nnUNetv2_predict``: a Stage-1 model does not segment.
- ``_build_loss``: Eqs. 7 + 8 + 9 (``losses/reconstruction.py``); a limited-only Stage 1 Eq. 7 alone, or
  Eq. 7 + privileged synthesis (``privileged_synthesis``, not in the paper).
- ``train_step``/``validation_step``: mask the batch (``masking.py``), reconstruct, masked MSE.
  Validation masks are re-drawn from the same seed every epoch, so validation losses compare.
- ``on_train_epoch_end``/``on_validation_epoch_end``/``on_epoch_end``: the three losses per epoch
  (log and progress.png); ``checkpoint_best.pth`` is the lowest validation loss.
- ``perform_actual_validation``: nothing to export; Stage 1 is validated by loss only.
- ``save_checkpoint``/``load_checkpoint``: ``network_weights`` is the whole Stage-1 network (Stage 2
  takes E_L/E_A/E_P out of it), ``dante_stage1`` records channels and masking.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import join
from time import time

from dante_nnunet.guards import strip_ddp_prefix
from dante_nnunet.losses.reconstruction import RECONSTRUCTION_TERMS, ReconstructionLoss
from dante_nnunet.networks.masking import DEFAULT_BLOCK_SIZES, MultiScaleBlockMasker, apply_mask
from dante_nnunet.networks.builder import build_cross_modal_mae
from dante_nnunet.networks.cross_modal_mae import CrossModalMAE
from dante_nnunet.training.base import DANTEBaseTrainer
from dante_nnunet.training.progress import PretrainLocalLogger

_VAL_SEED_OFFSET = 7919   # validation masks: their own fixed stream, re-drawn identically every epoch


class DANTEPretrainTrainer(DANTEBaseTrainer):
    # epochs = 500, iterations_per_epoch = 250, val_iterations_per_epoch = 50 (DANTEBaseTrainer)
    cross_modal = True                     # False: drop Eq. 9 (each pathway reconstructs its own input)
    limited_only = False                   # True: E_L and D_L^REC alone, Eq. 7 only (needs cross_modal False):
                                           # an MAE of the limited channels, no privileged scan read
    privileged_synthesis = False           # True (with limited_only; not in the paper): D_L^REC also synthesises
                                           # the privileged channels from E_L (L = Eq. 7 + L_Syn)
    mask_ratio = 0.75                      # fraction of blocks masked per case
    mask_block_sizes = DEFAULT_BLOCK_SIZES  # block edges in voxels, one drawn per case (see masking.py)
    mask_seed = 0                          # seeds the training mask stream (+ rank under DDP); None: unseeded

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.logger.local_logger = PretrainLocalLogger()
        # a seeded run (seed / _seed<N>) also draws its own mask stream
        mask_seed = self.seed if self.seed is not None else self.mask_seed
        seed = None if mask_seed is None else mask_seed + self.local_rank
        self.masker = MultiScaleBlockMasker(self.mask_ratio, self.mask_block_sizes, seed)
        self.val_masker = MultiScaleBlockMasker(self.mask_ratio, self.mask_block_sizes, 0)
        s = self.channel_split
        self.print_to_log_file(
            f"DANTE Stage 1 ({self.stage1_kind()} MAE): limited "
            f"{list(s.limited_names)}, privileged {list(s.privileged_names)}; {self.mask_ratio:.0%} of blocks "
            f"masked, block edges {list(self.mask_block_sizes)} voxels; labels are not used",
            also_print_to_console=True)

    # ------------------------------------------------------------------ network and loss
    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        raise RuntimeError("a DANTEPretrainTrainer model is a Stage-1 reconstruction network and cannot segment: "
                           "train DANTETrainer with -pretrained_weights <this model's fold_X/checkpoint_final.pth> "
                           "and predict with that")

    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True) -> CrossModalMAE:
        return build_cross_modal_mae(configuration_manager, self.channel_split, self.cross_modal, self.limited_only,
                                     self.privileged_synthesis)

    def stage1_kind(self) -> str:
        if self.limited_only:
            return "limited-channel, privileged synthesis" if self.privileged_synthesis else "limited-channel"
        return "cross-modal" if self.cross_modal else "self-reconstruction"

    def set_deep_supervision_enabled(self, enabled: bool):
        pass   # the reconstruction decoders are built without deep supervision

    def _build_loss(self):
        s = self.channel_split
        return ReconstructionLoss(s.limited_indices, self.cross_modal,
                                  s.privileged_indices if self.privileged_synthesis else ())

    def incomplete_cases_treatment(self) -> str:
        if self.privileged_synthesis:
            return "they train Eq. 7 (L->L) only; the synthesis term uses the cases with the privileged channel"
        return "they train Eq. 7 (L->L) only; Eqs. 8-9 use the cases with the privileged channel"

    # ------------------------------------------------------------------ steps
    def _masked_loss(self, batch: dict, masker: MultiScaleBlockMasker) -> torch.Tensor:
        x = batch['data'].to(self.device, non_blocking=True)
        mask = masker(x.shape[0], x.shape[2:], self.device)
        with self._autocast():
            output = self.network(apply_mask(x, mask))
            return self.loss(output, x, mask, self.has_privileged(batch))

    def _step_outputs(self, loss: torch.Tensor, prefix: str) -> Dict[str, torch.Tensor]:
        # detached device tensors: reduced once per epoch, no host sync per step
        return {'loss': loss.detach(), **{f"{prefix}_{k}": v for k, v in self.loss.last_terms.items()}}

    def train_step(self, batch: dict) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._masked_loss(batch, self.masker)
        self._backward_and_step(loss)
        return self._step_outputs(loss, "train")

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self.val_masker.reseed((self.mask_seed or 0) + _VAL_SEED_OFFSET + self.local_rank)

    def validation_step(self, batch: dict) -> dict:
        return self._step_outputs(self._masked_loss(batch, self.val_masker), "val")

    # ------------------------------------------------------------------ epoch bookkeeping
    def _log_epoch_means(self, outputs: List[dict], prefix: str, total_key: str) -> None:
        keys = ['loss'] + [f"{prefix}_{t}" for t in RECONSTRUCTION_TERMS]
        # nanmean: a batch without complete cases logs Eqs. 8-9 as NaN
        means = self._mean_over_ranks(torch.stack([torch.stack([o[k].float() for o in outputs]).nanmean()
                                                   for k in keys]).cpu().numpy())
        self.logger.log(total_key, float(means[0]), self.current_epoch)
        for k, v in zip(keys[1:], means[1:]):
            self.logger.log(k, float(v), self.current_epoch)

    best_curve, best_is_max = 'val_losses', False

    def on_train_epoch_end(self, train_outputs: List[dict]):
        self._log_epoch_means(train_outputs, "train", "train_losses")
        self._stop_if_non_finite(train_outputs)

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        self._log_epoch_means(val_outputs, "val", "val_losses")

    def on_epoch_end(self):
        e = self.current_epoch
        self.logger.log('epoch_end_timestamps', time(), e)
        log = self.logger.get_value
        for split in ("train", "val"):
            terms = {t: round(float(log(f"{split}_{t}", step=e)), 4) for t in RECONSTRUCTION_TERMS}
            self.print_to_log_file(f"{split}_loss {np.round(log(f'{split}_losses', step=e), 4)} {terms}")
        seconds = log('epoch_end_timestamps', step=e) - log('epoch_start_timestamps', step=e)
        self.print_to_log_file(f"Epoch time: {np.round(seconds, 2)} s")
        # nnU-Net keeps its best-checkpoint criterion in _best_ema; here it is the lowest validation loss.
        # Updated before checkpoint_latest is written, so that a --c from it knows this epoch's value.
        val = log('val_losses', step=e)
        if self._best_ema is None or val < self._best_ema:
            self._best_ema = val
            self.print_to_log_file(f"New lowest validation loss: {np.round(val, 4)}")
            self.save_checkpoint(join(self.output_folder, 'checkpoint_best.pth'))
        if self._latest_checkpoint_due():   # nnU-Net's periodic checkpoint
            self.save_checkpoint(join(self.output_folder, 'checkpoint_latest.pth'))
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def _pretrained_source(self) -> Optional[str]:
        return getattr(self.unwrapped_network(), "transferred_from", None)

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("Stage 1 is validated by its reconstruction loss only; nothing to export.")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filename: str) -> None:
        s = self.channel_split
        self._write_checkpoint(filename, self.unwrapped_network().state_dict(), dante_stage1={
            'channel_names': list(s.channel_names), 'limited_channels': list(s.limited_names),
            'privileged_channels': list(s.privileged_names), 'cross_modal': self.cross_modal,
            'limited_only': self.limited_only, 'privileged_synthesis': self.privileged_synthesis,
            'mask_ratio': self.mask_ratio, 'mask_block_sizes': list(self.mask_block_sizes),
            'configuration': self.configuration_name})

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        ck, name = self._read_checkpoint(filename_or_checkpoint)
        if 'dante_stage1' not in ck:
            raise ValueError(f"{name} was not written by a DANTEPretrainTrainer (trainer_name "
                             f"{ck.get('trainer_name')!r})")
        ours = self.unwrapped_network().state_dict()
        if any(".seg_layers." in k and k not in ours for k in strip_ddp_prefix(ck['network_weights'])):
            raise ValueError(f"{name} holds the unused output heads of its reconstruction decoders (written before "
                             f"they were removed, so that Stage 1 runs under DDP): it cannot be continued with --c. "
                             f"As -pretrained_weights of a DANTETrainer it still works (only its encoders are taken)")
        self._load_weights(self.unwrapped_network(), ck['network_weights'])
        self._restore_training_state(ck)
