"""The benchmark's config file (``configs/NAME.json``): read and checked before any work."""
from __future__ import annotations

import json
import re
from typing import List

from batchgenerators.utilities.file_and_folder_operations import isfile, load_json

from dante_nnunet.training.sweep import sweep_trainer_name


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
    if any(m.get("pretrained") for m in cfg["methods"]) and not cfg.get("stage1"):
        raise BenchmarkConfigError(f"{path}: a method is 'pretrained' but there is no 'stage1' block")
    s1 = cfg.get("stage1") or {}
    if s1 and not s1.get("checkpoint"):
        if not s1.get("trainer"):
            raise BenchmarkConfigError(f"{path}: stage1 needs a 'trainer' or a 'checkpoint'")
        if bool(s1.get("images")) != bool(s1.get("dataset")):
            raise BenchmarkConfigError(f"{path}: stage1 on another dataset needs both 'images' (folders) and "
                                       f"'dataset' ({{'id': ..., 'name': ...}})")
        if s1.get("images"):
            if not isinstance(s1["images"], list) or not s1["images"]:
                raise BenchmarkConfigError(f"{path}: stage1.images must be a list of folders")
            if "id" not in s1["dataset"] or int(s1["dataset"]["id"]) == int(ds["id"]):
                raise BenchmarkConfigError(f"{path}: stage1.dataset needs an 'id' other than dataset.id {ds['id']}")
            if not re.fullmatch(r"[A-Za-z0-9]*", s1["dataset"].get("name", "")):
                raise BenchmarkConfigError(f"{path}: stage1.dataset.name must be letters and digits, "
                                           f"got {s1['dataset']['name']!r}")
    return cfg


def sweep_points(sweep_cfg: dict) -> List[dict]:
    """One lambda at a time around the trainer's defaults, as in Fig. 4: ``<trainer>_pib<l1>`` for each
    lambda1 and ``<trainer>_align<l2>`` for each lambda2."""
    base = sweep_cfg["trainer"]
    pts = [{"lambda": "lambda_pib", "value": float(v), "trainer": sweep_trainer_name(base, lambda_pib=v)}
           for v in sweep_cfg.get("lambda_pib", [])]
    pts += [{"lambda": "lambda_align", "value": float(v), "trainer": sweep_trainer_name(base, lambda_align=v)}
            for v in sweep_cfg.get("lambda_align", [])]
    if not pts:
        raise ValueError("the config's 'sweep' block lists no lambda_pib or lambda_align values")
    return pts
