"""The teach gate's error rates, measured (issue 47): ``scripts/gate_calibration.py``.

Inputs are the per-case cross-validated Dice the gate itself reads, committed under ``docs/results/gate/``:

* ``<design>_gated_seed<s>.json``: a ``dante_nnunet teach`` decision (``per_case``: ``plain``, ``student``,
  ``teacher``, optionally ``dante_teach``, and ``fold``), one per design and training seed;
* ``aa_<design>_seed<s>.json``: the plain model alone (``collect``: the ``gate_aa_*`` configs train it with
  more seeds on the same folds of the same dataset).

Comparisons, each a (plain, candidate) pair on the same validation cases:

* **A/A**: the plain model of seed a against the plain model of seed b (a != b, both orders): no true
  difference, so every accept is a false accept;
* **gain**: on the tumour-types testbed (``phantom_unlabelled``) the student of seed s against the plain
  model of seed s (the gate's own comparisons) and of every other seed (same cases, other pairings): a known
  gain (test ET +33), so every accept is right and the accept rate is the rule's power there;
* **harm**: on the designs where the student was worse on the test set (the negative control, the
  imperfect teacher, few labels) each candidate against its own seed's plain model: an accept deploys a
  worse model.

Every rule of ``RULES`` (``jobs/gate.GateRule``) is applied to every comparison with ``jobs/gate.judge``, the
code the gate runs. The run noise tau is also estimated, per design, from its A/A pairs by the method of
moments (E[mean(D)^2] = tau^2 w + E[se^2], w = run_noise_weight), and a rule with tau estimated on the
*other* designs is judged on each design (``t_tau_lodo``): a calibration that must carry to a design it
has not seen. Comparisons that share a model are not independent; the counts are reported as counts.
"""
from __future__ import annotations

import glob
import itertools
import math
import os
import re
from typing import Dict, List, Mapping, Optional

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join, load_json, save_json

from dante_nnunet.jobs.gate import DEFAULT_RULE, GateRule, judge, paired_differences, run_noise_weight, se

REGIONS = ("whole tumor", "tumor core", "enhancing tumor")
TESTBED = "phantom_unlabelled"
DESIGN_NAMES = {"phantom": "negative control", "phantom_partial": "imperfect teacher (T1ce shows 70% of ET)",
                "phantom_unlabelled": "tumour-types testbed", "phantom_fewlabels": "few labels, good teacher"}


def rules() -> Dict[str, GateRule]:
    """The rules compared (name -> rule). ``se1`` is the rule used until issue 47, ``se2`` the one first
    fixed for issue 39."""
    out = {"se1": GateRule("se", level=1.0), "se2": GateRule("se", level=2.0), "t90": GateRule("t", alpha=0.10),
           "t95": GateRule("t", alpha=0.05), "signflip05": GateRule("signflip", alpha=0.05),
           "bootstrap05": GateRule("bootstrap", alpha=0.05), "folds05": GateRule("folds", alpha=0.05)}
    for tau in (0.5, 1.0, 1.5, 2.0, 3.0):
        out[f"t95_tau{tau:g}"] = GateRule("t", alpha=0.05, run_noise=tau / 100)
        out[f"se1_tau{tau:g}"] = GateRule("se", level=1.0, run_noise=tau / 100)
    for floor in (1.0, 2.0):
        out[f"t95_min{floor:g}"] = GateRule("t", alpha=0.05, min_gain=floor / 100)
    return out


# ------------------------------------------------------------------------------------------ inputs
def _regions_of(per_case: Mapping[str, Mapping[str, float]]) -> List[str]:
    first = next(iter(per_case.values()))
    return [r for r in REGIONS if r in first]


def load_runs(gate_dir: str) -> Dict[str, dict]:
    """design -> {"plain": {seed: per_case}, "student": {...}, "dante_teach": {...}, "teacher": {...},
    "fold": fold_of}; refuses files whose validation cases or folds disagree within a design."""
    designs: Dict[str, dict] = {}
    pattern = re.compile(r"^(?:aa_)?(?P<design>.+?)_(?:gated_)?seed(?P<seed>\d+)\.json$")
    for path in sorted(glob.glob(join(gate_dir, "*.json"))):
        base = os.path.basename(path)
        aa = base.startswith("aa_")
        if not aa and "_gated_seed" not in base:
            continue                                  # other arms (keep, real share) are not the default recipe
        m = pattern.match(base)
        if not m:
            continue
        design, seed = m["design"], int(m["seed"])
        pc = load_json(path)["per_case"]
        entry = designs.setdefault(design, {"plain": {}, "student": {}, "dante_teach": {}, "teacher": {},
                                            "fold": None})
        fold = {c: int(k) for c, k in pc["fold"].items()}
        if entry["fold"] is None:
            entry["fold"] = fold
        elif entry["fold"] != fold:
            raise ValueError(f"{path}: validation cases or folds differ from the design's other files")
        if seed in entry["plain"]:
            raise ValueError(f"{path}: a second plain model of seed {seed} for {design}")
        for role in ("plain", "student", "dante_teach", "teacher"):
            if role in pc:
                entry[role][seed] = pc[role]
    return designs


# ------------------------------------------------------------------------------------------ comparisons
def comparisons(designs: Mapping[str, dict]) -> List[dict]:
    out = []
    for design, e in sorted(designs.items()):
        seeds = sorted(e["plain"])
        for a, b in itertools.permutations(seeds, 2):
            out.append({"kind": "aa", "design": design, "plain": a, "candidate": f"plain seed {b}",
                        "per_case": (e["plain"][a], e["plain"][b])})
        for role in ("student", "dante_teach"):
            for s, cand in sorted(e[role].items()):
                if design == TESTBED:
                    if role != "student":
                        continue                     # DANTE's own teaching: no known gain to find
                    for a in seeds:
                        out.append({"kind": "gain", "design": design, "plain": a, "candidate": f"student seed {s}",
                                    "same_seed": a == s, "per_case": (e["plain"][a], cand)})
                else:
                    out.append({"kind": "harm", "design": design, "plain": s, "candidate": f"{role} seed {s}",
                                "per_case": (e["plain"][s], cand)})
    return out


def estimate_run_noise(designs: Mapping[str, dict], only: Optional[List[str]] = None) -> dict:
    """tau per design (and pooled over ``only``, default all) by the method of moments on unordered A/A
    pairs: tau^2 = (mean(mean(D)^2) - mean(se^2)) / mean(w), floored at 0 (Dice fraction)."""
    per, pooled = {}, []
    for design, e in sorted(designs.items()):
        seeds = sorted(e["plain"])
        rows = []
        for a, b in itertools.combinations(seeds, 2):
            cases, _, D = paired_differences(e["plain"][a], e["plain"][b], _regions_of(e["plain"][a]))
            rows.append((float(D.mean()) ** 2, se(D) ** 2, run_noise_weight(cases, e["fold"])))
        if not rows:
            continue
        m2, s2, w = (float(np.mean([r[i] for r in rows])) for i in range(3))
        per[design] = {"pairs": len(rows), "rms_mean_difference": math.sqrt(m2), "rms_se": math.sqrt(s2),
                       "tau": math.sqrt(max(m2 - s2, 0.0) / w)}
        if only is None or design in only:
            pooled += rows
    m2, s2, w = (float(np.mean([r[i] for r in pooled])) for i in range(3)) if pooled else (0.0, 0.0, 1.0)
    return {"per_design": per, "pooled_tau": math.sqrt(max(m2 - s2, 0.0) / w) if pooled else float("nan")}


def _judge(rule: GateRule, comp: dict, fold_of: Mapping[str, int]) -> dict:
    plain, cand = comp["per_case"]
    cases, d, D = paired_differences(plain, cand, _regions_of(plain))
    return judge(rule, cases, d, D, fold_of, candidate="candidate")


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate (exact); for independent trials only."""
    from scipy.stats import beta
    return 1.0 if k >= n else float(beta.ppf(level, k + 1, n - k))


def analyse(gate_dir: str) -> dict:
    designs = load_runs(gate_dir)
    comps = comparisons(designs)
    all_rules = rules()
    tau = estimate_run_noise(designs)
    lodo = {d: estimate_run_noise(designs, only=[o for o in tau["per_design"] if o != d])["pooled_tau"]
            for d in designs}
    table: Dict[str, dict] = {}
    names = list(all_rules) + ["t95_tau_lodo"]
    for name in names:
        rows = {"aa": [], "gain": [], "gain_same_seed": [], "harm": []}
        per_design: Dict[str, List[int]] = {}
        for c in comps:
            rule = all_rules.get(name) or GateRule("t", alpha=0.05, run_noise=lodo[c["design"]])
            ok = _judge(rule, c, designs[c["design"]]["fold"])["passed"]
            rows[c["kind"]].append(ok)
            if c["kind"] == "gain" and c["same_seed"]:
                rows["gain_same_seed"].append(ok)
            if c["kind"] == "aa":
                per_design.setdefault(c["design"], []).append(ok)
        k, n = sum(rows["aa"]), len(rows["aa"])
        table[name] = {
            "rule": (all_rules[name].describe() if name in all_rules else
                     "mean gain over the regions > the one-sided 0.95 t quantile x SE counting run noise tau "
                     "estimated on the other designs' A/A pairs; no region worse by more than 1 SE"),
            "aa_false_accepts": k, "aa_comparisons": n, "aa_false_accept_rate": k / n if n else float("nan"),
            "aa_upper95_if_independent": clopper_pearson_upper(k, n) if n else float("nan"),
            "aa_per_design": {d: f"{sum(v)}/{len(v)}" for d, v in sorted(per_design.items())},
            "power_testbed": f"{sum(rows['gain'])}/{len(rows['gain'])}",
            "power_testbed_same_seed": f"{sum(rows['gain_same_seed'])}/{len(rows['gain_same_seed'])}",
            "harmful_accepts": f"{sum(rows['harm'])}/{len(rows['harm'])}"}
    details = []
    for c in comps:
        plain, cand = c["per_case"]
        cases, d, D = paired_differences(plain, cand, _regions_of(plain))
        fold_of = designs[c["design"]]["fold"]
        details.append({"kind": c["kind"], "design": c["design"], "plain": f"plain seed {c['plain']}",
                        "candidate": c["candidate"], "n": len(cases), "mean_gain_points": 100 * float(D.mean()),
                        "se_points": 100 * se(D), "in_se": float(D.mean()) / se(D) if se(D) > 0 else float("nan"),
                        "passes": {name: _judge(all_rules[name], c, fold_of)["passed"]
                                   for name in ("se1", "t95", "t95_tau1.5")}})
    default = next(n for n, r in all_rules.items() if r == DEFAULT_RULE)
    redecided = {}
    for design, e in sorted(designs.items()):
        for seed, cand in sorted(e["student"].items()):
            c = {"per_case": (e["plain"][seed], cand)}
            redecided[f"{design} seed {seed}"] = {name: "student" if _judge(all_rules[name], c, e["fold"])["passed"]
                                                  else "plain" for name in ("se1", "se2", default)}
    return {"default_rule": default, "default_rule_description": DEFAULT_RULE.describe(),
            "aa_comparisons": table[default]["aa_comparisons"], "aa_false_accepts": table[default]["aa_false_accepts"],
            "power_testbed": table[default]["power_testbed"],
            "power_testbed_same_seed": table[default]["power_testbed_same_seed"],
            "redecided_student_vs_plain": redecided,
            "inputs": sorted(os.path.basename(p) for p in glob.glob(join(gate_dir, "*.json"))),
            "designs": {d: {"name": DESIGN_NAMES.get(d, d), "validation_cases": len(e["fold"]),
                            "folds": sorted(set(e["fold"].values())), "plain_seeds": sorted(e["plain"])}
                        for d, e in sorted(designs.items())},
            "run_noise": {**tau, "leave_one_design_out": lodo},
            "rules": table, "comparisons": details}


def markdown(result: dict) -> str:
    lines = ["| rule | A/A false accepts | per design | power, testbed (same seed) | harmful accepts |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in result["rules"].items():
        lines.append(f"| `{name}`: {r['rule']} | {r['aa_false_accepts']}/{r['aa_comparisons']} "
                     f"({100 * r['aa_false_accept_rate']:.0f}%) | "
                     + ", ".join(f"{d} {v}" for d, v in r["aa_per_design"].items())
                     + f" | {r['power_testbed']} ({r['power_testbed_same_seed']}) | {r['harmful_accepts']} |")
    t = result["run_noise"]
    lines.append("")
    lines.append("run noise tau (Dice points, method of moments on A/A pairs): "
                 + ", ".join(f"{d} {100 * v['tau']:.2f} ({v['pairs']} pairs; RMS mean difference "
                             f"{100 * v['rms_mean_difference']:.2f}, RMS SE {100 * v['rms_se']:.2f})"
                             for d, v in t["per_design"].items())
                 + f"; pooled {100 * t['pooled_tau']:.2f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ collect
def collect(run_root: str, design: str, out_dir: str, trainer: str = "LowerBoundTrainer_demo",
            folds=(0, 1)) -> List[str]:
    """Per-case validation Dice of every seed's plain model of a ``gate_aa_*`` benchmark run (``run_root`` =
    RESULTS/NAME) -> ``out_dir/aa_<design>_seed<s>.json`` (the layout of a decision's ``per_case``). Seeds
    whose folds are not all validated are skipped; an existing file is never overwritten."""
    from dante_nnunet.jobs.evaluation import validation_dice
    nn = join(run_root, "nnunet")
    raw = glob.glob(join(nn, "nnUNet_raw", "Dataset*"))
    if len(raw) != 1:
        raise FileNotFoundError(f"{nn}/nnUNet_raw must hold exactly one dataset, found {raw}")
    name = os.path.basename(raw[0])
    splits = load_json(join(nn, "nnUNet_preprocessed", name, "splits_final.json"))
    val = {k: sorted(splits[k]["val"]) for k in folds}
    written = []
    for tdir in sorted(glob.glob(join(nn, "nnUNet_results", name, f"{trainer}_seed*__*"))):
        seed = int(re.search(r"_seed(\d+)__", os.path.basename(tdir))[1])
        if not all(os.path.isfile(join(tdir, f"fold_{k}", "checkpoint_final.pth")) for k in folds):
            continue
        out = join(out_dir, f"aa_{design}_seed{seed}.json")
        if os.path.exists(out):
            continue
        per_case = validation_dice(raw[0], tdir, val)
        save_json({"design": design, "plain": os.path.basename(tdir).split("__")[0], "folds": list(folds),
                   "per_case": {"plain": per_case, "fold": {c: k for k in folds for c in val[k]}}}, out,
                  sort_keys=False)
        written.append(out)
    return written
