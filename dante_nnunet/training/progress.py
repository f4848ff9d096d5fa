"""nnU-Net's local logger with DANTE's per-epoch curves in progress.png (Stage 2 and Stage 1), and
throttled redrawing for every trainer of the package."""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.training.logging.nnunet_logger import LocalLogger

from dante_nnunet.training.diagnostics import DEAD_WARN_FRACTION, FEATURE_STATS, STAT_LABELS, STAT_TITLES
from dante_nnunet.guards import write_failure
from dante_nnunet.losses.dante_loss import LOSS_TERMS
from dante_nnunet.losses.reconstruction import RECONSTRUCTION_TERMS

def _integer_epochs(fig) -> None:
    """Epoch axes with whole-number ticks only (a 1-epoch run otherwise shows -0.04 .. 0.04)."""
    from matplotlib.ticker import MaxNLocator
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


class ThrottledPlotting:
    """Mixin for nnU-Net's LocalLogger: the figures are redrawn at most every ``plot_interval_s`` seconds,
    counted from the logger's creation (the trainer's start), and ``flush_plots`` draws the latest state
    (the trainers call it when training ends): a run shorter than the interval draws its figures once.

    nnU-Net redraws progress.png after every epoch. A figure costs about 1 s on a CPU (DANTE's two figures
    3.8 s), against about 2 s for a 50-iteration epoch of a small CPU configuration; a GPU epoch of 250
    iterations takes far longer than the interval, so there every epoch is still drawn."""
    plot_interval_s = 60.0
    _pending: Optional[str] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_plot = time.monotonic()

    def _draw(self, output_folder: str) -> None:
        raise NotImplementedError

    def plot_progress_png(self, output_folder):
        self._pending = output_folder
        if time.monotonic() - self._last_plot >= self.plot_interval_s:
            self.flush_plots()

    def flush_plots(self) -> None:
        if self._pending is not None:
            try:
                self._draw(self._pending)
            except OSError as e:   # a read-only or full results folder: name it (matplotlib's error does not say)
                raise write_failure(getattr(e, "filename", None) or os.path.join(self._pending, "progress.png"),
                                    e) from None
            self._last_plot, self._pending = time.monotonic(), None


class ThrottledLocalLogger(ThrottledPlotting, LocalLogger):
    """nnU-Net's own LocalLogger and progress.png, redrawn as ``ThrottledPlotting`` says (the baselines)."""

    def _draw(self, output_folder: str) -> None:
        LocalLogger.plot_progress_png(self, output_folder)


class _CurvesLogger(ThrottledPlotting, LocalLogger):
    """nnU-Net's LocalLogger whose progress.png has ``n_curve_panels`` panels of the subclass's curves
    (``_plot_curves``) above nnU-Net's epoch-duration and learning-rate panels."""
    n_curve_panels = 1
    trainer_name = ""
    optional_keys: tuple = ()   # curves that older checkpoints may lack (filled with NaN on loading)

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        self.marks = {}   # label -> epoch, drawn as vertical lines (e.g. where the regularisers switch on)

    def _mark(self, ax) -> None:
        for i, (label, e) in enumerate(sorted(self.marks.items(), key=lambda kv: kv[1])):
            ax.axvline(e, color="k", ls="--" if i == 0 else ":", linewidth=2, marker="", label=f"{label} (epoch {e})")

    def load_checkpoint(self, checkpoint: dict):
        checkpoint = dict(checkpoint)
        n = len(checkpoint.get("train_losses", []))
        for k in self.optional_keys:
            if k not in checkpoint and k in self.my_fantastic_logging:
                checkpoint[k] = [float("nan")] * n
        missing = [k for k in self.my_fantastic_logging if k not in checkpoint]
        if missing:
            raise KeyError(f"checkpoint logging lacks curves {missing}: not a {self.trainer_name} checkpoint")
        super().load_checkpoint(checkpoint)

    def _plot_curves(self, axes, log: dict, x: list, epoch: int) -> None:
        raise NotImplementedError

    def _draw(self, output_folder):
        import matplotlib
        matplotlib.use("agg")
        import matplotlib.pyplot as plt
        import seaborn as sns

        log = self.my_fantastic_logging
        epoch = min(len(v) for v in log.values()) - 1
        if epoch < 0:
            return
        x = list(range(epoch + 1))
        sns.set(font_scale=2.5)
        # a short run's curves are a few points: draw them as markers, or a 1-epoch figure looks blank
        with matplotlib.rc_context({"lines.marker": "o" if len(x) <= 30 else "None", "lines.markersize": 14}):
            self._draw_figures(output_folder, plt, log, x, epoch)

    def _draw_figures(self, output_folder, plt, log: dict, x: list, epoch: int) -> None:
        n = self.n_curve_panels + 2
        fig, axes = plt.subplots(n, 1, figsize=(30, 18 * n))
        self._plot_curves(axes[:-2], log, x, epoch)
        for ax in axes[:-2]:
            self._mark(ax)
            ax.legend(loc=(0, 1))
        durations = [e - s for e, s in zip(log["epoch_end_timestamps"][:epoch + 1],
                                           log["epoch_start_timestamps"][:epoch + 1])]
        ax = axes[-2]
        ax.plot(x, durations, color="b", label="epoch duration", linewidth=4)
        ax.set(ylim=[0, ax.get_ylim()[1]])
        ax.set_xlabel("epoch")
        ax.set_ylabel("time [s]")
        ax.legend(loc=(0, 1))
        ax = axes[-1]
        ax.plot(x, log["lrs"][:epoch + 1], color="b", label="learning rate", linewidth=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.legend(loc=(0, 1))
        _integer_epochs(fig)
        plt.tight_layout()
        fig.savefig(join(output_folder, "progress.png"))
        plt.close(fig)
        self._plot_extra(output_folder, log, x, epoch)

    def _plot_extra(self, output_folder, log: dict, x: list, epoch: int) -> None:
        """A subclass's further figures beside progress.png."""


class DANTELocalLogger(_CurvesLogger):
    """Adds one list per DANTE curve (one value per epoch, like every nnU-Net curve):

    - ``train_<term>`` for each term of Eq. 6 and the synthesis term (mean over the epoch's iterations;
      NaN while a term is off),
    - ``mean_fg_dice_full`` / ``dice_per_class_or_region_full``: the full (teacher) pathway's pseudo
      Dice beside nnU-Net's ``mean_fg_dice``, which here is the deployed limited pathway's.
    """

    n_curve_panels = 2
    trainer_name = "DANTETrainer"
    # curves added after checkpoints existed: the diagnostics and the synthesis term
    optional_keys = tuple(f"diag_{s}" for s in FEATURE_STATS) + ("train_synthesis", "train_club", "train_club_q")

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        for t in LOSS_TERMS:
            self.my_fantastic_logging[f"train_{t}"] = []
        self.my_fantastic_logging["mean_fg_dice_full"] = []
        self.my_fantastic_logging["dice_per_class_or_region_full"] = []
        for s in FEATURE_STATS:   # per epoch: one value per encoder level (diagnostics.py)
            self.my_fantastic_logging[f"diag_{s}"] = []

    def enable_teaching(self, names: Sequence[str]) -> None:
        """A teaching trainer's curves (DANTETrainer_teach): ``teach_passed`` (per region / class, then all) and
        ``teach_agreement`` (per region / class), drawn as a third progress.png panel."""
        self.teach_names = list(names)
        self.n_curve_panels = 3
        self.my_fantastic_logging["teach_passed"] = []
        self.my_fantastic_logging["teach_agreement"] = []

    def _plot_teaching(self, ax, log: dict, x: list, epoch: int) -> None:
        passed = np.array([r for r in log["teach_passed"][:epoch + 1]], dtype=float)
        agreement = np.array([r for r in log["teach_agreement"][:epoch + 1]], dtype=float)
        for i, name in enumerate(self.teach_names):
            ax.plot(x, passed[:, i], linewidth=3, ls="dotted", label=f"share taught: {name}")
            ax.plot(x, agreement[:, i], linewidth=4, label=f"full vs deployed Dice: {name}")
        ax.plot(x, passed[:, -1], color="k", linewidth=4, label="share taught: all regions (the rule)")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("epoch")
        ax.set_ylabel("on unlabelled cases")

    def _plot_extra(self, output_folder, log: dict, x: list, epoch: int) -> None:
        """diagnostics.png: each feature diagnostic per encoder level and epoch (diagnostics.py)."""
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(FEATURE_STATS), 1, figsize=(30, 12 * len(FEATURE_STATS)))
        fig.suptitle("DANTE feature diagnostics per encoder level (level 1 = full resolution), mean over each "
                     "epoch's training steps", fontsize=34)
        for ax, stat in zip(axes, FEATURE_STATS):
            rows = [r if isinstance(r, (list, tuple)) else [] for r in log[f"diag_{stat}"][:epoch + 1]]
            levels = max((len(r) for r in rows), default=0)
            values = np.full((len(rows), levels), np.nan)
            for e, r in enumerate(rows):
                values[e, :len(r)] = r
            for i in range(levels):
                ax.plot(x, values[:, i], linewidth=4, label=f"level {i + 1}")
            if stat.startswith("abs_"):
                ax.set_yscale("log")
            elif stat.startswith("dead_"):
                ax.axhline(DEAD_WARN_FRACTION, color="r", ls="-.", linewidth=3, marker="",
                           label=f"warning level ({DEAD_WARN_FRACTION:.0%} dead)")
                top = np.nanmax(values) if np.isfinite(values).any() else 0.0
                ax.set_ylim(0, max(1.5 * DEAD_WARN_FRACTION, 1.1 * top))
            else:
                ax.set_ylim(bottom=0)
            ax.set_title(STAT_TITLES[stat], fontsize=26, loc="left")
            ax.set_ylabel(STAT_LABELS[stat])
            ax.set_xlabel("epoch")
            self._mark(ax)
            ax.legend(loc="upper right", ncol=levels + len(self.marks) + 1, fontsize=18)
        _integer_epochs(fig)
        plt.tight_layout(rect=(0, 0, 1, 0.98))
        fig.savefig(join(output_folder, "diagnostics.png"))
        plt.close(fig)

    def _plot_curves(self, axes, log: dict, x: list, epoch: int) -> None:
        ax = axes[0]
        ax2 = ax.twinx()
        ax.plot(x, log["train_losses"][:epoch + 1], color="b", label="loss_tr (Eq. 6 total)", linewidth=4)
        ax.plot(x, log["val_losses"][:epoch + 1], color="r", label="loss_val", linewidth=4)
        ax2.plot(x, log["mean_fg_dice"][:epoch + 1], color="g", ls="dotted", label="pseudo dice limited (deployed)",
                 linewidth=3)
        ax2.plot(x, log["ema_fg_dice"][:epoch + 1], color="g", label="pseudo dice limited (mov. avg.)", linewidth=4)
        ax2.plot(x, log["mean_fg_dice_full"][:epoch + 1], color="m", ls="dotted",
                 label="pseudo dice full (teacher)", linewidth=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2.set_ylabel("pseudo dice")
        ax.legend(loc=(0, 1))
        ax2.legend(loc="lower right", bbox_to_anchor=(1, 1))   # right-aligned: the marks lengthen the left one

        ax = axes[1]
        styles = {"seg_limited": ("b", "task loss, limited pathway"), "seg_full": ("m", "task loss, full pathway"),
                  "pib": ("orange", "L_PIB (Eq. 3)"), "align": ("c", "L_Align (Eq. 4/5)"),
                  "synthesis": ("y", "L_Syn (privileged synthesis)"),
                  "club": ("k", "CLUB bound on I(Z^A; Z^P)"), "club_q": ("grey", "CLUB estimator's loss")}
        for t in LOSS_TERMS:
            values = np.asarray(log[f"train_{t}"][:epoch + 1], dtype=float)
            if t in ("synthesis", "club", "club_q") and np.all(np.isnan(values)):
                continue   # a trainer without that optional term
            color, label = styles[t]
            ax.plot(x, values, color=color, label=label, linewidth=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss term (unweighted)")
        if self.n_curve_panels > 2:
            self._plot_teaching(axes[2], log, x, epoch)


class PretrainLocalLogger(_CurvesLogger):
    """The Stage-1 logger: no Dice curves; total and per-term reconstruction losses (Eqs. 7-9, synthesis) for
    training and validation, one value per epoch (NaN for a term that is off), learning rate and
    epoch times."""

    trainer_name = "DANTEPretrainTrainer"
    optional_keys = ("train_synthesis", "val_synthesis")   # added after Stage-1 checkpoints existed

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        keys = ["train_losses", "val_losses", "lrs", "epoch_start_timestamps", "epoch_end_timestamps"]
        keys += [f"{split}_{t}" for split in ("train", "val") for t in RECONSTRUCTION_TERMS]
        self.my_fantastic_logging = {k: [] for k in keys}

    def _plot_curves(self, axes, log: dict, x: list, epoch: int) -> None:
        ax = axes[0]
        ax.plot(x, log["train_losses"][:epoch + 1], color="b", label="loss_tr (sum of the terms)", linewidth=4)
        ax.plot(x, log["val_losses"][:epoch + 1], color="r", label="loss_val", linewidth=4)
        styles = {"l_to_l": ("g", "L->L (Eq. 7)"), "ap_to_f": ("m", "A+P->F (Eq. 8)"),
                  "lp_to_f": ("orange", "L+P->F (Eq. 9)"), "synthesis": ("c", "L->P synthesis")}
        for t in RECONSTRUCTION_TERMS:
            color, label = styles[t]
            ax.plot(x, np.asarray(log[f"train_{t}"][:epoch + 1], dtype=float), color=color, ls="dashed",
                    label=f"{label}, train", linewidth=3)
            ax.plot(x, np.asarray(log[f"val_{t}"][:epoch + 1], dtype=float), color=color, ls="dotted",
                    label=f"{label}, val", linewidth=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE (reconstruction: masked voxels)")
        ax.legend(loc=(0, 1), ncol=2)
