"""What DANTE's two nnUNetTrainer subclasses (Stage 1 and Stage 2) share: the channel split read
before anything is written, schedule class attributes, routing of nnU-Net's single network-building
call to the stage's own network, the parts of checkpoint writing and reading that do not depend on
the network, and the guards of ``dante_nnunet/guards.py`` (results-folder lock, run record, channel
split in every checkpoint, non-finite loss stop). The pieces of nnUNetTrainer they restate live in
``nnunet_followed.py``."""
from __future__ import annotations

import os
import warnings
from typing import Callable, List, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from batchgenerators.utilities.file_and_folder_operations import join
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from dante_nnunet.config import ChannelSplit, DanteConfigError, cases_without_privileged, unlabelled_cases
from dante_nnunet.deploy.channel_profile import reference_profiles
from dante_nnunet.deploy.channel_profile import save_channel_profile
from dante_nnunet.deploy.deployment import save_deployment_files
from dante_nnunet.guards import (CheckpointWriteError, NonFiniteTrainingError, ResultsFolderLock,
                                 ResultsFolderNotWritable, first_non_finite, non_finite_cases, read_checkpoint,
                                 read_run_record, save_whole, split_mismatch, split_record, strip_ddp_prefix,
                                 write_run_record)
from dante_nnunet.deploy.predict_input_check import check_inputs_of_predict_command
from dante_nnunet.training.case_checks import check_privileged_cases
from dante_nnunet.training.nnunet_followed import NNUNetFollowed, cpu_validation_workers
from dante_nnunet.training.progress import ThrottledLocalLogger
from dante_nnunet.training.seeding import make_cudnn_deterministic, seed_everything, seeded_augmenter_workers
from dante_nnunet.training.transfer import install_pretrained_weights_hook


class DANTEBaseTrainer(nnUNetTrainer, NNUNetFollowed):
    """Not a trainer to run: subclasses implement ``_build_training_network``."""
    # --- schedule (paper, Implementation Details); variants override these class attributes ---
    epochs = 500                      # -> nnUNetTrainer.num_epochs
    iterations_per_epoch = 250        # -> num_iterations_per_epoch (nnU-Net's default)
    val_iterations_per_epoch = 50     # -> num_val_iterations_per_epoch (nnU-Net's default)
    schedule_scale = 1.0              # num_epochs = round(epochs x schedule_scale) (token long<x>)
    finetune_fraction: Optional[float] = None   # token tune<x>: a fine-tune of x of the epochs (lower bound)
    foreground_share: Optional[float] = None   # token fg<x>: nnU-Net's oversample_foreground_percent = x
    FINETUNE_LR_FACTOR = 0.1          # a fine-tune starts nnU-Net's poly schedule from this share of initial_lr
    # None: unseeded, as nnU-Net. An int seeds the run (training/seeding.py); name suffix _seed<N>
    seed: Optional[int] = None
    # True: cases listed in "dante" -> "cases_without_privileged" are left out of training and validation
    # (methods that need the privileged channel of every case they see: the upper bound, a teacher)
    complete_cases_only = False
    # True: cases listed in "dante" -> "unlabelled_cases" (label = nnU-Net's ignore label everywhere) are in
    # every fold's training cases (a trainer that learns from them); False: left out of training. Never
    # validated on, either way.
    trains_on_unlabelled = False
    labelled_share = 0.5              # with trains_on_unlabelled: labelled cases listed so that they are about
                                      # this share of the cases drawn (None: each case once)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        source = "dataset.json"
        if nnUNet_preprocessed.is_set() and "dataset_name" in plans:
            source = join(nnUNet_preprocessed, plans["dataset_name"], "dataset.json")
        # validated before nnUNetTrainer.__init__ creates the output folder
        try:
            self.channel_split = ChannelSplit.from_dataset_json(dataset_json, source)
        except DanteConfigError as e:
            if source == "dataset.json":
                raise
            raw = join("$nnUNet_raw", plans["dataset_name"], "dataset.json")
            raise DanteConfigError(f"{e}. nnUNetv2_train reads this copy, which planning made of {raw}: edit {raw} "
                                   f"and copy it over this one (the block does not change preprocessing, so "
                                   f"nothing needs to be preprocessed again)") from None
        self.cases_without_privileged = frozenset(cases_without_privileged(dataset_json, source))
        self.unlabelled_cases = frozenset(unlabelled_cases(dataset_json, source))
        check_privileged_cases(plans, configuration, self.channel_split, self.cases_without_privileged, source)
        super().__init__(plans, configuration, fold, dataset_json, device)
        install_pretrained_weights_hook()   # -pretrained_weights: Stage-1 encoders, and recorded for Stage 1
        if self.is_cascaded:
            raise ValueError(f"{type(self).__name__} does not support cascaded configurations ({configuration})")
        if not self.schedule_scale > 0:
            raise ValueError(f"{type(self).__name__}: schedule_scale (token long<x>) must be > 0, got "
                             f"{self.schedule_scale}")
        fraction = 1.0 if self.finetune_fraction is None else self.finetune_fraction
        if not 0 < fraction <= 1:
            raise ValueError(f"{type(self).__name__}: finetune_fraction (token tune<x>) must be in (0, 1], got "
                             f"{self.finetune_fraction}")
        self.num_epochs = max(1, int(round(self.epochs * self.schedule_scale * fraction)))
        if self.foreground_share is not None:   # the share of each batch nnU-Net centres on a foreground voxel
            if not 0 <= self.foreground_share <= 1:
                raise ValueError(f"{type(self).__name__}: foreground_share (token fg<x>) must be in [0, 1], got "
                                 f"{self.foreground_share}")
            self.oversample_foreground_percent = float(self.foreground_share)
        if self.finetune_fraction is not None:
            self.initial_lr = self.initial_lr * self.FINETUNE_LR_FACTOR
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        # nnU-Net writes checkpoint_latest every 50 epochs; a short schedule would never write one (a kill
        # then resumes from checkpoint_best, epochs back). Every tenth of the schedule, at most every 50.
        self.save_every = max(1, min(self.save_every, self.num_epochs // 10))
        self._results_lock = ResultsFolderLock(self.output_folder)
        self._step_keys: List[list] = []
        self.logger.local_logger = ThrottledLocalLogger()   # subclasses with own curves replace it
        if self.seed is not None:
            self.print_to_log_file(f"Seed {self.seed}: random, numpy, torch and the augmentation workers are seeded"
                                   + (" (cuDNN deterministic)" if self.device.type == 'cuda' else ""),
                                   also_print_to_console=True)

    def has_privileged(self, batch: dict) -> Optional[np.ndarray]:
        """Per case of a batch (from nnU-Net's ``keys``): True where the case has its privileged scan; None
        when no training case lacks it (the losses' ``has_privileged`` argument)."""
        if not self.cases_without_privileged:
            return None
        return np.array([str(k) not in self.cases_without_privileged for k in batch.get('keys', [])], dtype=bool)

    def do_split(self):
        """nnU-Net's split; the unlabelled cases out of validation (in training with ``trains_on_unlabelled``,
        else out of it too); with ``complete_cases_only`` without the cases listed in
        "cases_without_privileged"."""
        tr_keys, val_keys = super().do_split()
        if self.unlabelled_cases:
            tr_keys, val_keys = self._unlabelled_split(tr_keys, val_keys)
        if self.complete_cases_only:
            tr_keys, val_keys = self._complete_cases(tr_keys, val_keys, training=True)
        return tr_keys, val_keys

    def _unlabelled_split(self, tr_keys: List[str], val_keys: List[str]):
        """Every fold: no unlabelled case is validated on; with ``trains_on_unlabelled`` all of them (also those
        nnU-Net's split put into another fold's validation) train, otherwise none."""
        from dante_nnunet.data.teach_dataset import real_repeats
        unl = self.unlabelled_cases
        val = [k for k in val_keys if k not in unl]
        tr = [k for k in tr_keys if k not in unl]
        if not val or not tr:
            raise DanteConfigError(f"fold {self.fold}: no labelled {'validation' if not val else 'training'} case is "
                                   f"left once the unlabelled cases are set apart; use another fold or split")
        if self.trains_on_unlabelled:
            # nnU-Net's loader draws uniformly from this list, repeats included: labelled cases listed r times
            tr = sorted(tr * real_repeats(len(tr), len(unl), self.labelled_share) + list(unl))
        return tr, val

    def _complete_cases(self, tr_keys: List[str], val_keys: List[str], training: bool):
        """The split without the cases lacking the privileged scan (their training cases too if ``training``);
        refuses a fold left without training or validation cases."""
        missing = self.cases_without_privileged
        if not missing:
            return tr_keys, val_keys
        val_keys = [k for k in val_keys if k not in missing]
        if training:
            tr_keys = [k for k in tr_keys if k not in missing]
        if not tr_keys or not val_keys:
            raise DanteConfigError(f"fold {self.fold}: no {'training' if not tr_keys else 'validation'} case "
                                   f"with the privileged channel is left once the cases without it are removed "
                                   f"({type(self).__name__} needs complete cases); use another fold or split")
        return tr_keys, val_keys

    def incomplete_cases_treatment(self) -> str:
        """How this trainer treats cases without the privileged channel (one clause for the log)."""
        if self.complete_cases_only:
            return "left out of training and validation (this method needs the privileged channel of every case)"
        return "trained on like every other case (this method does not read the privileged channel)"

    def _log_incomplete_cases(self) -> None:
        if not self.cases_without_privileged:
            return
        tr_keys, val_keys = nnUNetTrainer.do_split(self)
        n_tr = sum(k in self.cases_without_privileged for k in tr_keys)
        n_val = sum(k in self.cases_without_privileged for k in val_keys)
        self.print_to_log_file(f"Cases without the privileged channel(s) {list(self.channel_split.privileged_names)}: "
                               f"{n_tr} of {len(tr_keys)} training and {n_val} of {len(val_keys)} validation cases of "
                               f"fold {self.fold}; {self.incomplete_cases_treatment()}", also_print_to_console=True)

    @property
    def run_seed(self) -> Optional[int]:
        """This process's seed: ``seed`` plus the DDP rank (ranks draw different batches)."""
        return None if self.seed is None else int(self.seed) + self.local_rank

    # ------------------------------------------------------------------ network
    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        raise NotImplementedError

    def _build_checked(self, plans_manager, configuration_manager, num_input_channels: int,
                       num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        if num_input_channels != self.channel_split.num_channels:
            raise ValueError(f"expected {self.channel_split.num_channels} input channels "
                             f"{list(self.channel_split.channel_names)}, got {num_input_channels}")
        return self._build_training_network(plans_manager, configuration_manager, num_input_channels,
                                            num_output_channels, enable_deep_supervision)

    def initialize(self):
        # nnUNetTrainer.initialize builds self.network with self.build_network_architecture(...). That
        # name stays the class-level builder nnUNetv2_predict uses; for training, this one instance call
        # goes to the stage's own network.
        if self.run_seed is not None:   # before the network's weights are drawn
            seed_everything(self.run_seed)
        self.build_network_architecture = self._build_checked
        try:
            super().initialize()
        finally:
            del self.build_network_architecture

    def get_dataloaders(self):
        """nnU-Net's data loaders; with a seed, their augmentation workers are seeded too."""
        if self.run_seed is None:
            return super().get_dataloaders()
        with seeded_augmenter_workers(self.run_seed):
            return super().get_dataloaders()

    # nnU-Net's best-checkpoint criterion: the highest EMA pseudo Dice (Stage 1: the lowest validation loss)
    best_curve, best_is_max = 'ema_fg_dice', True

    def _best_of_logged_epochs(self):
        """The best-checkpoint criterion's best value over the epochs logged so far (None: none yet)."""
        values = [float(v) for v in list(self.logger.get_value(self.best_curve, step=None))[:self.current_epoch]
                  if np.isfinite(v)]
        return None if not values else (max(values) if self.best_is_max else min(values))

    def on_train_start(self):
        # nnUNetTrainer.on_epoch_end (2.8.1) writes checkpoint_latest before it updates _best_ema, so a run
        # continued (--c) from an epoch that was a new best starts with the best before it, and the next
        # worse epoch replaces checkpoint_best. checkpoint_best was written whenever the criterion improved,
        # so the best value is that of the logged epochs.
        if self.current_epoch > 0:
            self._best_ema = self._best_of_logged_epochs()
        self._log_incomplete_cases()
        if self.local_rank == 0:
            self._results_lock.acquire(f"training {type(self).__name__}")
            self._check_and_write_run_record()
        if self.seed is not None and self.device.type == 'cuda':
            make_cudnn_deterministic()   # after run_training turned cuDNN benchmarking on
        # the batch keys of each step, for naming the cases of a non-finite loss, and the check of each
        # step's loss where it costs no host synchronisation (an instance attribute shadows the class's
        # train_step for run_training's loop only)
        step = self.train_step

        def train_step(batch: dict) -> dict:
            self._step_keys.append(list(batch.get('keys', [])))
            out = step(batch)
            loss = out['loss']
            if not torch.is_tensor(loss) or loss.device.type == 'cpu':   # on CUDA: at the epoch's end
                if not np.all(np.isfinite(loss.detach().float().numpy() if torch.is_tensor(loss) else loss)):
                    self._stop_for_non_finite_step(len(self._step_keys) - 1, loss)
            return out
        self.train_step = train_step
        super().on_train_start()

    # ------------------------------------------------------------------ guards
    def print_to_log_file(self, *args, also_print_to_console=True, add_timestamp=True):
        """nnU-Net's, except that a log file that cannot be opened (the results folder turned read-only,
        was removed, or its disk failed) stops the run with one error naming the folder; nnU-Net retries
        every line five times, prints "failed to log" each time, and trains on without a log."""
        if self.local_rank == 0 and getattr(self, "log_file", None):
            if getattr(self, "_log_broken", False):   # reported once; what follows goes to the console only
                if also_print_to_console:
                    print(*args)
                return
            try:
                open(self.log_file, 'a+').close()
            except OSError as e:
                self._log_broken = True
                raise ResultsFolderNotWritable(
                    f"the training log {self.log_file} cannot be written ({type(e).__name__}: {e.strerror or e}): "
                    f"{self.output_folder} is not writable any more (a read-only or full disk, permissions, or a "
                    f"removed folder). Training stopped; once the folder is writable, nnUNetv2_train ... --c "
                    f"continues from the last checkpoint") from None
        super().print_to_log_file(*args, also_print_to_console=also_print_to_console, add_timestamp=add_timestamp)

    def _pretrained_source(self) -> Optional[str]:
        """The -pretrained_weights file this run's network started from (None: none or not tracked)."""
        return None

    def _check_and_write_run_record(self) -> None:
        """Refuse a start that would silently lose what the run in this folder was started with, then
        record this run (``guards.py``: the run record)."""
        record = read_run_record(self.output_folder)
        source = self._pretrained_source()
        if record is not None and self.current_epoch == 0 and source is None and record.get("pretrained_weights"):
            raise RuntimeError(
                f"{self.output_folder} holds a run of {record.get('trainer')} started from -pretrained_weights "
                f"({record['pretrained_weights']}) that left no checkpoint (killed before its first one). Without "
                f"them nnU-Net would now train from scratch (a Stage-2 run: without the Stage-1 encoders and their "
                f"freeze). Restart "
                f"it without --c and with the weights: nnUNetv2_train ... -tr {type(self).__name__} "
                f"-pretrained_weights {record['pretrained_weights']}  (or remove {self.output_folder} to train from "
                f"scratch)")
        write_run_record(self.output_folder, {
            "trainer": type(self).__name__, "channel_split": self._split_record(),
            "pretrained_weights": source, "seed": self.seed})

    def _split_record(self) -> dict:
        return split_record(self.channel_split.channel_names, self.channel_split.privileged_indices)

    def on_train_epoch_start(self):
        self._step_keys = []
        super().on_train_epoch_start()

    def on_train_epoch_end(self, train_outputs: List[dict]):
        """nnU-Net's (DDP-gathered mean loss), then the end-of-epoch check for a NaN/Inf loss: on the CPU
        each step's loss was checked when it was computed; on CUDA the per-step losses reach the host once
        per epoch (no synchronisation per step), so the run stops at the end of the epoch in which the
        loss went non-finite."""
        super().on_train_epoch_end(train_outputs)
        self._stop_if_non_finite(train_outputs)

    def _stop_if_non_finite(self, train_outputs: List[dict]) -> None:
        if np.isfinite(self.logger.get_value('train_losses', step=self.current_epoch)):
            return
        i = first_non_finite([o['loss'].float().cpu().numpy() if torch.is_tensor(o['loss']) else o['loss']
                              for o in train_outputs])
        if i is None:
            raise NonFiniteTrainingError(f"epoch {self.current_epoch}: the training loss became NaN/Inf on another "
                                         f"DDP rank; that rank's log names the cases")
        self._stop_for_non_finite_step(i, train_outputs[i]['loss'])

    def _stop_for_non_finite_step(self, i: int, loss) -> None:
        """Raise NonFiniteTrainingError for step ``i`` of this epoch, naming its cases and those of them
        whose preprocessed data hold NaN/Inf (with the channels)."""
        keys = self._step_keys[i] if i < len(self._step_keys) else []
        bad = non_finite_cases(lambda k: self.dataset_class(self.preprocessed_dataset_folder, [k]).load_case(k)[0][:],
                               keys) if keys else {}
        why = (f"non-finite preprocessed data in {', '.join(f'{k} (channel(s) {c})' for k, c in bad.items())} "
               f"under {self.preprocessed_dataset_folder}: check those cases' images for NaN/Inf and preprocess "
               f"again" if bad else "the batch's data are finite, so the loss diverged (learning rate, "
               "loss weights, mixed precision)")
        value = float(loss.detach().float().mean()) if torch.is_tensor(loss) else float(np.mean(loss))
        message = (f"epoch {self.current_epoch}, step {i}: the training loss is {value} for the batch of cases "
                   f"{keys}; {why}. Training stopped; the last checkpoint is untouched.")
        self.print_to_log_file("ERROR: " + message, also_print_to_console=True)
        raise NonFiniteTrainingError(message)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's, under the results-folder lock (for --val runs; a training holds it already), with fewer
        worker processes on a CPU (``nnunet_followed.cpu_validation_workers``)."""
        acquired = False
        if self.local_rank == 0 and not self._results_lock.held:
            self._results_lock.acquire(f"validating {type(self).__name__}")
            acquired = True
        try:
            with cpu_validation_workers(self.device):
                super().perform_actual_validation(save_probabilities)
        finally:
            if acquired:
                self._results_lock.release()

    def on_train_end(self):
        super().on_train_end()
        if self.local_rank == 0:
            self.logger.local_logger.flush_plots()   # the last epochs' curves (drawing is throttled)

    def unwrapped_network(self) -> nn.Module:
        """self.network without its DDP and torch.compile wrappers."""
        mod = self.network
        while isinstance(mod, (DDP, OptimizedModule)):
            mod = mod.module if isinstance(mod, DDP) else mod._orig_mod
        return mod

    # ------------------------------------------------------------------ checkpoints
    def _write_checkpoint(self, filename: str, network_weights: dict, **extra) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file('No checkpoint written, checkpointing is disabled')
            return
        # written beside and renamed: a run killed while saving leaves the previous checkpoint whole
        ck = {**self._checkpoint_dict(network_weights), 'dante_channel_split': self._split_record(), **extra}
        try:
            save_whole(ck, filename)
        except CheckpointWriteError as e:
            previous = ("; the previous checkpoint_latest.pth is whole, so --c continues from it once there is "
                        "space" if os.path.isfile(join(self.output_folder, 'checkpoint_latest.pth')) else "")
            message = f"{e}{previous}"
            try:
                self.print_to_log_file("ERROR: " + message, also_print_to_console=True)
            except Exception:
                pass
            raise CheckpointWriteError(message) from None

    def _read_checkpoint(self, filename_or_checkpoint: Union[dict, str]):
        """(checkpoint dict, name for messages); initialises the trainer first if needed."""
        if not self.was_initialized:
            self.initialize()
        if isinstance(filename_or_checkpoint, str):
            ck, name = read_checkpoint(filename_or_checkpoint, map_location=self.device), filename_or_checkpoint
        else:
            ck, name = filename_or_checkpoint, "checkpoint"
        mismatch = split_mismatch(ck.get('dante_channel_split'), self._split_record())
        if mismatch:
            raise ValueError(f"{name}: {mismatch}. Continuing (--c) or validating (--val) it needs the dataset.json "
                             f"it was trained with (restore the 'dante' block in nnUNet_raw and nnUNet_preprocessed); "
                             f"for another split, train into a new results folder")
        self.print_to_log_file(f"Loaded {name} (trainer {ck.get('trainer_name')}, next epoch "
                               f"{ck.get('current_epoch')})", also_print_to_console=True)
        return ck, name

    @staticmethod
    def _load_weights(module: nn.Module, weights: dict) -> None:
        """Strict load, tolerating the ``module.`` prefix of weights saved from a DDP-wrapped network."""
        module.load_state_dict(strip_ddp_prefix(weights))

    def _load_full_weights(self, filename_or_checkpoint: Union[dict, str],
                           training_network: Callable[[], nn.Module]) -> dict:
        """Read a checkpoint whose ``network_weights`` hold only the deployed network, load its
        ``dante_network_weights`` into ``training_network()`` (called once the trainer is initialised)
        and restore the training state; returns the checkpoint. nnUNetTrainer.load_checkpoint (2.8.1)
        loads ``network_weights`` and fails on a dict, so it is not delegated to."""
        ck, name = self._read_checkpoint(filename_or_checkpoint)
        if 'dante_network_weights' not in ck:
            raise ValueError(f"{name} has no 'dante_network_weights': it was not written by {type(self).__name__} "
                             f"or a DANTE trainer (trainer_name {ck.get('trainer_name')!r})")
        self._load_weights(training_network(), ck['dante_network_weights'])
        self._restore_training_state(ck)
        return ck

    def _sum_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """The sum of a host array over the DDP ranks (``values`` itself without DDP), gathered with
        ``all_gather_object`` as nnUNetTrainer.on_validation_epoch_end gathers its counts (gloo and NCCL)."""
        if not self.is_ddp:
            return values
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, np.asarray(values))
        return np.sum(np.stack(parts), 0)

    def _mean_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """The mean over the DDP ranks; ranks run the same number of steps, so the mean of their epoch
        means is the epoch mean."""
        return self._sum_over_ranks(values) / (dist.get_world_size() if self.is_ddp else 1)

    @staticmethod
    def _nanmean(values: np.ndarray, axis=None):
        """numpy's nanmean without its warning for all-NaN input (a term off, or logged NaN in every step
        because no batch had a case with the privileged scan), which stays NaN."""
        with np.errstate(all='ignore'), warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            return np.nanmean(values, axis=axis)

    @staticmethod
    def _epoch_means(outputs: List[dict]):
        """(keys, numpy array keys x steps) of the per-step device tensors: one host transfer per epoch."""
        keys = list(outputs[0])
        return keys, torch.stack([torch.stack([o[k].float() for o in outputs]) for k in keys]).cpu().numpy()


def preprocessed_case_and_body(dataset_class, folder: str, key: str):
    """(data, body mask) of a preprocessed case: nnU-Net marks voxels outside its non-zero mask with seg -1."""
    data, seg, _, _ = dataset_class(folder, [key]).load_case(key)
    return data, np.asarray(seg[0]) >= 0


class LimitedDeploymentTrainer(DANTEBaseTrainer):
    """Base of every trainer that trains on all channels' data but deploys the stock network on the
    limited channels (DANTETrainer and the limited-channel baselines)."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """The deployed network (stock architecture on the limited channels). nnUNetv2_predict calls
        this on the class; when it does, its input folder is checked first."""
        check_inputs_of_predict_command(num_input_channels)
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)

    def on_train_start(self):
        """nnU-Net's, then the results folder's dataset.json/plans.json re-written for the limited channels."""
        super().on_train_start()
        if self.local_rank == 0:
            save_deployment_files(self.output_folder_base, self.plans_manager.plans, self.dataset_json,
                                  self.channel_split)
            self._save_channel_profile()

    def _save_channel_profile(self, max_cases: int = 16) -> None:
        """The deployed channels' reference intensity profiles (``channel_profile.py``) from up to
        ``max_cases`` training cases of the preprocessed data, inside nnU-Net's non-zero mask (seg >= 0)."""
        keys = sorted(nnUNetTrainer.do_split(self)[0])[:max_cases]
        if keys:
            reference = reference_profiles(lambda k: preprocessed_case_and_body(self.dataset_class,
                                                                                self.preprocessed_dataset_folder, k),
                                           keys, self.channel_split.limited_indices)
            save_channel_profile(self.output_folder_base, self.channel_split.limited_names, reference, len(keys))
