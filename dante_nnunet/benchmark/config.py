"""The benchmark's config file (``configs/NAME.json``): read and checked before any work."""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

from batchgenerators.utilities.file_and_folder_operations import isfile, load_json

from dante_nnunet.trainer_names import trainer_name


class BenchmarkConfigError(ValueError):
    """A benchmark config that cannot run; the message names the file and key."""


_REQUIRED = ("name", "dataset", "configuration", "methods", "lower")   # "upper", "dante": optional


def load_config(path: str) -> dict:
    if not isfile(path):
        raise FileNotFoundError(f"no config file {path}")
    try:
        cfg = load_json(path)
    except json.JSONDecodeError as e:
        raise BenchmarkConfigError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise BenchmarkConfigError(f"{path}: missing key(s) {missing}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg["name"]):
        raise BenchmarkConfigError(f"{path}: 'name' must be letters, digits, '_', '.', '-', got {cfg['name']!r}")
    names = [m.get("name") for m in cfg["methods"]]
    for i, m in enumerate(cfg["methods"]):
        if not m.get("name") or not m.get("trainer"):
            raise BenchmarkConfigError(f"{path}: methods[{i}] needs 'name' and 'trainer'")
        if m.get("inputs", "limited") not in ("limited", "all"):
            raise BenchmarkConfigError(f"{path}: methods[{i}] 'inputs' must be 'limited' or 'all'")
    if len(set(names)) != len(names):
        raise BenchmarkConfigError(f"{path}: method names repeat: {names}")
    seeds = cfg.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                              or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)):
        raise BenchmarkConfigError(f"{path}: 'seeds' must be a list of distinct non-negative integers, got {seeds!r}")
    for k in ("lower", "upper", "dante"):
        if k in cfg and cfg[k] not in names:
            raise BenchmarkConfigError(f"{path}: '{k}' is {cfg[k]!r}, not one of the methods {names}")
    ds = cfg["dataset"]
    if "id" not in ds:
        raise BenchmarkConfigError(f"{path}: dataset needs an 'id'")
    src = ds.get("source")
    if src is not None and (not isinstance(src, dict) or len(src) != 1
                            or next(iter(src)) not in ("phantom", "brats", "ct_pairs")):
        raise BenchmarkConfigError(f"{path}: dataset.source must be one of {{'phantom': {{...}}}}, "
                                   f"{{'brats': DIR}}, {{'ct_pairs': DIR}}, got {src!r}")
    blocks = stage1_blocks(cfg)
    names1 = [b["name"] for b in blocks]
    if len(set(names1)) != len(names1):
        raise BenchmarkConfigError(f"{path}: stage1 block names repeat: {names1}")
    for i, m in enumerate(cfg["methods"]):
        wanted = method_stage1(m, blocks)
        if wanted is _AMBIGUOUS:
            raise BenchmarkConfigError(f"{path}: methods[{i}] is 'pretrained' but the config has {len(blocks)} "
                                       f"stage1 blocks {names1}: name one with \"stage1\": NAME")
        if m.get("pretrained") and not blocks:
            raise BenchmarkConfigError(f"{path}: a method is 'pretrained' but there is no 'stage1' block")
        if (m.get("pretrained") or m.get("stage1")) and wanted is None:
            raise BenchmarkConfigError(f"{path}: methods[{i}] starts from stage1 {m.get('stage1')!r}, but the config's "
                                       f"stage1 blocks are {names1 or 'none'}")
    by_dataset: dict = {}
    for s1 in blocks:
        where = f"stage1 {s1['name']!r}" if isinstance(cfg.get("stage1"), list) else "stage1"
        if s1.get("checkpoint"):
            continue
        if not s1.get("trainer"):
            raise BenchmarkConfigError(f"{path}: {where} needs a 'trainer' or a 'checkpoint'")
        if bool(s1.get("images")) != bool(s1.get("dataset")):
            raise BenchmarkConfigError(f"{path}: {where} on another dataset needs both 'images' (folders) and "
                                       f"'dataset' ({{'id': ..., 'name': ...}})")
        if s1.get("images"):
            if not isinstance(s1["images"], list) or not s1["images"]:
                raise BenchmarkConfigError(f"{path}: {where}.images must be a list of folders")
            if "id" not in s1["dataset"] or int(s1["dataset"]["id"]) == int(ds["id"]):
                raise BenchmarkConfigError(f"{path}: {where}.dataset needs an 'id' other than dataset.id {ds['id']}")
            if not re.fullmatch(r"[A-Za-z0-9]*", s1["dataset"].get("name", "")):
                raise BenchmarkConfigError(f"{path}: {where}.dataset.name must be letters and digits, "
                                           f"got {s1['dataset']['name']!r}")
            # blocks that share a Stage-1 dataset share its images: it is made once
            key = int(s1["dataset"]["id"])
            seen = by_dataset.setdefault(key, (s1["images"], s1["dataset"].get("name")))
            if seen != (s1["images"], s1["dataset"].get("name")):
                raise BenchmarkConfigError(f"{path}: {where} uses stage1 dataset id {key} with other images or name "
                                           f"than another stage1 block; one id, one dataset")
    _check_pseudo_labels(cfg, path, names, blocks)
    # two methods training one trainer on one fold of one dataset would share (and overwrite) one results folder
    # the third item: True for a method with its own datasets (pseudo-labels, teach), the dataset id of a
    # scans method (methods may share one), None for this dataset
    runs = [(m["trainer"], str(m.get("fold", cfg.get("fold", 0))),
             True if (m.get("pseudo_labels") or m.get("teach")) else (m.get("scans") or {}).get("dataset", {}).get("id"))
            for m in cfg["methods"]]
    for i, run in enumerate(runs):
        if run in runs[:i] and run[2] is not True:
            raise BenchmarkConfigError(f"{path}: methods[{i}] {names[i]!r} trains {run[0]} on fold {run[1]} like "
                                       f"methods[{runs.index(run)}] {names[runs.index(run)]!r}: one results folder "
                                       f"for both; give one of them another trainer name")
    splits = cfg.get("nested_splits")
    if splits is not None:
        ok = (isinstance(splits, dict) and isinstance(splits.get("validation"), int) and splits["validation"] >= 1
              and isinstance(splits.get("train"), list) and splits["train"]
              and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in splits["train"]))
        if not ok:
            raise BenchmarkConfigError(f"{path}: nested_splits must be {{\"validation\": V, \"train\": [n0, n1, ...]}} "
                                       f"with positive integers, got {splits!r}")
        n_folds = len(splits["train"]) + (1 if splits.get("swapped") else 0)   # swapped: fold 0's halves exchanged
        for i, m in enumerate(cfg["methods"]):
            folds = [m["fold"]] if "fold" in m else []
            folds += list((m.get("teach") or {}).get("folds", []))
            for k in folds:
                if not (isinstance(k, int) and 0 <= k < n_folds):
                    raise BenchmarkConfigError(f"{path}: methods[{i}] fold {k!r} is not one of the {n_folds} "
                                               f"nested_splits folds")
    return cfg


def pseudo_label_dataset_ids(cfg: dict, method: dict, block: str = "pseudo_labels") -> Dict[Optional[int], int]:
    """seed -> the dataset id of a pseudo-label (or ``"teach"``) method's student: ``dataset.id`` + seed
    (unseeded: the id), so that each seed's teacher labels the scans into its own dataset, and a config
    listing fewer seeds finds the same ids."""
    first = int(method[block]["dataset"]["id"])
    return {seed: first + (seed or 0) for seed in (cfg.get("seeds") or [None])}


def _check_pseudo_labels(cfg: dict, path: str, names: List[str], blocks: List[dict]) -> None:
    """``"pseudo_labels": {"teacher": METHOD, "images": FOLDER, "dataset": {"id": ID, "name": NAME}}``: the
    teacher is an earlier method trained from labels alone, and each seed's student dataset gets an id that
    nothing else in the config uses."""
    used = {int(cfg["dataset"]["id"]): "dataset.id"}
    for s1 in blocks:
        if s1.get("images") and s1.get("dataset"):
            used.setdefault(int(s1["dataset"]["id"]), f"stage1 {s1['name']!r}")
    scans_ids: Dict[int, tuple] = {}
    for i, m in enumerate(cfg["methods"]):
        if m.get("teach") is not None:
            _check_teach(cfg, path, i, m, used, scans_ids)
        if m.get("scans") is not None:
            _check_scans(path, i, m, used, scans_ids)
        pl = m.get("pseudo_labels")
        if pl is None:
            continue
        where = f"{path}: methods[{i}] {m['name']!r} pseudo_labels"
        ok = (isinstance(pl, dict) and isinstance(pl.get("teacher"), str) and isinstance(pl.get("images"), str)
              and isinstance(pl.get("dataset"), dict) and isinstance(pl["dataset"].get("id"), int))
        if not ok:
            raise BenchmarkConfigError(f"{where} must be {{\"teacher\": METHOD, \"images\": FOLDER, \"dataset\": "
                                       f"{{\"id\": ID, \"name\": NAME}}}}, got {pl!r}")
        if pl["teacher"] not in names[:i]:
            raise BenchmarkConfigError(f"{where}: teacher {pl['teacher']!r} is not a method listed before it "
                                       f"({names[:i]})")
        teacher = cfg["methods"][names.index(pl["teacher"])]
        if teacher.get("pseudo_labels"):
            raise BenchmarkConfigError(f"{where}: teacher {pl['teacher']!r} trains on pseudo-labels itself")
        if not re.fullmatch(r"[A-Za-z0-9]+", pl["dataset"].get("name", "")):
            raise BenchmarkConfigError(f"{where}.dataset.name must be letters and digits, got "
                                       f"{pl['dataset'].get('name')!r}")
        _claim_student_ids(cfg, where, i, m, "pseudo_labels", used)


def _check_scans(path: str, i: int, m: dict, used: Dict[int, str], scans_ids: Dict[int, tuple],
                 block: Optional[dict] = None, where: Optional[str] = None) -> None:
    """``"scans": {"images": FOLDER, "dataset": {"id": ID, "name": NAME}}``: the labelled dataset plus the scans
    as unlabelled cases (one dataset for every seed; methods naming the same id share it, with the same
    images and name), for a trainer that learns from them (DANTETrainer_teach). ``block``/``where``: such a
    block elsewhere (a teach method's DANTE candidate)."""
    b = m["scans"] if block is None else block
    where = where or f"{path}: methods[{i}] {m['name']!r} scans"
    ok = (isinstance(b, dict) and isinstance(b.get("images"), str) and isinstance(b.get("dataset"), dict)
          and isinstance(b["dataset"].get("id"), int) and re.fullmatch(r"[A-Za-z0-9]+", str(b["dataset"].get("name", ""))))
    if not ok:
        raise BenchmarkConfigError(f"{where} must be {{\"images\": FOLDER, \"dataset\": {{\"id\": ID, \"name\": "
                                   f"LETTERS_AND_DIGITS}}}}, got {b!r}")
    if block is None and (m.get("pseudo_labels") or m.get("teach") or m.get("inputs", "limited") != "limited"):
        raise BenchmarkConfigError(f"{where}: a scans method takes no pseudo_labels, teach or all-channel inputs")
    did, same = int(b["dataset"]["id"]), (b["images"], b["dataset"]["name"])
    if did in scans_ids:
        if scans_ids[did] != same:
            raise BenchmarkConfigError(f"{where}: dataset id {did} is another scans method's with other images or name")
        return
    if not 0 < did < 1000 or did in used:
        raise BenchmarkConfigError(f"{where}: dataset id {did} is not free ({used.get(did, 'not in 1..999')})")
    used[did] = f"methods[{i}] {m['name']!r}"
    scans_ids[did] = same


def _claim_student_ids(cfg: dict, where: str, i: int, m: dict, block: str, used: Dict[int, str]) -> None:
    """The student dataset ids of method ``m``'s ``block`` (id + seed) are 1..999 and taken by nothing else."""
    ids = pseudo_label_dataset_ids(cfg, m, block=block)
    for did in ids.values():
        if not 0 < did < 1000:
            raise BenchmarkConfigError(f"{where}: dataset id {did} is not in 1..999")
        if did in used:
            raise BenchmarkConfigError(f"{where}: its student datasets take ids {sorted(ids.values())} (id + seed); "
                                       f"{did} is {used[did]}'s")
        used[did] = f"methods[{i}] {m['name']!r}"


def gate_rule(teach: dict):
    """The gate of a ``"teach"`` block: the default rule (jobs/gate.DEFAULT_RULE) with the block's
    ``gate_alpha``, ``run_noise`` (Dice points) or ``min_gain_se`` (the SE bar used before issue 47)."""
    from dante_nnunet.jobs.gate import rule_with
    return rule_with(teach.get("gate_alpha"), teach.get("run_noise"), teach.get("min_gain_se"))


def _check_teach(cfg: dict, path: str, i: int, m: dict, used: Dict[int, str], scans_ids: Dict[int, tuple]) -> None:
    """``"teach": {"teacher": TRAINER, "plain": TRAINER, "images": FOLDER, "dataset": {"id", "name"},
    "folds": [k, ...], "keep_fraction": f, "real_share": s, "unsure_band": b, "finetune": u, "rounds": [ID, ...],
    "deploy_all": ID, "gate_alpha": a, "run_noise": points, "min_gain_se": x, "dante_teach": {"trainer": TRAINER, "dataset": {"id",
    "name"}}}``
    (the gated recipe, jobs/teach.py; the method's ``trainer`` is the student's; ``dante_teach`` the optional
    DANTE candidate, whose dataset is a scans dataset of the same images, one for every seed, which a scans
    method may share): the folds include the method's fold (its test row), the ids are free."""
    t = m["teach"]
    where = f"{path}: methods[{i}] {m['name']!r} teach"
    ok = (isinstance(t, dict) and all(isinstance(t.get(k), str) for k in ("teacher", "plain", "images"))
          and isinstance(t.get("dataset"), dict) and isinstance(t["dataset"].get("id"), int)
          and isinstance(t.get("folds"), list) and t["folds"]
          and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in t["folds"]))
    if not ok:
        raise BenchmarkConfigError(f"{where} must be {{\"teacher\": TRAINER, \"plain\": TRAINER, \"images\": FOLDER, "
                                   f"\"dataset\": {{\"id\": ID, \"name\": NAME}}, \"folds\": [k, ...]}}, got {t!r}")
    if m.get("pseudo_labels") or m.get("stage1") or m.get("pretrained") or m.get("inputs", "limited") != "limited":
        raise BenchmarkConfigError(f"{where}: a teach method takes no pseudo_labels, stage1 or all-channel inputs")
    fold = int(m.get("fold", cfg.get("fold", 0)))
    if fold not in t["folds"]:
        raise BenchmarkConfigError(f"{where}: folds {t['folds']} must include the method's fold {fold} (its test row)")
    if not re.fullmatch(r"[A-Za-z0-9]+", t["dataset"].get("name", "")):
        raise BenchmarkConfigError(f"{where}.dataset.name must be letters and digits, got {t['dataset'].get('name')!r}")
    from dante_nnunet.jobs.teach import RECIPE_OPTIONS, option_out_of_range
    values = {k: t.get(k, 1.0 if k == "keep_fraction" else None) for k in RECIPE_OPTIONS}   # the job's defaults
    bad = option_out_of_range({k: None if v is None else float(v) for k, v in values.items()})
    if bad:
        raise BenchmarkConfigError(f"{where}.{bad[0]} {bad[1]}")
    rounds = t.get("rounds", [])
    if not (isinstance(rounds, list) and all(isinstance(r, int) and not isinstance(r, bool) for r in rounds)):
        raise BenchmarkConfigError(f"{where}.rounds must be a list of dataset ids (each + seed), got {rounds!r}")
    for j, rid in enumerate(rounds):   # each round's datasets take id + seed, as the student's
        _claim_student_ids(cfg, f"{where}.rounds[{j}]", i, {**m, "round": {"dataset": {"id": rid}}}, "round", used)
    dep = t.get("deploy_all")
    if dep is not None:   # the deployed student's dataset takes id + seed, as the student's
        if not isinstance(dep, int) or isinstance(dep, bool):
            raise BenchmarkConfigError(f"{where}.deploy_all must be a dataset id (+ seed), got {dep!r}")
        if t.get("finetune") is not None:
            raise BenchmarkConfigError(f"{where}: deploy_all with finetune is not built; leave one of them out")
    try:
        gate_rule(t)
    except (TypeError, ValueError) as e:
        raise BenchmarkConfigError(f"{where}: {e}") from None
    _claim_student_ids(cfg, where, i, m, "teach", used)
    if dep is not None:
        _claim_student_ids(cfg, f"{where}.deploy_all", i, {**m, "deploy": {"dataset": {"id": dep}}}, "deploy", used)
    dt = t.get("dante_teach")
    if dt is not None:
        if not (isinstance(dt, dict) and isinstance(dt.get("trainer"), str)):
            raise BenchmarkConfigError(f"{where}.dante_teach must be {{\"trainer\": TRAINER, \"dataset\": {{\"id\": ID, "
                                       f"\"name\": NAME}}}}, got {dt!r}")
        _check_scans(path, i, m, used, scans_ids, block={"images": t["images"], "dataset": dt.get("dataset")},
                     where=f"{where}.dante_teach")


_AMBIGUOUS = object()


def stage1_blocks(cfg: dict) -> List[dict]:
    """The config's Stage-1 pre-trainings as a list of blocks, each with a ``name``: ``"stage1"`` may be
    one block (named "stage1") or a list of named blocks."""
    s1 = cfg.get("stage1")
    if not s1:
        return []
    if isinstance(s1, dict):
        return [{"name": "stage1", **s1}]
    if not isinstance(s1, list) or not all(isinstance(b, dict) and b.get("name") for b in s1):
        raise BenchmarkConfigError(f"config {cfg.get('name')!r}: stage1 must be a block or a list of blocks each "
                                   f"with a 'name'")
    for b in s1:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", b["name"]):
            raise BenchmarkConfigError(f"config {cfg.get('name')!r}: stage1 name {b['name']!r} must be letters, "
                                       f"digits, '_' or '-'")
    return list(s1)


def method_stage1(method: dict, blocks: List[dict]):
    """The Stage-1 block a method starts from: the one its ``"stage1"`` names, the only one for
    ``"pretrained": true``; None for a method trained from scratch (or a name that matches no block)."""
    name = method.get("stage1")
    if name:
        return next((b for b in blocks if b["name"] == name), None)
    if method.get("pretrained"):
        if len(blocks) > 1:
            return _AMBIGUOUS
        return blocks[0] if blocks else None
    return None


def sweep_points(sweep_cfg: dict) -> List[dict]:
    """One lambda at a time around the trainer's defaults, as in Fig. 4: ``<trainer>_pib<l1>`` for each
    lambda1 and ``<trainer>_align<l2>`` for each lambda2."""
    base = sweep_cfg["trainer"]
    pts = [{"lambda": "lambda_pib", "value": float(v), "trainer": trainer_name(base, lambda_pib=v)}
           for v in sweep_cfg.get("lambda_pib", [])]
    pts += [{"lambda": "lambda_align", "value": float(v), "trainer": trainer_name(base, lambda_align=v)}
            for v in sweep_cfg.get("lambda_align", [])]
    if not pts:
        raise ValueError("the config's 'sweep' block lists no lambda_pib or lambda_align values")
    return pts
