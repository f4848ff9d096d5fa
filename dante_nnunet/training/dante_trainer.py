"""DANTETrainer: Stage 2 of DANTE inside nnU-Net v2's own training loop.

What changes against nnUNetTrainer, hook by hook:

- ``__init__``: reads the channel split from dataset.json (clear error before anything is written);
  DANTE's hyper-parameters are class attributes, so variants are one-line subclasses.
- ``initialize`` (DANTEBaseTrainer): routes nnU-Net's one call of ``build_network_architecture`` to
  the dual-pathway builder. ``build_network_architecture`` itself stays the *deployed* network's
  builder, because ``nnUNetv2_predict`` calls it on the class with the results folder's (limited)
  channel count.
- ``-pretrained_weights`` (stock flag): loads E_L, E_A, E_P of a Stage-1 checkpoint only (see
  ``training/transfer.py``); they stay frozen for ``encoder_freeze_fraction`` of the epochs.
- ``_build_loss``: Eq. 6 around nnU-Net's own task loss.
- ``on_train_epoch_start``: switches the regularisers on at ``regularizer_start_fraction`` of training
  and freezes or releases transferred encoders.
- ``train_step``/``on_train_epoch_end``: nnU-Net's step on the dual network, without a host sync per
  step; per-term logging.
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

from nnunetv2.utilities.collate_outputs import collate_outputs

from dante_nnunet.training.diagnostics import FEATURE_STATS, diagnostic_warnings, feature_statistics
from dante_nnunet.guards import read_checkpoint
from dante_nnunet.losses import DANTELoss, build_alignment, build_pib
from dante_nnunet.losses.dante_loss import LOSS_TERMS, privileged_part
from dante_nnunet.losses.self_teaching import mixed_target, teaching_statistics
from dante_nnunet.networks.builder import build_dual_pathway_network, deployed_state_dict
from dante_nnunet.networks.cross_modal_mae import TRANSFERRED_PARTS
from dante_nnunet.networks.dual_pathway import DualPathwayNet, FullPathway, LimitedPathway
from dante_nnunet.config import DanteConfigError
from dante_nnunet.training.base import LimitedDeploymentTrainer
from dante_nnunet.training.progress import DANTELocalLogger


class DANTETrainer(LimitedDeploymentTrainer):
    # --- DANTE hyper-parameters (paper, Implementation Details); variants override these ---
    # epochs = 500, iterations_per_epoch = 250, val_iterations_per_epoch = 50 (DANTEBaseTrainer)
    lambda_pib = 0.3                  # lambda1 of Eq. 6
    lambda_align = 0.5                # lambda2 of Eq. 6
    # Regulariser form (docs/privileged_transfer.md): Eq. 4 between per-case, per-channel
    # standardised maps towards a detached Z^A, Eq. 3 relative to the scale of Z^A, proj_i
    # starting at 0. Eqs. 3-4 as printed (raw L1, both directions) are DANTETrainer_paper: rescaling
    # features satisfies them, and it collapsed the shallow levels (docs/privileged_transfer.md).
    alignment = "std_l1"              # 'l1' | 'l2' (Eq. 4, p = 1 | 2) | 'std_l1' | 'std_l2' (Eq. 4 on
                                      # standardised maps) | 'infonce' (Eq. 5); losses/alignment.py
    alignment_stop_gradient = True    # True: Z^A is a detached target (only E_L is pulled)
    pib = "relative"                  # 'l1' (Eq. 3 as written) | 'relative' (to the scale of Z^A)
    fusion_zero_init = True           # True: proj_i starts at 0, so the correction starts at 0
    lambda_club = 0.0                 # > 0: CLUB bound on I(Z^A; Z^P) (losses/independence.py), from the
                                      # regularisers' epoch; its estimator trains from epoch 0
    club_samples = 256                # voxels sampled per level and step for the CLUB estimate
    bottleneck = "deterministic"      # "vib": the correction is a Gaussian code and the PIB term its KL
                                      # (networks/fusion.py VariationalFusion, losses/pib.py vib_kl)
    lambda_synthesis = 0.0            # > 0: a training-only head on D_L regresses X^P (losses/synthesis.py),
                                      # on from epoch 0 (it needs no teacher); not in the paper
    regularizer_start_fraction = 0.2  # PIB and alignment join at epoch 100 of 500
    encoder_freeze_fraction = 0.1     # with -pretrained_weights: E_L, E_A, E_P frozen for epochs 0..49 of 500
    infonce_temperature = 0.1
    infonce_anchors = 1024            # anchors per level and batch (memory ~ anchors^2)
    validate_full_pathway = True      # final validation also scores the teacher (fold_X/full_pathway/)
    requires_pretrained_weights = False  # True: refuse to train without -pretrained_weights (Stage-1 runs)
    _validating_teacher = False          # set while perform_actual_validation scores the full pathway
    activation_checkpointing = False  # recompute activations in backward: less memory, ~1 more forward of time
    teach_unlabelled = False          # True (token teach): on the unlabelled cases the limited pathway learns
                                      # from the full pathway's sure predictions (losses/self_teaching.py)
    teach_threshold = 0.9             # a voxel is taught where the full pathway's confidence is at least this
    teach_start_fraction = 0.2        # ... from this fraction of training on (the full pathway learns first)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        self._check_teaching_settings()    # before nnUNetTrainer.__init__ creates the output folder
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.logger.local_logger = DANTELocalLogger()
        if self.teach_unlabelled:
            if not self.unlabelled_cases:
                raise DanteConfigError(f"{type(self).__name__} learns from unlabelled cases, but the dataset.json "
                                       f"lists none (\"dante\" -> \"unlabelled_cases\"; dante_nnunet add-scans "
                                       f"writes a dataset with them)")
            names = [k for k in dataset_json["labels"] if k not in ("background", "ignore")]   # nnU-Net's order
            self.logger.local_logger.enable_teaching(names)
            self.print_to_log_file(f"DANTE teach: {len(self.unlabelled_cases)} unlabelled cases in every fold's "
                                   f"training (labelled cases about {self.labelled_share:.0%} of the draws); from "
                                   f"epoch {self.teach_start_epoch} the limited pathway's target on them is the full "
                                   f"pathway's prediction where its confidence is >= {self.teach_threshold}",
                                   also_print_to_console=True)
        s = self.channel_split
        self.print_to_log_file(f"DANTE: limited channels {list(s.limited_names)} (deployed), privileged "
                               f"{list(s.privileged_names)} (training only); {self.regularizer_description()} "
                               f"from epoch {self.regularizer_start_epoch}; {self.synthesis_description()}",
                               also_print_to_console=True)

    @classmethod
    def _check_teaching_settings(cls) -> None:
        """Refuses a labelled share outside (0, 1), a warm-up fraction outside [0, 1) and a threshold outside
        [0.5, 1] (tokens share<x>, warm<x>), naming the trainer."""
        bad = []
        if not 0.0 < float(cls.labelled_share) < 1.0:
            bad.append(f"labelled_share={cls.labelled_share} (share<x>: 0 < x < 1)")
        if not 0.0 <= float(cls.teach_start_fraction) < 1.0:
            bad.append(f"teach_start_fraction={cls.teach_start_fraction} (warm<x>: 0 <= x < 1)")
        if not 0.5 <= float(cls.teach_threshold) <= 1.0:
            bad.append(f"teach_threshold={cls.teach_threshold} (0.5 <= x <= 1)")
        if bad:
            raise DanteConfigError(f"{cls.__name__}: " + "; ".join(bad))

    def regularizer_description(self) -> str:
        direction = ", Z^A detached" if self.alignment_stop_gradient else ""
        return (f"lambda_pib={self.lambda_pib} (PIB {self.pib_form}), lambda_align={self.lambda_align} "
                f"({self.alignment}{direction}), fusion init {'zero' if self.fusion_zero_init else 'default'}"
                + (f", lambda_club={self.lambda_club} (CLUB of Z^A, Z^P)" if self.lambda_club > 0 else ""))

    def synthesis_description(self) -> str:
        if self.lambda_synthesis <= 0:
            return "no privileged synthesis"
        return (f"privileged synthesis lambda_syn={self.lambda_synthesis} (D_L head -> "
                f"{list(self.channel_split.privileged_names)}, MSE) from epoch 0")

    @property
    def pib_form(self) -> str:
        """The PIB term's form: the KL of the variational fusion's code, else ``pib``."""
        if self.bottleneck not in ("deterministic", "vib"):
            raise ValueError(f"{type(self).__name__}.bottleneck must be 'deterministic' or 'vib', not "
                             f"{self.bottleneck!r}")
        return "vib" if self.bottleneck == "vib" else self.pib

    @property
    def regularizer_start_epoch(self) -> int:
        return int(round(self.regularizer_start_fraction * self.num_epochs))

    @property
    def encoder_freeze_end_epoch(self) -> int:
        """First epoch in which transferred encoders train (0 without -pretrained_weights)."""
        if self.dual_network().transferred_from is None:
            return 0
        return int(round(self.encoder_freeze_fraction * self.num_epochs))

    # ------------------------------------------------------------------ network
    def _build_training_network(self, plans_manager, configuration_manager, num_input_channels: int,
                                num_output_channels: int, enable_deep_supervision: bool = True) -> DualPathwayNet:
        dual = build_dual_pathway_network(configuration_manager, self.channel_split, num_output_channels,
                                          enable_deep_supervision, fusion_zero_init=self.fusion_zero_init,
                                          synthesis=self.lambda_synthesis > 0,
                                          variational=self.pib_form == "vib", club=self.lambda_club > 0)
        dual.activation_checkpointing = self.activation_checkpointing
        return dual

    def dual_network(self) -> DualPathwayNet:
        mod = self.unwrapped_network()
        while isinstance(mod, (LimitedPathway, FullPathway)):
            mod = mod.dual
        if not isinstance(mod, DualPathwayNet):
            raise TypeError(f"self.network is a {type(mod).__name__}, not a DualPathwayNet")
        return mod

    def set_deep_supervision_enabled(self, enabled: bool):
        self.dual_network().set_deep_supervision(enabled)

    # ------------------------------------------------------------------ loss and schedule
    def _build_loss(self):
        alignment = build_alignment(self.alignment, self.infonce_temperature, self.infonce_anchors,
                                    stop_gradient=self.alignment_stop_gradient)
        # regulariser weights are set per epoch in on_train_epoch_start
        return DANTELoss(super()._build_loss(), alignment, lambda_pib=0.0, lambda_align=0.0,
                         pib=build_pib(self.pib_form), lambda_synthesis=self.lambda_synthesis,
                         club=self.dual_network().club_estimator if self.lambda_club > 0 else None,
                         club_samples=self.club_samples)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()   # network.train(), lr of the poly schedule
        self._set_encoders_frozen(self.current_epoch < self.encoder_freeze_end_epoch)
        on = self.current_epoch >= self.regularizer_start_epoch
        self.loss.lambda_pib = self.lambda_pib if on else 0.0
        self.loss.lambda_align = self.lambda_align if on else 0.0
        self.loss.lambda_club = self.lambda_club if on else 0.0
        if self.current_epoch == self.regularizer_start_epoch:
            self.print_to_log_file(f"DANTE regularisers on: {self.regularizer_description()}")

    def _set_encoders_frozen(self, frozen: bool) -> None:
        """Transferred encoders take no gradient (so SGD leaves them, their momentum and weight decay
        untouched, and their backward pass is skipped) and stay in eval mode (normalisation statistics
        of BatchNorm plans do not move either)."""
        dual = self.dual_network()
        encoders = [getattr(dual, p) for p in TRANSFERRED_PARTS]
        was_frozen = not next(encoders[0].parameters()).requires_grad
        for enc in encoders:
            enc.requires_grad_(not frozen)
            if frozen:
                enc.eval()
        if frozen != was_frozen:
            self.print_to_log_file(f"DANTE: transferred encoders E_L, E_A, E_P {'frozen' if frozen else 'trainable'} "
                                   f"from epoch {self.current_epoch}")

    @property
    def teach_start_epoch(self) -> int:
        return int(round(self.teach_start_fraction * self.num_epochs))

    def _taught_cases(self, batch: dict):
        """One bool per case of the batch (device tensor): an unlabelled case the full pathway teaches; None
        when this trainer does not teach or the batch has none."""
        if not (self.teach_unlabelled and self.unlabelled_cases):
            return None
        unl = [str(k) in self.unlabelled_cases for k in batch.get('keys', [])]
        return torch.tensor(unl, device=self.device) if any(unl) else None

    def train_step(self, batch: dict) -> dict:
        """nnUNetTrainer.train_step without its per-step ``.cpu()``: the loss, every Eq. 6 term and the
        feature diagnostics (``diagnostics.py``) stay detached device tensors until on_train_epoch_end (no
        host synchronisation inside the step). With ``teach_unlabelled``, the limited pathway's target on the
        batch's unlabelled cases is the full pathway's sure prediction from ``teach_start_epoch`` on (before
        it, every voxel of theirs is ignored); ``teach`` logs the rule's pass share and the pathways'
        agreement on them (NaN in a step without one)."""
        data, target = self._to_device(batch)
        taught = self._taught_cases(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(data)
            limited_target = None
            if taught is not None:
                threshold = self.teach_threshold if self.current_epoch >= self.teach_start_epoch else 2.0
                limited_target = mixed_target(target, output.seg_full, taught, self.label_manager.has_regions,
                                              threshold, self.label_manager.ignore_label)
            loss = self.loss(output, target, self.has_privileged(batch), limited_target=limited_target)
        self._backward_and_step(loss)
        diag = feature_statistics(output.z_limited, output.z_alignable, output.corrections)
        out = {'loss': loss.detach(), **{f"train_{k}": v for k, v in self.loss.last_terms.items()}, 'diag': diag}
        if self.teach_unlabelled:
            out['teach'] = self._teaching_statistics(output, taught)
        return out

    def _teaching_statistics(self, output, taught) -> torch.Tensor:
        """passed (per region), passed_all, agreement (per region) on the taught cases at full resolution, as
        one vector (NaN without a taught case)."""
        n = self.label_manager.num_segmentation_heads - (0 if self.label_manager.has_regions else 1)
        if taught is None:
            return torch.full((2 * n + 1,), float("nan"), device=self.device)
        first = (lambda x: x[0] if isinstance(x, (list, tuple)) else x)
        index = taught.nonzero().flatten()
        st = teaching_statistics(first(output.seg_full)[index], first(output.seg_limited)[index],
                                 self.label_manager.has_regions, self.teach_threshold,
                                 self.label_manager.num_segmentation_heads)
        return torch.cat([st["passed"].float(), st["passed_all"].float().view(1), st["agreement"].float()])

    def on_train_epoch_end(self, train_outputs: List[dict]):
        # one transfer per epoch for the scalars and one for the diagnostics; nnU-Net's own reduction then
        # sees the numpy losses it expects. Under DDP the terms and diagnostics are averaged over the ranks
        # (one gather), as nnU-Net averages the loss.
        diag = torch.stack([o.pop('diag') for o in train_outputs]).mean(0).cpu().numpy()   # levels x stats
        if self.teach_unlabelled:
            self._log_teaching(torch.stack([o.pop('teach') for o in train_outputs]).cpu().numpy())
        keys, means = self._epoch_means(train_outputs)
        super().on_train_epoch_end([{'loss': v} for v in means[keys.index('loss')]])
        # nanmean: a step without complete cases logs NaN terms
        terms = np.array([self._nanmean(means[keys.index(f"train_{t}")]) for t in LOSS_TERMS])
        both = self._mean_over_ranks(np.concatenate([terms, diag.ravel()]))
        terms, diag = both[:len(terms)], both[len(terms):].reshape(diag.shape)
        for t, v in zip(LOSS_TERMS, terms):
            self.logger.log(f"train_{t}", float(v), self.current_epoch)
        for j, stat in enumerate(FEATURE_STATS):
            self.logger.log(f"diag_{stat}", [float(v) for v in diag[:, j]], self.current_epoch)

    def _log_teaching(self, steps: np.ndarray) -> None:
        """One log line per epoch: the teaching rule's pass share per region and overall, and the full and the
        deployed pathway's agreement (Dice of their hard predictions) on the taught cases; also in the
        logger (``teach_passed``, ``teach_agreement``)."""
        n = (steps.shape[1] - 1) // 2
        with np.errstate(all="ignore"):
            mean = np.nanmean(steps, axis=0) if np.isfinite(steps).any() else np.full(steps.shape[1], np.nan)
        passed, passed_all, agreement = mean[:n], mean[n], mean[n + 1:]
        self.logger.log("teach_passed", [float(v) for v in passed] + [float(passed_all)], self.current_epoch)
        self.logger.log("teach_agreement", [float(v) for v in agreement], self.current_epoch)
        state = "teaching" if self.current_epoch >= self.teach_start_epoch else f"warm-up to epoch {self.teach_start_epoch}"
        self.print_to_log_file(f"DANTE teach ({state}, threshold {self.teach_threshold}): pass share per region "
                               + " ".join(f"{v:.3f}" for v in passed) + f", all regions {passed_all:.3f}; "
                               f"full vs deployed pathway Dice per region " + " ".join(f"{v:.3f}" for v in agreement))

    def _log_diagnostics(self, epoch: int) -> None:
        """One log line per diagnostic (levels from full resolution to the bottleneck) and the warnings of
        ``diagnostics.diagnostic_warnings``."""
        log = self.logger.local_logger.my_fantastic_logging
        history = {stat: log[f"diag_{stat}"] for stat in FEATURE_STATS}
        for stat in FEATURE_STATS:
            self.print_to_log_file(f"DANTE features {stat} per level: "
                                   + " ".join(f"{v:.3g}" for v in history[stat][epoch]))
        start = self.regularizer_start_epoch
        reference = max(start - 1, 0) if epoch >= start else None
        for w in diagnostic_warnings(history, epoch, reference):
            self.print_to_log_file(f"WARNING DANTE diagnostics: {w}", also_print_to_console=True)

    # ------------------------------------------------------------------ online validation
    def incomplete_cases_treatment(self) -> str:
        return ("the limited pathway's task loss uses them; the full pathway's task loss, PIB, alignment and "
                "synthesis use only the cases with the privileged channel (per case, in each batch); the teacher "
                "is validated on complete cases only")

    def validation_step(self, batch: dict) -> dict:
        data, target = self._to_device(batch)
        has = self.has_privileged(batch)
        with self._autocast():
            output = self.network(data)
            loss = self.loss(output, target, has)
        tp, fp, fn = self._hard_counts(output.seg_limited, target)
        part = privileged_part(output, target, has)   # the teacher's pseudo Dice: complete cases only
        if part is None:
            tpf, fpf, fnf = (np.zeros_like(tp) for _ in range(3))
        else:
            tpf, fpf, fnf = self._hard_counts(part[0].seg_full, part[1])
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn,
                'tp_hard_full': tpf, 'fp_hard_full': fpf, 'fn_hard_full': fnf}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        super().on_validation_epoch_end(val_outputs)  # limited pathway -> mean_fg_dice, EMA, best checkpoint
        c = collate_outputs(val_outputs)
        # the teacher's counts summed over the DDP ranks, as nnU-Net sums the deployed pathway's
        tp, fp, fn = self._sum_over_ranks(np.stack([np.sum(c[f'{k}_hard_full'], 0) for k in ('tp', 'fp', 'fn')]))
        with np.errstate(invalid='ignore', divide='ignore'):
            dice = [float(2 * a / (2 * a + b + d)) for a, b, d in zip(tp, fp, fn)]
        self.logger.log('mean_fg_dice_full', float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float('nan'),
                        self.current_epoch)
        self.logger.log('dice_per_class_or_region_full', dice, self.current_epoch)

    def on_epoch_end(self):
        e = self.current_epoch
        terms = {t: self.logger.get_value(f"train_{t}", step=e) for t in LOSS_TERMS}
        self.print_to_log_file("DANTE terms (unweighted): " + ", ".join(
            f"{t} {'off' if np.isnan(v) else f'{v:.4f}'}" for t, v in terms.items()))
        self._log_diagnostics(e)
        self.print_to_log_file('Pseudo dice full pathway (teacher)',
                               [np.round(i, decimals=4) for i in
                                self.logger.get_value('dice_per_class_or_region_full', step=e)])
        super().on_epoch_end()

    # ------------------------------------------------------------------ deployment
    def on_train_start(self):
        if not self.was_initialized:   # as nnUNetTrainer.on_train_start does, so the network exists for the checks
            self.initialize()
        dual = self.dual_network()
        if self.requires_pretrained_weights and dual.transferred_from is None:
            raise RuntimeError(f"{type(self).__name__} fine-tunes a Stage-1 model: start it with "
                               f"-pretrained_weights PATH/checkpoint_final.pth of a DANTEPretrainTrainer run")
        super().on_train_start()
        marks = self.logger.local_logger.marks
        marks["regularisers on"] = self.regularizer_start_epoch
        if dual.transferred_from is not None:
            marks["transferred encoders trainable"] = self.encoder_freeze_end_epoch
            if self.is_ddp and self.current_epoch < self.encoder_freeze_end_epoch:
                raise RuntimeError(f"{type(self).__name__}: freezing transferred encoders is not supported under "
                                   f"DDP (it changes which parameters take gradients); use a variant with "
                                   f"encoder_freeze_fraction = 0, e.g. DANTETrainer_noFreeze")
            self.print_to_log_file(f"DANTE: E_L, E_A, E_P transferred from {dual.transferred_from}; frozen until "
                                   f"epoch {self.encoder_freeze_end_epoch}", also_print_to_console=True)
            self._warn_if_stage1_channels_differ(dual.transferred_from)

    def _warn_if_stage1_channels_differ(self, checkpoint_file: str) -> None:
        """Shapes were checked when the encoders were loaded; channel *names* can differ legitimately
        between datasets (t1 vs T1), so a difference is reported, not refused."""
        if not isfile(checkpoint_file):
            return
        info = read_checkpoint(checkpoint_file, mmap=True).get('dante_stage1')
        s = self.channel_split
        if info and (info['limited_channels'] != list(s.limited_names)
                     or info['privileged_channels'] != list(s.privileged_names)):
            self.print_to_log_file(f"WARNING: Stage 1 was trained with limited {info['limited_channels']} and "
                                   f"privileged {info['privileged_channels']}, this dataset has limited "
                                   f"{list(s.limited_names)} and privileged {list(s.privileged_names)}. Check that "
                                   f"the channels correspond.",
                                   also_print_to_console=True)

    def _pretrained_source(self):
        return self.dual_network().transferred_from

    def save_checkpoint(self, filename: str) -> None:
        dual = self.dual_network()
        self._write_checkpoint(filename, deployed_state_dict(dual),     # what nnUNetv2_predict loads
                               dante_network_weights=dual.state_dict(),  # the whole dual network, --c / --val
                               dante_transferred_from=dual.transferred_from)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        ck = self._load_full_weights(filename_or_checkpoint, self.dual_network)
        self.dual_network().transferred_from = ck.get('dante_transferred_from')   # the freeze schedule continues

    def _validation_network(self, view):
        """A pathway view for the final validation, compiled when this trainer compiles (nnU-Net's
        ``_do_i_compile``: CUDA unless nnUNet_compile says otherwise), as nnU-Net validates with its
        compiled training network."""
        return torch.compile(view) if self._do_i_compile() else view

    def do_split(self):
        """The base split; while the teacher is validated, without the cases lacking the privileged scan (it
        cannot be scored on a placeholder)."""
        tr_keys, val_keys = super().do_split()
        if self._validating_teacher:
            tr_keys, val_keys = self._complete_cases(tr_keys, val_keys, training=False)
        return tr_keys, val_keys

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation (sliding window, mirroring, export, metrics) of the deployed limited
        pathway fed only the limited channels -> fold_X/validation; first, if
        ``validate_full_pathway``, of the teacher on all channels -> fold_X/full_pathway/validation."""
        network, output_folder = self.network, self.output_folder
        dual = self.dual_network()
        try:
            if self.validate_full_pathway:
                self.network = self._validation_network(FullPathway(dual))
                self.output_folder = join(output_folder, 'full_pathway')
                self.print_to_log_file("Validating the full pathway (teacher reference, all channels"
                                       + (", cases with the privileged channel only)" if self.cases_without_privileged
                                          else ")"))
                self._validating_teacher = True   # do_split leaves out the cases without the privileged scan
                try:
                    super().perform_actual_validation(save_probabilities)
                finally:
                    self._validating_teacher = False
                self.output_folder = output_folder
            self.network = self._validation_network(LimitedPathway(dual))
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
