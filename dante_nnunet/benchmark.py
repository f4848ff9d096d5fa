"""One-command benchmark runs (``scripts/run_benchmark.py --config configs/NAME.json``): a Table-1-style
comparison of DANTE against the baselines through the stock nnU-Net commands.

Steps, each skipped on a rerun when its output is complete:

1. **data**: the raw dataset, made by ``phantom``, ``convert-brats`` or ``convert-ct-pairs`` (config
   ``dataset.source``) unless ``nnUNet_raw`` already holds the dataset id.
2. **plan**: ``nnUNetv2_plan_and_preprocess``, plus an optional extra configuration (other widths /
   patch size, same preprocessed data).
3. **split**: with a held-out test set in the raw folder (``imagesTs`` limited-only,
   ``imagesTs_allchannels``, ``labelsTs``: the phantoms) nnU-Net's own 5-fold split is used;
   otherwise the paper's 70/10/20 split (seeded): ``splits_final.json`` gets one fold (fold 0,
   70% train / 10% validation) and the 20% test cases are copied out of ``imagesTr`` into
   ``results/NAME/test/`` (limited-only and all-channel inputs, labels). They are preprocessed with the
   rest, but never trained on or validated on.
4. **stage1** (optional): ``DANTEPretrainTrainer*`` on the same dataset; or on another one made from
   unlabelled images (``stage1.images`` + ``stage1.dataset``: ``dante_nnunet pretrain-dataset``, this
   dataset's plans moved onto it so the encoders match, ``nnUNetv2_preprocess``); or a given checkpoint.
5. **train**: each method's trainer (``nnUNetv2_train``), the DANTE-with-Stage-1 method with
   ``-pretrained_weights``; an interrupted training continues with ``--c``.
6. **predict**: ``nnUNetv2_predict`` on the limited-only test inputs (all-channel inputs for methods
   marked ``"inputs": "all"``: the upper bound); written to a temporary folder and renamed when done.
7. **evaluate**: ``dante_nnunet evaluate`` per method -> ``results/NAME/metrics/<method>.json``.
8. **report**: ``table.md`` (Dice / HD95 per region per method, and the gap DANTE closes,
   (DANTE - lower) / (upper - lower), per region where upper - lower >= ``GAP_MIN_DICE``),
   ``results.json``, ``dice_bars.png`` (Fig. 1 style).

``"seeds": [0, 1, 2]``: steps 4-7 run once per seed, with the trainers' ``_seed<N>`` names (own results
folders; training/seeding.py), Stage 1 included. ``results.json`` then holds, per method, ``per_seed``
(seed -> region -> the run's mean test Dice and HD95), ``mean`` (region -> mean over seeds, ``dice_std`` /
``hd95_std`` the SD over seeds) and ``vs_lower`` (region -> the paired difference to the lower bound over
seeds: mean, standard error, n); ``paired`` is the DANTE method's. Without ``seeds`` each method trains
once, unseeded, and ``dice_std`` is the SD over test cases.

``--sweep``: lambda1 / lambda2 grids (Fig. 4), one at a time around the defaults, as trainer names
(``<trainer>_pib<l1>`` / ``<trainer>_align<l2>``); writes ``sweep.md`` and ``sweep.png``.
``--tsne``: a t-SNE of Z_L, Z_A, Z_P (deepest level) of the trained DANTE model on the centre patch of
the first preprocessed cases (Fig. 5): ``tsne.png``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

from dante_nnunet.demo import add_configuration, ext_trainer_value
from dante_nnunet.rawdata import dataset_folders
from dante_nnunet.training.sweep import sweep_trainer_name

BIN = os.path.dirname(sys.executable)
_PROGRESS = re.compile(r"(Epoch \d+|Pseudo dice|train_loss|val_loss|Validation Dice|Predicting|done with)")


# the gap closure (DANTE - lower) / (upper - lower) is reported only where upper - lower is at least this
GAP_MIN_DICE = 0.02


class BenchmarkConfigError(ValueError):
    """A benchmark config that cannot run; the message names the file and key."""


# ------------------------------------------------------------------------------------------ config
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


# ------------------------------------------------------------------------------------------ running
class Runner:
    def __init__(self, cfg: dict, out_root: str = "results", device: str = "cpu"):
        self.cfg = cfg
        self.out = os.path.abspath(join(out_root, cfg["name"]))
        self.logs = join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.device = device
        env = dict(os.environ)
        if cfg.get("workdir") or not all(env.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")):
            work = join(self.out, "nnunet")
            for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
                env[k] = join(work, k)
                os.makedirs(env[k], exist_ok=True)
        env["nnUNet_extTrainer"] = ext_trainer_value(env.get("nnUNet_extTrainer"))
        env["PYTHONUNBUFFERED"] = "1"   # progress lines as they come
        env.setdefault("nnUNet_n_proc_DA", "1")
        env.setdefault("nnUNet_def_n_proc", "1")
        self.env = env
        self.times: Dict[str, float] = {}
        self.fold = str(cfg.get("fold", 0))
        self.configuration = cfg["configuration"]
        self.seeds: List[Optional[int]] = list(cfg.get("seeds") or [None])   # None: one unseeded run

    @staticmethod
    def seeded(trainer: str, seed: Optional[int]) -> str:
        """The trainer name of one seed's run (``<trainer>_seed<N>``; unchanged for None)."""
        return trainer if seed is None else sweep_trainer_name(trainer, seed=seed)

    @staticmethod
    def seed_suffix(seed: Optional[int]) -> str:
        return "" if seed is None else f"_seed{seed}"

    # -- helpers
    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def run(self, key: str, cmd: List[str], env: Optional[dict] = None) -> None:
        """Run a command, its whole output into logs/<key>.log, progress lines to the console."""
        t0 = time.time()
        log = join(self.logs, f"{key}.log")
        self.log(f"{key}: {' '.join(cmd)}")
        with open(log, "a") as fh:
            p = subprocess.Popen([join(BIN, cmd[0])] + cmd[1:], env=env or self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in p.stdout:
                fh.write(line)
                if _PROGRESS.search(line):
                    print(f"    {line.rstrip()[:150]}", flush=True)
            rc = p.wait()
        if rc != 0:
            with open(log) as fh:
                tail = fh.read()[-3000:]
            raise RuntimeError(f"{key} failed (exit {rc}): {' '.join(cmd)}\n--- end of {log} ---\n{tail}")
        self.times[key] = round(time.time() - t0, 1)

    @property
    def dataset_id(self) -> int:
        return int(self.cfg["dataset"]["id"])

    @property
    def stage1_dataset_id(self) -> int:
        """Where Stage 1 trains: its own dataset when it pre-trains on other images, else this one."""
        s1 = self.cfg.get("stage1") or {}
        return int(s1["dataset"]["id"]) if s1.get("images") else self.dataset_id

    def raw_folder(self, dataset_id: Optional[int] = None) -> Optional[str]:
        hits = dataset_folders(self.env["nnUNet_raw"], self.dataset_id if dataset_id is None else dataset_id)
        return hits[0] if hits else None

    def results_folder(self, trainer: str, dataset_id: Optional[int] = None) -> str:
        name = os.path.basename(self.raw_folder(dataset_id))
        return join(self.env["nnUNet_results"], name, f"{trainer}__nnUNetPlans__{self.configuration}")

    # -- 1 data
    def step_data(self) -> None:
        if self.raw_folder() is not None:
            self.log(f"data: {self.raw_folder()} exists, skipped")
            return
        src = self.cfg["dataset"].get("source")
        if src is None:
            raise FileNotFoundError(f"dataset {self.dataset_id} is not in {self.env['nnUNet_raw']} and the config "
                                    f"gives no 'source' to make it")
        kind, arg = next(iter(src.items()))
        name = self.cfg["dataset"].get("name")
        cmd = {"phantom": lambda: ["dante_nnunet", "phantom", "--kind", arg.get("kind", "brats"),
                                   "--num-train", str(arg.get("num_train", 24)), "--num-test",
                                   str(arg.get("num_test", 8)), "--seed", str(arg.get("seed", 0))]
                   + (["--shape"] + [str(n) for n in arg["shape"]] if arg.get("shape") else []),
               "brats": lambda: ["dante_nnunet", "convert-brats", os.path.expanduser(arg)],
               "ct_pairs": lambda: ["dante_nnunet", "convert-ct-pairs", os.path.expanduser(arg)]}[kind]()
        cmd += ["-d", str(self.dataset_id)] + (["--name", name] if name else [])
        self.run("data", cmd)

    # -- 2 plan
    def step_plan(self) -> None:
        name = os.path.basename(self.raw_folder())
        pre = join(self.env["nnUNet_preprocessed"], name)
        plans = join(pre, "nnUNetPlans.json")
        base = self.cfg.get("base_configuration", "3d_fullres")
        if isfile(join(pre, ".dante_preprocessed")):   # written after a successful plan_and_preprocess
            self.log("plan: preprocessed data exists, skipped")
        else:
            self.run("plan", ["nnUNetv2_plan_and_preprocess", "-d", str(self.dataset_id), "-c", base, "-np", "1",
                              "--verify_dataset_integrity"] + [str(a) for a in self.cfg.get("plan_args", [])])
            open(join(pre, ".dante_preprocessed"), "w").close()
        extra = self.cfg.get("add_configuration")
        if extra:
            add_configuration(plans, extra["name"], base=base, features_per_stage=extra.get("features_per_stage"),
                              patch_size=extra.get("patch_size"))

    # -- 3 split and test set
    def step_split(self) -> dict:
        raw = self.raw_folder()
        if all(isdir(join(raw, d)) for d in ("imagesTs", "imagesTs_allchannels", "labelsTs")):
            return {"limited": join(raw, "imagesTs"), "all": join(raw, "imagesTs_allchannels"),
                    "labels": join(raw, "labelsTs")}
        test_root = join(self.out, "test")
        info = {"limited": join(test_root, "imagesTs"), "all": join(test_root, "imagesTs_allchannels"),
                "labels": join(test_root, "labelsTs")}
        name = os.path.basename(raw)
        splits_file = join(self.env["nnUNet_preprocessed"], name, "splits_final.json")
        if isdir(test_root) and isfile(splits_file):
            self.log("split: test set and splits_final.json exist, skipped")
            return info
        dj = load_json(join(raw, "dataset.json"))
        from dante_nnunet.config import ChannelSplit
        split = ChannelSplit.from_dataset_json(dj, join(raw, "dataset.json"))
        ending = dj["file_ending"]
        cases = sorted(f[:-len(ending)] for f in os.listdir(join(raw, "labelsTr")) if f.endswith(ending))
        rng = np.random.default_rng(int(self.cfg.get("split_seed", 12345)))
        order = [cases[i] for i in rng.permutation(len(cases))]
        fr = self.cfg.get("split", [0.7, 0.1, 0.2])
        n_test = max(1, int(round(fr[2] * len(cases))))
        n_val = max(1, int(round(fr[1] * len(cases))))
        test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
        if len(train) < 2:
            raise ValueError(f"{raw}: {len(cases)} cases are too few for a {fr} split")
        tmp = test_root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for d in ("imagesTs", "imagesTs_allchannels", "labelsTs"):
            os.makedirs(join(tmp, d))
        for c in test:
            for ch in range(split.num_channels):
                shutil.copyfile(join(raw, "imagesTr", f"{c}_{ch:04d}{ending}"),
                                join(tmp, "imagesTs_allchannels", f"{c}_{ch:04d}{ending}"))
            for new, ch in enumerate(split.limited_indices):
                shutil.copyfile(join(raw, "imagesTr", f"{c}_{ch:04d}{ending}"),
                                join(tmp, "imagesTs", f"{c}_{new:04d}{ending}"))
            shutil.copyfile(join(raw, "labelsTr", c + ending), join(tmp, "labelsTs", c + ending))
        if isfile(splits_file):
            raise FileExistsError(f"{splits_file} exists but the test set {test_root} does not; remove one of them "
                                  f"so that train, validation and test are drawn together")
        save_json([{"train": sorted(train), "val": sorted(val)}], splits_file)
        shutil.rmtree(test_root, ignore_errors=True)
        os.rename(tmp, test_root)
        save_json({"train": sorted(train), "val": sorted(val), "test": sorted(test)}, join(self.out, "split.json"))
        self.log(f"split: {len(train)} train / {len(val)} validation / {len(test)} test cases")
        return info

    # -- 4 Stage 1
    def stage1_checkpoint(self, seed: Optional[int] = None) -> Optional[str]:
        """The Stage-1 checkpoint a pretrained method of this seed starts from (a given checkpoint serves
        every seed)."""
        s1 = self.cfg.get("stage1")
        if not s1:
            return None
        if s1.get("checkpoint"):
            path = os.path.expanduser(s1["checkpoint"])
            if not isfile(path):
                raise BenchmarkConfigError(f"config {self.cfg['name']!r}: stage1.checkpoint {path} does not exist")
            return path
        return join(self.results_folder(self.seeded(s1["trainer"], seed), self.stage1_dataset_id),
                    f"fold_{self.fold}", "checkpoint_final.pth")

    def check_inputs(self) -> None:
        """Inputs the config names outside nnU-Net's folders exist (before any work)."""
        s1 = self.cfg.get("stage1") or {}
        if s1.get("checkpoint"):
            self.stage1_checkpoint()   # a given checkpoint must exist before hours go into the other methods
        if s1.get("images") and self.raw_folder(self.stage1_dataset_id) is None:
            for d in s1["images"]:
                if not isdir(os.path.expanduser(d)):
                    raise BenchmarkConfigError(f"config {self.cfg['name']!r}: stage1.images folder {d} does not exist")

    def train(self, key: str, trainer: str, extra: Optional[List[str]] = None,
              dataset_id: Optional[int] = None) -> None:
        did = self.dataset_id if dataset_id is None else dataset_id
        fold_dir = join(self.results_folder(trainer, did), f"fold_{self.fold}")
        if isfile(join(fold_dir, "checkpoint_final.pth")):
            self.log(f"{key}: {trainer} is trained, skipped")
            return
        cont = ["--c"] if isfile(join(fold_dir, "checkpoint_latest.pth")) else []
        self.run(key, ["nnUNetv2_train", str(did), self.configuration, self.fold, "-tr", trainer,
                       "-device", self.device] + (cont or extra or []))

    def step_stage1(self, seed: Optional[int] = None) -> None:
        s1 = self.cfg.get("stage1")
        if not s1 or s1.get("checkpoint"):
            return
        if s1.get("images"):
            self.prepare_stage1_dataset(s1)
        self.train(f"stage1{self.seed_suffix(seed)}", self.seeded(s1["trainer"], seed),
                   dataset_id=self.stage1_dataset_id)

    def prepare_stage1_dataset(self, s1: dict) -> None:
        """The README's Stage-1 recipe: unlabelled images -> raw dataset (channels and dante block like
        this dataset's) -> fingerprint -> this dataset's plans (with the added configuration) moved onto it,
        so that E_L/E_A/E_P get the same shapes -> preprocessed with them."""
        did = self.stage1_dataset_id
        if self.raw_folder(did) is None:
            name = s1["dataset"].get("name") or re.sub(r"[^A-Za-z0-9]", "", self.cfg["name"]) + "Pre"
            self.run("stage1_data", ["dante_nnunet", "pretrain-dataset"]
                     + [os.path.expanduser(d) for d in s1["images"]]
                     + ["-d", str(did), "-n", name, "--like", join(self.raw_folder(), "dataset.json")])
        else:
            self.log(f"stage1_data: {self.raw_folder(did)} exists, skipped")
        pre = join(self.env["nnUNet_preprocessed"], os.path.basename(self.raw_folder(did)))
        if isfile(join(pre, ".dante_preprocessed")):
            self.log("stage1_plan: preprocessed data exists, skipped")
            return
        base = self.cfg.get("base_configuration", "3d_fullres")
        self.run("stage1_fingerprint", ["nnUNetv2_extract_fingerprint", "-d", str(did), "-np", "1"])
        self.run("stage1_plans", ["nnUNetv2_move_plans_between_datasets", "-s", str(self.dataset_id), "-t", str(did),
                                  "-sp", "nnUNetPlans", "-tp", "nnUNetPlans"])
        # nnUNetv2_preprocess reads dataset.json from nnUNet_preprocessed (nnU-Net issue #2560)
        shutil.copyfile(join(self.raw_folder(did), "dataset.json"), join(pre, "dataset.json"))
        self.run("stage1_preprocess", ["nnUNetv2_preprocess", "-d", str(did), "-plans_name", "nnUNetPlans",
                                       "-c", base, "-np", "1"])
        open(join(pre, ".dante_preprocessed"), "w").close()

    # -- 5-7 methods
    def method_key(self, method: dict) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", method["name"]).strip("_")

    def step_method(self, method: dict, test: dict, seed: Optional[int] = None) -> dict:
        """Train, predict and evaluate one method (one seed's run); returns its metrics."""
        key = self.method_key(method) + self.seed_suffix(seed)
        trainer = self.seeded(method["trainer"], seed)
        extra = ["-pretrained_weights", self.stage1_checkpoint(seed)] if method.get("pretrained") else None
        self.train(f"train_{key}", trainer, extra)
        pred = join(self.out, "predictions", key)
        if isdir(pred):
            self.log(f"predict_{key}: {pred} exists, skipped")
        else:
            tmp = pred + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.run(f"predict_{key}", ["nnUNetv2_predict", "-i", test[method.get("inputs", "limited")], "-o", tmp,
                                        "-d", str(self.dataset_id), "-c", self.configuration, "-tr", trainer,
                                        "-f", self.fold, "-device", self.device]
                     + [str(a) for a in self.cfg.get("predict_args", [])])
            os.rename(tmp, pred)
        metrics_file = join(self.out, "metrics", f"{key}.json")
        if not isfile(metrics_file):
            from dante_nnunet.evaluation import evaluate_folders
            os.makedirs(join(self.out, "metrics"), exist_ok=True)
            m = evaluate_folders(test["labels"], pred, load_json(join(self.raw_folder(), "dataset.json")))
            save_json(m, metrics_file)
        return load_json(metrics_file)

    def check_trainers(self, sweep: bool) -> None:
        """Every trainer name of the config resolves to a class nnUNetv2_train will find (before any work)."""
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        names = [(f"methods {m['name']!r}", self.seeded(m["trainer"], seed)) for m in self.cfg["methods"]
                 for seed in self.seeds]
        s1 = self.cfg.get("stage1") or {}
        if s1 and not s1.get("checkpoint"):
            names += [("stage1", self.seeded(s1.get("trainer", ""), seed)) for seed in self.seeds]
        if sweep:
            from dante_nnunet.benchmark_figures import sweep_points
            names += [("sweep", p["trainer"]) for p in sweep_points(self.cfg.get("sweep") or {"trainer": ""})]
        old = os.environ.get("nnUNet_extTrainer")
        os.environ["nnUNet_extTrainer"] = self.env["nnUNet_extTrainer"]
        try:
            for where, name in names:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net narrates its search
                        recursive_find_trainer_class_by_name(name)
                except RuntimeError:
                    raise BenchmarkConfigError(f"config {self.cfg['name']!r}, {where}: no trainer class {name!r} "
                                               f"(see the README's trainers table)") from None
        finally:
            if old is None:
                os.environ.pop("nnUNet_extTrainer")
            else:
                os.environ["nnUNet_extTrainer"] = old

    # -- everything
    def run_all(self, sweep: bool = False, tsne: bool = False) -> dict:
        t0 = time.time()
        if sweep and not self.cfg.get("sweep"):
            raise BenchmarkConfigError(f"config {self.cfg['name']!r} has no 'sweep' block")
        if tsne and "dante" not in self.cfg:
            raise BenchmarkConfigError(f"config {self.cfg['name']!r} names no 'dante' method for the t-SNE")
        self.check_trainers(sweep)
        self.check_inputs()
        self.step_data()
        self.step_plan()
        test = self.step_split()
        metrics: Dict[str, Dict[Optional[int], dict]] = {m["name"]: {} for m in self.cfg["methods"]}
        for seed in self.seeds:
            if any(m.get("pretrained") for m in self.cfg["methods"]):
                self.step_stage1(seed)
            for m in self.cfg["methods"]:
                metrics[m["name"]][seed] = self.step_method(m, test, seed)
        results = self.report(metrics)
        if sweep:
            from dante_nnunet.benchmark_figures import run_sweep
            run_sweep(self, test)
        if tsne:
            from dante_nnunet.benchmark_figures import tsne_figure
            tsne_figure(self)
        self.log(f"finished in {time.time() - t0:.0f} s; {join(self.out, 'table.md')}")
        return results

    def _all_times(self) -> Dict[str, float]:
        """This run's step times over those of earlier runs (a rerun that skips a step keeps its time)."""
        old = join(self.out, "results.json")
        times = dict(load_json(old).get("seconds", {})) if isfile(old) else {}
        times.update(self.times)
        return times

    # -- 8 report
    def report(self, metrics: Dict[str, Dict[Optional[int], dict]]) -> dict:
        """``metrics[method][seed]`` is one run's ``dante_nnunet evaluate`` output."""
        from dante_nnunet.evaluation import regions_from_dataset_json
        regions = list(regions_from_dataset_json(load_json(join(self.raw_folder(), "dataset.json"))))  # BraTS order
        seeded = self.seeds != [None]
        methods = {}
        for m in self.cfg["methods"]:
            runs = metrics[m["name"]]
            entry = {"trainer": m["trainer"], "inputs": m.get("inputs", "limited")}
            if seeded:
                entry.update(summarize_seeds({str(seed): runs[seed]["mean"] for seed in self.seeds}, regions))
            else:
                entry["mean"] = runs[None]["mean"]
            methods[m["name"]] = entry
        if seeded:
            lower = methods[self.cfg["lower"]]["per_seed"]
            for name, entry in methods.items():
                if name != self.cfg["lower"] and entry["inputs"] == "limited":
                    entry["vs_lower"] = paired_difference(entry["per_seed"], lower, regions)
        gap = None
        if "upper" in self.cfg and "dante" in self.cfg:
            lo, up, da = (methods[self.cfg[k]]["mean"] for k in ("lower", "upper", "dante"))
            gap = {}
            for r in regions:   # undefined where the privileged channels add (almost) nothing: n/a
                d = up[r]["dice"] - lo[r]["dice"]
                gap[r] = (da[r]["dice"] - lo[r]["dice"]) / d if d >= GAP_MIN_DICE else None
        results = {"name": self.cfg["name"], "dataset_id": self.dataset_id, "configuration": self.configuration,
                   "fold": self.fold, "regions": regions, "seeds": self.seeds if seeded else None,
                   "methods": methods, "gap_closure": gap, "seconds": self._all_times()}
        if seeded:
            results["paired"] = methods[self.cfg["dante"]].get("vs_lower") if "dante" in self.cfg else None
            results["lower"] = self.cfg["lower"]
        save_json(results, join(self.out, "results.json"))
        with open(join(self.out, "table.md"), "w") as fh:
            fh.write(results_table(results))
        bar_chart(results, join(self.out, "dice_bars.png"))
        return results


def summarize_seeds(per_seed: Dict[str, dict], regions: List[str]) -> dict:
    """``per_seed[seed][region]`` (one run's test-case means) -> ``{"per_seed": seed -> region -> {dice, hd95},
    "mean": region -> {dice, hd95: means over seeds; dice_std, hd95_std: SDs over seeds (n - 1; 0 for one
    seed)}}``."""
    out = {"per_seed": {s: {r: {"dice": m[r]["dice"], "hd95": m[r]["hd95"]} for r in regions}
                        for s, m in per_seed.items()}, "mean": {}}
    for r in regions:
        row = {}
        for k in ("dice", "hd95"):
            v = np.array([m[r][k] for m in per_seed.values()], dtype=float)
            row[k] = float(v.mean())
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out["mean"][r] = row
    return out


def paired_difference(a: Dict[str, dict], b: Dict[str, dict], regions: List[str]) -> dict:
    """Per region, the Dice difference a - b over the seeds both ran (paired by seed): mean, its standard
    error (SD / sqrt(n), None for one seed) and n."""
    seeds = [s for s in a if s in b]
    out = {}
    for r in regions:
        d = np.array([a[s][r]["dice"] - b[s][r]["dice"] for s in seeds], dtype=float)
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
        out[r] = {"mean": float(d.mean()), "se": se, "n": len(d)}
    return out


def results_table(results: dict) -> str:
    regions = results["regions"]
    head = "| Method | inputs at test | " + " | ".join(f"{r} Dice | {r} HD95 (mm)" for r in regions) + " |\n"
    head += "| --- | --- |" + " --- | --- |" * len(regions) + "\n"
    rows = []
    for name, m in results["methods"].items():
        cells = [f"{m['mean'][r]['dice'] * 100:.1f} ± {m['mean'][r]['dice_std'] * 100:.1f} | "
                 f"{m['mean'][r]['hd95']:.2f}" for r in regions]
        rows.append(f"| {name} (`{m['trainer']}`) | {m['inputs']} | " + " | ".join(cells) + " |")
    if results["gap_closure"] is not None:
        gap = " | ".join(("n/a" if g is None else f"{g * 100:.0f}%") + " | -" for g in
                         (results["gap_closure"][r] for r in regions))
        rows.append(f"| gap closed by DANTE: (DANTE - lower) / (upper - lower), Dice | | {gap} |")
    seeds = results.get("seeds")
    spread = (f"mean ± SD over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) of each run's mean over "
              f"the test cases" if seeds else "mean ± SD over test cases")
    text = head + "\n".join(rows) + (f"\n\nDice in %, {spread}; HD95 mean in mm. The gap closure is n/a where the "
                                     f"upper bound is less than {GAP_MIN_DICE * 100:.0f} Dice points above the lower "
                                     f"bound.\n")
    paired = {n: m["vs_lower"] for n, m in results["methods"].items() if "vs_lower" in m}
    if paired:
        text += (f"\nPaired difference to the lower bound ({results['lower']}), Dice points: mean ± standard error "
                 f"over the {len(seeds)} seeds (each seed's run minus the lower bound's run of the same seed).\n\n")
        text += "| Method | " + " | ".join(f"{r}" for r in regions) + " |\n| --- |" + " --- |" * len(regions) + "\n"
        for name, d in paired.items():
            cells = [f"{d[r]['mean'] * 100:+.1f} ± {d[r]['se'] * 100:.1f}" if d[r]["se"] is not None
                     else f"{d[r]['mean'] * 100:+.1f}" for r in regions]
            text += f"| {name} | " + " | ".join(cells) + " |\n"
    return text


def bar_chart(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    regions, methods = results["regions"], list(results["methods"])
    fig, ax = plt.subplots(figsize=(3.5 + 1.3 * len(regions) * max(1, len(methods)) / 3, 3.6))
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        vals = [results["methods"][name]["mean"][r]["dice"] * 100 for r in regions]
        err = [results["methods"][name]["mean"][r]["dice_std"] * 100 for r in regions] if results.get("seeds") \
            else None   # SD over seeds; an SD over test cases would not be comparable between methods
        ax.bar(np.arange(len(regions)) + i * width, vals, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(np.arange(len(regions)) + 0.4 - width / 2)
    ax.set_xticklabels(regions)
    ax.set_ylabel("Dice (%)")
    ax.set_title(f"{results['name']}: test Dice")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="One-command DANTE benchmark (see dante_nnunet/benchmark.py).")
    p.add_argument("--config", required=True, help="configs/NAME.json")
    p.add_argument("--results", default="results", help="output root; the run writes RESULTS/NAME/")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    p.add_argument("--sweep", action="store_true", help="also run the lambda1/lambda2 sweep (Fig. 4)")
    p.add_argument("--tsne", action="store_true", help="also draw the t-SNE of Z_L, Z_A, Z_P (Fig. 5)")
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    Runner(cfg, a.results, a.device).run_all(sweep=a.sweep, tsne=a.tsne)
    return 0
