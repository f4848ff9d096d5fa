"""The statistics of the teach gate: is a candidate (the student) better than the plain model, from the
Dice of both on the same validation cases? Pure numpy/scipy; ``jobs/teach.py`` decides with them and
``scripts/gate_calibration.py`` measures their error rates on A/A comparisons (two plain models that differ
only in their training seed: no true difference).

Notation (every quantity in Dice as a fraction): d[c, r] = Dice_candidate - Dice_plain of validation case c,
region r; D[c] = mean over regions of d[c, r]; n cases, pooled over the folds; n_k of them in fold k.

* ``se(D)`` = SD(D, ddof 1) / sqrt(n): the spread of the cases only. It treats both trainings as fixed.
* Run noise: each fold's plain model and candidate are one training each; two trainings that differ only in
  their seed differ on the same cases by a shift of their own (their "run" difference, SD ``run_noise`` =
  tau for the mean over regions of one fold's cases). The per-case SE does not see it: the cases of one fold
  share it. Pooled over folds it adds tau^2 * sum_k (n_k / n)^2 to the variance of mean(D)
  (``run_noise_weight``), so ``se_total`` = sqrt(se^2 + tau^2 * sum_k (n_k/n)^2).
* ``t_bar(n, alpha)``: the one-sided (1 - alpha) quantile of Student's t with n - 1 degrees of freedom.
* ``signflip_p(D)``: the exact one-sided sign-flip (paired permutation) p-value of mean(D) > 0 (all 2^n sign
  patterns up to n = 16, else 2^16 seeded draws).
* ``bootstrap_lower(D, alpha)``: the percentile bootstrap's one-sided (1 - alpha) lower bound of mean(D).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np


def paired_differences(plain: Mapping[str, Mapping[str, float]], candidate: Mapping[str, Mapping[str, float]],
                       regions: Sequence[str]) -> Tuple[list, Dict[str, np.ndarray], np.ndarray]:
    """(cases, d, D): the sorted case names, d[region] per case, D per case (mean over regions)."""
    cases = sorted(plain)
    if sorted(candidate) != cases:
        raise ValueError(f"the candidate was validated on {sorted(candidate)}, the plain model on {cases}")
    d = {r: np.array([candidate[c][r] - plain[c][r] for c in cases], dtype=np.float64) for r in regions}
    D = np.mean(np.stack([d[r] for r in regions]), axis=0) if cases else np.zeros(0)
    return cases, d, D


def se(values: np.ndarray) -> float:
    """SD (ddof 1) / sqrt(n); NaN below 2 values."""
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")


def run_noise_weight(cases: Sequence[str], fold_of: Mapping[str, int]) -> float:
    """sum over folds of (n_k / n)^2: the share of one fold's run noise variance left in the pooled mean
    (1 with one fold, 1/K with K equal folds)."""
    n = len(cases)
    counts: Dict[int, int] = {}
    for c in cases:
        counts[fold_of[c]] = counts.get(fold_of[c], 0) + 1
    return float(sum((m / n) ** 2 for m in counts.values())) if n else float("nan")


def se_total(values: np.ndarray, cases: Sequence[str], fold_of: Mapping[str, int], run_noise: float) -> float:
    """sqrt(se^2 + run_noise^2 * run_noise_weight): the SE of mean(D) when each fold's two trainings also
    differ by run noise of SD ``run_noise``."""
    return float(math.sqrt(se(values) ** 2 + run_noise ** 2 * run_noise_weight(cases, fold_of)))


def t_bar(n: int, alpha: float) -> float:
    """The one-sided (1 - alpha) quantile of Student's t with n - 1 degrees of freedom (n >= 2)."""
    from scipy.stats import t
    if n < 2:
        raise ValueError(f"a t bar needs at least 2 cases, got {n}")
    return float(t.ppf(1.0 - alpha, n - 1))


def signflip_p(values: np.ndarray, draws: int = 1 << 16, seed: int = 0) -> float:
    """One-sided p-value of mean > 0 under the paired null (each difference's sign is a fair coin): the share
    of sign patterns whose mean is at least the observed one (the observed pattern counts)."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return 1.0
    observed = v.mean()
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(draws, n))
        signs[0] = 1.0
    means = (signs * v).mean(axis=1)
    return float(np.mean(means >= observed - 1e-12))


def bootstrap_lower(values: np.ndarray, alpha: float, draws: int = 10000, seed: int = 0) -> float:
    """The percentile bootstrap's one-sided (1 - alpha) lower bound of the mean (seeded)."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(draws, len(v)))].mean(axis=1)
    return float(np.quantile(means, alpha))


def fold_means(values: np.ndarray, cases: Sequence[str], fold_of: Mapping[str, int]) -> Dict[int, float]:
    """The mean of ``values`` over each fold's cases."""
    folds = sorted({fold_of[c] for c in cases})
    return {k: float(np.mean([v for v, c in zip(values, cases) if fold_of[c] == k])) for k in folds}


BARS = ("se", "t", "signflip", "bootstrap", "folds")


@dataclass(frozen=True)
class GateRule:
    """When the candidate is chosen over the plain model. Every rule asks two things of the paired per-case
    differences (module docstring):

    (a) the gain over the regions, mean(D), is beyond the noise, by ``bar``:
        ``se``: mean(D) > ``level`` x se_total (``level`` 1 is the one-standard-error rule, ESL 7.10);
        ``t``: mean(D) > t_bar(n, ``alpha``) x se_total (a one-sided t test at ``alpha``);
        ``signflip``: signflip_p(D) <= ``alpha``;
        ``bootstrap``: bootstrap_lower(D, ``alpha``) > 0;
        ``folds``: a one-sided t test at ``alpha`` on the K per-fold means of D (K - 1 degrees of freedom:
        each fold's run noise counted once, nothing assumed about it);
        se_total counts ``run_noise`` (tau, Dice as a fraction) beside the cases' SE; and mean(D) >
        ``min_gain`` (Dice as a fraction) too;
    (b) no region is worse: for every region r, mean(d[., r]) >= -``region_tolerance`` x se(d[., r]).
    Fewer than 2 cases: never chosen."""
    bar: str = "se"
    level: float = 1.0
    alpha: float = 0.05
    run_noise: float = 0.0
    min_gain: float = 0.0
    region_tolerance: float = 1.0

    def __post_init__(self):
        if self.bar not in BARS:
            raise ValueError(f"unknown gate bar {self.bar!r}; choose one of {', '.join(BARS)}")
        for name in ("level", "run_noise", "min_gain", "region_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"the gate's {name} must be a finite number >= 0, got {value!r}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"the gate's alpha must be in (0, 0.5), got {self.alpha!r}")

    def describe(self) -> str:
        bar = {"se": f"mean gain over the regions > {self.level:g} SE",
               "t": f"mean gain over the regions > the one-sided {1 - self.alpha:g} t quantile x SE",
               "signflip": f"sign-flip p <= {self.alpha:g}",
               "bootstrap": f"bootstrap {1 - self.alpha:g} lower bound > 0",
               "folds": f"one-sided t test at {self.alpha:g} on the per-fold means"}[self.bar]
        if self.run_noise and self.bar in ("se", "t"):
            bar += f" (SE counting run noise {100 * self.run_noise:g} Dice points a fold)"
        if self.min_gain:
            bar += f", and > {100 * self.min_gain:g} Dice points"
        return bar + f"; no region worse by more than {self.region_tolerance:g} SE"


def judge(rule: GateRule, cases: Sequence[str], d: Mapping[str, np.ndarray], D: np.ndarray,
          fold_of: Mapping[str, int], candidate: str = "student") -> dict:
    """``rule`` on the paired differences (``paired_differences``): {"passed", "reason", "threshold" (the
    bar mean(D) had to exceed, Dice fraction; NaN for signflip/bootstrap), "se_total", "p" (signflip only)}.
    Reasons are in Dice points."""
    n = len(cases)
    mean = float(D.mean()) if n else float("nan")
    out = {"passed": False, "threshold": float("nan"), "se_total": float("nan"), "p": float("nan")}
    if n < 2:
        out["reason"] = f"{n} validation case(s): too few to decide; the plain model is kept"
        return out
    pts = f"{100 * mean:+.2f}"
    if rule.bar in ("se", "t"):
        s = se_total(D, cases, fold_of, rule.run_noise)
        mult = rule.level if rule.bar == "se" else t_bar(n, rule.alpha)
        out.update(se_total=s, threshold=max(mult * s, rule.min_gain))
        ok = mean > out["threshold"]
        why = f"{pts} Dice points over the regions against a bar of {100 * out['threshold']:.2f} ({mult:.2f} x SE {100 * s:.2f}"
        why += f", min {100 * rule.min_gain:g})" if rule.min_gain else ")"
    elif rule.bar == "signflip":
        p = signflip_p(D)
        out.update(p=p, threshold=rule.min_gain)
        ok = p <= rule.alpha and mean > rule.min_gain
        why = f"{pts} Dice points over the regions, sign-flip p = {p:.3f} (bar {rule.alpha:g})"
    elif rule.bar == "bootstrap":
        low = bootstrap_lower(D, rule.alpha)
        out.update(threshold=rule.min_gain)
        ok = low > 0 and mean > rule.min_gain
        why = f"{pts} Dice points over the regions, bootstrap lower bound {100 * low:+.2f}"
    else:
        per_fold = np.array(list(fold_means(D, cases, fold_of).values()))
        if len(per_fold) < 2:
            out["reason"] = "one fold: the per-fold test needs two or more; the plain model is kept"
            return out
        s = float(np.std(per_fold, ddof=1) / math.sqrt(len(per_fold)))
        thr = max(t_bar(len(per_fold), rule.alpha) * s, rule.min_gain)
        out.update(se_total=s, threshold=thr)
        ok = per_fold.mean() > thr
        why = (f"{100 * per_fold.mean():+.2f} Dice points over the regions (mean of {len(per_fold)} folds) against a "
               f"bar of {100 * thr:.2f}")
    if not ok:
        out["reason"] = f"the {candidate}'s gain is not beyond the noise: {why}"
        return out
    worse = [r for r in d if float(d[r].mean()) < -rule.region_tolerance * se(d[r])]
    if worse:
        out["reason"] = (f"the {candidate} is worse on {', '.join(worse)} by more than {rule.region_tolerance:g} SE: "
                         + ", ".join(f"{r} {100 * d[r].mean():+.2f} (SE {100 * se(d[r]):.2f})" for r in worse))
        return out
    out["passed"] = True
    out["reason"] = f"the {candidate} gains: {why}; no region worse by more than {rule.region_tolerance:g} SE"
    return out


# The default rule (issue 47): chosen from the A/A calibration and the power table, written down with the
# reason in docs/gated_teacher.md, "The rule", before the runs that judge it.
DEFAULT_RULE = GateRule("t", alpha=0.05, run_noise=0.015)


def rule_with(alpha: Optional[float] = None, run_noise_points: Optional[float] = None,
              min_gain_se: Optional[float] = None, base: GateRule = DEFAULT_RULE) -> GateRule:
    """``base`` with the options a user may set (``dante_nnunet teach --gate-alpha/--run-noise/--min-gain-se``,
    a runner teach block's ``gate_alpha``/``run_noise``/``min_gain_se``): ``run_noise_points`` in Dice points;
    ``min_gain_se`` swaps the t bar for the SE bar used before issue 47. A value out of range: ValueError."""
    from dataclasses import replace
    rule = base
    if alpha is not None:
        rule = replace(rule, alpha=float(alpha))
    if run_noise_points is not None:
        rule = replace(rule, run_noise=float(run_noise_points) / 100)
    if min_gain_se is not None:
        rule = replace(rule, bar="se", level=float(min_gain_se))
    return rule
