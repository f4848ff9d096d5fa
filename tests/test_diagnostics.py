"""Feature diagnostics (dante_nnunet/training/diagnostics.py) against hand computations, and their warnings."""
import math

import numpy as np

import pytest
import torch

from dante_nnunet.training.diagnostics import FEATURE_STATS, dead_fraction, diagnostic_warnings, feature_statistics
from dante_nnunet.losses import StandardizedAlignment


def test_feature_statistics_by_hand():
    # one level: 1 case, 2 channels, 2 voxels; channel 1 of Z^L is dead
    zl = torch.tensor([[1.0, 3.0], [0.001, -0.001]]).reshape(1, 2, 2)
    za = torch.tensor([[2.0, -2.0], [4.0, 0.0]]).reshape(1, 2, 2)
    corr = torch.tensor([[0.5, 0.5], [1.0, 2.0]]).reshape(1, 2, 2)
    stats = dict(zip(FEATURE_STATS, feature_statistics([zl], [za], [corr])[0].tolist()))
    assert stats["abs_zl"] == pytest.approx((1 + 3 + 0.001 + 0.001) / 4)
    assert stats["abs_za"] == pytest.approx(2.0)
    assert stats["dead_zl"] == 0.5 and stats["dead_za"] == 0.0
    assert stats["corr_ratio"] == pytest.approx(1.0 / 2.0)
    # standardised: Z^L ch0 -> (-1, 1), ch1 -> (1, -1) (up to eps); Z^A ch0 -> (1, -1), ch1 -> (1, -1)
    s = lambda var: 1 / math.sqrt(var + 1e-5)
    expected = (2 * s(1.0) + 2 * s(1.0) + abs(s(1e-6) * 0.001 - s(4.0) * 2) * 2) / 4
    assert stats["align_dist"] == pytest.approx(expected, rel=1e-4)
    assert stats["align_dist"] == pytest.approx(StandardizedAlignment(1)([za], [zl]).item(), rel=1e-6)


def test_feature_statistics_shape_and_detached():
    zl = [torch.randn(2, 4, 8, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, 4)]
    za = [torch.randn(2, 4, 8, 8, 8), torch.randn(2, 8, 4, 4, 4)]
    stats = feature_statistics(zl, za, za)
    assert stats.shape == (2, len(FEATURE_STATS)) and not stats.requires_grad
    assert stats[:, FEATURE_STATS.index("corr_ratio")].tolist() == pytest.approx([1.0, 1.0])


def test_dead_fraction_counts_channels_over_batch_and_voxels():
    z = torch.ones(2, 4, 3, 3)
    z[:, 1] = 0.0
    z[0, 2] = 0.0                       # dead in one case only: mean |z| 0.5 -> alive
    z[:, 3] = 0.009
    assert dead_fraction(z).item() == 0.5


def _history(abs_zl, dead_zl, levels=2):
    n = len(abs_zl)
    return {"abs_zl": [[v] * levels for v in abs_zl], "abs_za": [[1.0] * levels] * n,
            "dead_zl": [[d] * levels for d in dead_zl], "dead_za": [[0.0] * levels] * n,
            "align_dist": [[0.5] * levels] * n, "corr_ratio": [[0.1] * levels] * n}


def test_warnings_name_the_level_and_the_cause():
    h = _history(abs_zl=[1.0, 0.9, 0.15], dead_zl=[0.0, 0.1, 0.25])
    h["dead_zl"][2] = [0.25, 0.0]
    h["abs_zl"][2] = [0.15, 0.5]
    w = diagnostic_warnings(h, epoch=2, reference_epoch=1)
    assert w == ["level 1: 25% of the Z^L channels are dead (mean |activation| < 0.01)",
                 "level 1: mean |Z^L| fell 6.0x since epoch 1 (0.9 -> 0.15)"]
    assert diagnostic_warnings(h, epoch=1, reference_epoch=1) == []        # no fall measured yet
    assert diagnostic_warnings(h, epoch=2, reference_epoch=None) == w[:1]  # regularisers not on yet


def test_figures_are_redrawn_at_most_once_per_interval_and_flushed(tmp_path, monkeypatch):
    from dante_nnunet.training.progress import ThrottledLocalLogger
    import dante_nnunet.training.progress as progress
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    drawn = []
    lg = ThrottledLocalLogger()            # the interval counts from here (the trainer's start)
    monkeypatch.setattr(lg, "_draw", lambda folder: drawn.append((clock[0], folder)))
    clock[0] += 59
    lg.plot_progress_png("a")              # a first epoch within the interval: not drawn, kept pending
    assert drawn == []
    clock[0] += 1
    lg.plot_progress_png("a")              # the interval has passed: drawn
    clock[0] += 30
    lg.plot_progress_png("a")              # within the interval: not drawn, kept pending
    assert drawn == [(160.0, "a")]
    clock[0] += 31
    lg.plot_progress_png("a")
    assert drawn[-1] == (221.0, "a")
    clock[0] += 1
    lg.plot_progress_png("a")
    lg.flush_plots()                       # end of training: the latest state
    lg.flush_plots()                       # nothing pending any more
    assert drawn[-1] == (222.0, "a") and len(drawn) == 3


def test_ridge_probe_r2_by_hand():
    """The Stage-1 probe's read-out (benchmark/features.py): an exact linear target gives R^2 1 on new rows,
    a target independent of the features about 0 (never much above), a scaled target the same R^2."""
    from dante_nnunet.benchmark.features import ridge_r2
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(500, 3)), rng.normal(size=(200, 3))
    w = np.array([2.0, -1.0, 0.5])
    assert ridge_r2(x, x @ w + 1, xt, xt @ w + 1, ridge=1e-9) == pytest.approx(1.0, abs=1e-6)
    noise, noise_t = rng.normal(size=500), rng.normal(size=200)
    assert ridge_r2(x, noise, xt, noise_t) < 0.03
    # R^2 = 1 - SSE / SST by hand for a one-feature fit: y = x on the fit rows, test target y = x + e
    xf = np.array([[0.0], [1.0], [2.0]])
    xq, yq = np.array([[0.0], [2.0]]), np.array([1.0, 2.0])   # predictions 0 and 2: SSE 1, SST 0.5
    assert ridge_r2(xf, xf[:, 0], xq, yq, ridge=0.0) == pytest.approx(1 - 1 / 0.5)
    assert ridge_r2(x, 10 * (x @ w), xt, 10 * (xt @ w)) == pytest.approx(ridge_r2(x, x @ w, xt, xt @ w))


def test_r2_score_by_hand():
    """The synthesis diagnostic's R^2: target (1, 2, 3), SST 2; prediction (1, 2, 5): SSE 4 -> 1 - 4/2 = -1;
    the target's mean everywhere gives 0; a single value gives NaN."""
    from dante_nnunet.benchmark.features import r2_score
    t = np.array([1.0, 2.0, 3.0])
    assert r2_score(np.array([1.0, 2.0, 5.0]), t) == pytest.approx(-1.0)
    assert r2_score(np.full(3, 2.0), t) == pytest.approx(0.0) and r2_score(t, t) == 1.0
    assert np.isnan(r2_score(np.ones(1), np.ones(1)))
