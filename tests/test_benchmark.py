"""The benchmark runner: config checks, the table's gap closure by hand, the 70/10/20 split, and a
tiny config end to end through the stock commands (phantom -> plan -> Stage 1 -> eight methods, two of
them students of pseudo-labelled scans -> limited-only prediction -> evaluation -> table -> t-SNE), then a rerun that skips every finished step; the
sweep step on its own."""
import filecmp
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.support import TEST_TRAINERS
from dante_nnunet.benchmark import (BenchmarkConfigError, Runner, load_config, paired_difference, results_table,
                                    summarize_seeds)
from dante_nnunet.data.phantom import write_phantom

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(tmp_path, **over):
    cfg = {"name": "t", "dataset": {"id": 701}, "configuration": "3d_fullres",
           "methods": [{"name": "low", "trainer": "LowerBoundTrainer"}, {"name": "up", "trainer": "UpperBoundTrainer"},
                       {"name": "dante", "trainer": "DANTETrainer"}],
           "lower": "low", "upper": "up", "dante": "dante"}
    cfg.update(over)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.slow   # plans a phantom
def test_config_errors_name_file_and_key(tmp_path):
    load_config(_cfg(tmp_path))
    with pytest.raises(BenchmarkConfigError, match=r"c\.json: 'upper' is 'nope'"):
        load_config(_cfg(tmp_path, upper="nope"))
    with pytest.raises(BenchmarkConfigError, match=r"c\.json: missing key\(s\) \['methods'"):
        load_config(_cfg_without(tmp_path, "methods"))
    with pytest.raises(BenchmarkConfigError, match="dataset.source must be one of"):
        load_config(_cfg(tmp_path, dataset={"id": 1, "source": {"mri": "/x"}}))
    with pytest.raises(BenchmarkConfigError, match="'pretrained' but there is no 'stage1'"):
        load_config(_cfg(tmp_path, methods=[{"name": "low", "trainer": "A"}, {"name": "up", "trainer": "B"},
                                            {"name": "dante", "trainer": "C", "pretrained": True}]))
    with pytest.raises(BenchmarkConfigError, match="needs both 'images'"):
        load_config(_cfg(tmp_path, stage1={"trainer": "DANTEPretrainTrainer", "images": ["/x"]}))
    with pytest.raises(BenchmarkConfigError, match="stage1.dataset.name must be letters and digits"):
        load_config(_cfg(tmp_path, stage1={"trainer": "T", "images": ["/x"], "dataset": {"id": 9, "name": "a_b"}}))
    with pytest.raises(BenchmarkConfigError, match="needs an 'id' other than dataset.id 701"):
        load_config(_cfg(tmp_path, stage1={"trainer": "T", "images": ["/x"], "dataset": {"id": 701}}))
    # several Stage-1 blocks: named, each method naming the one it starts from; one dataset id, one set of images
    blocks = [{"name": "cm", "trainer": "T", "images": ["raw:imagesUnlabelled"], "dataset": {"id": 9, "name": "P"}},
              {"name": "lim", "trainer": "U", "images": ["raw:imagesUnlabelled"], "dataset": {"id": 9, "name": "P"}}]
    two = [{"name": "low", "trainer": "A"}, {"name": "up", "trainer": "B"}, {"name": "dante", "trainer": "C",
                                                                              "stage1": "cm"}]
    load_config(_cfg(tmp_path, stage1=blocks, methods=two))
    with pytest.raises(BenchmarkConfigError, match=r"methods\[2\] is 'pretrained' but the config has 2 stage1 blocks"):
        load_config(_cfg(tmp_path, stage1=blocks, methods=two[:2] + [{"name": "dante", "trainer": "C",
                                                                       "pretrained": True}]))
    with pytest.raises(BenchmarkConfigError, match=r"methods\[2\] starts from stage1 'nope'"):
        load_config(_cfg(tmp_path, stage1=blocks, methods=two[:2] + [{"name": "dante", "trainer": "C",
                                                                       "stage1": "nope"}]))
    with pytest.raises(BenchmarkConfigError, match="stage1 block names repeat"):
        load_config(_cfg(tmp_path, stage1=[blocks[0], blocks[0]], methods=two))
    with pytest.raises(BenchmarkConfigError, match="uses stage1 dataset id 9 with other images"):
        load_config(_cfg(tmp_path, stage1=[blocks[0], {**blocks[1], "images": ["/other"]}], methods=two))
    with pytest.raises(BenchmarkConfigError, match="each with a 'name'"):
        load_config(_cfg(tmp_path, stage1=[{"trainer": "T"}], methods=two))
    for bad in ({"validation": 0, "train": [2]}, {"validation": 1, "train": []}, {"train": [2]}, [2, 8]):
        with pytest.raises(BenchmarkConfigError, match="nested_splits must be"):
            load_config(_cfg(tmp_path, nested_splits=bad))
    with pytest.raises(BenchmarkConfigError, match=r"methods\[0\] fold 2 is not one of the 2 nested_splits folds"):
        load_config(_cfg(tmp_path, nested_splits={"validation": 1, "train": [2, 8]},
                         methods=[{"name": "low", "trainer": "A", "fold": 2}, *two[1:2], two[2] | {"stage1": None}]))
    # pseudo-labels: the teacher is an earlier method; the students' datasets (one per seed) take free ids
    pl = {"teacher": "up", "images": "raw:imagesUnlabelled", "dataset": {"id": 740, "name": "P"}}
    three = [{"name": "low", "trainer": "A"}, {"name": "up", "trainer": "B"}, {"name": "dante", "trainer": "C"}]
    with_pl = load_config(_cfg(tmp_path, seeds=[0, 3], methods=three + [{"name": "pl", "trainer": "A",
                                                                         "pseudo_labels": pl}]))
    runner = Runner(with_pl, out_root=str(tmp_path / "r"))   # the student trains on fold 0 of dataset id + seed
    assert runner.method_run(with_pl["methods"][3], 3) == (743, "0") and runner.method_run(three[0], 3) == (701, "0")
    with pytest.raises(BenchmarkConfigError, match=r"methods\[0\] 'pl' pseudo_labels: teacher 'up' is not a method "
                                                   r"listed before it"):
        load_config(_cfg(tmp_path, methods=[{"name": "pl", "trainer": "A", "pseudo_labels": pl}] + three))
    with pytest.raises(BenchmarkConfigError, match=r"pseudo_labels must be \{\"teacher\": METHOD"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "pl", "trainer": "A", "pseudo_labels": {"teacher": "up"}}]))
    with pytest.raises(BenchmarkConfigError, match=r"take ids \[700, 701, 702\] \(id \+ seed\); 701 is dataset.id's"):
        load_config(_cfg(tmp_path, seeds=[0, 1, 2], methods=three + [
            {"name": "pl", "trainer": "A", "pseudo_labels": {**pl, "dataset": {"id": 700, "name": "P"}}}]))
    with pytest.raises(BenchmarkConfigError, match=r"methods\[4\] 'pl2' pseudo_labels: .* 741 is methods\[3\] 'pl''s"):
        load_config(_cfg(tmp_path, seeds=[0, 1], methods=three + [
            {"name": "pl", "trainer": "A", "pseudo_labels": pl},
            {"name": "pl2", "trainer": "A", "pseudo_labels": {**pl, "dataset": {"id": 741, "name": "Q"}}}]))
    with pytest.raises(BenchmarkConfigError, match="trains on pseudo-labels itself"):
        load_config(_cfg(tmp_path, methods=three + [
            {"name": "pl", "trainer": "A", "pseudo_labels": pl},
            {"name": "pl2", "trainer": "D", "pseudo_labels": {**pl, "teacher": "pl", "dataset": {"id": 750, "name": "Q"}}}]))
    # scans: one dataset for every seed, shared by methods naming the same id with the same images and name
    sc = {"images": "raw:imagesUnlabelled", "dataset": {"id": 760, "name": "S"}}
    with_sc = load_config(_cfg(tmp_path, seeds=[0, 3], methods=three + [
        {"name": "t1", "trainer": "C_teach", "scans": sc}, {"name": "t2", "trainer": "C_teach_x", "scans": sc}]))
    assert Runner(with_sc, out_root=str(tmp_path / "r2")).method_run(with_sc["methods"][3], 3) == (760, "0")
    with pytest.raises(BenchmarkConfigError, match="dataset id 760 is another scans method's with other images"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "t1", "trainer": "C", "scans": sc},
                                                    {"name": "t2", "trainer": "D", "scans": {**sc, "images": "x"}}]))
    with pytest.raises(BenchmarkConfigError, match=r"scans: dataset id 701 is not free \(dataset.id\)"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "t", "trainer": "C", "scans": {**sc, "dataset": {
            "id": 701, "name": "S"}}}]))
    # a teach method's DANTE candidate: its dataset is a scans dataset of the teach images (shared with a
    # scans method of the same images and name), one for every seed
    gt = {"teacher": "B", "plain": "A", "images": "raw:imagesUnlabelled", "dataset": {"id": 770, "name": "G"},
          "folds": [0], "dante_teach": {"trainer": "C_teach", "dataset": sc["dataset"]}}
    with_dt = load_config(_cfg(tmp_path, seeds=[0, 1], methods=three + [
        {"name": "g", "trainer": "A", "teach": gt}, {"name": "t1", "trainer": "C_teach", "scans": sc}]))
    assert with_dt["methods"][3]["teach"]["dante_teach"]["dataset"]["id"] == 760
    with pytest.raises(BenchmarkConfigError, match="teach.dante_teach: dataset id 760 is another scans method's"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "t1", "trainer": "C", "scans": {**sc, "images": "x"}},
                                                    {"name": "g", "trainer": "A", "teach": gt}]))
    with pytest.raises(BenchmarkConfigError, match=r"teach.dante_teach: dataset id 770 is not free"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "g", "trainer": "A", "teach": {
            **gt, "dante_teach": {"trainer": "C_teach", "dataset": {"id": 770, "name": "S"}}}}]))
    with pytest.raises(BenchmarkConfigError, match=r"teach.dante_teach must be \{"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "g", "trainer": "A", "teach": {**gt, "dante_teach": "C"}}]))
    # the deployed student's dataset (deploy_all) takes id + seed like the student's; not with a fine-tune
    g0 = {k: v for k, v in gt.items() if k != "dante_teach"}
    with pytest.raises(BenchmarkConfigError, match=r"teach.deploy_all: its student datasets take ids \[771, 772\] "
                                                   r"\(id \+ seed\); 771 is"):
        load_config(_cfg(tmp_path, seeds=[0, 1], methods=three + [{"name": "g", "trainer": "A",
                                                                    "teach": {**g0, "deploy_all": 771}}]))
    with pytest.raises(BenchmarkConfigError, match="deploy_all with finetune is not built"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "g", "trainer": "A",
                                                     "teach": {**g0, "deploy_all": 790, "finetune": 0.5}}]))
    assert load_config(_cfg(tmp_path, methods=three + [{"name": "g", "trainer": "A", "teach": {
        **g0, "deploy_all": 790}}]))["methods"][3]["teach"]["deploy_all"] == 790
    with pytest.raises(BenchmarkConfigError, match="like methods\\[3\\] 't1': one results folder"):
        load_config(_cfg(tmp_path, methods=three + [{"name": "t1", "trainer": "C", "scans": sc},
                                                    {"name": "t2", "trainer": "C", "scans": sc}]))
    for bad in ([], [0, 0], [1, -2], "0,1", [0.5]):
        with pytest.raises(BenchmarkConfigError, match="'seeds' must be a list of distinct non-negative integers"):
            load_config(_cfg(tmp_path, seeds=bad))
    shipped = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".json"))
    assert {"brats2018", "dp2e", "phantom", "phantom_transfer"} <= set(shipped)
    for name in shipped:
        cfg = load_config(os.path.join(REPO, "configs", f"{name}.json"))
        assert cfg["name"] == name
        Runner(cfg, out_root=str(tmp_path / "shipped")).check_trainers(sweep="sweep" in cfg)   # names resolve


def _cfg_without(tmp_path, key):
    cfg = json.loads(open(_cfg(tmp_path)).read())
    cfg.pop(key)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    return str(tmp_path / "c.json")


def test_added_configuration_patch_must_fit_the_strides(tmp_path):
    """A patch that the U-Net's strides do not divide is refused before training, with sizes that fit;
    the plans file is left as it was."""
    from batchgenerators.utilities.file_and_folder_operations import save_json

    from dante_nnunet.jobs.nnunet_jobs import add_configuration
    from dante_nnunet.jobs.inmemory import plans
    path = str(tmp_path / "nnUNetPlans.json")
    save_json(plans(features=(4, 8, 16)), path)   # strides 1, 2, 2: total 4 per axis
    before = open(path).read()
    with pytest.raises(ValueError, match=r"3d_p.*multiple of the total stride \[4, 4, 4\]; nearest that fits: "
                                         r"\[20, 16, 8\]"):
        add_configuration(path, "3d_p", patch_size=[21, 16, 6])
    with pytest.raises(ValueError, match="has 2 axes"):
        add_configuration(path, "3d_p", patch_size=[16, 16])
    assert open(path).read() == before
    add_configuration(path, "3d_p", patch_size=[20, 16, 8])
    assert json.load(open(path))["configurations"]["3d_p"]["patch_size"] == [20, 16, 8]


def test_sweep_points_vary_one_lambda_at_a_time():
    from dante_nnunet.benchmark import sweep_points
    pts = sweep_points({"trainer": "DANTETrainer_50epochs", "lambda_pib": [0, 0.1], "lambda_align": [1.0]})
    assert [(p["lambda"], p["value"], p["trainer"]) for p in pts] == [
        ("lambda_pib", 0.0, "DANTETrainer_50epochs_pib0"), ("lambda_pib", 0.1, "DANTETrainer_50epochs_pib0.1"),
        ("lambda_align", 1.0, "DANTETrainer_50epochs_align1")]


def test_table_gap_closure_by_hand():
    def m(d):
        return {"r": {"dice": d, "dice_std": 0.01, "hd95": 2.0, "hd95_std": 0.5}}
    results = {"regions": ["r"], "gap_closure": {"r": (0.7 - 0.5) / (0.9 - 0.5)},
               "methods": {"low": {"trainer": "A", "inputs": "limited", "mean": m(0.5)},
                           "up": {"trainer": "B", "inputs": "all", "mean": m(0.9)}}}
    table = results_table(results)
    assert "| low (`A`) | limited | 50.0 ± 1.0 | 2.00 |" in table
    assert "(DANTE - lower) / (upper - lower), Dice | | 50% | - |" in table


def test_seed_summary_and_paired_difference_by_hand():
    run = lambda et, wt: {"enhancing tumor": {"dice": et, "hd95": 2 * et}, "whole tumor": {"dice": wt, "hd95": 1.0}}
    dante = {"0": run(0.60, 0.9), "1": run(0.70, 0.9), "2": run(0.65, 0.9)}
    lower = {"0": run(0.50, 0.9), "1": run(0.62, 0.9), "2": run(0.52, 0.9)}
    regions = ["whole tumor", "enhancing tumor"]
    s = summarize_seeds(dante, regions)
    assert s["per_seed"]["1"]["enhancing tumor"] == {"dice": 0.70, "hd95": 1.40}
    assert s["mean"]["enhancing tumor"]["dice"] == pytest.approx(0.65)
    assert s["mean"]["enhancing tumor"]["dice_std"] == pytest.approx(0.05)          # SD of 0.60, 0.70, 0.65
    assert s["mean"]["whole tumor"]["dice_std"] == 0.0
    d = paired_difference(s["per_seed"], summarize_seeds(lower, regions)["per_seed"], regions)["enhancing tumor"]
    # differences 0.10, 0.08, 0.13: mean 0.10333, SD 0.02517, SE 0.01453
    assert (d["mean"], d["se"], d["n"]) == (pytest.approx(0.31 / 3), pytest.approx(0.025166 / 3 ** 0.5, rel=1e-4), 3)
    one = paired_difference({"0": run(0.6, 0.9)}, {"0": run(0.5, 0.9)}, regions)["enhancing tumor"]
    assert one["se"] is None and one["mean"] == pytest.approx(0.1)


def test_seeded_report_layout(tmp_path, monkeypatch):
    """results.json and table.md of a 3-seed run, from the metrics each run's evaluation gives."""
    raw = tmp_path / "raw"
    write_phantom("brats", 706, num_train=2, num_test=1, shape=(16, 16, 16), raw_root=str(raw))
    for k, sub in (("nnUNet_raw", raw), ("nnUNet_preprocessed", tmp_path / "pre"), ("nnUNet_results", tmp_path / "res")):
        monkeypatch.setenv(k, str(sub))
    cfg = json.loads(open(_cfg(tmp_path, seeds=[0, 1, 2])).read())
    cfg["dataset"]["id"] = 706
    cfg["methods"][1]["inputs"] = "all"
    runner = Runner(cfg, str(tmp_path / "results"))
    assert runner.seeded("DANTETrainer_demo", 2) == "DANTETrainer_demo_seed2" and runner.seeded("X", None) == "X"
    regions = ("whole tumor", "tumor core", "enhancing tumor")
    ev = lambda et: {"mean": {r: {"dice": et if r == "enhancing tumor" else 0.95, "hd95": 1.0, "dice_std": 0.2,
                                  "hd95_std": 0.0} for r in regions}}
    metrics = {"low": {0: ev(0.50), 1: ev(0.62), 2: ev(0.52)}, "up": {0: ev(0.9), 1: ev(0.9), 2: ev(0.9)},
               "dante": {0: ev(0.60), 1: ev(0.70), 2: ev(0.65)}}
    results = runner.report(metrics)
    saved = json.load(open(tmp_path / "results" / "t" / "results.json"))
    assert saved["seeds"] == [0, 1, 2] and saved["methods"]["dante"]["per_seed"]["2"]["enhancing tumor"]["dice"] == 0.65
    assert saved["methods"]["dante"]["mean"]["enhancing tumor"]["dice_std"] == pytest.approx(0.05)
    assert saved["paired"]["enhancing tumor"]["mean"] == pytest.approx(0.31 / 3)
    assert "vs_lower" not in saved["methods"]["low"] and "vs_lower" not in saved["methods"]["up"]   # all-channel
    table = (tmp_path / "results" / "t" / "table.md").read_text()
    assert "| dante (`DANTETrainer`) | limited | 95.0 ± 0.0 | 1.00 | 95.0 ± 0.0 | 1.00 | 65.0 ± 5.0 | 1.00 |" in table
    assert "mean ± SD over 3 training seeds (0, 1, 2)" in table
    assert "| dante | +0.0 ± 0.0 | +0.0 ± 0.0 | +10.3 ± 1.5 |" in table
    assert results["gap_closure"]["enhancing tumor"] == pytest.approx((0.65 - 0.5467) / (0.9 - 0.5467), rel=1e-3)
    # a run still going: the report of what has finished (lower bound 2 seeds, DANTE 1, upper none)
    os.makedirs(runner.out + "/metrics")
    for name, seed, et in (("low", 0, 0.50), ("low", 1, 0.62), ("dante", 0, 0.60)):
        json.dump(ev(et), open(f"{runner.out}/metrics/{name}_seed{seed}.json", "w"))
    part = runner.report_so_far()
    assert set(part["methods"]) == {"low", "dante"} and part["gap_closure"] is None
    assert part["partial"] == {"low": ["0", "1"], "up": [], "dante": ["0"]}
    assert part["methods"]["dante"]["vs_lower"]["enhancing tumor"] == {"mean": pytest.approx(0.1), "se": None, "n": 1}
    table = (tmp_path / "results" / "t" / "table.md").read_text()
    assert "**Partial**" in table and "low 0, 1; up none; dante 0" in table
    assert "over the seeds each method has run" in table and "over the seeds both have run" in table
    assert "3 training seeds" not in table   # the config's 3 seeds have not all run
    # runs of an earlier results folder (its results.json) fill the seeds missing here; runs here win
    earlier = tmp_path / "earlier.json"
    old = {"name": "t", "seeds": [0, 1, 2], "methods": {
        "low": {"trainer": "LowerBoundTrainer", "per_seed": {"1": ev(0.99)["mean"], "2": ev(0.52)["mean"]}},
        "dante": {"trainer": "DANTETrainer", "per_seed": {"1": ev(0.70)["mean"], "2": ev(0.65)["mean"]}}}}
    json.dump(old, open(earlier, "w"))
    merged = runner.report_so_far(str(earlier))
    assert merged["partial"] == {"low": ["0", "1", "2"], "up": [], "dante": ["0", "1", "2"]}
    assert merged["earlier_runs"]["runs"] == {"low": ["2"], "dante": ["1", "2"]}
    assert merged["methods"]["low"]["per_seed"]["1"]["enhancing tumor"]["dice"] == 0.62   # the run here
    assert merged["methods"]["dante"]["vs_lower"]["enhancing tumor"]["mean"] == pytest.approx((0.1 + 0.08 + 0.13) / 3)
    assert f"Taken from an earlier results.json ({earlier}): low 2; dante 1, 2." in \
        (tmp_path / "results" / "t" / "table.md").read_text()
    old["methods"]["dante"]["trainer"] = "DANTETrainer_vib"
    json.dump(old, open(earlier, "w"))
    with pytest.raises(BenchmarkConfigError, match="method 'dante' ran 'DANTETrainer_vib' on fold 0, the config has"):
        runner.report_so_far(str(earlier))
    json.dump(dict(old, name="other"), open(earlier, "w"))
    with pytest.raises(BenchmarkConfigError, match="results.json of config 'other', not of 't'"):
        runner.report_so_far(str(earlier))
    for f in os.listdir(runner.out + "/metrics"):
        if f.startswith("low"):
            os.remove(f"{runner.out}/metrics/{f}")
    with pytest.raises(FileNotFoundError, match="no finished run of the lower bound 'low'"):
        runner.report_so_far()


def test_split_70_10_20_holds_out_test_cases(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    folder = write_phantom("brats", 702, num_train=10, num_test=1, shape=(16, 16, 16), raw_root=str(raw))
    for d in ("imagesTs", "imagesTs_allchannels", "labelsTs"):
        shutil.rmtree(os.path.join(folder, d))
    for k, sub in (("nnUNet_raw", raw), ("nnUNet_preprocessed", tmp_path / "pre"), ("nnUNet_results", tmp_path / "res")):
        monkeypatch.setenv(k, str(sub))
    os.makedirs(tmp_path / "pre" / os.path.basename(folder))
    cfg = json.loads(open(_cfg(tmp_path)).read())
    cfg["dataset"]["id"] = 702
    runner = Runner(cfg, str(tmp_path / "results"))
    test = runner.step_split()
    split = json.load(open(tmp_path / "results" / "t" / "split.json"))
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (7, 1, 2)
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    folds = json.load(open(tmp_path / "pre" / os.path.basename(folder) / "splits_final.json"))
    assert folds == [{"train": split["train"], "val": split["val"]}]
    assert sorted(os.listdir(test["limited"])) == sorted(f"{c}_{i:04d}.nii.gz" for c in split["test"] for i in range(3))
    assert len(os.listdir(test["all"])) == 8 and len(os.listdir(test["labels"])) == 2
    assert runner.step_split() == test     # a rerun keeps the split


def test_nested_splits_train_on_the_first_n_cases_and_validate_on_the_same(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for k, sub in (("nnUNet_raw", raw), ("nnUNet_preprocessed", tmp_path / "pre"), ("nnUNet_results", tmp_path / "res")):
        monkeypatch.setenv(k, str(sub))
        os.makedirs(sub)
    cfg = json.loads(open(_cfg(tmp_path, nested_splits={"validation": 2, "train": [1, 4, 5]})).read())
    cfg["dataset"] = {"id": 706, "source": {"phantom": {"kind": "types", "num_train": 7, "num_test": 1,
                                                        "shape": [16, 16, 16], "num_unlabelled": 2}}}
    cfg["stage1"] = {"trainer": "DANTEPretrainTrainer", "images": ["raw:imagesUnlabelled"],
                     "dataset": {"id": 707, "name": "Pre"}}
    cfg["methods"][2]["pretrained"] = True
    runner = Runner(cfg, str(tmp_path / "results"))
    runner.step_data()   # the phantom command, unlabelled scans included
    folder = runner.raw_folder()
    assert len(os.listdir(os.path.join(folder, "imagesUnlabelled"))) == 2 * 4
    runner.check_inputs()   # raw:imagesUnlabelled resolves to that folder
    assert runner.stage1_images(runner.stage1_block()) == [os.path.join(folder, "imagesUnlabelled")]
    pre = tmp_path / "pre" / os.path.basename(folder)
    os.makedirs(pre)
    test = runner.step_split()
    assert test["limited"] == os.path.join(folder, "imagesTs")   # the phantom's own test set
    cases = [f"BraTSTypesPhantom_{i:03d}" for i in range(7)]
    folds = json.load(open(pre / "splits_final.json"))
    assert folds == [{"train": cases[:n], "val": cases[5:]} for n in (1, 4, 5)]
    runner.step_split()   # a rerun accepts the same folds ...
    cfg["nested_splits"] = {"validation": 2, "train": [1, 3]}
    with pytest.raises(FileExistsError, match="other folds than the config's nested_splits"):
        Runner(cfg, str(tmp_path / "results")).step_split()   # ... and refuses to change them
    cfg["nested_splits"] = {"validation": 3, "train": [5]}
    with pytest.raises(BenchmarkConfigError, match="5 training \\+ 3 validation cases; .* has 7"):
        Runner(cfg, str(tmp_path / "results")).step_split()
    assert json.load(open(pre / "splits_final.json")) == folds


@pytest.mark.slow
def test_tiny_benchmark_end_to_end_and_rerun(tmp_path, monkeypatch, capsys):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("nnUNet_extTrainer", TEST_TRAINERS)
    # Stage 1 pre-trains on another dataset, made from unlabelled images (another phantom's)
    other = write_phantom("brats", 705, raw_root=str(tmp_path / "other"), num_train=5, num_test=1,
                          shape=(24, 24, 24), seed=3)
    cfg = {"name": "tiny", "workdir": True,
           "dataset": {"id": 703, "source": {"phantom": {"kind": "brats", "num_train": 5, "num_test": 2,
                                                         "shape": [24, 24, 24], "num_unlabelled": 2}}},
           "configuration": "3d_t", "add_configuration": {"name": "3d_t", "features_per_stage": 4,
                                                          "patch_size": [16, 16, 16]},
           # two Stage-1 pre-trainings on one dataset made from those images, each method naming its own
           "stage1": [{"name": "crossmodal", "trainer": "DANTEPretrainTrainer_tiny",
                       "images": [os.path.join(other, "imagesTr")], "dataset": {"id": 704, "name": "TinyPre"}},
                      {"name": "limited", "trainer": "DANTEPretrainTrainer_limitedMAE_tiny",
                       "images": [os.path.join(other, "imagesTr")], "dataset": {"id": 704, "name": "TinyPre"}}],
           # fold 0 trains on 2 cases, fold 1 on 4, both validate on the last one; fold 2 (swapped) trains on
           # that last one and validates on the first 2
           "nested_splits": {"validation": 1, "train": [2, 4], "swapped": True},
           "methods": [{"name": "Lower", "trainer": "LowerBoundTrainer_tiny"},
                       {"name": "Upper", "trainer": "UpperBoundTrainer_tiny", "inputs": "all"},
                       {"name": "ModDrop", "trainer": "ModalityDropoutTrainer_tiny"},
                       {"name": "Distill", "trainer": "DistillationTrainer_tiny"},
                       {"name": "DANTE", "trainer": "DANTETrainer_tinyS1", "stage1": "crossmodal"},
                       {"name": "LowerS1", "trainer": "LowerBoundTrainer_tinyS1", "stage1": "limited", "fold": 1},
                       # the unlabelled scans labelled by the all-channel teacher, and by the lower bound (the
                       # self-training control, fed limited-channel copies); each student on its own dataset
                       {"name": "Pseudo", "trainer": "LowerBoundTrainer_tiny", "pseudo_labels": {
                           "teacher": "Upper", "images": "raw:imagesUnlabelled", "dataset": {"id": 706, "name": "PlUp"}}},
                       {"name": "SelfTrain", "trainer": "LowerBoundTrainer_tiny", "fold": 1, "pseudo_labels": {
                           "teacher": "Lower", "images": "raw:imagesUnlabelled", "dataset": {"id": 708, "name": "PlLo"}}},
                       # DANTE's full pathway labels the scans for the deployed one inside one training
                       {"name": "DTeach", "trainer": "DANTETrainer_tiny_teach", "scans": {
                           "images": "raw:imagesUnlabelled", "dataset": {"id": 712, "name": "Scans"}}},
                       # the gated recipe (dante_nnunet teach) on folds 0 and 2; fold 0's teacher and plain model
                       # are the Upper and Lower runs; DANTE as its own teacher a second candidate on DTeach's
                       # dataset (its fold 0 is DTeach's run); the teacher's unsure voxels masked (ignore label),
                       # each student fine-tuned on its fold's real cases (half the schedule), the teachers
                       # trained a second round on their own labels (dataset 714)
                       {"name": "Gated", "trainer": "LowerBoundTrainer_tiny", "teach": {
                           "teacher": "UpperBoundTrainer_tiny", "plain": "LowerBoundTrainer_tiny",
                           "images": "raw:imagesUnlabelled", "dataset": {"id": 710, "name": "Gate"}, "folds": [0, 2],
                           "unsure_band": 0.9, "finetune": 0.5, "rounds": [714],
                           "dante_teach": {"trainer": "DANTETrainer_tiny_teach",
                                           "dataset": {"id": 712, "name": "Scans"}}}}],
           "lower": "Lower", "upper": "Upper", "dante": "DANTE", "seeds": [0],
           # nnU-Net's sequential prediction (no worker processes; tests/conftest.py says why)
           "predict_args": ["-npp", "0", "-nps", "0"]}
    results = Runner(cfg, str(tmp_path)).run_all(tsne=True)   # the sweep's own step: test_sweep_step below
    out = tmp_path / "tiny"
    said = capsys.readouterr().out
    _check_pseudo_label_runs(out, results, said)
    _check_gated_run(out, results, said)
    assert set(results["methods"]) == {"Lower", "Upper", "ModDrop", "Distill", "DANTE", "LowerS1", "Pseudo",
                                       "SelfTrain", "Gated", "DTeach"}
    _check_scans_run(out)
    assert results["methods"]["LowerS1"]["fold"] == "1" and results["methods"]["LowerS1"]["stage1"] == "limited"
    for name, m in results["methods"].items():   # one seed: every trainer ran as <trainer>_seed0
        assert set(m["mean"]) == set(m["per_seed"]["0"]) == {"whole tumor", "tumor core", "enhancing tumor"}
        chosen = m["gate"]["0"]["chosen"] if "gate" in m else None   # a gated row: the chosen candidate's
        assert len(os.listdir(out / "predictions" / (f"{name}_seed0" + (f"_{chosen}" if chosen else "")))) >= 2
    assert "UpperBoundTrainer_tiny_seed0" in (out / "logs" / "train_Distill_seed0.log").read_text()   # its teacher
    assert (out / "table.md").read_text().count("\n| ") >= 6 and (out / "dice_bars.png").stat().st_size > 1000
    s1 = out / "nnunet" / "nnUNet_results" / "Dataset704_TinyPre" / "DANTEPretrainTrainer_tiny_seed0__nnUNetPlans__3d_t"
    assert str(s1) in (out / "logs" / "train_DANTE_seed0.log").read_text()   # DANTE started from that Stage 1
    # the lower bound on fold 1 (4 training cases) started from the limited-channel MAE's E_L, frozen in epoch 0
    low_s1 = (out / "logs" / "train_LowerS1_seed0.log").read_text()
    lim = s1.parent / "DANTEPretrainTrainer_limitedMAE_tiny_seed0__nnUNetPlans__3d_t"
    assert f"Encoder (E_L) transferred from {lim}/fold_0/checkpoint_final.pth; frozen until epoch 1" in low_s1
    assert "transferred encoder trainable from epoch 1" in low_s1
    assert "limited-channel MAE" in (out / "logs" / "stage1_limited_seed0.log").read_text()
    folds = json.loads((out / "nnunet" / "nnUNet_preprocessed" / "Dataset703_BraTSPhantom" / "splits_final.json")
                       .read_text())
    assert [len(f["train"]) for f in folds] == [2, 4, 1] and folds[0]["val"] == folds[1]["val"] == folds[2]["train"]
    ck = torch.load(out / "nnunet" / "nnUNet_results" / "Dataset703_BraTSPhantom" /
                    "LowerBoundTrainer_tinyS1_seed0__nnUNetPlans__3d_t" / "fold_1" / "checkpoint_final.pth",
                    weights_only=False)
    assert ck["dante_transferred_from"] == f"{lim}/fold_0/checkpoint_final.pth"
    moved = json.loads((out / "nnunet" / "nnUNet_preprocessed" / "Dataset704_TinyPre" / "nnUNetPlans.json").read_text())
    assert moved["configurations"]["3d_t"]["architecture"]["arch_kwargs"]["features_per_stage"][0] == 4
    # limited-only inputs reached the limited-channel methods, all channels the upper bound
    assert "predict_Lower_seed0" in results["seconds"] and "stage1_crossmodal_seed0" in results["seconds"]
    assert (out / "tsne.png").stat().st_size > 1000
    # baselines deploy like DANTE: the modality-dropout model exports as a plain 3-channel nnU-Net model
    from dante_nnunet.deploy.export import export_model
    runner = Runner(cfg, str(tmp_path))
    monkeypatch.setenv("nnUNet_results", runner.env["nnUNet_results"])
    dest = export_model("Dataset703_BraTSPhantom", "3d_t", "ModalityDropoutTrainer_tiny_seed0", ["0"],
                        str(tmp_path / "exp"))
    assert len(json.load(open(os.path.join(dest, "dataset.json")))["channel_names"]) == 3
    monkeypatch.delenv("nnUNet_results")
    again = Runner(cfg, str(tmp_path)).run_all()
    assert again["seconds"] == results["seconds"]   # every step skipped; the first run's times are kept
    assert again["methods"] == json.loads(json.dumps(results["methods"]))


def _check_pseudo_label_runs(out, results, said):
    """The tiny run's two pseudo-label methods: each student's labels are its teacher's predictions of the
    scans, its split the labelled fold + every scan with the same validation case, its plans this dataset's;
    the limited-channel teacher read copies with T1, T2, FLAIR only, the all-channel one the scans."""
    nn, raw = out / "nnunet", out / "nnunet" / "nnUNet_raw" / "Dataset703_BraTSPhantom"
    assert results["methods"]["Pseudo"]["pseudo_labels"]["teacher"] == "Upper"
    scans = sorted({f[:-12] for f in os.listdir(raw / "imagesUnlabelled")})
    cases = [f"BraTSPhantom_{i:03d}" for i in range(5)]
    for did, name, n_train in ((706, "PlUp0", 2), (708, "PlLo0", 4)):   # dataset id + seed 0
        folder = nn / "nnUNet_raw" / f"Dataset{did}_{name}"
        labels = out / "pseudo_labels" / ("Pseudo_seed0" if did == 706 else "SelfTrain_seed0")
        for s in scans:
            assert filecmp.cmp(folder / "labelsTr" / f"{s}.nii.gz", labels / f"{s}.nii.gz", shallow=False)
        split = json.loads((nn / "nnUNet_preprocessed" / folder.name / "splits_final.json").read_text())
        assert split == [{"train": sorted(cases[:n_train] + scans), "val": cases[4:]}]
        assert sorted(f[:-7] for f in os.listdir(folder / "labelsTr")) == sorted(cases[:n_train] + cases[4:] + scans)
        res = nn / "nnUNet_results" / folder.name / "LowerBoundTrainer_tiny_seed0__nnUNetPlans__3d_t" / "fold_0"
        assert (res / "checkpoint_final.pth").is_file()
        plans = json.loads((nn / "nnUNet_preprocessed" / folder.name / "nnUNetPlans.json").read_text())
        assert plans["configurations"]["3d_t"]["architecture"]["arch_kwargs"]["features_per_stage"][0] == 4
    assert len(os.listdir(out / "pseudo_labels" / "limited_raw_imagesUnlabelled")) == 3 * len(scans)
    assert f"nnUNetv2_predict -i {raw}/imagesUnlabelled -o {out}/pseudo_labels/Pseudo_seed0.tmp -d 703" in said
    assert f"-i {out}/pseudo_labels/limited_raw_imagesUnlabelled -o {out}/pseudo_labels/SelfTrain_seed0.tmp" in said
    assert "-tr UpperBoundTrainer_tiny_seed0 -f 0" in said and "-tr LowerBoundTrainer_tiny_seed0 -f 0" in said
    assert len([f for f in os.listdir(out / "predictions" / "SelfTrain_seed0") if f.endswith(".nii.gz")]) == 2


def _check_scans_run(out):
    """The DTeach method: one dataset of the labelled cases + the scans as unlabelled cases, with this
    dataset's split; DANTETrainer_tiny_teach trained on its fold 0 and logged the teaching line."""
    nn = out / "nnunet"
    dj = json.loads((nn / "nnUNet_raw" / "Dataset712_Scans" / "dataset.json").read_text())
    scans = sorted({f[:-12] for f in os.listdir(nn / "nnUNet_raw" / "Dataset703_BraTSPhantom" / "imagesUnlabelled")})
    assert dj["dante"]["unlabelled_cases"] == scans and "ignore" in dj["labels"]
    assert (json.loads((nn / "nnUNet_preprocessed" / "Dataset712_Scans" / "splits_final.json").read_text())
            == json.loads((nn / "nnUNet_preprocessed" / "Dataset703_BraTSPhantom" / "splits_final.json").read_text()))
    fold = nn / "nnUNet_results" / "Dataset712_Scans" / "DANTETrainer_tiny_teach_seed0__nnUNetPlans__3d_t" / "fold_0"
    log = next(fold.glob("training_log*")).read_text()
    assert f"DANTE teach: {len(scans)} unlabelled cases" in log and "DANTE teach (" in log


def _check_gated_run(out, results, said):
    """The tiny run's gated method: fold k's student trains on fold k's cases + the pl<k>_ copies labelled by
    fold k's teacher, validates on fold k's real cases; the decision names a trained model and its test row is
    that model's fold 0; fold 0's teacher and plain model were the Upper and Lower runs (not trained again)."""
    nn = out / "nnunet"
    raw = nn / "nnUNet_raw" / "Dataset703_BraTSPhantom"
    scans = sorted({f[:-12] for f in os.listdir(raw / "imagesUnlabelled")})
    cases = [f"BraTSPhantom_{i:03d}" for i in range(5)]
    student = nn / "nnUNet_raw" / "Dataset710_Gate0"
    work = nn / "nnUNet_results" / student.name / "teach"
    split = json.loads((nn / "nnUNet_preprocessed" / student.name / "splits_final.json").read_text())
    assert split[0] == {"train": sorted(cases[:2] + [f"pl0_{s}" for s in scans]), "val": cases[4:]}
    assert split[2] == {"train": sorted(cases[4:] + [f"pl2_{s}" for s in scans]), "val": cases[:2]}
    dj = json.loads((student / "dataset.json").read_text())
    assert dj["labels"]["ignore"] == 4 and dj["pseudo_label_masking"]["unsure_band"] == 0.9
    for k in (0, 2):
        # round 1: fold k's teacher trained again on dataset 714 (fold k's cases + the scans as its round-0
        # teacher labelled them, unmasked), then labelled the scans for the student
        round1 = nn / "nnUNet_raw" / "Dataset714_Gate0R1"
        for s in scans:
            assert filecmp.cmp(round1 / "labelsTr" / f"pl{k}_{s}.nii.gz",
                               work / f"fold_{k}" / "teacher_predictions" / f"{s}.nii.gz", shallow=False)
        assert (nn / "nnUNet_results" / round1.name / "UpperBoundTrainer_tiny_seed0__nnUNetPlans__3d_t" / f"fold_{k}"
                / "checkpoint_final.pth").is_file()
        assert f"-d 714 -c 3d_t -tr UpperBoundTrainer_tiny_seed0 -p nnUNetPlans -f {k} -device cpu" in said
        for s in scans:   # fold k's copy carries fold k's round-1 teacher's prediction, its unsure voxels ignored (4)
            copy = sitk.GetArrayFromImage(sitk.ReadImage(str(student / "labelsTr" / f"pl{k}_{s}.nii.gz")))
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"fold_{k}" / "round1_predictions" / f"{s}.nii.gz")))
            probs = np.load(work / f"fold_{k}" / "round1_predictions" / f"{s}.npz")["probabilities"]
            unsure = np.any((probs > 0.1) & (probs < 0.9), axis=0)
            assert (copy[unsure] == 4).all() and np.array_equal(copy[~unsure], pred[~unsure])
            assert dj["pseudo_label_masking"]["masked_fraction"][f"pl{k}_{s}"] == pytest.approx(unsure.mean())
        # the student trained with nnU-Net's ignore label beside the regions and validated on real cases, then
        # was fine-tuned on the labelled dataset's fold k from its final checkpoint (every tensor), validated there
        start = nn / "nnUNet_results" / student.name / "LowerBoundTrainer_tiny_seed0__nnUNetPlans__3d_t" / f"fold_{k}"
        assert (start / "validation" / "summary.json").is_file()
        tuned = nn / "nnUNet_results" / raw.name / "LowerBoundTrainer_tiny_seed0_tune0.5__nnUNetPlans__3d_t" / f"fold_{k}"
        assert (tuned / "validation" / "summary.json").is_file()
        assert f"Fine-tune of the whole model of {start}/checkpoint_final.pth" in "".join(
            f.read_text() for f in tuned.glob("training_log_*.txt"))
        assert f"-tr UpperBoundTrainer_tiny_seed0 -p nnUNetPlans -f {k} -device cpu --save_probabilities" in said
    assert "teacher_fold0: UpperBoundTrainer_tiny_seed0 fold 0 is trained, skipped" in said
    record = json.loads((work / "scans.json").read_text())
    assert sorted(record["scans"]) == scans and record["kept"] == {"0": scans, "2": scans}
    gate = results["methods"]["Gated"]["gate"]["0"]
    decision = json.loads((out / "gate" / "Gated_seed0.json").read_text())
    assert gate["chosen"] == decision["chosen"] in ("student", "plain", "dante_teach")
    assert decision["model"]["dataset"] == {"student": 703, "plain": 703, "dante_teach": 712}[gate["chosen"]]
    assert decision["models"]["student"] == {"dataset": 703, "trainer": "LowerBoundTrainer_tiny_seed0_tune0.5"}
    assert len(decision["teacher_rounds"]) == 1 and set(decision["teacher_rounds"][0]) == set(decision["teacher"])
    assert {role: sorted(folds) for role, folds in decision["curves"].items()} == \
        {"plain": ["0", "2"], "student": ["0", "2"], "dante_teach": ["0", "2"]}     # every model's training curve
    assert sorted(decision["per_case"]["plain"]) == sorted(cases[:2] + cases[4:])   # both folds' validation cases
    # the DANTE candidate: DTeach's dataset reused, its fold 0 DTeach's run, fold 2 trained; validated on the
    # same real cases
    assert "dante_teach_fold0: DANTETrainer_tiny_teach_seed0 fold 0 is trained, skipped" in said
    assert "DANTE candidate's dataset: wrote" not in said
    assert (nn / "nnUNet_results" / "Dataset712_Scans" / "DANTETrainer_tiny_teach_seed0__nnUNetPlans__3d_t" / "fold_2"
            / "checkpoint_final.pth").is_file()
    assert sorted(decision["per_case"]["dante_teach"]) == sorted(decision["per_case"]["plain"])
    assert set(gate["candidates"]) == {"student", "dante_teach"}
    # every candidate's fold 0 predicted the test cases; the row is the chosen one's
    for role in ("plain", "student", "dante_teach"):
        assert (out / "predictions" / f"Gated_seed0_{role}").is_dir()
    row = results["methods"]["Gated"]["per_seed"]["0"]
    assert all(gate["test"][gate["chosen"]][r]["dice"] == pytest.approx(v["dice"]) for r, v in row.items())
    # the row is the model decision.json names: its prediction command ran that dataset and trainer, and the
    # row's Dice is recomputed here from those predictions (not read from the same row)
    m, role = decision["model"], gate["chosen"]
    line = next(x for x in said.splitlines() if x.startswith("$ ") and f"Gated_seed0_{role}.tmp" in x)
    assert f" -d {m['dataset']} " in line and f" -tr {m['trainer']} " in line and " -f 0 " in line
    from dante_nnunet.jobs.evaluation import evaluate_folders
    again = evaluate_folders(str(raw / "labelsTs"), str(out / "predictions" / f"Gated_seed0_{role}"),
                             json.loads((raw / "dataset.json").read_text()))
    assert all(again["mean"][r]["dice"] == pytest.approx(v["dice"]) for r, v in row.items())
    # what decision.json deploys, the chosen model's fold ensemble, predicted the test cases too
    assert gate["deployed"]["folds"] == [0, 2] == m["folds"]
    line = next(x for x in said.splitlines() if x.startswith("$ ") and f"Gated_seed0_deployed_{role}.tmp" in x)
    assert f" -d {m['dataset']} " in line and f" -tr {m['trainer']} " in line and " -f 0 2 " in line
    assert set(gate["deployed"]["mean"]) == set(row)
    md = (work / "decision.md").read_text()
    assert "| student - plain (± SE) |" in md and "| dante_teach - plain (± SE) |" in md


def test_sweep_step_trains_each_point_as_a_method_and_reports(tmp_path, monkeypatch):
    """run_sweep: every point of sweep_points goes through step_method under its suffixed trainer name (a
    suffixed name trains like any trainer: test_seeding's real trainings, test_trainer_class's nnU-Net lookup;
    step_method itself: the tiny benchmark above), then sweep.json / .md / .png."""
    cfg = json.loads(open(_cfg(tmp_path)).read())
    cfg["sweep"] = {"trainer": "DANTETrainer_demo", "lambda_pib": [0.0, 0.3], "lambda_align": [1.0]}
    runner = Runner(cfg, str(tmp_path / "results"))
    runner.check_trainers(sweep=True)                       # the three names resolve to trainer classes
    seen = []

    def step_method(method, test, seed=None):
        seen.append((method["name"], method["trainer"], test, seed))
        et = {"DANTETrainer_demo_pib0": 0.5, "DANTETrainer_demo_pib0.3": 0.6, "DANTETrainer_demo_align1": 0.7}
        return {"mean": {"whole tumor": {"dice": 0.9}, "enhancing tumor": {"dice": et[method["trainer"]]}}}

    monkeypatch.setattr(runner, "step_method", step_method)
    os.makedirs(runner.out, exist_ok=True)
    rows = runner.run_sweep({"limited": "L"})
    assert seen == [("sweep DANTETrainer_demo_pib0", "DANTETrainer_demo_pib0", {"limited": "L"}, None),
                    ("sweep DANTETrainer_demo_pib0.3", "DANTETrainer_demo_pib0.3", {"limited": "L"}, None),
                    ("sweep DANTETrainer_demo_align1", "DANTETrainer_demo_align1", {"limited": "L"}, None)]
    saved = json.load(open(os.path.join(runner.out, "sweep.json")))
    assert saved == json.loads(json.dumps(rows)) and [r["value"] for r in saved] == [0.0, 0.3, 1.0]
    md = open(os.path.join(runner.out, "sweep.md")).read()
    assert "| lambda_pib | 0.3 | `DANTETrainer_demo_pib0.3` | 90.0 | 60.0 |" in md
    assert os.path.getsize(os.path.join(runner.out, "sweep.png")) > 1000


def test_unknown_trainer_stops_before_any_work(tmp_path, monkeypatch):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)
    cfg = json.loads(open(_cfg(tmp_path, workdir=True)).read())
    cfg["methods"][2]["trainer"] = "DANTETrainer_typo"
    runner = Runner(cfg, str(tmp_path / "results"))
    with pytest.raises(BenchmarkConfigError, match="methods 'dante': no trainer class 'DANTETrainer_typo'"):
        runner.run_all()
    assert os.listdir(runner.env["nnUNet_raw"]) == []
    cfg["methods"][2].update(trainer="DANTETrainer", pretrained=True)
    cfg["stage1"] = {"checkpoint": str(tmp_path / "nowhere" / "checkpoint_final.pth")}
    with pytest.raises(BenchmarkConfigError, match=r"stage1.checkpoint .*nowhere.* does not exist"):
        Runner(cfg, str(tmp_path / "results")).run_all()
    cfg["stage1"] = {"trainer": "DANTEPretrainTrainer", "images": [str(tmp_path / "no_images")], "dataset": {"id": 9}}
    with pytest.raises(BenchmarkConfigError, match=r"stage1.images folder .*no_images does not exist"):
        Runner(cfg, str(tmp_path / "results")).run_all()
    assert os.listdir(runner.env["nnUNet_raw"]) == []


def test_select_keeps_the_lower_bound_and_the_teachers_it_needs(tmp_path):
    from dante_nnunet.benchmark.runner import select
    cfg = load_config(os.path.join(REPO, "configs", "phantom.json"))
    sub = select(cfg, ["Pseudo-labels from the upper bound", "gated"], [1])
    assert [m["name"] for m in sub["methods"]] == ["Lower bound (T1, T2, FLAIR)", "Upper bound (all channels)",
                                                   "Pseudo-labels from the upper bound", "gated"]
    assert sub["seeds"] == [1] and len(cfg["methods"]) > 4 and cfg["seeds"] == [0, 1, 2, 3, 4, 5]   # the config untouched
    assert select(cfg) == cfg
    with pytest.raises(BenchmarkConfigError, match=r"has no method\(s\) \['nope'\]"):
        select(cfg, ["nope"])
    with pytest.raises(BenchmarkConfigError, match=r"has seeds \[0, 1, 2, 3, 4, 5\]; not \[7\]"):
        select(cfg, None, [7])
