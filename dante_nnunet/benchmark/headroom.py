"""What share of the headroom a teacher recipe keeps (issue 46), from a benchmark's results.json.

The headroom of a design is what more real labels give: the lower bound trained on more labelled cases
(``more``, e.g. ``lower_4x``: 16 cases) minus the lower bound (``lower``: 4), per seed, on the test cases. A
``"teach"`` method keeps, per seed, (its test Dice - the lower bound's) / headroom, for the model the gate
chose (the method's row: the chosen model's fold 0, paired with the lower bound's fold 0) and for the
student without the gate (``gate.<seed>.test.student``). Over seeds the share is the ratio of the mean gain to
the mean headroom (a seed with little headroom does not blow the share up); the per-seed shares are listed
beside it. Dice in points (x 100).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

REGION = "enhancing tumor"


def _dice(row: Mapping, region: str) -> float:
    return 100.0 * float(row[region]["dice"])


def headroom_rows(results: Mapping, lower: str = "lower", more: str = "lower_4x", region: str = REGION,
                  methods: Optional[Sequence[str]] = None) -> List[dict]:
    """One dict per ``"teach"`` method of ``results`` (or ``methods``) with the seeds that it, ``lower`` and
    ``more`` all have: per seed the lower bound, the headroom, the chosen model and the ungated student (test
    Dice points of ``region``), the chosen candidate's name and both shares; over seeds the mean gains
    (chosen and student, paired with the lower bound, with their SD), the mean headroom and the shares."""
    m = results["methods"]
    for name in (lower, more):
        if name not in m:
            raise KeyError(f"results of {results.get('name')!r} have no method {name!r} (needed for the headroom)")
    names = [n for n in (methods or m) if "gate" in m[n]]
    rows = []
    for name in names:
        meth = m[name]
        seeds = sorted((s for s in meth["per_seed"] if s in m[lower]["per_seed"] and s in m[more]["per_seed"]
                        and s in meth["gate"]), key=int)
        per_seed = []
        for s in seeds:
            lo = _dice(m[lower]["per_seed"][s], region)
            room = _dice(m[more]["per_seed"][s], region) - lo
            chosen = _dice(meth["per_seed"][s], region)
            student = _dice(meth["gate"][s]["test"]["student"], region)
            per_seed.append({"seed": s, "lower": lo, "headroom": room, "chosen_name": meth["gate"][s]["chosen"],
                             "chosen": chosen, "student": student,
                             "chosen_share": (chosen - lo) / room if room else float("nan"),
                             "student_share": (student - lo) / room if room else float("nan")})
        if not per_seed:
            continue
        room = np.array([r["headroom"] for r in per_seed])
        gain_c = np.array([r["chosen"] - r["lower"] for r in per_seed])
        gain_s = np.array([r["student"] - r["lower"] for r in per_seed])
        sd = (lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"))
        rows.append({"method": name, "region": region, "seeds": [r["seed"] for r in per_seed], "per_seed": per_seed,
                     "headroom": float(room.mean()), "headroom_sd": sd(room),
                     "chosen_gain": float(gain_c.mean()), "chosen_gain_sd": sd(gain_c),
                     "student_gain": float(gain_s.mean()), "student_gain_sd": sd(gain_s),
                     "chosen_share": float(gain_c.mean() / room.mean()) if room.mean() else float("nan"),
                     "student_share": float(gain_s.mean() / room.mean()) if room.mean() else float("nan")})
    return rows


def headroom_table(rows: Sequence[Mapping]) -> str:
    """Markdown: one line per method and seed, then its mean line."""
    out = ["| method | seed | lower | headroom | ungated student (gain, share) | chosen | chosen (gain, share) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for p in r["per_seed"]:
            out.append(f"| {r['method']} | {p['seed']} | {p['lower']:.1f} | {p['headroom']:+.1f} | "
                       f"{p['student']:.1f} ({p['student'] - p['lower']:+.1f}, {100 * p['student_share']:.0f}%) | "
                       f"{p['chosen_name']} | {p['chosen']:.1f} ({p['chosen'] - p['lower']:+.1f}, "
                       f"{100 * p['chosen_share']:.0f}%) |")
        if len(r["per_seed"]) > 1:
            out.append(f"| {r['method']} | mean ± SD ({len(r['seeds'])}) | | {r['headroom']:+.1f} ± {r['headroom_sd']:.1f} | "
                       f"{r['student_gain']:+.1f} ± {r['student_gain_sd']:.1f} ({100 * r['student_share']:.0f}%) | | "
                       f"{r['chosen_gain']:+.1f} ± {r['chosen_gain_sd']:.1f} ({100 * r['chosen_share']:.0f}%) |")
    return "\n".join(out)
