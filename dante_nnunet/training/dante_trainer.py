"""DANTETrainer: Stage 2 of DANTE inside nnU-Net v2's own training loop.

What changes against nnUNetTrainer, hook by hook:

- ``__init__``: reads the channel split from dataset.json (clear error before anything is written);
  DANTE's hyper-parameters are class attributes, so variants are one-line subclasses.
- ``initialize``: routes nnU-Net's one call of ``build_network_architecture`` to the dual-pathway
  builder. ``build_network_architecture`` itself stays the *deployed* network's builder, because
  ``nnUNetv2_predict`` calls it on the class with the results folder's (limited) channel count.
- ``_build_loss``: Eq. 6 around nnU-Net's own task loss.
- ``on_train_epoch_start``: switches the regularisers on at ``regularizer_start_fraction`` of training.
- ``train_step``/``on_train_epoch_end``: super's step, plus the per-term logging.
- ``validation_step``/``on_validation_epoch_end``: pseudo Dice of both pathways; nnU-Net's
  ``mean_fg_dice`` (EMA, checkpoint_best) follows the deployed limited pathway.
- ``on_train_start``: the results folder's dataset.json/plans.json describe the limited channels.
- ``save_checkpoint``/``load_checkpoint``: ``network_weights`` is the deployed pathway under stock
  keys; ``dante_network_weights`` the whole dual network, for ``--c`` and ``--val``.
- ``perform_actual_validation``: scores the limited pathway on the limited channels, and the full
  pathway as the teacher's reference.
"""
from __future__ import annotations

from typing import List, Union

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.helpers import dummy_context

from dante_nnunet.config import ChannelSplit
from dante_nnunet.deploy import check_inputs_of_predict_command, save_deployment_files
from dante_nnunet.losses import DANTELoss, build_alignment
from dante_nnunet.networks.builder import build_dual_pathway_network, deployed_state_dict
from dante_nnunet.networks.dual_pathway import DualPathwayNet, FullPathway, LimitedPathway
from dante_nnunet.training.progress import LOSS_TERMS, DANTELocalLogger


class DANTETrainer(nnUNetTrainer):
    # --- DANTE hyper-parameters (paper, Implementation Details); variants override these ---
    epochs = 500                      # -> nnUNetTrainer.num_epochs
    iterations_per_epoch = 250        # -> num_iterations_per_epoch (nnU-Net's default)
    val_iterations_per_epoch = 50     # -> num_val_iterations_per_epoch (nnU-Net's default)
    lambda_pib = 0.3                  # lambda1 of Eq. 6
    lambda_align = 0.5                # lambda2 of Eq. 6
    alignment = "l1"                  # 'l1' | 'l2' (Eq. 4, p = 1 | 2) | 'infonce' (Eq. 5)
    regularizer_start_fraction = 0.2  # PIB and alignment join at epoch 100 of 500
    infonce_temperature = 0.1
    infonce_anchors = 1024            # anchors per level and batch (memory ~ anchors^2)
    validate_full_pathway = True      # final validation also scores the teacher (fold_X/full_pathway/)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        source = "dataset.json"
        if nnUNet_preprocessed.is_set() and "dataset_name" in plans:
            source = join(nnUNet_preprocessed, plans["dataset_name"], "dataset.json")
        # validated before nnUNetTrainer.__init__ creates the output folder
        self.channel_split = ChannelSplit.from_dataset_json(dataset_json, source)
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.is_cascaded:
            raise ValueError(f"DANTETrainer does not support cascaded configurations ({configuration})")
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        self.logger.local_logger = DANTELocalLogger()
        s = self.channel_split
        self.print_to_log_file(f"DANTE: limited channels {list(s.limited_names)} (deployed), privileged "
                               f"{list(s.privileged_names)} (training only); lambda_pib={self.lambda_pib}, "
                               f"lambda_align={self.lambda_align} ({self.alignment}) from epoch "
                               f"{self.regularizer_start_epoch}", also_print_to_console=True)

    @property
    def regularizer_start_epoch(self) -> int:
        return int(round(self.regularizer_start_fraction * self.num_epochs))

    # ------------------------------------------------------------------ network
    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """The deployed network (stock architecture on the limited channels). nnUNetv2_predict calls
        this on the class; when it does, its input folder is checked first."""
        check_inputs_of_predict_command(num_input_channels)
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)

    def _build_dual_network(self, plans_manager, configuration_manager, num_input_channels: int,
                            num_output_channels: int, enable_deep_supervision: bool = True) -> DualPathwayNet:
        if num_input_channels != self.channel_split.num_channels:
            raise ValueError(f"expected {self.channel_split.num_channels} input channels, got {num_input_channels}")
        return build_dual_pathway_network(configuration_manager, self.channel_split, num_output_channels,
                                          enable_deep_supervision)

    def initialize(self):
        # nnUNetTrainer.initialize builds self.network with self.build_network_architecture(...); for
        # training that one call goes to the dual-pathway builder.
        self.build_network_architecture = self._build_dual_network
        try:
            super().initialize()
        finally:
            del self.build_network_architecture

    def dual_network(self) -> DualPathwayNet:
        mod = self.network
        while not isinstance(mod, DualPathwayNet):
            if isinstance(mod, DDP):
                mod = mod.module
            elif isinstance(mod, OptimizedModule):
                mod = mod._orig_mod
            elif isinstance(mod, (LimitedPathway, FullPathway)):
                mod = mod.dual
            else:
                raise TypeError(f"self.network is a {type(mod).__name__}, not a DualPathwayNet")
        return mod

    def set_deep_supervision_enabled(self, enabled: bool):
        self.dual_network().set_deep_supervision(enabled)

    # ------------------------------------------------------------------ loss and schedule
    def _build_loss(self):
        alignment = build_alignment(self.alignment, self.infonce_temperature, self.infonce_anchors)
        # regulariser weights are set per epoch in on_train_epoch_start
        return DANTELoss(super()._build_loss(), alignment, lambda_pib=0.0, lambda_align=0.0)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        on = self.current_epoch >= self.regularizer_start_epoch
        self.loss.lambda_pib = self.lambda_pib if on else 0.0
        self.loss.lambda_align = self.lambda_align if on else 0.0
        if self.current_epoch == self.regularizer_start_epoch:
            self.print_to_log_file(f"DANTE regularisers on: lambda_pib={self.lambda_pib}, "
                                   f"lambda_align={self.lambda_align} ({self.alignment})")

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        # detached device tensors; reduced once per epoch in on_train_epoch_end
        out.update({f"train_{k}": v for k, v in self.loss.last_terms.items()})
        return out

    def on_train_epoch_end(self, train_outputs: List[dict]):
        # nnU-Net's collate_outputs takes numpy only: take the DANTE terms out first
        terms = {t: torch.stack([o.pop(f"train_{t}") for o in train_outputs]) for t in LOSS_TERMS}
        super().on_train_epoch_end(train_outputs)
        for t, values in terms.items():
            self.logger.log(f"train_{t}", float(values.float().mean().cpu()), self.current_epoch)

    # ------------------------------------------------------------------ online validation
    def _hard_counts(self, seg, target):
        """tp/fp/fn of a hard segmentation for nnU-Net's pseudo Dice (foreground classes or regions)."""
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

    def validation_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context()
        with ctx:
            output = self.network(data)
            loss = self.loss(output, target)
        tp, fp, fn = self._hard_counts(output.seg_limited, target)
        tpf, fpf, fnf = self._hard_counts(output.seg_full, target)
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn,
                'tp_hard_full': tpf, 'fp_hard_full': fpf, 'fn_hard_full': fnf}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        super().on_validation_epoch_end(val_outputs)  # limited pathway -> mean_fg_dice, EMA, best checkpoint
        c = collate_outputs(val_outputs)
        tp, fp, fn = (np.sum(c[f'{k}_hard_full'], 0) for k in ('tp', 'fp', 'fn'))
        with np.errstate(invalid='ignore', divide='ignore'):
            dice = [float(2 * a / (2 * a + b + d)) for a, b, d in zip(tp, fp, fn)]
        self.logger.log('mean_fg_dice_full', float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float('nan'),
                        self.current_epoch)
        self.logger.log('dice_per_class_or_region_full', dice, self.current_epoch)

    def on_epoch_end(self):
        e = self.current_epoch
        terms = {t: np.round(self.logger.get_value(f"train_{t}", step=e), 4) for t in LOSS_TERMS}
        self.print_to_log_file(f"DANTE terms (unweighted): {terms}")
        self.print_to_log_file('Pseudo dice full pathway (teacher)',
                               [np.round(i, decimals=4) for i in
                                self.logger.get_value('dice_per_class_or_region_full', step=e)])
        super().on_epoch_end()

    # ------------------------------------------------------------------ deployment
    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            save_deployment_files(self.output_folder_base, self.plans_manager.plans, self.dataset_json,
                                  self.channel_split)

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file('No checkpoint written, checkpointing is disabled')
            return
        dual = self.dual_network()
        torch.save({
            'network_weights': deployed_state_dict(dual),    # what nnUNetv2_predict loads
            'dante_network_weights': dual.state_dict(),      # the whole dual network, for --c / --val
            'optimizer_state': self.optimizer.state_dict(),
            'grad_scaler_state': self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            'logging': self.logger.get_checkpoint(),
            '_best_ema': self._best_ema,
            'current_epoch': self.current_epoch + 1,
            'init_args': self.my_init_kwargs,
            'trainer_name': self.__class__.__name__,
            'inference_allowed_mirroring_axes': self.inference_allowed_mirroring_axes,
        }, filename)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        # not delegated: nnUNetTrainer.load_checkpoint (2.8.1) loads 'network_weights' and fails on a dict
        if not self.was_initialized:
            self.initialize()
        ck = filename_or_checkpoint
        name = "checkpoint"
        if isinstance(ck, str):
            name = ck
            ck = torch.load(ck, map_location=self.device, weights_only=False)
        if 'dante_network_weights' not in ck:
            raise ValueError(f"{name} has no 'dante_network_weights': it was not written by a DANTE trainer "
                             f"(trainer_name {ck.get('trainer_name')!r})")
        weights = {k[7:] if k.startswith('module.') else k: v for k, v in ck['dante_network_weights'].items()}
        self.dual_network().load_state_dict(weights)
        self.my_init_kwargs = ck['init_args']
        self.current_epoch = ck['current_epoch']
        self.logger.load_checkpoint(ck['logging'])
        self._best_ema = ck['_best_ema']
        self.inference_allowed_mirroring_axes = ck.get('inference_allowed_mirroring_axes',
                                                       self.inference_allowed_mirroring_axes)
        self.optimizer.load_state_dict(ck['optimizer_state'])
        if self.grad_scaler is not None and ck.get('grad_scaler_state') is not None:
            self.grad_scaler.load_state_dict(ck['grad_scaler_state'])

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation (sliding window, mirroring, export, metrics) of the deployed limited
        pathway fed only the limited channels -> fold_X/validation; first, if
        ``validate_full_pathway``, of the teacher on all channels -> fold_X/full_pathway/validation."""
        network, output_folder = self.network, self.output_folder
        dual = self.dual_network()
        try:
            if self.validate_full_pathway:
                self.network = FullPathway(dual)
                self.output_folder = join(output_folder, 'full_pathway')
                self.print_to_log_file("Validating the full pathway (teacher reference, all channels)")
                super().perform_actual_validation(save_probabilities)
                self.output_folder = output_folder
            self.network = LimitedPathway(dual)
            self.print_to_log_file(f"Validating the limited pathway (deployed) on "
                                   f"{list(self.channel_split.limited_names)}")
            super().perform_actual_validation(save_probabilities)
        finally:
            self.network, self.output_folder = network, output_folder
        if self.local_rank == 0:
            summaries = {k: join(output_folder, *p, 'validation', 'summary.json')
                         for k, p in (('limited (deployed)', ()), ('full (teacher)', ('full_pathway',)))}
            for k, f in summaries.items():
                if isfile(f):
                    self.print_to_log_file(f"Validation Dice, {k} pathway: "
                                           f"{load_json(f)['foreground_mean']['Dice']:.4f}",
                                           also_print_to_console=True)
