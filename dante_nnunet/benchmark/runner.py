"""One-command benchmark runs (``scripts/run_benchmark.py --config configs/NAME.json``): a Table-1-style
comparison of DANTE against the baselines through the stock nnU-Net commands.

Steps, each skipped on a rerun when its output is complete:

1. **data**: the raw dataset, made by ``phantom``, ``convert-brats`` or ``convert-ct-pairs`` (config
   ``dataset.source``) unless ``nnUNet_raw`` already holds the dataset id.
2. **plan**: ``nnUNetv2_plan_and_preprocess``, plus an optional extra configuration (other widths /
   patch size, same preprocessed data).
3. **split**: with a held-out test set in the raw folder (``imagesTs`` limited-only,
   ``imagesTs_allchannels``, ``labelsTs``: the phantoms) nnU-Net's own 5-fold split is used, or, with
   ``nested_splits``, folds that train on the first n0, n1, ... cases and validate on the same last V
   (a method's ``"fold"`` picks how many labelled cases it trains on);
   otherwise the paper's 70/10/20 split (seeded): ``splits_final.json`` gets one fold (fold 0,
   70% train / 10% validation) and the 20% test cases are copied out of ``imagesTr`` into
   ``results/NAME/test/`` (limited-only and all-channel inputs, labels). They are preprocessed with the
   rest, but never trained on or validated on.
4. **stage1** (optional, one block or a list of named blocks): ``DANTEPretrainTrainer*`` on the same
   dataset; or on another one made from unlabelled images (``stage1.images`` + ``stage1.dataset``:
   ``dante_nnunet pretrain-dataset``, this dataset's plans moved onto it so the encoders match,
   ``nnUNetv2_preprocess``; ``raw:SUB`` names a folder of this raw dataset, e.g. a phantom's
   ``imagesUnlabelled``); or a given checkpoint. A method names the block it starts from
   (``"stage1": NAME``; ``"pretrained": true`` with a single block); each block trains once per seed, just
   before the first method that needs it.
5. **pseudo-labels** (a method's ``"pseudo_labels": {"teacher": METHOD, "images": FOLDER, "dataset":
   {"id": ID, "name": NAME}}``): per seed, the teacher (an earlier method, e.g. the all-channel upper
   bound) predicts the scans of FOLDER, and ``dante_nnunet pseudo-label-dataset`` writes dataset ID + seed
   from the method's fold of labelled cases plus these scans, preprocessed with this dataset's
   plans; the method then trains on fold 0 of it (the fold's training cases + every scan, the same
   validation cases). A limited-channel teacher (the self-training control) reads copies of the scans with
   the limited channels only.
   A ``"teach"`` method runs the gated privileged-teacher recipe instead (``jobs/teach.py``: teacher, plain
   model and student on the block's folds, student dataset id + seed, the decision); its test row is the
   chosen model's fold ``fold``, its decision ``gate/<method>_seed<N>.json``.
6. **train**: each method's trainer (``nnUNetv2_train``), the DANTE-with-Stage-1 method with
   ``-pretrained_weights``; an interrupted training continues with ``--c``.
7. **predict**: ``nnUNetv2_predict`` on the limited-only test inputs (all-channel inputs for methods
   marked ``"inputs": "all"``: the upper bound); written to a temporary folder and renamed when done.
8. **evaluate**: ``dante_nnunet evaluate`` per method -> ``results/NAME/metrics/<method>.json``.
9. **report**: ``table.md`` (Dice / HD95 per region per method, and the gap DANTE closes,
   (DANTE - lower) / (upper - lower), per region where upper - lower >= ``GAP_MIN_DICE``),
   ``results.json``, ``dice_bars.png`` (Fig. 1 style).

``"seeds": [0, 1, 2]``: steps 4-8 run once per seed, with the trainers' ``_seed<N>`` names (own results
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

import os
import re
import shutil
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

from dante_nnunet.benchmark.config import (BenchmarkConfigError, gate_rule, load_config, method_stage1,
                                           pseudo_label_dataset_ids, stage1_blocks, sweep_points)
from dante_nnunet.benchmark import report as _report
from dante_nnunet.jobs.nnunet_jobs import (NNUNET_FOLDERS, PREPROCESSED_MARKER, add_configuration, copy_split_of,
                                           nnunet_environment, preprocess_with_plans_of, run_command, trainer_lookup)
from dante_nnunet.data.rawdata import dataset_folders
from dante_nnunet.trainer_names import TrainerNameError, finetuned_name, trainer_name


class Runner:
    def __init__(self, cfg: dict, out_root: str = "results", device: str = "cpu"):
        self.cfg = cfg
        self.out = os.path.abspath(join(out_root, cfg["name"]))
        self.logs = join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.device = device
        own = cfg.get("workdir") or not all(os.environ.get(k) for k in NNUNET_FOLDERS)
        self.env = nnunet_environment(join(self.out, "nnunet") if own else None)
        self.times: Dict[str, float] = {}
        self.fold = str(cfg.get("fold", 0))
        self.configuration = cfg["configuration"]
        self.seeds: List[Optional[int]] = list(cfg.get("seeds") or [None])   # None: one unseeded run

    @staticmethod
    def seeded(trainer: str, seed: Optional[int]) -> str:
        """The trainer name of one seed's run (``<trainer>_seed<N>``; unchanged for None)."""
        return trainer if seed is None else trainer_name(trainer, seed=seed)

    @staticmethod
    def seed_suffix(seed: Optional[int]) -> str:
        return "" if seed is None else f"_seed{seed}"

    # -- helpers
    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def run(self, key: str, cmd: List[str], env: Optional[dict] = None) -> None:
        """Run a command (``nnunet_jobs.run_command``), its whole output appended to logs/<key>.log."""
        self.log(key)
        result = run_command(cmd, env or self.env, join(self.logs, f"{key}.log"), append=True)
        self.times[key] = round(result.seconds, 1)

    @property
    def dataset_id(self) -> int:
        return int(self.cfg["dataset"]["id"])

    @property
    def stage1_blocks(self) -> List[dict]:
        """The Stage-1 pre-trainings that some method starts from, in config order."""
        used = {id(method_stage1(m, stage1_blocks(self.cfg))) for m in self.cfg["methods"]}
        return [b for b in stage1_blocks(self.cfg) if id(b) in used]

    def stage1_block(self, block: Optional[dict] = None) -> Optional[dict]:
        """``block`` itself, or by default the config's first (for a single one) Stage-1 block; None without."""
        return block if block is not None else (stage1_blocks(self.cfg) or [None])[0]

    @staticmethod
    def stage1_where(block: dict) -> str:
        """How messages name a block: ``stage1`` (a single block) or ``stage1['NAME']``."""
        return "stage1" if block["name"] == "stage1" else f"stage1[{block['name']!r}]"

    def check_stage1_images(self, block: dict, skip_raw: bool = False) -> None:
        """Each image folder of ``block`` exists (``skip_raw``: leave ``raw:`` folders unchecked)."""
        for d, given in zip(self.stage1_images(block), block.get("images", [])):
            if skip_raw and given.startswith("raw:"):
                continue
            if not isdir(d):
                raise BenchmarkConfigError(f"config {self.cfg['name']!r}: {self.stage1_where(block)}.images folder "
                                           f"{d} does not exist")

    def stage1_dataset_id(self, block: Optional[dict] = None) -> int:
        """Where a Stage-1 block trains: its own dataset when it pre-trains on other images, else this one."""
        s1 = self.stage1_block(block) or {}
        return int(s1["dataset"]["id"]) if s1.get("images") else self.dataset_id

    def stage1_images(self, block: dict) -> List[str]:
        """A block's image folders (``resolve_folder``)."""
        return [self.resolve_folder(d) for d in block.get("images", [])]

    def method_fold(self, method: dict) -> str:
        return str(method.get("fold", self.fold))

    def raw_folder(self, dataset_id: Optional[int] = None) -> Optional[str]:
        hits = dataset_folders(self.env["nnUNet_raw"], self.dataset_id if dataset_id is None else dataset_id)
        return hits[0] if hits else None

    def results_folder(self, trainer: str, dataset_id: Optional[int] = None) -> str:
        """nnU-Net's results folder of ``trainer`` on this dataset (or ``dataset_id``), plans and configuration."""
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
                   + (["--shape"] + [str(n) for n in arg["shape"]] if arg.get("shape") else [])
                   + (["--missing-privileged", str(arg["missing_privileged"])] if arg.get("missing_privileged") else [])
                   + (["--num-unlabelled", str(arg["num_unlabelled"])] if arg.get("num_unlabelled") else []),
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
        if isfile(join(pre, PREPROCESSED_MARKER)):   # written after a successful plan_and_preprocess
            self.log("plan: preprocessed data exists, skipped")
        elif self._needs_privileged_statistics():
            # placeholders of cases without the privileged scan must not enter CT normalisation's statistics
            d = str(self.dataset_id)
            self.run("fingerprint", ["nnUNetv2_extract_fingerprint", "-d", d, "-np", "1", "--verify_dataset_integrity"])
            self.run("fingerprint_privileged", ["dante_nnunet", "fingerprint", "-d", d])
            self.run("plan", ["nnUNetv2_plan_experiment", "-d", d] + [str(a) for a in self.cfg.get("plan_args", [])])
            self.run("preprocess", ["nnUNetv2_preprocess", "-d", d, "-c", base, "-np", "1"])
            open(join(pre, PREPROCESSED_MARKER), "w").close()
        else:
            self.run("plan", ["nnUNetv2_plan_and_preprocess", "-d", str(self.dataset_id), "-c", base, "-np", "1",
                              "-npfp", "1", "--verify_dataset_integrity"]
                     + [str(a) for a in self.cfg.get("plan_args", [])])
            open(join(pre, PREPROCESSED_MARKER), "w").close()
        extra = self.cfg.get("add_configuration")
        if extra:
            add_configuration(plans, extra["name"], base=base, features_per_stage=extra.get("features_per_stage"),
                              patch_size=extra.get("patch_size"))

    def _needs_privileged_statistics(self) -> bool:
        """The dataset lists cases without the privileged scan and a privileged channel is named CT (nnU-Net's
        CT normalisation uses dataset-wide statistics; z-scoring is per image)."""
        from dante_nnunet.config import ChannelSplit, cases_without_privileged
        dj_file = join(self.raw_folder(), "dataset.json")
        dj = load_json(dj_file)
        split = ChannelSplit.from_dataset_json(dj, dj_file)
        return bool(cases_without_privileged(dj, dj_file)) and any(n.casefold() == "ct" for n in split.privileged_names)

    # -- 3 split and test set
    def step_split(self) -> dict:
        raw = self.raw_folder()
        if all(isdir(join(raw, d)) for d in ("imagesTs", "imagesTs_allchannels", "labelsTs")):
            if self.cfg.get("nested_splits"):
                self.write_nested_splits()
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

    def write_nested_splits(self) -> None:
        """``nested_splits`` {"validation": V, "train": [n0, n1, ...]}: splits_final.json whose fold i trains
        on the first n_i training cases (sorted by name) and every fold validates on the same last V cases,
        so that methods given other folds differ only in how many labelled cases they train on. An existing
        file must hold exactly these folds."""
        spec = self.cfg["nested_splits"]
        raw = self.raw_folder()
        dj = load_json(join(raw, "dataset.json"))
        ending = dj["file_ending"]
        cases = sorted(f[:-len(ending)] for f in os.listdir(join(raw, "labelsTr")) if f.endswith(ending))
        v, sizes = spec["validation"], spec["train"]
        if max(sizes) + v > len(cases):
            raise BenchmarkConfigError(f"config {self.cfg['name']!r}: nested_splits asks for {max(sizes)} training + "
                                       f"{v} validation cases; {join(raw, 'labelsTr')} has {len(cases)}")
        train, val = cases[:len(cases) - v], cases[len(cases) - v:]
        folds = [{"train": train[:n], "val": list(val)} for n in sizes]
        if spec.get("swapped"):   # one more fold: fold 0's two halves exchanged (a 2-fold cross-validation with fold 0)
            folds.append({"train": list(val), "val": train[:sizes[0]]})
        splits_file = join(self.env["nnUNet_preprocessed"], os.path.basename(raw), "splits_final.json")
        if isfile(splits_file):
            if load_json(splits_file) != folds:
                raise FileExistsError(f"{splits_file} holds other folds than the config's nested_splits {spec}; "
                                      f"remove it (and the results trained on it) to use the config's")
            return
        save_json(folds, splits_file)
        self.log(f"split: nested folds training on {sizes} cases, validating on the same {v}")

    # -- 4 Stage 1
    def stage1_checkpoint(self, seed: Optional[int] = None, block: Optional[dict] = None) -> Optional[str]:
        """The Stage-1 checkpoint of ``block`` (default: the config's only one) that a method of this seed
        starts from (a given checkpoint serves every seed)."""
        s1 = self.stage1_block(block)
        if not s1:
            return None
        if s1.get("checkpoint"):
            path = os.path.expanduser(s1["checkpoint"])
            if not isfile(path):
                raise BenchmarkConfigError(f"config {self.cfg['name']!r}: {self.stage1_where(s1)}.checkpoint {path} "
                                           f"does not exist")
            return path
        return join(self.results_folder(self.seeded(s1["trainer"], seed), self.stage1_dataset_id(s1)),
                    f"fold_{s1.get('fold', self.fold)}", "checkpoint_final.pth")

    def check_inputs(self) -> None:
        """Inputs the config names outside nnU-Net's folders exist (before any work; ``raw:`` folders
        once the raw dataset exists)."""
        for s1 in self.stage1_blocks:
            if s1.get("checkpoint"):
                self.stage1_checkpoint(block=s1)   # must exist before hours go into the other methods
            if s1.get("images") and self.raw_folder(self.stage1_dataset_id(s1)) is None:
                self.check_stage1_images(s1, skip_raw=self.raw_folder() is None)
        for m in self.cfg["methods"]:
            given = (m.get("pseudo_labels") or m.get("teach") or m.get("scans") or {}).get("images")
            if given and not (given.startswith("raw:") and self.raw_folder() is None) \
                    and not isdir(self.resolve_folder(given)):
                raise BenchmarkConfigError(f"config {self.cfg['name']!r}: methods {m['name']!r} "
                                           f"{next(b for b in ('teach', 'scans', 'pseudo_labels') if m.get(b))}.images "
                                           f"folder {self.resolve_folder(given)} does not exist")

    def train(self, key: str, trainer: str, extra: Optional[List[str]] = None,
              dataset_id: Optional[int] = None, fold: Optional[str] = None) -> None:
        did = self.dataset_id if dataset_id is None else dataset_id
        fold = self.fold if fold is None else str(fold)
        fold_dir = join(self.results_folder(trainer, did), f"fold_{fold}")
        if isfile(join(fold_dir, "checkpoint_final.pth")):
            self.log(f"{key}: {trainer} is trained, skipped")
            return
        cont = ["--c"] if isfile(join(fold_dir, "checkpoint_latest.pth")) else []
        self.run(key, ["nnUNetv2_train", str(did), self.configuration, fold, "-tr", trainer,
                       "-device", self.device] + (cont or extra or []))

    def step_stage1(self, seed: Optional[int] = None, block: Optional[dict] = None) -> None:
        s1 = self.stage1_block(block)
        if not s1 or s1.get("checkpoint"):
            return
        if s1.get("images"):
            self.prepare_stage1_dataset(s1)
        key = "stage1" if s1["name"] == "stage1" else f"stage1_{s1['name']}"
        self.train(f"{key}{self.seed_suffix(seed)}", self.seeded(s1["trainer"], seed),
                   dataset_id=self.stage1_dataset_id(s1), fold=s1.get("fold", self.fold))

    def prepare_stage1_dataset(self, s1: dict) -> None:
        """The README's Stage-1 recipe: unlabelled images -> raw dataset (channels and dante block like
        this dataset's) -> fingerprint -> this dataset's plans (with the added configuration) moved onto it,
        so that E_L/E_A/E_P get the same shapes -> preprocessed with them. Blocks that share a Stage-1
        dataset id make it once."""
        did = self.stage1_dataset_id(s1)
        if self.raw_folder(did) is None:
            self.check_stage1_images(s1)
            images = self.stage1_images(s1)
            name = s1["dataset"].get("name") or re.sub(r"[^A-Za-z0-9]", "", self.cfg["name"]) + "Pre"
            self.run("stage1_data", ["dante_nnunet", "pretrain-dataset"] + images
                     + ["-d", str(did), "-n", name, "--like", join(self.raw_folder(), "dataset.json")])
        else:
            self.log(f"stage1_data: {self.raw_folder(did)} exists, skipped")
        self.preprocess_with_these_plans(did, "stage1")

    def preprocess_with_these_plans(self, did: int, key: str) -> None:
        """Dataset ``did`` preprocessed with this dataset's plans (its added configuration included), so that
        networks trained on either have the same shapes (``nnunet_jobs.preprocess_with_plans_of``). Skipped
        when done before."""
        if not preprocess_with_plans_of(self.dataset_id, did, self.env, self.run,
                                        self.cfg.get("base_configuration", "3d_fullres"), key):
            self.log(f"{key}_plan: preprocessed data exists, skipped")

    # -- pseudo-labels (a method's "pseudo_labels" block)
    def step_pseudo_labels(self, method: dict, seed: Optional[int]) -> None:
        """The student dataset of a pseudo-label method for one seed (id + seed). The teacher (an earlier
        method, trained already) predicts the scans of ``images`` (``nnUNetv2_predict``; a limited-channel
        teacher reads copies with only the limited channels) -> ``dante_nnunet pseudo-label-dataset``: the
        method's fold of labelled cases plus the predicted scans, fold 0 = that fold's training cases + every
        scan, the same validation cases -> preprocessed with this dataset's plans. Each step is skipped when
        done."""
        pl = method["pseudo_labels"]
        did = pseudo_label_dataset_ids(self.cfg, method)[seed]
        key = self.method_key(method) + self.seed_suffix(seed)
        if self.raw_folder(did) is None:
            teacher = next(m for m in self.cfg["methods"] if m["name"] == pl["teacher"])
            images = self.resolve_folder(pl["images"])
            labels = join(self.out, "pseudo_labels", key)
            if isdir(labels):
                self.log(f"pseudo_{key}: {labels} exists, skipped")
            else:
                inputs = images
                if teacher.get("inputs", "limited") == "limited":
                    inputs = join(self.out, "pseudo_labels",
                                  "limited_" + re.sub(r"[^A-Za-z0-9]+", "_", pl["images"]).strip("_"))
                    if not isdir(inputs):
                        from dante_nnunet.data.pseudo_label_dataset import limited_channel_copies
                        limited_channel_copies(images, inputs, join(self.raw_folder(), "dataset.json"))
                self.predict(f"pseudo_{key}", inputs, labels, self.dataset_id, self.seeded(teacher["trainer"], seed),
                             self.method_fold(teacher))
            name = pl["dataset"].get("name") + ("" if seed is None else str(seed))
            self.run(f"pseudo_data_{key}", ["dante_nnunet", "pseudo-label-dataset", "-s", str(self.dataset_id),
                                            "--images", images, "--labels", labels, "-d", str(did), "-n", name,
                                            "--fold", self.method_fold(method)])
        else:
            self.log(f"pseudo_data_{key}: {self.raw_folder(did)} exists, skipped")
        self.preprocess_with_these_plans(did, f"pseudo_{key}")

    # -- unlabelled cases in the labelled dataset (a method's "scans" block; DANTETrainer_teach)
    def step_scans(self, method: dict, test: Optional[dict] = None) -> int:
        """The dataset of a ``"scans"`` method: this dataset's cases plus the scans as unlabelled cases
        (``data/unlabelled_cases.py``, what ``dante_nnunet add-scans`` writes; one dataset for every seed: it
        holds no model's output), preprocessed with this dataset's plans, with this dataset's
        splits_final.json (the same folds). Each step skipped when done; returns its id."""
        from dante_nnunet.data.unlabelled_cases import write_dataset_with_scans
        block = method["scans"]
        did = int(block["dataset"]["id"])
        key = "scans_" + self.method_key(method)
        if self.raw_folder(did) is None:
            tests = [test["limited"]] if test and isdir(test.get("limited", "")) else []
            folder = write_dataset_with_scans(self.raw_folder(), self.resolve_folder(block["images"]),
                                              self.env["nnUNet_raw"], f"Dataset{did:03d}_{block['dataset']['name']}",
                                              test_dirs=tests)
            self.log(f"{key}: wrote {folder}")
        else:
            self.log(f"{key}: {self.raw_folder(did)} exists, skipped")
        self.preprocess_with_these_plans(did, key)
        copy_split_of(self.dataset_id, did, self.env)
        return did

    def resolve_folder(self, given: str) -> str:
        """A folder the config names; ``raw:SUB`` is the folder SUB of this dataset's raw folder (a phantom's
        ``imagesUnlabelled``), left as given while that folder does not exist yet."""
        if given.startswith("raw:"):
            raw = self.raw_folder()
            given = join(raw, given[4:]) if raw is not None else given
        # $nnUNet_raw/... in a config: the folder of the environment the run drives nnU-Net in
        given = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), m.group(0)), given)
        return os.path.expanduser(given)

    def predict(self, key: str, inputs: str, out: str, dataset_id: int, trainer: str, fold: str) -> None:
        """``nnUNetv2_predict`` into ``out``.tmp, renamed to ``out`` when done; skipped when ``out`` exists."""
        if isdir(out):
            self.log(f"{key}: {out} exists, skipped")
            return
        tmp = out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.run(key, ["nnUNetv2_predict", "-i", inputs, "-o", tmp, "-d", str(dataset_id), "-c", self.configuration,
                       "-tr", trainer, "-f", *str(fold).split(), "-device", self.device]
                 + [str(a) for a in self.cfg.get("predict_args", [])])
        os.rename(tmp, out)

    # -- 6-8 methods
    def method_key(self, method: dict) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", method["name"]).strip("_")

    def step_method(self, method: dict, test: dict, seed: Optional[int] = None) -> dict:
        """Train, predict and evaluate one method (one seed's run); returns its metrics."""
        key = self.method_key(method) + self.seed_suffix(seed)
        trainer = self.seeded(method["trainer"], seed)
        block = method_stage1(method, stage1_blocks(self.cfg))
        extra = ["-pretrained_weights", self.stage1_checkpoint(seed, block)] if block is not None else None
        if method.get("teach"):
            return self.step_gated(method, test, seed, key)
        did, fold = self.method_run(method, seed)
        if method.get("pseudo_labels"):
            self.step_pseudo_labels(method, seed)
        if method.get("scans"):
            self.step_scans(method, test)
        self.train(f"train_{key}", trainer, extra, dataset_id=did, fold=fold)
        return self.predict_and_evaluate(key, test, test[method.get("inputs", "limited")], did, trainer, fold)

    def predict_and_evaluate(self, key: str, test: dict, inputs: str, did: int, trainer: str, fold: str) -> dict:
        """predictions/KEY and metrics/KEY.json of one trained model on the test cases (each kept once made)."""
        pred = join(self.out, "predictions", key)
        self.predict(f"predict_{key}", inputs, pred, did, trainer, fold)
        metrics_file = join(self.out, "metrics", f"{key}.json")
        if not isfile(metrics_file):
            from dante_nnunet.jobs.evaluation import evaluate_folders
            os.makedirs(join(self.out, "metrics"), exist_ok=True)
            save_json(evaluate_folders(test["labels"], pred, load_json(join(self.raw_folder(), "dataset.json"))),
                      metrics_file)
        return load_json(metrics_file)

    def step_gated(self, method: dict, test: dict, seed: Optional[int], key: str) -> dict:
        """A ``"teach"`` method's row: the recipe, then every candidate's fold ``method fold`` on the test cases
        (KEY_plain, KEY_student, KEY_dante_teach with a DANTE candidate), so that the gate's choice can be
        checked against the test set; the row is the chosen one's, with the gate's numbers and every
        candidate's test means under ``gate``, and ``gate.deployed`` the test means of what decision.json
        deploys (the chosen model's fold ensemble). The row is rebuilt on every run: a rerun with another
        rule decides again."""
        gate = self.step_teach(method, seed, test)
        t, fold = method["teach"], self.method_fold(method)
        student_id = pseudo_label_dataset_ids(self.cfg, method, block="teach")[seed]
        candidates = {"plain": (self.dataset_id, self.seeded(t["plain"], seed)),
                      "student": (student_id, self.seeded(method["trainer"], seed))}
        if t.get("finetune") is not None:   # the student is each fold's student fine-tuned on the labelled dataset
            candidates["student"] = (self.dataset_id, finetuned_name(self.seeded(method["trainer"], seed), t["finetune"]))
        dt = t.get("dante_teach")
        if dt:
            candidates["dante_teach"] = (int(dt["dataset"]["id"]), self.seeded(dt["trainer"], seed))
        rows = {role: self.predict_and_evaluate(f"{key}_{role}", test, test["limited"], did, trainer, fold)
                for role, (did, trainer) in candidates.items()}
        chosen = gate["model"]                      # what decision.json deploys: dataset, trainer, folds
        role = [r for r, run in candidates.items() if run == (int(chosen["dataset"]), chosen["trainer"])]
        if len(role) != 1 or role[0] != gate["chosen"]:
            raise RuntimeError(f"{key}: the decision's model {chosen} is not its chosen candidate "
                               f"{gate['chosen']!r} of {candidates}")
        m = dict(rows[role[0]])
        m["gate"] = {k: gate[k] for k in ("chosen", "reason", "regions", "overall", "teacher", "model")}
        # the deployed model: the chosen one's fold ensemble, as decision.json's predict command runs it, or
        # with deploy_all the deployed student (the fold ensemble then under fold_ensemble)
        folds = " ".join(str(f) for f in chosen["folds"])
        ensemble = self.predict_and_evaluate(f"{key}_deployed_{role[0]}", test, test["limited"],
                                             int(chosen["dataset"]), chosen["trainer"], folds)
        m["gate"]["deployed"] = {"folds": list(chosen["folds"]), "mean": ensemble["mean"]}
        if gate.get("deploy"):
            dep = gate["deploy"]
            deployed = self.predict_and_evaluate(f"{key}_deployed_all", test, test["limited"], int(dep["dataset"]),
                                                 dep["trainer"], " ".join(str(f) for f in dep["folds"]))
            m["gate"]["fold_ensemble"] = m["gate"]["deployed"]
            m["gate"]["deployed"] = {"folds": list(dep["folds"]), "dataset": int(dep["dataset"]),
                                     "mean": deployed["mean"]}
        if gate.get("candidates"):   # each candidate's comparison with the plain model
            m["gate"]["candidates"] = {n: {k: c[k] for k in ("passed", "reason", "regions", "overall")}
                                       for n, c in gate["candidates"].items()}
        m["gate"]["test"] = {role: row["mean"] for role, row in rows.items()}
        save_json(m, join(self.out, "metrics", f"{key}.json"))
        return m

    def step_teach(self, method: dict, seed: Optional[int], test: Optional[dict] = None) -> dict:
        """A ``"teach"`` method (the gated privileged-teacher recipe, jobs/teach.py) for one seed: teacher, plain
        model and student on the block's folds of this dataset (seeded names), the student dataset id + seed;
        returns the decision. The test set is then predicted by the chosen model's fold ``method fold`` (the
        folds the lower bound trains on), so that its row pairs with the lower bound's on equal labelled
        cases."""
        from dante_nnunet.jobs.teach import Teach, TeachSettings
        t = method["teach"]
        dt = t.get("dante_teach") or {}
        did = pseudo_label_dataset_ids(self.cfg, method, block="teach")[seed]
        settings = TeachSettings(
            source=self.dataset_id, scans=self.resolve_folder(t["images"]), student_id=did,
            student_name=t["dataset"]["name"] + ("" if seed is None else str(seed)), configuration=self.configuration,
            folds=[int(k) for k in t["folds"]], teacher=self.seeded(t["teacher"], seed),
            plain=self.seeded(t["plain"], seed), student=self.seeded(method["trainer"], seed),
            keep_fraction=float(t.get("keep_fraction", 1.0)), device=self.device,
            real_share=None if t.get("real_share") is None else float(t["real_share"]),
            unsure_band=None if t.get("unsure_band") is None else float(t["unsure_band"]),
            finetune=None if t.get("finetune") is None else float(t["finetune"]),
            rounds=[int(r) + (seed or 0) for r in t.get("rounds", [])],
            deploy_all=None if t.get("deploy_all") is None else int(t["deploy_all"]) + (seed or 0),
            predict_args=[str(a) for a in self.cfg.get("predict_args", [])],
            rule=gate_rule(t),
            dante_teach=self.seeded(dt["trainer"], seed) if dt else None,
            dante_teach_id=int(dt["dataset"]["id"]) if dt else None,
            dante_teach_name=dt["dataset"]["name"] if dt else None,
            test_dirs=[test["limited"]] if test and isdir(test["limited"]) else [])   # no scan may be a test case
        key = self.method_key(method) + self.seed_suffix(seed)
        job = Teach(settings, self.env, log_prefix=f"{key}: ")
        decision = job.run()
        if job.seconds:   # a rerun that skipped every step keeps the first run's time
            self.times[f"teach_{key}"] = round(sum(job.seconds.values()), 1)
        os.makedirs(join(self.out, "gate"), exist_ok=True)
        save_json(decision, join(self.out, "gate", f"{key}.json"))
        return decision

    def method_run(self, method: dict, seed: Optional[int]) -> Tuple[int, str]:
        """(dataset id, fold) a method trains on: this dataset and the method's fold, or for a pseudo-label
        method fold 0 of its student dataset (id + seed)."""
        if method.get("pseudo_labels"):
            return pseudo_label_dataset_ids(self.cfg, method)[seed], "0"
        if method.get("scans"):
            return int(method["scans"]["dataset"]["id"]), self.method_fold(method)
        return self.dataset_id, self.method_fold(method)

    def check_trainers(self, sweep: bool) -> None:
        """Every trainer name of the config resolves to a class nnUNetv2_train will find (before any work)."""
        names = [(f"methods {m['name']!r}", self.seeded(m["trainer"], seed)) for m in self.cfg["methods"]
                 for seed in self.seeds]
        names += [(f"methods {m['name']!r} teach.{role}", self.seeded(m["teach"][role], seed))
                  for m in self.cfg["methods"] if m.get("teach") for role in ("teacher", "plain") for seed in self.seeds]
        names += [(f"methods {m['name']!r} teach.dante_teach", self.seeded(m["teach"]["dante_teach"]["trainer"], seed))
                  for m in self.cfg["methods"] if (m.get("teach") or {}).get("dante_teach") for seed in self.seeds]
        for s1 in self.stage1_blocks:
            if not s1.get("checkpoint"):
                names += [(f"stage1 {s1['name']!r}", self.seeded(s1.get("trainer", ""), seed)) for seed in self.seeds]
        if sweep:
            names += [("sweep", p["trainer"]) for p in sweep_points(self.cfg.get("sweep") or {"trainer": ""})]
        with trainer_lookup(self.env) as find:
            for where, name in names:
                try:
                    find(name)
                except RuntimeError:
                    raise BenchmarkConfigError(f"config {self.cfg['name']!r}, {where}: no trainer class {name!r} "
                                               f"(see 'Trainer names' in the README)") from None
                except TrainerNameError as e:
                    raise BenchmarkConfigError(f"config {self.cfg['name']!r}, {where}: no trainer class {name!r}: "
                                               f"{e}") from None

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
        self.check_inputs()   # again: raw: image folders exist now
        for seed in self.seeds:
            for m in self.cfg["methods"]:
                block = method_stage1(m, stage1_blocks(self.cfg))
                if block is not None:   # each pre-training once per seed, just before its first method
                    self.step_stage1(seed, block)
                metrics[m["name"]][seed] = self.step_method(m, test, seed)
        results = self.report(metrics)
        if sweep:
            self.run_sweep(test)
        if tsne:
            self.tsne()
        self.log(f"finished in {time.time() - t0:.0f} s; {join(self.out, 'table.md')}")
        return results

    def report_so_far(self, earlier: Optional[str] = None) -> dict:
        """results.json / table.md from the metrics written so far (a run still going or stopped): each method
        with the seeds it has finished, a ``partial`` entry listing them; the lower bound must have one.

        ``earlier``: a results.json of this config written elsewhere (another machine, a results folder since
        removed). A method's seed that has no metrics here takes that file's ``per_seed`` entry (a run's mean
        test Dice and HD95 per region, all the report uses); runs here take precedence. The result lists what
        came from it under ``earlier_runs``. The file must name this config and each method's trainer."""
        metrics: Dict[str, Dict[Optional[int], dict]] = {}
        for m in self.cfg["methods"]:
            metrics[m["name"]] = {}
            for seed in self.seeds:
                f = join(self.out, "metrics", f"{self.method_key(m)}{self.seed_suffix(seed)}.json")
                if isfile(f):
                    metrics[m["name"]][seed] = load_json(f)
        taken: Dict[str, List[str]] = {}
        if earlier is not None:
            old = load_json(earlier)
            if old.get("name") != self.cfg["name"] or not old.get("seeds"):
                raise BenchmarkConfigError(f"{earlier} is the seeded results.json of config {old.get('name')!r}, "
                                           f"not of {self.cfg['name']!r}")
            for m in self.cfg["methods"]:
                entry = old["methods"].get(m["name"])
                if entry is None:
                    continue
                if entry.get("trainer") != m["trainer"] or str(entry.get("fold", self.fold)) != self.method_fold(m):
                    raise BenchmarkConfigError(
                        f"{earlier}: method {m['name']!r} ran {entry.get('trainer')!r} on fold "
                        f"{entry.get('fold', self.fold)}, the config has {m['trainer']!r} on fold {self.method_fold(m)}")
                for seed in self.seeds:
                    if seed not in metrics[m["name"]] and str(seed) in entry.get("per_seed", {}):
                        metrics[m["name"]][seed] = {"mean": entry["per_seed"][str(seed)]}
                        taken.setdefault(m["name"], []).append(str(seed))
        if not metrics[self.cfg["lower"]]:
            raise FileNotFoundError(f"no finished run of the lower bound {self.cfg['lower']!r} in {self.out}/metrics")
        results = self.report(metrics, partial={n: [str(s) for s in sorted(runs)] for n, runs in metrics.items()},
                              earlier=(earlier, taken) if earlier is not None else None)
        self.log(f"report of the runs so far: {join(self.out, 'table.md')}")
        return results

    def _all_times(self) -> Dict[str, float]:
        """This run's step times over those of earlier runs (a rerun that skips a step keeps its time)."""
        old = join(self.out, "results.json")
        times = dict(load_json(old).get("seconds", {})) if isfile(old) else {}
        times.update(self.times)
        return times

    # -- optional figures
    def run_sweep(self, test: dict) -> List[dict]:
        """Fig. 4: each sweep point trained, predicted and evaluated like a method; sweep.json/.md/.png."""
        sw = self.cfg.get("sweep")
        if not sw:
            raise BenchmarkConfigError(f"config {self.cfg['name']!r} has no 'sweep' block")
        rows = [{**p, "mean": self.step_method({"name": f"sweep {p['trainer']}", "trainer": p["trainer"]},
                                               test)["mean"]} for p in sweep_points(sw)]
        _report.sweep_report(rows, self.out)
        return rows

    def tsne(self, num_cases: int = 4) -> str:
        """Fig. 5: Z_L, Z_A, Z_P of the trained DANTE model (the first seed's) -> tsne.png."""
        from dante_nnunet.benchmark.features import encoder_feature_rows
        method = next(m for m in self.cfg["methods"] if m["name"] == self.cfg["dante"])
        trainer = self.seeded(method["trainer"], self.seeds[0])
        did, fold = self.method_run(method, self.seeds[0])
        ck_file = join(self.results_folder(trainer, did), f"fold_{fold}", "checkpoint_final.pth")
        if not isfile(ck_file):
            raise FileNotFoundError(f"t-SNE needs the trained DANTE model: {ck_file} does not exist")
        pre = join(self.env["nnUNet_preprocessed"], os.path.basename(self.raw_folder()))
        rows = encoder_feature_rows(ck_file, pre, self.configuration, num_cases)
        out = _report.tsne_figure(rows, self.out, num_cases=len(next(iter(rows.values()))))
        self.log(f"t-SNE: {out}")
        return out

    # -- 8 report
    def report(self, metrics: Dict[str, Dict[Optional[int], dict]], partial: Optional[dict] = None,
               earlier: Optional[tuple] = None) -> dict:
        """``metrics[method][seed]`` is one run's ``dante_nnunet evaluate`` output; ``earlier``: (file, method
        -> seeds taken from it) of ``report_so_far``."""
        from dante_nnunet.jobs.evaluation import regions_from_dataset_json
        regions = list(regions_from_dataset_json(load_json(join(self.raw_folder(), "dataset.json"))))  # BraTS order
        results = _report.build_results(self.cfg, self.seeds, regions, metrics, self.dataset_id, self._all_times())
        if partial is not None:
            results["partial"] = partial
        if earlier is not None:
            results["earlier_runs"] = {"file": os.path.abspath(earlier[0]), "runs": earlier[1]}
        _report.write_report(results, self.out)
        return results


def select(cfg: dict, methods: Optional[List[str]] = None, seeds: Optional[List[int]] = None) -> dict:
    """The config reduced to ``methods`` (plus the lower bound and the teachers of pseudo-label methods among
    them, in config order) and ``seeds``; unknown names and seeds are refused."""
    cfg = dict(cfg)
    if methods:
        names = [m["name"] for m in cfg["methods"]]
        unknown = [n for n in methods if n not in names]
        if unknown:
            raise BenchmarkConfigError(f"config {cfg['name']!r} has no method(s) {unknown}; it has {names}")
        keep = set(methods) | {cfg["lower"]}
        keep |= {m["pseudo_labels"]["teacher"] for m in cfg["methods"] if m["name"] in keep and m.get("pseudo_labels")}
        cfg["methods"] = [m for m in cfg["methods"] if m["name"] in keep]
    if seeds:
        bad = [x for x in seeds if x not in (cfg.get("seeds") or [])]
        if bad:
            raise BenchmarkConfigError(f"config {cfg['name']!r} has seeds {cfg.get('seeds')}; not {bad}")
        cfg["seeds"] = [x for x in cfg["seeds"] if x in seeds]
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="One-command DANTE benchmark (see dante_nnunet/benchmark/runner.py).")
    p.add_argument("--config", required=True, help="configs/NAME.json")
    p.add_argument("--results", default="results", help="output root; the run writes RESULTS/NAME/")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    p.add_argument("--sweep", action="store_true", help="also run the lambda1/lambda2 sweep (Fig. 4)")
    p.add_argument("--tsne", action="store_true", help="also draw the t-SNE of Z_L, Z_A, Z_P (Fig. 5)")
    p.add_argument("--report-so-far", action="store_true",
                   help="train nothing: write table.md / results.json from the runs finished so far (marked partial)")
    p.add_argument("--earlier", default=None, metavar="RESULTS_JSON",
                   help="with --report-so-far: take the runs missing here from this results.json of the same config")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help="run only these methods (with the lower bound and any pseudo-label teacher they need)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="run only these of the config's seeds")
    a = p.parse_args(argv)
    if a.earlier and not a.report_so_far:
        p.error("--earlier goes with --report-so-far")
    cfg = select(load_config(a.config), a.methods, a.seeds)
    runner = Runner(cfg, a.results, a.device)
    if a.report_so_far:
        runner.report_so_far(a.earlier)
    else:
        runner.run_all(sweep=a.sweep, tsne=a.tsne)
    return 0
