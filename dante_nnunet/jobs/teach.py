"""The gated privileged-teacher recipe as one job (``dante_nnunet teach``; the benchmark's ``gated`` method).

On each fold k of a labelled dataset whose dataset.json names privileged channels, through the stock
commands, each printed before it runs and skipped on a rerun when its output is complete:

1. **teacher** (default ``UpperBoundTrainer``: every channel) and **plain model** (``LowerBoundTrainer``:
   the limited channels) trained on fold k (``nnUNetv2_train``); their final validation scores fold k's
   validation cases.
2. **pseudo-labels**: fold k's teacher predicts every unlabelled scan (``nnUNetv2_predict
   --save_probabilities``; ``predict_args`` adds e.g. ``--disable_tta``). A folder already holding a
   prediction of every scan is kept, so a large pool can be predicted elsewhere with nnU-Net's
   ``-num_parts/-part_id`` into the same folder.
3. **record and filter**: ``scans.json`` holds, per scan, each fold teacher's ``stability`` (its own
   confidence) and the fold teachers' ``agreement``; fold k keeps its teacher's ``keep_fraction`` most
   stable scans (default all). Fold k's choice reads fold k's teacher only.
4. **student dataset**: one raw dataset (``data/teach_dataset.py``) with the labelled cases and fold k's
   kept scans as ``pl<k>_<scan>`` labelled by fold k's teacher; preprocessed with the labelled dataset's
   plans (fingerprint, ``nnUNetv2_move_plans_between_datasets``, ``nnUNetv2_preprocess``); its
   ``splits_final.json`` trains fold k's student on fold k's training cases + its scans and validates on
   fold k's validation cases: the same real cases as the plain model, never a pseudo-labelled one.
   ``real_share`` lists each real training case several times there (``real_repeats``), so that real
   labels make about that share of the cases nnU-Net's loader draws. ``unsure_band`` gives the voxels that fold
   k's teacher is unsure of (some region's probability within (1 - band, band)) nnU-Net's ignore label, so
   the student learns there from real labels only (``data/teach_dataset.mask_unsure``).
   With ``rounds`` (one new dataset id per extra round), step 2 repeats first: round r's dataset is this
   layout with round r - 1's labels (every scan, nothing masked), fold k's teacher is trained again on its
   fold k and labels the scans anew (``round<r>_predictions``); the student dataset gets the last round's.
5. **student** (default ``LowerBoundTrainer``) trained on each fold of the student dataset; with ``finetune``
   x, each fold's student is then fine-tuned on fold k of the labelled dataset (the token tune<x>) and that
   model is the student the gate judges.
   With ``deploy_all`` (a dataset id), once the gate has chosen the student: the **deployed student**, one more
   student on a dataset of every labelled case of the folds plus each scan labelled by the fold teachers'
   ensemble (their mean probabilities, ``data/teach_dataset.ensemble_labels``), on its one fold (every case;
   validated on the labelled cases, which it trained on: a check of fit, as nnU-Net's fold ``all``, whose
   final validation would predict every scan again); it is what ``decision.json`` deploys (``deploy``). The
   gate judged the recipe by cross-validation; this model, the same recipe on all the labelled cases, has
   no held-out case left.
6. optionally **DANTE as its own teacher** (``dante_teach``, a ``DANTETrainer_teach`` name): one more
   dataset, the labelled cases plus the scans as unlabelled cases (what ``dante_nnunet add-scans`` writes,
   with the labelled dataset's plans and split), and that trainer on each fold: a second candidate, validated
   (its deployed pathway) on the same real cases.
7. **the decision** (``choose``): a candidate or the plain model, from the paired per-case Dice on the
   validation cases of every fold; ``decision.json`` names the chosen model (dataset, trainer,
   configuration, folds) with its predict and export commands (``dante_nnunet export --decision``).

Leak-free by construction: no validation case is in any fold's training cases, fold k's teacher and
student see only fold k's training cases' labels, and ``check_not_labelled_or_test`` refuses a scan with the
voxels of a labelled or test case before any work.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

from dante_nnunet.jobs.evaluation import dice
from dante_nnunet.jobs.gate import DEFAULT_RULE, GateRule, fold_means, judge, paired_differences, se
from dante_nnunet.jobs.nnunet_jobs import preprocess_with_plans_of, run_command
from dante_nnunet.trainer_names import DEFAULT_STUDENT, finetuned_name

DECISION_FILE = "decision.json"
DEPLOY_FOLD = 0   # the deployed student's one fold (teach --deploy-all): every case of its dataset
MIN_VALIDATION_CASES = 10   # fewer: teach warns before any work that only a large gain can pass the gate


# ------------------------------------------------------------------------------------------ the decision
def decide(plain: Mapping[str, Mapping[str, float]], student: Mapping[str, Mapping[str, float]],
           fold_of: Mapping[str, int], regions: Sequence[str], rule: GateRule = DEFAULT_RULE,
           candidate: str = "student") -> dict:
    """Student (``candidate`` names it in ``reason``) or plain model, from Dice per validation case and
    region (``plain[case][region]``, the same cases in ``student``), pooled over folds (``fold_of[case]``),
    by ``rule`` (``jobs/gate.GateRule``; the default and why: docs/gated_teacher.md, "The rule").

    d[c, r] = Dice_student - Dice_plain of case c, region r; D[c] = mean over regions of d[c, r]. Returns the
    rule's numbers: per region the mean, SE and the per-fold means and their SD; ``overall`` for D (with
    ``se_total``, the SE counting run noise, and ``bar``, the gain it had to exceed); ``chosen``, ``reason``
    (in Dice points) and ``rule``."""
    cases, d, D = paired_differences(plain, student, regions)
    n = len(cases)

    def stats(values: np.ndarray) -> dict:
        per_fold = {str(k): v for k, v in fold_means(values, cases, fold_of).items()}
        sd_folds = float(np.std(list(per_fold.values()), ddof=1)) if len(per_fold) >= 2 else float("nan")
        return {"mean": float(values.mean()) if n else float("nan"), "se": se(values), "per_fold": per_fold,
                "sd_over_folds": sd_folds, "n": n}

    table = {r: {"plain": float(np.mean([plain[c][r] for c in cases])),
                 "student": float(np.mean([student[c][r] for c in cases])), **stats(d[r])} for r in regions}
    overall = stats(D)
    verdict = judge(rule, cases, d, D, fold_of, candidate)
    overall.update(se_total=verdict["se_total"], bar=verdict["threshold"])
    if verdict["p"] == verdict["p"]:   # not NaN: the sign-flip bar's p-value
        overall["p"] = verdict["p"]
    return {"chosen": "student" if verdict["passed"] else "plain", "reason": verdict["reason"], "regions": table,
            "overall": overall, "rule": {**asdict(rule), "description": rule.describe()}}


def choose(plain: Mapping[str, Mapping[str, float]], candidates: Mapping[str, Mapping[str, Mapping[str, float]]],
           fold_of: Mapping[str, int], regions: Sequence[str], rule: GateRule = DEFAULT_RULE) -> dict:
    """A candidate or the plain model. Each candidate (``candidates[name][case][region]``, e.g. the offline
    student and DANTE as its own teacher) is held to ``decide``'s rule against the plain model on the same
    cases; of those that pass, the one with the largest mean gain over the regions is chosen, else the plain
    model. With one candidate this is ``decide`` itself (its ``chosen`` is then "student" or "plain").

    With several, the returned dict is the chosen candidate's ``decide`` result (the first candidate's when
    the plain model is kept), with ``chosen`` and ``reason`` for the whole choice and ``candidates`` (name
    -> ``decide`` result with ``passed`` in place of ``chosen``). Picking the larger of two passing gains
    favours a lucky candidate a little; each one chosen has passed the bar on its own."""
    if not candidates:
        raise ValueError("no candidate to decide on")
    each = {name: decide(plain, per_case, fold_of, regions, rule, candidate=name)
            for name, per_case in candidates.items()}
    first = next(iter(each))
    if len(each) == 1:
        return each[first]
    for d in each.values():
        d["passed"] = d.pop("chosen") == "student"   # per candidate; the choice is the top "chosen"
    passing = [n for n, d in each.items() if d["passed"]]
    best = max(passing, key=lambda n: each[n]["overall"]["mean"]) if passing else None
    out = {k: v for k, v in each[best or first].items() if k != "passed"}
    if best:
        others = [n for n in passing if n != best]
        out["chosen"] = best
        out["reason"] = (f"{best}: {each[best]['reason']}"
                         + (f"; {', '.join(others)} also passed with a smaller gain" if others else ""))
    else:
        out["chosen"] = "plain"
        out["reason"] = "; ".join(f"{n}: {d['reason']}" for n, d in each.items())
    out["candidates"] = each
    return out


def decision_table(decision: dict, teacher: Optional[Mapping[str, float]] = None) -> str:
    """The decision's numbers as markdown tables (Dice x 100; differences paired, mean ± SE over cases), one
    per candidate."""
    each = decision.get("candidates") or {"student": decision}
    tables = [_comparison_table(name, d, teacher) for name, d in each.items()]
    o = decision["overall"]
    rule = decision.get("rule", {}).get("description", "")
    curves = f"\n\n{curves_line(decision['curves'])}" if decision.get("curves") else ""
    return ("\n\n".join(tables) + f"\n\nDice points; rule: {rule}\n\nchosen: **{decision['chosen']}** "
            f"({decision['reason']}); {o['n']} validation cases" + curves)


def _comparison_table(name: str, decision: dict, teacher: Optional[Mapping[str, float]]) -> str:
    lines = [f"| region | teacher (all channels) | plain | {name} | {name} - plain (± SE) | per fold | SD over folds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r, row in decision["regions"].items():
        t = f"{100 * teacher[r]:.1f}" if teacher and r in teacher else "-"
        folds = ", ".join(f"{k}: {100 * v:+.1f}" for k, v in row["per_fold"].items())
        lines.append(f"| {r} | {t} | {100 * row['plain']:.1f} | {100 * row['student']:.1f} | "
                     f"{100 * row['mean']:+.1f} ± {100 * row['se']:.1f} | {folds} | {100 * row['sd_over_folds']:.1f} |")
    o = decision["overall"]
    bar = o.get("bar", float("nan"))
    lines.append(f"| mean over regions | | | | {100 * o['mean']:+.1f} ± {100 * o['se']:.1f}"
                 + (f" (SE with run noise {100 * o['se_total']:.1f}; bar {100 * bar:.1f})" if bar == bar else "")
                 + " | | |")
    return "\n".join(lines)


LATE_FRACTION = 0.25   # the training curve's late part: the last quarter of the epochs


def late_rise(checkpoint: str, fraction: float = LATE_FRACTION) -> dict:
    """How a training ended, from its final checkpoint's nnU-Net log (``logging['ema_fg_dice']``: per epoch,
    the moving average nnU-Net keeps of the mean foreground pseudo Dice on the fold's validation cases):
    ``epochs``, ``last`` (the final value) and ``rise`` = last minus the value at the end of epoch
    n - round(``fraction`` x n), a fraction of 1. A clear rise says the model was still improving when its
    schedule stopped (the trainer token long<x> lengthens it)."""
    from dante_nnunet.guards import read_checkpoint
    ema = [float(v) for v in read_checkpoint(checkpoint, mmap=True).get("logging", {}).get("ema_fg_dice", [])]
    if not ema:
        raise ValueError(f"checkpoint {checkpoint} holds no nnU-Net log (logging -> ema_fg_dice)")
    back = max(1, int(round(fraction * len(ema))))
    start = ema[-1 - back] if len(ema) > back else ema[0]
    return {"epochs": len(ema), "last": ema[-1], "rise": ema[-1] - start}


def curves_line(curves: Mapping[str, Mapping[str, dict]]) -> str:
    """One line for the decision table: each model's rise over the last quarter of its epochs, per fold, in
    Dice points."""
    parts = [f"{role} " + ", ".join(f"{k}: {100 * c['rise']:+.1f}" for k, c in folds.items())
             for role, folds in curves.items()]
    return ("validation pseudo Dice (nnU-Net's moving average), rise over the last quarter of each training, "
            "per fold: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------ per-scan record
def agreement(label_maps: Sequence[np.ndarray], regions: Mapping[str, Sequence[int]]) -> float:
    """How much the fold teachers agree on one scan: the mean over pairs of label maps and over regions of
    the pair's Dice (a region empty in both counts 1). NaN with fewer than two maps. Recorded, not used to
    choose fold k's scans: the other folds' teachers have seen fold k's validation cases."""
    if len(label_maps) < 2:
        return float("nan")
    values = [dice(np.isin(a, v), np.isin(b, v)) for i, a in enumerate(label_maps) for b in label_maps[i + 1:]
              for v in regions.values()]
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------ the job
# the recipe's numeric options (TeachSettings and a config's "teach" block): what each is, its range, the test
RECIPE_OPTIONS = {
    "keep_fraction": ("keep fraction", "(0, 1]", lambda v: 0 < v <= 1),
    "real_share": ("the real cases' share", "(0, 1)", lambda v: 0 < v < 1),
    "unsure_band": ("the unsure band", "(0.5, 1)", lambda v: 0.5 < v < 1),
    "finetune": ("the fine-tune's share of the schedule", "(0, 1]", lambda v: 0 < v <= 1),
}


def option_out_of_range(values: Mapping[str, Optional[float]]):
    """(key, "must be in RANGE, got VALUE") of the first of ``values`` (keys of ``RECIPE_OPTIONS``; None: not
    set) outside its range, or None."""
    for key, value in values.items():
        if value is not None and not RECIPE_OPTIONS[key][2](value):
            return key, f"must be in {RECIPE_OPTIONS[key][1]}, got {value}"
    return None


@dataclass
class TeachSettings:
    source: int                          # the labelled dataset's id
    scans: str                           # folder of unlabelled scans with every channel
    student_id: int                      # the student dataset's id (new)
    student_name: str
    configuration: str = "3d_fullres"
    folds: List[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    teacher: str = "UpperBoundTrainer"
    plain: str = "LowerBoundTrainer"
    student: str = DEFAULT_STUDENT
    keep_fraction: float = 1.0
    real_share: Optional[float] = None   # the real cases' share of the student's draws (None: each case once)
    unsure_band: Optional[float] = None  # mask the teacher's unsure voxels (ignore label; None: every voxel taught)
    finetune: Optional[float] = None     # fine-tune each student on its fold's real cases for this share of the
                                         # schedule (token tune<x>); the fine-tuned model is then the student
    rounds: List[int] = field(default_factory=list)   # one dataset id per extra teacher round (new ids)
    deploy_all: Optional[int] = None     # the deployed student's dataset (new id): all labelled cases + the
                                         # scans labelled by the fold teachers' ensemble (DEPLOY_FOLD)
    plans: str = "nnUNetPlans"
    device: str = "cuda"
    predict_args: List[str] = field(default_factory=list)
    test_dirs: List[str] = field(default_factory=list)   # more limited-only case folders no scan may repeat
    rule: GateRule = DEFAULT_RULE         # the gate (jobs/gate.py); a rerun with another rule only decides again
    dante_teach: Optional[str] = None    # a DANTETrainer_teach name: DANTE as its own teacher, a second candidate
    dante_teach_id: Optional[int] = None  # its dataset: the labelled cases + the scans as unlabelled cases
    dante_teach_name: Optional[str] = None  # that dataset's name when new (default: the student's + "Scans")

    def recorded(self) -> dict:
        """What a rerun must agree with (device, predict arguments, the gate's bar and the DANTE candidate may
        change: a rerun with another ``rule`` only decides again, one that adds ``dante_teach`` trains
        that candidate and decides again, one that adds ``deploy_all`` trains the deployed student)."""
        d = asdict(self)
        for k in ("device", "predict_args", "test_dirs", "rule", "dante_teach", "dante_teach_id",
                  "dante_teach_name", "deploy_all"):
            d.pop(k)
        d["scans"] = os.path.abspath(d["scans"])
        return d


class TeachError(ValueError):
    """A teach run that cannot start; the message names the file, case or setting."""


def folds_adding_cases(splits: Sequence[dict], folds: Sequence[int]) -> List[int]:
    """The split's other folds, in order, that would each add validation cases none of ``folds`` (nor an
    earlier one of them) validates on: what ``-f`` could add without two folds sharing a case (nested
    splits validate several folds on the same cases)."""
    seen, out = {c for k in folds for c in splits[int(k)]["val"]}, []
    for k, split in enumerate(splits):
        val = set(split.get("val") or [])
        if k not in {int(f) for f in folds} and val and not seen & val:
            out.append(k)
            seen |= val
    return out


def file_stamps(files: Sequence[str]) -> List[list]:
    """[name, size, modification time in ns] of each file: what a rerun compares to know a file unchanged."""
    out = []
    for f in files:
        st = os.stat(f)
        out.append([os.path.basename(f), int(st.st_size), int(st.st_mtime_ns)])
    return out


def check_device(device: str) -> None:
    """TeachError when ``device`` (nnUNetv2_train's -device) is not usable here: nnU-Net would fail only once
    its first training starts, after the checks and folders of this recipe."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise TeachError("-device cuda (the default), but torch finds no CUDA device here "
                         "(torch.cuda.is_available() is False): add -device cpu (README, 'A CPU walkthrough' and "
                         "'dante_nnunet teach on a CPU') or run on a machine with a GPU")
    if device == "mps" and not torch.backends.mps.is_available():
        raise TeachError("-device mps, but torch finds no MPS device here: use -device cpu")


class Teach:
    """One run of the recipe in the environment ``env`` (nnU-Net's folders, nnUNet_extTrainer)."""

    def __init__(self, settings: TeachSettings, env: Mapping[str, str], log_prefix: str = ""):
        self.s = settings
        self.env = dict(env)
        self.prefix = log_prefix
        self.seconds: Dict[str, float] = {}

    # -- where things are
    def _folder(self, root_key: str, dataset_id: int) -> Optional[str]:
        from dante_nnunet.data.rawdata import dataset_folders
        hits = dataset_folders(self.env[root_key], dataset_id)
        return hits[0] if hits else None

    @property
    def source(self) -> str:
        folder = self._folder("nnUNet_raw", self.s.source)
        if folder is None:
            raise TeachError(f"dataset {self.s.source} is not in nnUNet_raw ({self.env['nnUNet_raw']})")
        return folder

    @property
    def student_folder_name(self) -> str:
        return f"Dataset{int(self.s.student_id):03d}_{self.s.student_name}"

    @property
    def work(self) -> str:
        """Where the recipe keeps its own files: ``nnUNet_results/<student dataset>/teach``."""
        return join(self.env["nnUNet_results"], self.student_folder_name, "teach")

    @property
    def dante_teach_folder_name(self) -> str:
        """The DANTE candidate's dataset folder: the one of that id in nnUNet_raw, else a new name."""
        hit = self._folder("nnUNet_raw", self.s.dante_teach_id)
        name = self.s.dante_teach_name or f"{self.s.student_name}Scans"
        return os.path.basename(hit) if hit else f"Dataset{int(self.s.dante_teach_id):03d}_{name}"

    @property
    def deploy_folder_name(self) -> str:
        """The deployed student's dataset folder (``deploy_all``)."""
        return f"Dataset{int(self.s.deploy_all):03d}_{self.s.student_name}All"

    def preprocessed(self, folder_name: str) -> str:
        return join(self.env["nnUNet_preprocessed"], folder_name)

    def results(self, dataset_folder_name: str, trainer: str) -> str:
        return join(self.env["nnUNet_results"], dataset_folder_name,
                    f"{trainer}__{self.s.plans}__{self.s.configuration}")

    # -- checks before any work
    def check(self) -> dict:
        """Everything that can be checked before training; returns {scan: files}. Writes nothing but, when the
        labelled dataset has none, nnU-Net's own splits_final.json (what its first training would write)."""
        from dante_nnunet.data.teach_dataset import check_labelled_cases, check_scans, teach_splits
        import re
        s = self.s
        check_device(s.device)
        bad = option_out_of_range({k: getattr(s, k) for k in RECIPE_OPTIONS})
        if bad:
            raise TeachError(f"{RECIPE_OPTIONS[bad[0]][0]} {bad[1]}")
        taken = [int(s.source), int(s.student_id)] + ([int(s.dante_teach_id)] if s.dante_teach_id is not None else [])
        if s.deploy_all is not None:
            if not 0 < int(s.deploy_all) < 1000 or int(s.deploy_all) in taken + [int(r) for r in s.rounds]:
                raise TeachError(f"the deployed student's dataset id {s.deploy_all} must be 1..999 and differ from the "
                                 f"labelled, student, DANTE candidate's and teacher rounds' ids")
            if s.finetune is not None:
                raise TeachError("--deploy-all with --finetune is not built: the deployed student would need a "
                                 "fine-tune on every labelled case; leave one of them out")
            hit = self._folder("nnUNet_raw", s.deploy_all)
            if hit is None:
                self._refuse_id_in_use(int(s.deploy_all), ("nnUNet_preprocessed", "nnUNet_results"),
                                       "the deployed student's dataset")
            elif os.path.basename(hit) != self.deploy_folder_name:
                raise TeachError(f"dataset id {s.deploy_all} is in use ({hit}); choose a free id for the deployed "
                                 f"student's dataset")
        for i, rid in enumerate(s.rounds):
            if not 0 < int(rid) < 1000 or int(rid) in taken + [int(r) for r in s.rounds[:i]]:
                raise TeachError(f"teacher round dataset id {rid} must be 1..999 and differ from the labelled, student, "
                                 f"DANTE candidate's and other rounds' ids")
        if not re.fullmatch(r"[A-Za-z0-9]+", s.student_name):
            raise TeachError(f"student dataset name must be letters and digits, got {s.student_name!r}")
        if not 0 < int(s.student_id) < 1000 or int(s.student_id) == int(s.source):
            raise TeachError(f"student dataset id {s.student_id} must be 1..999 and not the labelled dataset's")
        source = self.source
        name = os.path.basename(source)
        plans_file = join(self.preprocessed(name), f"{s.plans}.json")
        if not isfile(plans_file):
            raise TeachError(f"{plans_file} does not exist: plan and preprocess dataset {s.source} first "
                             f"(nnUNetv2_plan_and_preprocess -d {s.source} -c 3d_fullres)")
        if s.configuration not in load_json(plans_file)["configurations"]:
            raise TeachError(f"{plans_file} has no configuration {s.configuration!r}")
        if not isdir(s.scans):
            raise TeachError(f"scan folder {s.scans} does not exist")
        for d in s.test_dirs:
            if not isdir(d):
                raise TeachError(f"test folder {d} does not exist")
        resuming = self._check_student_id()
        if not resuming:
            for rid in s.rounds:
                self._refuse_id_in_use(int(rid), ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"),
                                       "a teacher round's dataset")
        check_labelled_cases(source)
        scans = check_scans(s.scans, source)
        self._check_dante_teach_id(scans)
        self._voxel_check(scans, source, resuming)
        self.splits = teach_splits(source, self.preprocessed(name), s.folds)
        n_val = sum(len(self.splits[k]["val"]) for k in s.folds)
        if n_val < MIN_VALIDATION_CASES:
            unused = folds_adding_cases(self.splits, s.folds)
            print(f"[teach] {self.prefix}warning: the gate will judge on {n_val} validation case(s) (folds "
                  f"{', '.join(map(str, s.folds))}); its bar is a t quantile with {n_val - 1} degree(s) of freedom "
                  f"times an SE of that many cases, so only a large gain can pass"
                  + (f"; the split's folds {', '.join(map(str, unused))} would add theirs (-f)" if unused else ""),
                  flush=True)
        self._check_trainers()
        return scans

    CHECKED_FILE = "scans_checked.json"

    def _voxel_check(self, scans: Mapping[str, Sequence[str]], source: str, resuming: bool) -> None:
        """The voxel check (``check_not_labelled_or_test``: it reads every scan and case whole) on the scans not
        checked before: ``scans_checked.json`` in the work folder records each checked scan's files (size and
        modification time), so a rerun checks only a scan added or changed since. A rerun whose scan folder
        gained or lost scans after the student dataset was written is refused: that dataset holds the first
        run's scans."""
        from dante_nnunet.data.teach_dataset import check_not_labelled_or_test
        record = join(self.work, self.CHECKED_FILE)
        recorded = load_json(record) if isfile(record) else {}
        old = recorded.get("scans", {})
        test_dirs = [os.path.abspath(d) for d in self.s.test_dirs]
        if recorded.get("test_dirs") != test_dirs:
            old = {}                                   # other test folders: every scan against them
        stamps = {scan: file_stamps(files) for scan, files in scans.items()}
        if resuming and old and sorted(old) != sorted(scans) and self._folder("nnUNet_raw", self.s.student_id):
            added, gone = sorted(set(scans) - set(old)), sorted(set(old) - set(scans))
            raise TeachError(f"{self.s.scans} has changed since this run's student dataset was written "
                             f"({len(added)} scan(s) added, e.g. {added[:1]}; {len(gone)} gone, e.g. {gone[:1]}): the "
                             f"student would not see them; use another student dataset id (-o) for the new scans")
        todo = {scan: files for scan, files in scans.items() if old.get(scan) != stamps[scan]}
        if todo:
            print(f"[teach] {self.prefix}voxel check of {len(todo)} scan(s) against the labelled and test cases",
                  flush=True)
            check_not_labelled_or_test(todo, source, self.s.test_dirs)
        self._checked = {"test_dirs": test_dirs, "scans": stamps}

    def _check_student_id(self) -> bool:
        """The student id is free in raw, preprocessed and results (False), or this recipe's own earlier run
        with the same settings (True: a resume)."""
        record = join(self.work, "teach.json")
        if isfile(record):
            old = load_json(record)
            old.pop("min_gain_se", None)   # written by runs before the bar could change on a resume
            new = self.s.recorded()
            # a setting an older record lacks was added later, its default the old behaviour (None, or no rounds)
            defaults = asdict(TeachSettings(source=0, scans="", student_id=0, student_name=""))
            diff = sorted(k for k in set(old) | set(new) if old.get(k, defaults.get(k)) != new.get(k))
            if diff:
                raise TeachError(f"{record} records an earlier teach run with other settings ({', '.join(diff)}); "
                                 f"use another student dataset id, or the same settings to resume")
            return True
        self._refuse_id_in_use(self.s.student_id, ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"),
                               "the student dataset")
        return False

    def _refuse_id_in_use(self, dataset_id: int, roots: Sequence[str], role: str) -> None:
        """TeachError when a dataset of ``dataset_id`` is in one of nnU-Net's folders ``roots``."""
        for key in roots:
            hit = self._folder(key, dataset_id)
            if hit is not None:
                raise TeachError(f"dataset id {dataset_id} is in use ({hit}); choose a free id for {role}")

    def _check_dante_teach_id(self, scans: Mapping[str, Sequence[str]]) -> None:
        """With ``dante_teach``: its dataset id is given, is neither the labelled nor the student dataset's, and
        is free or holds this labelled dataset plus these scans (reused: it holds no model's output)."""
        from dante_nnunet.data.unlabelled_cases import check_dataset_with_scans
        s = self.s
        if (s.dante_teach is None) != (s.dante_teach_id is None):
            raise TeachError("the DANTE candidate needs both a trainer (--dante-teach) and a dataset id "
                             "(--dante-teach-id)")
        if s.dante_teach is None:
            return
        if not 0 < int(s.dante_teach_id) < 1000 or int(s.dante_teach_id) in (int(s.source), int(s.student_id)):
            raise TeachError(f"the DANTE candidate's dataset id {s.dante_teach_id} must be 1..999 and neither the "
                             f"labelled nor the student dataset's")
        raw = self._folder("nnUNet_raw", s.dante_teach_id)
        if raw is not None:
            try:
                check_dataset_with_scans(raw, self.source, list(scans))
            except ValueError as e:
                raise TeachError(f"dataset id {s.dante_teach_id} is in use ({e}); choose a free id for the DANTE "
                                 f"candidate's dataset") from None
            return
        self._refuse_id_in_use(s.dante_teach_id, ("nnUNet_preprocessed", "nnUNet_results"),
                               "the DANTE candidate's dataset")

    def _check_trainers(self) -> None:
        from dante_nnunet.jobs.nnunet_jobs import trainer_lookup
        with trainer_lookup(self.env) as find:
            for role in ("teacher", "plain", "student", "dante_teach", "tuned_student"):
                name = getattr(self.s, role) if role != "tuned_student" else self.tuned_student
                if name is None:
                    continue
                try:
                    cls = find(name)
                except (RuntimeError, ValueError) as e:
                    raise TeachError(f"{role} trainer {name!r} is not a trainer nnUNetv2_train finds ({e})") from None
                if role == "dante_teach" and not getattr(cls, "teach_unlabelled", False):
                    raise TeachError(f"dante_teach trainer {name!r} does not learn from unlabelled cases (a "
                                     f"DANTETrainer name with the token teach, e.g. DANTETrainer_teach)")

    # -- steps
    def _run(self, key: str, cmd: List[str]) -> None:
        os.makedirs(join(self.work, "logs"), exist_ok=True)
        print(f"[teach] {self.prefix}{key}", flush=True)
        self.seconds[key] = round(run_command(cmd, self.env, join(self.work, "logs", f"{key}.log"),
                                              append=True).seconds, 1)

    def train(self, key: str, dataset_id: int, dataset_folder_name: str, trainer: str, fold: int,
              start_from: Optional[str] = None) -> None:
        """``nnUNetv2_train`` of one fold, skipped when trained, continued (``--c``) from its checkpoint;
        ``start_from``: the -pretrained_weights of a fresh start (a fine-tune)."""
        fold_dir = join(self.results(dataset_folder_name, trainer), f"fold_{fold}")
        if isfile(join(fold_dir, "checkpoint_final.pth")) and isfile(join(fold_dir, "validation", "summary.json")):
            print(f"[teach] {self.prefix}{key}: {trainer} fold {fold} is trained, skipped", flush=True)
            return
        cont = ["--c"] if isfile(join(fold_dir, "checkpoint_latest.pth")) or \
            isfile(join(fold_dir, "checkpoint_final.pth")) else []
        start = ["-pretrained_weights", start_from] if start_from is not None and not cont else []
        self._run(key, ["nnUNetv2_train", str(dataset_id), self.s.configuration, str(fold), "-tr", trainer,
                        "-p", self.s.plans, "-device", self.s.device] + cont + start)

    @property
    def tuned_student(self) -> Optional[str]:
        """With ``finetune`` x: the student's trainer name with the token tune<x> (trained on the labelled
        dataset, each fold from that fold's student)."""
        return None if self.s.finetune is None else finetuned_name(self.s.student, self.s.finetune)

    def models(self) -> Dict[str, tuple]:
        """role -> (dataset id, dataset folder name, trainer) of the plain model and each candidate."""
        s = self.s
        src_name = os.path.basename(self.source)
        out = {"plain": (int(s.source), src_name, s.plain),
               "student": (int(s.student_id), self.student_folder_name, s.student) if s.finetune is None
               else (int(s.source), src_name, self.tuned_student)}
        if s.dante_teach:
            out["dante_teach"] = (int(s.dante_teach_id), self.dante_teach_folder_name, s.dante_teach)
        return out

    def round_folder_name(self, r: int) -> str:
        """Teacher round r's dataset (r >= 1): the labelled cases + the scans labelled in round r - 1."""
        return f"Dataset{int(self.s.rounds[r - 1]):03d}_{self.s.student_name}R{r}"

    def teacher_dataset(self, r: int = 0) -> tuple:
        """(id, folder name) of the dataset round r's teacher trains on: the labelled one (r = 0), else round r's."""
        if r == 0:
            return int(self.s.source), os.path.basename(self.source)
        return int(self.s.rounds[r - 1]), self.round_folder_name(r)

    def teacher_model(self, fold: int, r: int = 0) -> dict:
        """Which model labels fold ``fold``'s scans (in round r): the teacher's dataset, trainer, plans,
        configuration, fold, and its checkpoint file's size and time (a retrained teacher has another)."""
        did, folder = self.teacher_dataset(r)
        ckpt = join(self.results(folder, self.s.teacher), f"fold_{fold}", "checkpoint_final.pth")
        st = os.stat(ckpt)
        return {"dataset": did, "trainer": self.s.teacher, "plans": self.s.plans,
                "configuration": self.s.configuration, "fold": int(fold), "checkpoint": [int(st.st_size),
                                                                                          int(st.st_mtime_ns)]}

    def _predictions(self, fold: int, r: int = 0) -> str:
        return join(self.work, f"fold_{fold}", "teacher_predictions" if r == 0 else f"round{r}_predictions")

    def predictions_made_by(self, fold: int, r: int = 0) -> str:
        """``fold_k/teacher_predictions_made_by/``: one record per prediction run into ``teacher_predictions``
        (``part<i>of<n>.json``: the model, from ``teacher_model``, and the scans that run predicted). nnU-Net
        writes no such record; without it a folder of predictions cannot tell which fold's model made it.
        Round r >= 1: ``round<r>_predictions_made_by``."""
        return self._predictions(fold, r) + "_made_by"

    def _vouched(self, fold: int, model: dict, r: int = 0) -> Dict[str, str]:
        """{scan: record file} of the scans a record of ``model`` (fold ``fold``'s current teacher) vouches for."""
        folder = self.predictions_made_by(fold, r)
        out: Dict[str, str] = {}
        if isdir(folder):
            for f in sorted(os.listdir(folder)):
                rec = load_json(join(folder, f))
                if rec.get("model") == model:
                    out.update({scan: f for scan in rec.get("scans", [])})
        return out

    def predict_scans(self, fold: int, scans: Mapping[str, Sequence[str]], part: Optional[Sequence[int]] = None,
                      r: int = 0) -> str:
        """Fold ``fold``'s teacher predicts the scans (``part`` = (i, n): nnU-Net's ``-part_id i -num_parts n``,
        the sorted scans ``[i::n]``) into ``fold_k/teacher_predictions``, after writing the record of the run
        (``predictions_made_by``). Kept when every scan has a prediction that a record of this fold's current
        teacher vouches for; a prediction no such record vouches for (another fold's model, a retrained
        teacher, a folder filled by hand) is refused, naming it. Round r >= 1: round r's teacher (trained on
        round r's dataset) into ``round<r>_predictions``."""
        out = self._predictions(fold, r)
        ending = load_json(join(self.source, "dataset.json"))["file_ending"]
        model = self.teacher_model(fold, r)
        vouched = self._vouched(fold, model, r)
        present = [c for c in sorted(scans) if isfile(join(out, c + ending))]
        stray = [c for c in present if c not in vouched]
        if stray:
            raise TeachError(f"{out} holds {len(stray)} prediction(s) that no record of fold {fold}'s teacher "
                             f"({self.s.teacher}, its current checkpoint) vouches for, e.g. {stray[0]!r}: made by "
                             f"another model or before the teacher was retrained. Remove them; shard the prediction "
                             f"with 'dante_nnunet teach ... --predict-part I N' (README), which records its model")
        i, n = part if part is not None else (0, 1)
        mine = sorted(scans)[i::n]
        if all(c in vouched and isfile(join(out, c + ending)) for c in mine):
            print(f"[teach] {self.prefix}pseudo_labels_fold{fold}: {out} holds "
                  f"{'every scan' if n == 1 else f'part {i} of {n}'}, skipped", flush=True)
            return out
        os.makedirs(self.predictions_made_by(fold, r), exist_ok=True)
        save_json({"model": model, "scans": mine, "part": [i, n]},
                  join(self.predictions_made_by(fold, r), f"part{i}of{n}.json"), sort_keys=False)
        self._run(f"pseudo_labels_fold{fold}" + (f"_round{r}" if r else "") + (f"_part{i}of{n}" if n > 1 else ""),
                  ["nnUNetv2_predict", "-i", self.s.scans, "-o", out, "-d", str(model["dataset"]), "-c",
                   self.s.configuration, "-tr", self.s.teacher, "-p", self.s.plans, "-f", str(fold), "-device",
                   self.s.device, "--save_probabilities", "--continue_prediction"]
                  + (["-num_parts", str(n), "-part_id", str(i)] if n > 1 else []) + list(self.s.predict_args))
        return out

    def predict_part(self, part: Sequence[int]) -> None:
        """``--predict-part I N``: train each fold's teacher if needed and predict part I of N of the scans with
        it (a sharded run of step 2 on several machines sharing nnU-Net's folders: start the other parts once
        the first has trained the teachers); then stop. The full run afterwards finds every scan vouched for."""
        i, n = (int(v) for v in part)
        if not (n >= 1 and 0 <= i < n):
            raise TeachError(f"--predict-part I N needs 0 <= I < N, got {i} {n}")
        scans = self.check()
        self.start()
        for k in self.s.folds:
            self.train(f"teacher_fold{k}", self.s.source, os.path.basename(self.source), self.s.teacher, k)
            self.predict_scans(k, scans, (i, n))

    def record(self, scans: Mapping[str, Sequence[str]], labels: Mapping[int, str]) -> dict:
        """scans.json: per scan, each fold teacher's stability and the fold teachers' agreement; per fold the
        kept scans."""
        from dante_nnunet.data.rawdata import read_whole
        from dante_nnunet.data.teach_dataset import keep_most_stable, stability
        from dante_nnunet.jobs.evaluation import regions_from_dataset_json
        dj = load_json(join(self.source, "dataset.json"))
        ending = dj["file_ending"]
        regions = regions_from_dataset_json(dj)
        has_regions = "regions_class_order" in dj
        rec: dict = {"scans": {}, "kept": {}}
        for scan in sorted(scans):
            entry = {"stability": {}}
            maps = []
            for k in self.s.folds:
                probs = np.load(join(labels[k], scan + ".npz"))["probabilities"]
                entry["stability"][str(k)] = stability(probs if has_regions else probs[1:])
                maps.append(read_whole(scan, join(labels[k], scan + ending)))
            entry["agreement"] = agreement(maps, regions)
            rec["scans"][scan] = entry
        for k in self.s.folds:
            scores = {c: e["stability"][str(k)] for c, e in rec["scans"].items()}
            rec["kept"][str(k)] = keep_most_stable(scores, self.s.keep_fraction)
        rec["keep_fraction"] = self.s.keep_fraction
        save_json(rec, join(self.work, "scans.json"), sort_keys=False)
        return rec

    def student_dataset(self, scans, labels, kept, r: Optional[int] = None) -> None:
        """The student dataset (labels: the last round's teachers'), or with ``r`` teacher round r's dataset
        (the labels of round r - 1's teachers, every scan kept, no voxel masked: the teacher learns from them
        as the student would); written, preprocessed with the labelled dataset's plans, given its split."""
        from dante_nnunet.data.teach_dataset import student_splits, write_student_dataset
        did, name, key = ((self.s.student_id, self.student_folder_name, "student") if r is None
                          else (self.s.rounds[r - 1], self.round_folder_name(r), f"round{r}_dataset"))
        raw = self._folder("nnUNet_raw", did)
        if raw is None:
            write_student_dataset(self.source, scans, labels, kept, self.splits, self.s.folds, self.env["nnUNet_raw"],
                                  name, settings=self.s.recorded(), unsure_band=self.s.unsure_band if r is None else None)
            print(f"[teach] {self.prefix}{key}: wrote {join(self.env['nnUNet_raw'], name)}", flush=True)
        if not preprocess_with_plans_of(self.s.source, did, self.env, self._run, self.s.configuration, key,
                                        self.s.plans):
            print(f"[teach] {self.prefix}{key}: preprocessed, skipped", flush=True)
        splits_file = join(self.preprocessed(name), "splits_final.json")
        if not isfile(splits_file):
            save_json(student_splits(self.splits, self.s.folds, kept, self.s.real_share), splits_file)

    def scans_dataset(self) -> None:
        """The DANTE candidate's dataset (``data/unlabelled_cases.py``), preprocessed with the labelled
        dataset's plans and given its split (the same folds); each step skipped when done."""
        from dante_nnunet.data.unlabelled_cases import write_dataset_with_scans
        from dante_nnunet.jobs.nnunet_jobs import copy_split_of
        s = self.s
        if self._folder("nnUNet_raw", s.dante_teach_id) is None:
            # check() voxel-checked every scan of the folder: new or changed ones in this run, the others in an
            # earlier run of these settings (scans_checked.json)
            folder = write_dataset_with_scans(self.source, s.scans, self.env["nnUNet_raw"],
                                              self.dante_teach_folder_name, voxels_checked=True)
            print(f"[teach] {self.prefix}DANTE candidate's dataset: wrote {folder}", flush=True)
        if not preprocess_with_plans_of(s.source, s.dante_teach_id, self.env, self._run, s.configuration,
                                        "dante_teach_dataset", s.plans):
            print(f"[teach] {self.prefix}DANTE candidate's dataset: preprocessed, skipped", flush=True)
        copy_split_of(s.source, s.dante_teach_id, self.env)

    def validation_dice(self, dataset_folder_name: str, trainer: str) -> Dict[str, Dict[str, float]]:
        """Dice per region of each fold's final-validation predictions against the labelled dataset's labels
        (``jobs/evaluation.validation_dice``)."""
        from dante_nnunet.jobs.evaluation import validation_dice
        return validation_dice(self.source, self.results(dataset_folder_name, trainer),
                               {k: self.splits[k]["val"] for k in self.s.folds})

    def start(self) -> None:
        """After ``check``: the work folder with the settings (``teach.json``, kept from the first run) and the
        voxel-checked scans (``scans_checked.json``)."""
        os.makedirs(self.work, exist_ok=True)
        save_json(self._checked, join(self.work, self.CHECKED_FILE), sort_keys=False)
        if not isfile(join(self.work, "teach.json")):
            save_json(self.s.recorded(), join(self.work, "teach.json"), sort_keys=False)

    def run(self) -> dict:
        s = self.s
        scans = self.check()
        self.start()
        src_name = os.path.basename(self.source)
        for k in s.folds:
            self.train(f"teacher_fold{k}", s.source, src_name, s.teacher, k)
            self.train(f"plain_fold{k}", s.source, src_name, s.plain, k)
        labels = {k: self.predict_scans(k, scans) for k in s.folds}
        for r in range(1, len(s.rounds) + 1):   # teacher rounds: each fold's teacher retrained on its own labels
            rid, rname = self.teacher_dataset(r)
            self.student_dataset(scans, labels, {k: sorted(scans) for k in s.folds}, r=r)
            for k in s.folds:
                self.train(f"teacher_round{r}_fold{k}", rid, rname, s.teacher, k)
            labels = {k: self.predict_scans(k, scans, r=r) for k in s.folds}
        rec = self.record(scans, labels)
        kept = {k: rec["kept"][str(k)] for k in s.folds}
        self.student_dataset(scans, labels, kept)
        for k in s.folds:
            self.train(f"student_fold{k}", s.student_id, self.student_folder_name, s.student, k)
        if s.finetune is not None:   # each fold's student fine-tuned on that fold's real cases
            for k in s.folds:
                start = join(self.results(self.student_folder_name, s.student), f"fold_{k}", "checkpoint_final.pth")
                self.train(f"finetune_fold{k}", s.source, src_name, self.tuned_student, k, start_from=start)
        if s.dante_teach:
            self.scans_dataset()
            for k in s.folds:
                self.train(f"dante_teach_fold{k}", s.dante_teach_id, self.dante_teach_folder_name, s.dante_teach, k)
        decision = self.decide()
        if s.deploy_all is not None and decision["chosen"] == "student":
            self.deploy_dataset(scans, labels)
            self.train("deployed_student", s.deploy_all, self.deploy_folder_name, s.student, DEPLOY_FOLD)
            decision = self.decide()
        return decision

    def deploy_dataset(self, scans: Mapping[str, Sequence[str]], labels: Mapping[int, str]) -> None:
        """The deployed student's dataset (``deploy_all``): the fold teachers' ensemble labels of every scan
        (``ensemble_predictions`` in the work folder; from the last round's teachers), then every labelled
        case of the folds + the scans so labelled, preprocessed with the labelled dataset's plans; each step
        skipped when done."""
        from dante_nnunet.data.pseudo_label_dataset import pseudo_label_split
        from dante_nnunet.data.teach_dataset import ensemble_case_name, ensemble_labels, write_student_dataset
        s = self.s
        name = self.deploy_folder_name
        # every labelled case of the folds: their training and validation cases
        labelled = sorted({c for k in s.folds for c in list(self.splits[k]["train"]) + list(self.splits[k]["val"])})
        if self._folder("nnUNet_raw", s.deploy_all) is None:
            dj = load_json(join(self.source, "dataset.json"))
            ens = join(self.work, "ensemble_predictions")
            if not isdir(ens):
                ensemble_labels([labels[k] for k in s.folds], sorted(scans), dj["file_ending"], ens,
                                dj.get("regions_class_order"))
            write_student_dataset(self.source, scans, {0: ens}, {0: sorted(scans)},
                                  [{"train": labelled, "val": []}], [0], self.env["nnUNet_raw"], name,
                                  settings=self.s.recorded(), ensemble=True)
            print(f"[teach] {self.prefix}deployed student's dataset: wrote {join(self.env['nnUNet_raw'], name)}",
                  flush=True)
        if not preprocess_with_plans_of(s.source, s.deploy_all, self.env, self._run, s.configuration,
                                        "deploy_dataset", s.plans):
            print(f"[teach] {self.prefix}deployed student's dataset: preprocessed, skipped", flush=True)
        splits_file = join(self.preprocessed(name), "splits_final.json")
        if not isfile(splits_file):   # one fold: every case; validated on the labelled cases (trained on)
            save_json(pseudo_label_split({"train": labelled, "val": labelled},
                                         [ensemble_case_name(c) for c in scans]), splits_file)

    def decide(self) -> dict:
        from dante_nnunet.jobs.evaluation import regions_from_dataset_json
        s = self.s
        src_name = os.path.basename(self.source)
        regions = list(regions_from_dataset_json(load_json(join(self.source, "dataset.json"))))
        models = self.models()
        plain = self.validation_dice(src_name, s.plain)
        candidates = {role: self.validation_dice(folder, trainer) for role, (_, folder, trainer) in models.items()
                      if role != "plain"}
        teacher = self.validation_dice(src_name, s.teacher)
        rounds = [self.validation_dice(self.teacher_dataset(r)[1], s.teacher) for r in range(1, len(s.rounds) + 1)]
        fold_of = {c: k for k in s.folds for c in self.splits[k]["val"]}
        d = choose(plain, candidates, fold_of, regions, s.rule)
        teacher_mean = {r: float(np.mean([teacher[c][r] for c in teacher])) for r in regions}
        d["teacher"] = teacher_mean
        if rounds:   # each round's teachers, cross-validated on the same real cases
            d["teacher_rounds"] = [{rg: float(np.mean([v[c][rg] for c in v])) for rg in regions} for v in rounds]
        did, _, trainer = models[d["chosen"]]
        folds = " ".join(str(k) for k in s.folds)
        d["model"] = {"dataset": int(did), "trainer": trainer, "configuration": s.configuration, "plans": s.plans,
                      "folds": list(s.folds)}
        d["models"] = {role: {"dataset": did_, "trainer": tr} for role, (did_, _, tr) in models.items()}
        if s.deploy_all is not None and d["chosen"] == "student" and isfile(join(     # the deployed student
                self.results(self.deploy_folder_name, s.student), f"fold_{DEPLOY_FOLD}", "checkpoint_final.pth")):
            did, trainer, folds = int(s.deploy_all), s.student, str(DEPLOY_FOLD)
            d["deploy"] = {"dataset": did, "trainer": trainer, "configuration": s.configuration, "plans": s.plans,
                           "folds": [DEPLOY_FOLD]}
        d["predict"] = (f"nnUNetv2_predict -i LIMITED_DIR -o OUT -d {did} -c {s.configuration} -tr {trainer} "
                        f"-p {s.plans} -f {folds} -device {s.device}")
        d["export"] = f"dante_nnunet export --decision {shlex.quote(join(self.work, DECISION_FILE))} -o EXPORT_ROOT"
        d["curves"] = {role: {str(k): late_rise(join(self.results(folder, trainer), f"fold_{k}",
                                                     "checkpoint_final.pth")) for k in s.folds}
                       for role, (_, folder, trainer) in models.items()}
        d["per_case"] = {"plain": plain, **candidates, "teacher": teacher, "fold": fold_of}
        d["settings"] = {**s.recorded(), "rule": asdict(s.rule), "dante_teach": s.dante_teach,
                         "dante_teach_id": s.dante_teach_id}
        d["seconds"] = self.seconds
        save_json(d, join(self.work, DECISION_FILE), sort_keys=False)
        table = decision_table(d, teacher_mean)
        with open(join(self.work, "decision.md"), "w") as fh:
            fh.write(table + "\n")
        print(table, flush=True)
        print(f"[teach] decision: {join(self.work, DECISION_FILE)}\n[teach] predict: {d['predict']}\n"
              f"[teach] export:  {d['export']}", flush=True)
        return d


def read_decision(path: str) -> dict:
    """The chosen model of a ``decision.json`` (``dante_nnunet export --decision``): dataset, trainer,
    configuration, plans, folds; a clear error for a file that is not one."""
    if not isfile(path):
        raise FileNotFoundError(f"{path} does not exist (dante_nnunet teach writes it)")
    try:
        d = load_json(path)
        m = d.get("deploy") or d["model"]   # the deployed student (teach --deploy-all), else the chosen model
        return {"dataset": int(m["dataset"]), "trainer": str(m["trainer"]), "configuration": str(m["configuration"]),
                "plans": str(m.get("plans", "nnUNetPlans")), "folds": [str(f) for f in m["folds"]]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a decision file of dante_nnunet teach ({type(e).__name__}: {e})") from None
