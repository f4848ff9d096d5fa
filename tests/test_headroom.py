"""The share of the headroom a teacher recipe keeps (benchmark/headroom.py), by hand."""
import math

import pytest

from dante_nnunet.benchmark.headroom import headroom_rows, headroom_table


def _row(et):
    return {"enhancing tumor": {"dice": et}, "tumor core": {"dice": 0.9}}


def _results():
    gate = {"0": {"chosen": "student", "test": {"student": _row(0.60), "plain": _row(0.40)}},
            "1": {"chosen": "plain", "test": {"student": _row(0.50), "plain": _row(0.44)}},
            "2": {"chosen": "plain", "test": {"student": _row(0.50), "plain": _row(0.40)}}}
    return {"name": "d", "methods": {
        "lower": {"per_seed": {"0": _row(0.40), "1": _row(0.44), "2": _row(0.40)}},
        "lower_4x": {"per_seed": {"0": _row(0.60), "1": _row(0.64)}},         # seed 2 not run: left out
        "upper": {"per_seed": {"0": _row(0.9), "1": _row(0.9)}},
        "gated": {"per_seed": {"0": _row(0.60), "1": _row(0.44), "2": _row(0.40)}, "gate": gate}}}


def test_headroom_shares_by_hand():
    (r,) = headroom_rows(_results())
    assert r["method"] == "gated" and r["seeds"] == ["0", "1"]
    # headroom 20 and 20 points; chosen gains 20 (student chosen) and 0 (plain); student gains 20 and 6
    assert r["headroom"] == pytest.approx(20) and r["headroom_sd"] == pytest.approx(0)
    assert r["chosen_gain"] == pytest.approx(10) and r["chosen_gain_sd"] == pytest.approx(math.sqrt(200))
    assert r["chosen_share"] == pytest.approx(0.5) and r["student_share"] == pytest.approx(13 / 20)
    assert [p["chosen_share"] for p in r["per_seed"]] == pytest.approx([1.0, 0.0])
    assert [p["chosen_name"] for p in r["per_seed"]] == ["student", "plain"]
    table = headroom_table([r])
    assert "| gated | 0 | 40.0 | +20.0 | 60.0 (+20.0, 100%) | student | 60.0 (+20.0, 100%) |" in table
    assert "| gated | mean ± SD (2) | | +20.0 ± 0.0 | +13.0 ± 9.9 (65%) | | +10.0 ± 14.1 (50%) |" in table


def test_headroom_needs_both_lower_bounds():
    res = _results()
    del res["methods"]["lower_4x"]
    with pytest.raises(KeyError, match="no method 'lower_4x'"):
        headroom_rows(res)
