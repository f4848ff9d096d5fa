"""The comparison methods of the paper's Table 1, as nnUNetTrainer subclasses on the same plans,
preprocessed data, augmentation and schedule as DANTETrainer (its class attributes ``epochs``,
``iterations_per_epoch``, ``val_iterations_per_epoch``; variants change those only).

- ``UpperBoundTrainer``: the stock network on all channels; predicts from all-channel folders.
- ``LowerBoundTrainer``: the stock network on the limited channels only.
- ``ModalityDropoutTrainer``: missing-modality style; the stock network on all channels with the
  privileged channels dropped (zeroed) per case with probability ``drop_probability`` in training and
  always absent (zero) at validation and test.
- ``DistillationTrainer``: a student on the limited channels with nnU-Net's task loss plus feature
  and logit distillation (``losses/distillation.py``) from a frozen all-channel teacher, by default
  the ``UpperBoundTrainer`` of the same dataset, plans, configuration and fold (variant names carry
  over: ``DistillationTrainer_demo`` learns from ``UpperBoundTrainer_demo``); the environment
  variable ``DANTE_TEACHER_CHECKPOINT`` names another checkpoint.

All but the upper bound deploy like DANTETrainer: their results folder describes the limited
channels, ``checkpoint_*.pth`` holds the stock network on the limited channels (``nnUNetv2_predict``
on limited-only folders, ``dante_nnunet export``), and validation scores the limited channels.
"""
from __future__ import annotations

import os
from typing import List, Optional, Union

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.file_path_utilities import get_output_folder

from dante_nnunet.deploy.predict_input_check import check_inputs_of_predict_command
from dante_nnunet.guards import read_checkpoint
from dante_nnunet.losses.distillation import DistillationLoss
from dante_nnunet.networks.builder import build_stock_network
from dante_nnunet.networks.input_channels import (ModalityDropout, drop_input_channels, first_convolution_keys,
                                                  select_channels)
from dante_nnunet.training.base import DANTEBaseTrainer, LimitedDeploymentTrainer

TEACHER_ENV = "DANTE_TEACHER_CHECKPOINT"


class UpperBoundTrainer(DANTEBaseTrainer):
    """Stock nnU-Net on every channel (privileged ones included) with DANTE's schedule attributes. Trains
    and validates on the cases that have the privileged channel only."""
    complete_cases_only = True

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """nnU-Net's network on every channel. nnUNetv2_predict calls this on the class; when it does, its
        input folder is checked first: every case must have all channels (a folder of limited-channel scans is
        refused naming the case, before any work)."""
        check_inputs_of_predict_command(num_input_channels, all_channels=True)
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)

    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True):
        return build_stock_network(configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision)


class LowerBoundTrainer(LimitedDeploymentTrainer):
    """Stock nnU-Net trained on the limited channels only (the data loader's privileged channels are
    dropped at the encoder's input, so the preprocessed data is shared with DANTE).

    ``-pretrained_weights`` with a Stage-1 checkpoint (any DANTEPretrainTrainer kind) starts the encoder
    from its E_L (``training/transfer.py``), the decoder fresh, the encoder frozen for the first
    ``encoder_freeze_fraction`` of the epochs as DANTETrainer freezes its transferred encoders: the
    lower bound fine-tuned from Stage 1. Any other checkpoint goes to nnU-Net's own loading."""
    encoder_freeze_fraction = 0.1         # with a Stage-1 start: the encoder frozen for epochs 0..49 of 500
    requires_pretrained_weights = False   # True: refuse to train without -pretrained_weights (Stage-1 runs)

    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True):
        net = build_stock_network(configuration_manager, len(self.channel_split.limited_indices),
                                  num_output_channels, enable_deep_supervision)
        select_channels(net.encoder, self.channel_split.limited_indices)
        net.transferred_from = None   # set by a Stage-1 -pretrained_weights, or a fine-tune's start
        net.finetune_whole = self.finetune_fraction is not None   # -pretrained_weights loads every tensor
        return net

    # ------------------------------------------------------------------ Stage-1 start
    def _pretrained_source(self) -> Optional[str]:
        return getattr(self.unwrapped_network(), "transferred_from", None)

    @property
    def encoder_freeze_end_epoch(self) -> int:
        """First epoch in which a transferred encoder trains (0 without a Stage-1 start, and in a fine-tune)."""
        if self._pretrained_source() is None or self.finetune_fraction is not None:
            return 0
        return int(round(self.encoder_freeze_fraction * self.num_epochs))

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        source = self._pretrained_source()
        if self.requires_pretrained_weights and source is None:
            raise RuntimeError(f"{type(self).__name__} fine-tunes a Stage-1 encoder: start it with -pretrained_weights "
                               f"PATH/checkpoint_final.pth of a DANTEPretrainTrainer run")
        if self.finetune_fraction is not None and source is None:
            raise RuntimeError(f"{type(self).__name__} fine-tunes a whole model: start it with -pretrained_weights "
                               f"PATH/checkpoint_final.pth of a model of the same network (e.g. a student of "
                               f"dante_nnunet teach)")
        if source is not None and self.is_ddp and self.current_epoch < self.encoder_freeze_end_epoch:
            raise RuntimeError(f"{type(self).__name__}: freezing the transferred encoder is not supported under DDP "
                               f"(it changes which parameters take gradients); set encoder_freeze_fraction = 0")
        super().on_train_start()
        if source is not None and self.finetune_fraction is not None:
            self.print_to_log_file(f"Fine-tune of the whole model of {source}: {self.num_epochs} epochs from "
                                   f"learning rate {self.initial_lr:g}", also_print_to_console=True)
        elif source is not None:
            self.print_to_log_file(f"Encoder (E_L) transferred from {source}; frozen until epoch "
                                   f"{self.encoder_freeze_end_epoch}", also_print_to_console=True)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()   # network.train(), lr of the poly schedule
        if self._pretrained_source() is None:
            return
        encoder = self.unwrapped_network().encoder
        frozen = self.current_epoch < self.encoder_freeze_end_epoch
        was_frozen = not next(encoder.parameters()).requires_grad
        encoder.requires_grad_(not frozen)
        if frozen:
            encoder.eval()
        if frozen != was_frozen or (frozen and self.current_epoch == 0):
            self.print_to_log_file(f"transferred encoder {'frozen' if frozen else 'trainable'} from epoch "
                                   f"{self.current_epoch}")

    def save_checkpoint(self, filename: str) -> None:
        if self._pretrained_source() is None:
            return super().save_checkpoint(filename)
        # the stock network under stock keys, and where its encoder came from (the freeze continues after --c)
        self._write_checkpoint(filename, self.unwrapped_network().state_dict(),
                               dante_transferred_from=self._pretrained_source())

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        ck = filename_or_checkpoint if isinstance(filename_or_checkpoint, dict) else \
            read_checkpoint(filename_or_checkpoint, mmap=True)
        self.unwrapped_network().transferred_from = ck.get('dante_transferred_from')


class ModalityDropoutTrainer(LimitedDeploymentTrainer):
    """Missing-modality baseline (ModDrop / HeMIS style random dropping of the privileged channels)."""
    drop_probability = 0.5

    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True):
        net = build_stock_network(configuration_manager, num_input_channels, num_output_channels,
                                  enable_deep_supervision)
        self._modality_dropout = ModalityDropout(self.channel_split.privileged_indices, self.drop_probability)
        net.encoder.register_forward_pre_hook(self._modality_dropout)
        return net

    def incomplete_cases_treatment(self) -> str:
        return "their privileged channels are always dropped (zeroed), as a dropped case's are"

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step; a case without the privileged channel has it dropped in every step."""
        has = self.has_privileged(batch)
        if has is not None:
            self._modality_dropout.absent = torch.as_tensor(~has)
        try:
            return super().train_step(batch)
        finally:
            self._modality_dropout.absent = None

    def _deployed_weights(self) -> dict:
        """The all-channel network with its (always zero at test) privileged inputs removed from the
        first convolution: the same function on the limited channels, under stock keys."""
        net = self.unwrapped_network()
        return drop_input_channels(net.state_dict(), first_convolution_keys(net), self.channel_split.limited_indices)

    def save_checkpoint(self, filename: str) -> None:
        self._write_checkpoint(filename, self._deployed_weights(),
                               dante_network_weights=self.unwrapped_network().state_dict())

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        self._load_full_weights(filename_or_checkpoint, self.unwrapped_network)


class DistillationTrainer(LowerBoundTrainer):
    """Student = LowerBoundTrainer's network; teacher = a frozen all-channel stock network."""
    teacher_trainer = "UpperBoundTrainer"
    feature_weight = 1.0
    logit_weight = 1.0
    temperature = 2.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        # checked before nnUNetTrainer.__init__ creates the output folder
        self.teacher_checkpoint = self._find_teacher(plans, configuration, fold)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.print_to_log_file(f"Distillation teacher: {self.teacher_checkpoint}", also_print_to_console=True)

    def _find_teacher(self, plans: dict, configuration: str, fold: int) -> str:
        path = os.environ.get(TEACHER_ENV)
        if not path:
            path = join(get_output_folder(plans["dataset_name"], self.teacher_trainer, plans["plans_name"],
                                          configuration, fold), "checkpoint_final.pth")
        if not isfile(path):
            raise FileNotFoundError(f"{type(self).__name__} needs a trained all-channel teacher: {path} does not exist. "
                                    f"Train {self.teacher_trainer} on the same dataset, configuration and fold first, "
                                    f"or set {TEACHER_ENV} to a checkpoint.")
        return path

    def initialize(self):
        super().initialize()
        teacher = build_stock_network(self.configuration_manager, self.channel_split.num_channels,
                                      self.label_manager.num_segmentation_heads, self.enable_deep_supervision)
        ck = read_checkpoint(self.teacher_checkpoint)
        try:
            self._load_weights(teacher, ck['network_weights'])
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"{self.teacher_checkpoint} is not an all-channel {self.configuration_name} model of "
                             f"these plans ({self.channel_split.num_channels} input channels): {e}") from None
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self._student_features: List[torch.Tensor] = []
        self.unwrapped_network().encoder.register_forward_hook(
            lambda module, args, output: self._student_features.__setitem__(slice(None), output))

    def _build_loss(self):
        return DistillationLoss(super()._build_loss(), self.feature_weight, self.logit_weight, self.temperature,
                                self.label_manager.has_regions)

    def train_step(self, batch: dict) -> dict:
        data, target = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            with torch.no_grad():
                teacher_features = self.teacher.encoder(data)
                teacher_out = self.teacher.decoder(teacher_features)
            output = self.network(data)
            loss = self.loss(output, teacher_out, self._student_features, teacher_features, target,
                             self.has_privileged(batch))
        self._backward_and_step(loss)
        return {'loss': loss.detach(), **{f"kd_{k}": v for k, v in self.loss.last_terms.items()}}

    def on_train_epoch_end(self, train_outputs: List[dict]):
        keys, means = self._epoch_means(train_outputs)
        super().on_train_epoch_end([{'loss': v} for v in means[keys.index('loss')]])
        # nanmean: a step without complete cases logs NaN distillation terms
        self.print_to_log_file("distillation terms (unweighted): " +
                               ", ".join(f"{k[3:]} {self._nanmean(v):.4f}" for k, v in zip(keys, means) if k != 'loss'))

    def incomplete_cases_treatment(self) -> str:
        return ("they get the task loss only (the teacher would see a placeholder); the teacher, an upper bound, "
                "was trained on complete cases only")

    def validation_step(self, batch: dict) -> dict:
        # online validation: nnU-Net's task loss and pseudo Dice of the student alone
        loss, self.loss = self.loss, self.loss.task_loss
        try:
            return super().validation_step(batch)
        finally:
            self.loss = loss
