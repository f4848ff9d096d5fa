"""The teach gate's statistics (jobs/gate.py) against hand computations, and the calibration analysis
(benchmark/gate_calibration.py) on the committed decisions."""
import json
import math
import os

import numpy as np
import pytest

from dante_nnunet.jobs.gate import (GateRule, bootstrap_lower, fold_means, judge, paired_differences,
                                    run_noise_weight, se, se_total, signflip_p, t_bar)

REGIONS = ["WT", "TC", "ET"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cases(rows):
    return {f"c{i}": dict(zip(REGIONS, row)) for i, row in enumerate(rows)}


def test_se_and_run_noise_by_hand():
    v = np.array([0.1, 0.3, 0.2, 0.4])
    # SD ddof 1: sqrt(((-.15)^2 + .05^2 + (-.05)^2 + .15^2) / 3) = sqrt(0.05 / 3)
    assert se(v) == pytest.approx(math.sqrt(0.05 / 3) / 2)
    assert math.isnan(se(np.array([0.3])))
    cases = ["a", "b", "c", "d"]
    fold_of = {"a": 0, "b": 0, "c": 0, "d": 1}
    assert run_noise_weight(cases, fold_of) == pytest.approx((3 / 4) ** 2 + (1 / 4) ** 2)
    assert run_noise_weight(cases, {c: 0 for c in cases}) == pytest.approx(1.0)
    # tau 0.02 over 3 + 1 cases: sqrt(se^2 + 0.0004 * 10 / 16)
    assert se_total(v, cases, fold_of, 0.02) == pytest.approx(math.sqrt(0.05 / 12 + 0.0004 * 10 / 16))
    assert se_total(v, cases, fold_of, 0.0) == pytest.approx(se(v))
    assert fold_means(v, cases, fold_of) == {0: pytest.approx(0.2), 1: pytest.approx(0.4)}


def test_t_bar_signflip_and_bootstrap_by_hand():
    assert t_bar(8, 0.05) == pytest.approx(1.8946, abs=1e-4)       # t table, 7 degrees of freedom
    assert t_bar(2, 0.05) == pytest.approx(6.3138, abs=1e-4)
    with pytest.raises(ValueError):
        t_bar(1, 0.05)
    # three positive differences: only the all-positive pattern of 8 reaches the observed mean
    assert signflip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(1 / 8)
    # (3, -1): pattern means 1, 2, -2, -1; two of four are >= 1
    assert signflip_p(np.array([3.0, -1.0])) == pytest.approx(0.5)
    assert bootstrap_lower(np.array([0.2, 0.2, 0.2]), 0.05) == pytest.approx(0.2)


def test_judge_bars_by_hand():
    plain = _cases([[0.9, 0.8, 0.4]] * 4)
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    # ET +0.30, 0, +0.30, 0 -> D = 0.1, 0, 0.1, 0: mean 0.05, SE 0.05 / sqrt(3) = 0.02887 (1.73 SE)
    student = _cases([[0.9, 0.8, 0.7], [0.9, 0.8, 0.4], [0.9, 0.8, 0.7], [0.9, 0.8, 0.4]])
    cases, d, D = paired_differences(plain, student, REGIONS)
    assert judge(GateRule("se", level=1.0), cases, d, D, fold)["passed"]
    assert not judge(GateRule("se", level=2.0), cases, d, D, fold)["passed"]
    # t with 3 degrees of freedom at 0.05: 2.353 > 1.73
    r = judge(GateRule("t", alpha=0.05), cases, d, D, fold)
    assert not r["passed"] and r["threshold"] == pytest.approx(2.3534 * 0.05 / math.sqrt(3), rel=1e-4)
    assert "Dice points" in r["reason"]
    # run noise 0.05 a fold, 2 equal folds: SE_total = sqrt(0.02887^2 + 0.0025 / 2) = 0.04564 -> 1.10 SE: the
    # one-SE bar passes, 1.2 SE does not
    r = judge(GateRule("se", level=1.0, run_noise=0.05), cases, d, D, fold)
    assert r["se_total"] == pytest.approx(math.sqrt(0.05 ** 2 / 3 + 0.0025 / 2)) and r["passed"]
    assert not judge(GateRule("se", level=1.2, run_noise=0.05), cases, d, D, fold)["passed"]
    # a minimum gain of 6 Dice points refuses a 5-point gain
    assert not judge(GateRule("se", level=1.0, min_gain=0.06), cases, d, D, fold)["passed"]
    # sign-flip: D = (.1, 0, .1, 0): patterns reaching mean 0.05 are those with both 0.1 positive: 4 of 16
    r = judge(GateRule("signflip", alpha=0.25), cases, d, D, fold)
    assert r["p"] == pytest.approx(0.25) and r["passed"]
    # per-fold means 0.05 and 0.05: SD 0 -> passes the fold test at any level with a positive mean
    assert judge(GateRule("folds", alpha=0.05), cases, d, D, fold)["passed"]
    # one case: never
    one = judge(GateRule(), ["c0"], {r: d[r][:1] for r in d}, D[:1], fold)
    assert not one["passed"] and "too few" in one["reason"]


def test_judge_region_veto_by_hand():
    plain = _cases([[0.9, 0.8, 0.4]] * 4)
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    # ET +0.3 everywhere, TC -0.05 everywhere (SE 0): the gain passes, TC is worse by more than one SE
    worse = _cases([[0.9, 0.75, 0.7]] * 4)
    cases, d, D = paired_differences(plain, worse, REGIONS)
    r = judge(GateRule("t"), cases, d, D, fold)
    assert not r["passed"] and "worse on TC" in r["reason"]
    assert not judge(GateRule("t", region_tolerance=1e9), cases, d, D, fold)["passed"]   # SE 0: no tolerance hides it
    # the same loss with spread (TC -0.10, 0, -0.10, 0: mean -0.05, SE 0.0289) is within 2 SE
    spread = _cases([[0.9, 0.7, 0.7], [0.9, 0.8, 0.7], [0.9, 0.7, 0.7], [0.9, 0.8, 0.7]])
    cases, d, D = paired_differences(plain, spread, REGIONS)
    assert not judge(GateRule("t"), cases, d, D, fold)["passed"]
    assert judge(GateRule("t", region_tolerance=2.0), cases, d, D, fold)["passed"]


def test_rule_refuses_bad_values():
    for kwargs in ({"level": -1.0}, {"run_noise": -0.01}, {"min_gain": float("nan")}, {"alpha": 0.0},
                   {"alpha": 0.7}, {"bar": "z"}):
        with pytest.raises(ValueError):
            GateRule(**kwargs)


def test_rule_with_the_user_options():
    from dante_nnunet.jobs.gate import DEFAULT_RULE, rule_with
    assert rule_with() == DEFAULT_RULE
    assert rule_with(alpha=0.1).alpha == 0.1 and rule_with(alpha=0.1).run_noise == DEFAULT_RULE.run_noise
    assert rule_with(run_noise_points=2.0).run_noise == pytest.approx(0.02)       # points -> fraction
    old = rule_with(min_gain_se=1.0)
    assert old.bar == "se" and old.level == 1.0
    with pytest.raises(ValueError, match="run_noise must be a finite number >= 0"):
        rule_with(run_noise_points=-1)


def test_calibration_on_the_committed_decisions():
    """The analysis reads every committed decision: A/A pairs (plain models of two seeds on the same cases)
    and the testbed's known gain; the rule used until issue 47 accepts A/A pairs, which is why it changed."""
    from dante_nnunet.benchmark.gate_calibration import analyse, comparisons, load_runs
    gate_dir = os.path.join(ROOT, "docs", "results", "gate")
    designs = load_runs(gate_dir)
    assert {"phantom", "phantom_partial", "phantom_unlabelled"} <= set(designs)
    comps = comparisons(designs)
    aa = [c for c in comps if c["kind"] == "aa"]
    assert len(aa) >= 18 and all(c["per_case"][0] is not c["per_case"][1] for c in aa)
    result = analyse(gate_dir)
    se1 = result["rules"]["se1"]
    assert se1["aa_comparisons"] == len(aa) and se1["aa_false_accepts"] >= 7
    assert result["rules"]["se1"]["power_testbed_same_seed"] == "3/3"
    # the default rule is the one the calibration chose, at <= 5% over >= 30 A/A comparisons
    assert result["default_rule"] == "t95_tau1.5" and result["aa_comparisons"] >= 30
    assert result["aa_false_accepts"] <= 0.05 * result["aa_comparisons"]
    # the committed table is what this code computes from the committed inputs (it notices drift)
    committed = json.load(open(os.path.join(ROOT, "docs", "results", "gate_calibration.json")))
    assert committed["rules"] == json.loads(json.dumps(result["rules"]))
    assert committed["aa_false_accepts"] == result["aa_false_accepts"]
