"""The gated privileged-teacher recipe (`dante_nnunet teach`): the decision rule and the per-scan record
against hand computations, the student dataset and its splits, and every bad input refused before any
work. Real phantom files; the end-to-end run through the stock commands is test_tiny_teach_end_to_end in test_benchmark.py (the
runner's gated method) and the CLI's in this file's slow tests."""
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dante_nnunet.cli import main
from dante_nnunet.data.phantom import write_phantom
from dante_nnunet.data.teach_dataset import (check_not_labelled_or_test, check_scans, keep_most_stable,
                                             pseudo_case_name, real_repeats, stability, student_splits, teach_splits,
                                             write_student_dataset)
from dante_nnunet.jobs.gate import DEFAULT_RULE, GateRule
from dante_nnunet.jobs.teach import (Teach, TeachError, TeachSettings, agreement, choose, decide, decision_table,
                                     read_decision)

REGIONS = ["WT", "TC", "ET"]


# ------------------------------------------------------------------ the decision rule
def _cases(values):
    """{case: {region: dice}} from rows [WT, TC, ET]."""
    return {f"c{i}": dict(zip(REGIONS, row)) for i, row in enumerate(values)}


def test_decide_by_hand_student_chosen():
    plain = _cases([[0.9, 0.8, 0.4], [0.9, 0.8, 0.5], [0.9, 0.8, 0.3], [0.9, 0.8, 0.4]])
    student = _cases([[0.9, 0.8, 0.7], [0.92, 0.8, 0.8], [0.9, 0.79, 0.7], [0.9, 0.8, 0.6]])
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    d = decide(plain, student, fold, REGIONS)
    # ET differences 0.3, 0.3, 0.4, 0.2: mean 0.3, SD (ddof 1) sqrt(0.02/3), SE that / 2
    et = d["regions"]["ET"]
    assert et["mean"] == pytest.approx(0.3) and et["se"] == pytest.approx(math.sqrt(0.02 / 3) / 2)
    assert et["per_fold"] == {"0": pytest.approx(0.3), "1": pytest.approx(0.3)} and et["sd_over_folds"] == pytest.approx(0)
    # per case D = mean over regions: (0.3, 0.34, 0.39, 0.2)/3
    D = np.array([0.3, 0.32, 0.39, 0.2]) / 3
    assert d["overall"]["mean"] == pytest.approx(D.mean())
    assert d["overall"]["se"] == pytest.approx(D.std(ddof=1) / 2)
    # TC: -0.01 on one case -> mean -0.0025, SE 0.0025: not worse by more than one SE
    assert d["regions"]["TC"]["mean"] == pytest.approx(-0.0025) and d["regions"]["TC"]["se"] == pytest.approx(0.0025)
    assert d["chosen"] == "student"
    assert "chosen: **student**" in decision_table(d, {"WT": 0.95, "TC": 0.9, "ET": 0.9})


def test_decide_keeps_the_plain_model_when_a_region_is_worse_or_the_gain_is_noise():
    plain = _cases([[0.9, 0.8, 0.4], [0.9, 0.8, 0.5], [0.9, 0.8, 0.3], [0.9, 0.8, 0.4]])
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    # ET +0.3 everywhere but TC -0.05 everywhere: TC SE is 0, so TC is worse by more than one SE
    worse = _cases([[0.9, 0.75, 0.7], [0.9, 0.75, 0.8], [0.9, 0.75, 0.6], [0.9, 0.75, 0.7]])
    d = decide(plain, worse, fold, REGIONS)
    assert d["chosen"] == "plain" and "worse on TC" in d["reason"]
    # gains +0.2 and -0.18 on ET alternately: the mean is far below one SE
    noisy = _cases([[0.9, 0.8, 0.6], [0.9, 0.8, 0.32], [0.9, 0.8, 0.5], [0.9, 0.8, 0.22]])
    d = decide(plain, noisy, fold, REGIONS)
    assert d["chosen"] == "plain" and "is not beyond the noise" in d["reason"]
    # identical models: no gain, plain kept
    assert decide(plain, plain, fold, REGIONS)["chosen"] == "plain"
    # one case: too few to decide
    one = {"c0": plain["c0"]}
    assert decide(one, _cases([[1, 1, 1]]), {"c0": 0}, REGIONS)["chosen"] == "plain"
    with pytest.raises(ValueError, match="validated on"):
        decide(plain, one, fold, REGIONS)


def test_decide_by_rule_and_the_default_rule():
    """ET gains +0.30, 0, +0.30, 0 (WT, TC equal): D = +0.1, 0, +0.1, 0; mean 0.05, SD 0.05774, SE 0.02887:
    1.73 SE, above the one-SE bar (the rule before issue 47), below a bar of 2 SE, and below the default
    t bar (t_0.95 with 3 degrees of freedom, 2.353, times an SE that also counts run noise)."""
    plain = _cases([[0.9, 0.8, 0.4]] * 4)
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    student = _cases([[0.9, 0.8, 0.7], [0.9, 0.8, 0.4], [0.9, 0.8, 0.7], [0.9, 0.8, 0.4]])
    d = decide(plain, student, fold, REGIONS, GateRule("se", level=1.0))
    assert d["overall"]["mean"] == pytest.approx(0.05) and d["overall"]["se"] == pytest.approx(0.05 / 3 ** 0.5)
    assert d["chosen"] == "student" and d["rule"]["bar"] == "se" and d["rule"]["level"] == 1.0
    d2 = decide(plain, student, fold, REGIONS, GateRule("se", level=2.0))
    assert d2["chosen"] == "plain" and "is not beyond the noise" in d2["reason"] and "Dice points" in d2["reason"]
    d3 = decide(plain, student, fold, REGIONS)
    tau = DEFAULT_RULE.run_noise
    assert d3["rule"]["bar"] == "t" and d3["rule"]["alpha"] == 0.05
    assert d3["overall"]["se_total"] == pytest.approx(math.sqrt(0.05 ** 2 / 3 + tau ** 2 / 2))
    assert d3["overall"]["bar"] == pytest.approx(2.3534 * d3["overall"]["se_total"], rel=1e-4)
    assert d3["chosen"] == "plain"
    assert "rule: mean gain over the regions > the one-sided 0.95 t quantile" in decision_table(d3)


def test_choose_between_candidates_by_hand():
    """Each candidate against the plain model by the same rule; of those passing, the larger mean gain."""
    plain = _cases([[0.9, 0.8, 0.4]] * 4)
    fold = {"c0": 0, "c1": 0, "c2": 1, "c3": 1}
    # student: ET +0.30, 0, +0.30, 0 -> D mean 0.05 (1.73 SE, passes); DANTE: ET +0.3 on every case but
    # TC -0.1 on every case -> D mean 0.0667 but TC worse by more than one SE (SE 0): refused
    student = _cases([[0.9, 0.8, 0.7], [0.9, 0.8, 0.4], [0.9, 0.8, 0.7], [0.9, 0.8, 0.4]])
    dante_worse = _cases([[0.9, 0.7, 0.7]] * 4)
    se1 = GateRule("se", level=1.0)
    d = choose(plain, {"student": student, "dante_teach": dante_worse}, fold, REGIONS, se1)
    assert d["chosen"] == "student" and d["reason"].startswith("student: the student gains: +5.00 Dice points")
    assert d["candidates"]["student"]["passed"] and not d["candidates"]["dante_teach"]["passed"]
    assert "the dante_teach is worse on TC" in d["candidates"]["dante_teach"]["reason"]
    assert d["overall"]["mean"] == pytest.approx(0.05)              # the first candidate's comparison on top
    # DANTE: ET +0.45, +0.15, +0.45, +0.15 -> D mean 0.1, SE 0.0289: passes with the larger gain
    dante_better = _cases([[0.9, 0.8, 0.85], [0.9, 0.8, 0.55], [0.9, 0.8, 0.85], [0.9, 0.8, 0.55]])
    d = choose(plain, {"student": student, "dante_teach": dante_better}, fold, REGIONS, se1)
    assert d["chosen"] == "dante_teach" and "student also passed with a smaller gain" in d["reason"]
    assert d["candidates"]["dante_teach"]["overall"]["mean"] == pytest.approx(0.1)
    assert d["overall"]["mean"] == pytest.approx(0.1)               # the chosen candidate's comparison on top
    assert d["regions"]["ET"]["student"] == pytest.approx(0.7)      # (its Dice, under the column "student")
    table = decision_table(d)
    assert "| region | teacher (all channels) | plain | dante_teach |" in table and "chosen: **dante_teach**" in table
    # neither passes: the plain model, with both reasons
    d = choose(plain, {"student": plain, "dante_teach": dante_worse}, fold, REGIONS, se1)
    assert d["chosen"] == "plain" and "student: " in d["reason"] and "dante_teach: " in d["reason"]
    # one candidate: decide itself
    assert choose(plain, {"student": student}, fold, REGIONS, se1) == decide(plain, student, fold, REGIONS, se1)


def test_late_rise_by_hand_from_an_nnunet_checkpoint_log(tmp_path):
    """The rise of nnU-Net's moving-average pseudo Dice over the last quarter of a training (decision.json's
    ``curves``), by hand; a checkpoint without nnU-Net's log is named."""
    import torch
    from dante_nnunet.jobs.teach import curves_line, late_rise
    ema = [0.5 + 0.01 * i for i in range(8)]          # 8 epochs: the last quarter is 2 epochs, 0.57 - 0.55
    path = str(tmp_path / "checkpoint_final.pth")
    torch.save({"network_weights": {}, "logging": {"ema_fg_dice": ema, "train_losses": [0.0] * 8}}, path)
    c = late_rise(path)
    assert c["epochs"] == 8 and c["last"] == pytest.approx(0.57) and c["rise"] == pytest.approx(0.02)
    assert late_rise(path, fraction=1.0)["rise"] == pytest.approx(0.07)   # from the first epoch
    line = curves_line({"plain": {"0": {"rise": 0.001}}, "student": {"0": c, "2": {"rise": -0.004}}})
    assert line.endswith("per fold: plain 0: +0.1; student 0: +2.0, 2: -0.4")
    d = decide(_cases([[0.9, 0.8, 0.4]] * 2), _cases([[0.9, 0.8, 0.5]] * 2), {"c0": 0, "c1": 1}, REGIONS)
    assert "rise over the last quarter" not in decision_table(d)
    d["curves"] = {"student": {"0": c}}
    assert decision_table(d).endswith("per fold: student 0: +2.0")
    torch.save({"network_weights": {}}, path)
    with pytest.raises(ValueError, match="checkpoint_final.pth holds no nnU-Net log"):
        late_rise(path)


# ------------------------------------------------------------------ the per-scan record
def test_stability_by_hand():
    p = np.zeros((2, 10))
    p[0, :4] = 0.95            # channel 0: 4 sure voxels, 1 unsure -> 1 - 1/5
    p[0, 4] = 0.5
    p[1, :2] = 0.3             # channel 1: 2 unsure, 2 sure -> 1 - 2/4
    p[1, 2:4] = 0.91
    assert stability(p) == pytest.approx(0.5)
    assert stability(np.zeros((3, 5))) == 1.0          # nothing anywhere: sure
    assert stability(np.full((1, 4), 0.5)) == 0.0       # everything unsure


def test_agreement_by_hand():
    regions = {"WT": [1, 2], "ET": [2]}
    a = np.array([0, 1, 1, 2, 2])
    b = np.array([0, 1, 2, 2, 0])
    # WT: a {1,2,3,4}, b {1,2,3} -> 2*3/7; ET: a {3,4}, b {2,3} -> 2*1/4
    assert agreement([a, b], regions) == pytest.approx((6 / 7 + 0.5) / 2)
    assert agreement([a, a, a], regions) == 1.0
    assert math.isnan(agreement([a], regions))


def test_keep_most_stable():
    scores = {"a": 0.9, "b": 0.2, "c": 0.9, "d": 0.5}
    assert keep_most_stable(scores, 1.0) == ["a", "b", "c", "d"]
    assert keep_most_stable(scores, 0.5) == ["a", "c"]
    assert keep_most_stable(scores, 0.6) == ["a", "c", "d"]       # ceil(2.4) = 3
    with pytest.raises(ValueError, match="keep fraction"):
        keep_most_stable(scores, 0)


# ------------------------------------------------------------------ inputs and the student dataset
@pytest.fixture()
def source(tmp_path):
    """A types phantom: 6 labelled cases, 2 test cases, 3 unlabelled scans with every channel."""
    return write_phantom("types", 741, raw_root=str(tmp_path / "raw"), num_train=6, num_test=2, shape=(16, 16, 16),
                         seed=2, num_unlabelled=3)


def test_check_scans_refuses_limited_only_scans_and_taken_names(source, tmp_path):
    unl = os.path.join(source, "imagesUnlabelled")
    scans = check_scans(unl, source)
    assert len(scans) == 3 and all(len(f) == 4 for f in scans.values())
    lim = tmp_path / "limited"
    lim.mkdir()
    for s in scans:   # T1, T2, FLAIR only
        for new, c in enumerate((0, 2, 3)):
            shutil.copyfile(scans[s][c], lim / f"{s}_{new:04d}.nii.gz")
    with pytest.raises(ValueError, match=r"has 3 channel files; the teacher reads all 4 .* privileged channel\(s\) "
                                         r"T1ce are missing"):
        check_scans(str(lim), source)
    named = tmp_path / "named"
    shutil.copytree(unl, named)
    for c in range(4):
        os.rename(named / f"{next(iter(scans))}_{c:04d}.nii.gz", named / f"BraTSTypesPhantom_002_{c:04d}.nii.gz")
    with pytest.raises(ValueError, match="scan 'BraTSTypesPhantom_002' .* has the name of a labelled case"):
        check_scans(str(named), source)


def test_a_stray_file_in_the_scan_folder_is_named(source, tmp_path):
    d = tmp_path / "scans"
    shutil.copytree(os.path.join(source, "imagesUnlabelled"), d)
    (d / "notes.txt").write_text("not a scan")
    with pytest.raises(ValueError, match=r"notes.txt: not a scan's channel file .* must hold only the scans'"):
        check_scans(str(d), source)


def test_cuda_without_a_gpu_is_refused_before_any_work(source, tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # this machine as a CPU-only one
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    for k in ("nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, str(tmp_path / k))
        os.makedirs(tmp_path / k)
    assert main(["teach", "-d", "741", "--scans", os.path.join(source, "imagesUnlabelled"), "-o", "745"]) == 2
    assert "-device cuda (the default), but torch finds no CUDA device here" in capsys.readouterr().err
    assert not os.listdir(tmp_path / "nnUNet_results") and os.listdir(tmp_path / "raw") == ["Dataset741_BraTSTypesPhantom"]


@pytest.mark.parametrize("option,value,message", [("--keep-fraction", "0", "keep fraction must be in"),
                                                   ("--real-share", "1", "share must be in"),
                                                   ("--mask-unsure", "0.5", r"unsure band must be in \(0.5, 1\)"),
                                                   ("--finetune", "1.5", r"share of the schedule must be in \(0, 1\]"),
                                                   ("--rounds", "745", "round dataset id 745 must be 1..999 and differ"),
                                                   ("--rounds", "741", "round dataset id 741 must be 1..999 and differ")])
def test_bad_recipe_options_are_refused_before_any_work(source, tmp_path, monkeypatch, capsys, option, value, message):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    for k in ("nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, str(tmp_path / k))
        os.makedirs(tmp_path / k)
    assert main(["teach", "-d", "741", "--scans", os.path.join(source, "imagesUnlabelled"), "-o", "745",
                 "-device", "cpu", option, value]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.listdir(tmp_path / "nnUNet_results") and not os.listdir(tmp_path / "nnUNet_preprocessed")


def test_a_scan_with_the_voxels_of_a_labelled_or_test_case_is_refused(source, tmp_path):
    unl = os.path.join(source, "imagesUnlabelled")
    check_not_labelled_or_test(check_scans(unl, source), source)   # the phantom's scans are new cases
    for what, files in (("labelled case 'BraTSTypesPhantom_003'",
                         [os.path.join(source, "imagesTr", f"BraTSTypesPhantom_003_{c:04d}.nii.gz") for c in range(4)]),
                        ("test case 'BraTSTypesPhantom_007'",
                         [os.path.join(source, "imagesTs_allchannels", f"BraTSTypesPhantom_007_{c:04d}.nii.gz")
                          for c in range(4)])):
        d = tmp_path / what.split()[0]
        shutil.copytree(unl, d)
        for c, f in enumerate(files):   # a labelled / test case under another name
            shutil.copyfile(f, d / f"Renamed_{c:04d}.nii.gz")
        with pytest.raises(ValueError, match=f"scan 'Renamed' .* has the same voxels as {what}"):
            check_not_labelled_or_test(check_scans(str(d), source), source)


def test_teach_splits_writes_nnunets_own_split_and_checks_folds(source, tmp_path):
    pre = str(tmp_path / "pre")
    splits = teach_splits(source, pre, [0, 1])
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    cases = sorted(f[:-7] for f in os.listdir(os.path.join(source, "labelsTr")))
    assert splits == generate_crossval_split(cases, seed=12345, n_splits=5)
    assert json.load(open(os.path.join(pre, "splits_final.json"))) == splits
    with pytest.raises(ValueError, match="fold 5: .* has folds 0..4"):
        teach_splits(source, pre, [0, 5])
    few = write_phantom("types", 742, raw_root=str(tmp_path / "raw2"), num_train=4, num_test=1, shape=(16, 16, 16))
    with pytest.raises(ValueError, match="has 4 labelled case.* needs at least 5"):
        teach_splits(few, str(tmp_path / "pre2"), [0])


def test_teach_splits_refuses_a_split_that_would_leak_or_overwrite(source, tmp_path):
    pre = tmp_path / "pre"
    splits = teach_splits(source, str(pre), [0, 1])
    f = pre / "splits_final.json"
    leak = [dict(s) for s in splits]
    leak[1] = {"train": splits[1]["train"] + splits[1]["val"][:1], "val": splits[1]["val"]}
    f.write_text(json.dumps(leak))
    with pytest.raises(ValueError, match=r"fold 1 of .* trains and validates on case .*would not be held out"):
        teach_splits(source, str(pre), [0, 1])
    shared = [dict(s) for s in splits]
    shared[1] = {"train": splits[1]["train"], "val": splits[1]["val"] + splits[0]["val"][:1]}
    shared[1]["train"] = [c for c in shared[1]["train"] if c not in shared[1]["val"]]
    f.write_text(json.dumps(shared))
    with pytest.raises(ValueError, match=r"folds 0 and 1 of .* both validate on case"):
        teach_splits(source, str(pre), [0, 1])
    assert teach_splits(source, str(pre), [0])        # one of the two folds alone is fine
    f.write_text(json.dumps(splits))
    # a labelled case named like the recipe's pseudo-labelled copies
    case = splits[0]["val"][0]
    for sub in ("imagesTr", "labelsTr"):
        for name in os.listdir(os.path.join(source, sub)):
            if name.startswith(case):
                os.rename(os.path.join(source, sub, name), os.path.join(source, sub, "pl0_x" + name[len(case):]))
    os.remove(f)
    with pytest.raises(ValueError, match=r"labelled case 'pl0_x' .* names 'pl<digit>...' are the recipe's own"):
        teach_splits(source, str(tmp_path / "pre3"), [0])


def test_check_labelled_cases_refuses_missing_privileged_channels_and_unlabelled_cases(source):
    from dante_nnunet.data.teach_dataset import check_labelled_cases
    check_labelled_cases(source)
    dj_file = os.path.join(source, "dataset.json")
    dj = json.load(open(dj_file))
    first = sorted(os.listdir(os.path.join(source, "labelsTr")))[0][:-7]
    with open(dj_file, "w") as fh:
        json.dump({**dj, "dante": {**dj["dante"], "unlabelled_cases": [first]}}, fh)
    with pytest.raises(ValueError, match=rf"lists 1 unlabelled case\(s\) .*'{first}'.* labelled cases only"):
        check_labelled_cases(source)
    with open(dj_file, "w") as fh:
        json.dump(dj, fh)
    os.remove(os.path.join(source, "imagesTr", f"{first}_0001.nii.gz"))     # its T1ce
    with pytest.raises(ValueError, match=rf"labelled case '{first}' .* has 3 of the 4 channel files"):
        check_labelled_cases(source)


def test_folds_adding_cases_by_hand():
    from dante_nnunet.jobs.teach import folds_adding_cases
    # nnU-Net's 5 folds: every other fold adds its own cases
    five = [{"train": [], "val": [f"c{2 * k}", f"c{2 * k + 1}"]} for k in range(5)]
    assert folds_adding_cases(five, [0, 1]) == [2, 3, 4]
    # nested folds (the testbed): folds 0-2 validate on the same last cases, fold 3 on the first ones
    nested = [{"train": ["a"], "val": ["z"]}, {"train": ["a", "b"], "val": ["z"]}, {"train": ["a", "b", "c"], "val": ["z"]},
              {"train": ["z"], "val": ["a"]}]
    assert folds_adding_cases(nested, [0, 3]) == []
    assert folds_adding_cases(nested, [0]) == [3]
    assert folds_adding_cases(nested, [1]) == [3]


def _label_folder(scans, out, value):
    os.makedirs(out)
    for s, files in scans.items():
        im = sitk.ReadImage(files[0])
        lab = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(im).shape, value, np.uint8))
        lab.CopyInformation(im)
        sitk.WriteImage(lab, os.path.join(out, f"{s}.nii.gz"))
    return out


def test_student_dataset_gives_fold_k_only_its_teachers_labels(source, tmp_path):
    unl = os.path.join(source, "imagesUnlabelled")
    scans = check_scans(unl, source)
    splits = teach_splits(source, str(tmp_path / "pre"), [0, 1])
    labels = {0: _label_folder(scans, str(tmp_path / "t0"), 1), 1: _label_folder(scans, str(tmp_path / "t1"), 2)}
    names = sorted(scans)
    kept = {0: names, 1: names[:2]}
    folder = write_student_dataset(source, scans, labels, kept, splits, [0, 1], str(tmp_path / "raw"),
                                   "Dataset743_Student")
    dj = json.load(open(os.path.join(folder, "dataset.json")))
    assert dj["pseudo_labelled_cases"] == sorted([pseudo_case_name(0, s) for s in names]
                                                 + [pseudo_case_name(1, s) for s in names[:2]])
    for k, value in ((0, 1), (1, 2)):   # fold k's copies carry fold k's teacher's labels
        lab = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "labelsTr", f"pl{k}_{names[0]}.nii.gz")))
        assert (lab == value).all()
    ss = student_splits(splits, [0, 1], kept)
    assert len(ss) == 5
    for k in (0, 1):
        assert ss[k]["val"] == sorted(splits[k]["val"])                    # the same real validation cases
        assert set(ss[k]["train"]) == set(splits[k]["train"]) | {f"pl{k}_{s}" for s in kept[k]}
        assert not set(ss[k]["val"]) & set(ss[k]["train"])
    assert ss[2] == {"train": sorted(splits[2]["train"]), "val": sorted(splits[2]["val"])}
    # real_share 0.5: fold 0 lists each real training case r times, r = round(1 x n_pseudo / n_real)
    r = real_repeats(len(splits[0]["train"]), len(names), 0.5)
    half = student_splits(splits, [0, 1], kept, real_share=0.5)
    assert half[0]["train"] == sorted(list(splits[0]["train"]) * r + [f"pl0_{s}" for s in names])
    assert half[0]["val"] == ss[0]["val"] and half[2] == ss[2]


def test_mask_unsure_by_hand():
    from dante_nnunet.data.teach_dataset import ignore_label_of, labels_from_probabilities, mask_unsure
    # regions WT, TC, ET (sigmoid) over 4 voxels; band 0.9: unsure where some p is in (0.1, 0.9)
    p = np.array([[0.95, 0.95, 0.50, 0.05],      # WT
                  [0.95, 0.92, 0.05, 0.05],      # TC
                  [0.95, 0.20, 0.05, 0.08]])     # ET
    seg = np.array([3, 2, 1, 0], dtype=np.uint8)
    assert mask_unsure(seg, p, 0.9, 4, has_regions=True).tolist() == [3, 4, 4, 0]
    assert mask_unsure(seg, p, 0.6, 4, has_regions=True).tolist() == [3, 2, 4, 0]   # (0.4, 0.6): only the 0.50
    assert seg.tolist() == [3, 2, 1, 0]                                                 # the input is kept
    assert labels_from_probabilities(p, [1, 2, 3]).tolist() == [3, 2, 0, 0]             # p > 0.5, in order
    # labels (softmax, background first): unsure where the largest probability is below the band
    q = np.array([[0.05, 0.5, 0.85], [0.95, 0.5, 0.15]])
    assert mask_unsure(np.array([1, 0, 0]), q, 0.8, 2, has_regions=False).tolist() == [1, 2, 0]
    assert labels_from_probabilities(q, None).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="band must be in"):
        mask_unsure(seg, p, 0.5, 4, True)
    with pytest.raises(ValueError, match="do not match"):
        mask_unsure(seg[:3], p, 0.9, 4, True)
    assert ignore_label_of({"labels": {"background": 0, "WT": [1, 2, 3], "TC": [2, 3], "ET": 3}}) == 4
    assert ignore_label_of({"labels": {"background": 0, "a": 1, "ignore": 2}}) == 2


@pytest.mark.slow
def test_student_dataset_masks_the_teachers_unsure_voxels_with_nnunets_ignore_label(source, tmp_path):
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    unl = os.path.join(source, "imagesUnlabelled")
    scans = check_scans(unl, source)
    splits = teach_splits(source, str(tmp_path / "pre"), [0])
    names = sorted(scans)
    out = tmp_path / "t0"
    os.makedirs(out)
    for i, (scan, files) in enumerate(sorted(scans.items())):
        im = sitk.ReadImage(files[0])
        shape = sitk.GetArrayFromImage(im).shape
        probs = np.zeros((3,) + shape, np.float32)              # WT, TC, ET
        probs[:, :, :, : shape[2] // 2] = 0.97                    # left half: sure ET (label 3)
        probs[2, : i + 1, :, : shape[2] // 2] = 0.6               # the first i + 1 slices' ET unsure
        seg = np.zeros(shape, np.uint8)
        seg[:, :, : shape[2] // 2] = 3
        seg[: i + 1, :, : shape[2] // 2] = 3 if i != 1 else 2     # scan 1: argmax would say TC (0.6 > 0.5 paints 3)
        lab = sitk.GetImageFromArray(seg)
        lab.CopyInformation(im)
        sitk.WriteImage(lab, str(out / f"{scan}.nii.gz"))
        np.savez_compressed(str(out / f"{scan}.npz"), probabilities=probs)
    kept = {0: [names[0], names[2]]}
    folder = write_student_dataset(source, scans, {0: str(out)}, kept, splits, [0], str(tmp_path / "raw"),
                                   "Dataset744_Masked", unsure_band=0.9)
    dj = json.load(open(os.path.join(folder, "dataset.json")))
    assert dj["labels"]["ignore"] == 4 and dj["pseudo_label_masking"]["unsure_band"] == 0.9
    lm = LabelManager(dj["labels"], dj["regions_class_order"])   # nnU-Net takes the ignore label beside regions
    assert lm.has_ignore_label and lm.ignore_label == 4
    for i, scan in ((0, names[0]), (2, names[2])):
        lab = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "labelsTr", f"pl0_{scan}.nii.gz")))
        half = lab.shape[2] // 2
        assert (lab[: i + 1, :, :half] == 4).all() and (lab[i + 1:, :, :half] == 3).all() and (lab[:, :, half:] == 0).all()
        assert dj["pseudo_label_masking"]["masked_fraction"][f"pl0_{scan}"] == pytest.approx(np.mean(lab == 4))
    real = splits[0]["train"][0]                                  # real labels are copied untouched
    assert 4 not in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "labelsTr", real + ".nii.gz"))))
    # probabilities that do not reproduce the label map where the teacher is sure: refused, nothing written
    kept_bad = {0: [names[1]]}
    shape = np.load(str(out / f"{names[1]}.npz"))["probabilities"].shape
    np.savez_compressed(str(out / f"{names[1]}.npz"), probabilities=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="do not reproduce"):
        write_student_dataset(source, scans, {0: str(out)}, kept_bad, splits, [0], str(tmp_path / "raw"),
                              "Dataset745_Bad", unsure_band=0.9)
    assert not os.path.exists(tmp_path / "raw" / "Dataset745_Bad")
    os.remove(str(out / f"{names[1]}.npz"))
    with pytest.raises(FileNotFoundError, match="save_probabilities"):
        write_student_dataset(source, scans, {0: str(out)}, kept_bad, splits, [0], str(tmp_path / "raw"),
                              "Dataset746_NoProbs", unsure_band=0.9)


def _probability_folder(scans, out, probs_of):
    """Each scan's label map (nnU-Net's regions rule on ``probs_of(shape)``) and probabilities, as
    nnUNetv2_predict --save_probabilities writes them."""
    from dante_nnunet.data.teach_dataset import labels_from_probabilities
    os.makedirs(out)
    for s, files in scans.items():
        im = sitk.ReadImage(files[0])
        probs = probs_of(sitk.GetArrayFromImage(im).shape)
        lab = sitk.GetImageFromArray(labels_from_probabilities(probs, [1, 2, 3]).astype(np.uint8))
        lab.CopyInformation(im)
        sitk.WriteImage(lab, os.path.join(out, f"{s}.nii.gz"))
        np.savez_compressed(os.path.join(out, f"{s}.npz"), probabilities=probs)
    return out


def test_ensemble_labels_by_hand_and_the_deployed_students_dataset(source, tmp_path):
    from dante_nnunet.data.teach_dataset import ensemble_labels
    scans = check_scans(os.path.join(source, "imagesUnlabelled"), source)
    names = sorted(scans)

    def first(shape):    # WT 0.9 everywhere; ET 0.8 in the left half, 0.1 elsewhere; TC 0.3
        p = np.zeros((3,) + shape, np.float32)
        p[0], p[1], p[2] = 0.9, 0.3, 0.1
        p[2, :, :, : shape[2] // 2] = 0.8
        return p

    def second(shape):   # WT 0.2; TC 0.9; ET 0.4 everywhere
        p = np.zeros((3,) + shape, np.float32)
        p[0], p[1], p[2] = 0.2, 0.9, 0.4
        return p
    a = _probability_folder(scans, str(tmp_path / "t0"), first)
    b = _probability_folder(scans, str(tmp_path / "t2"), second)
    out = ensemble_labels([a, b], names, ".nii.gz", str(tmp_path / "ens"), [1, 2, 3])
    for s in names:
        lab = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, f"{s}.nii.gz")))
        half = lab.shape[2] // 2
        # means: WT 0.55 > 0.5 -> 1; TC 0.6 -> 2 over it; ET (0.8 + 0.4) / 2 = 0.6 left -> 3, 0.25 right -> stays 2
        assert (lab[:, :, :half] == 3).all() and (lab[:, :, half:] == 2).all()
        assert sitk.ReadImage(os.path.join(out, f"{s}.nii.gz")).GetSpacing() == sitk.ReadImage(
            scans[s][0]).GetSpacing()
    with pytest.raises(FileExistsError, match="new folder"):
        ensemble_labels([a, b], names, ".nii.gz", out, [1, 2, 3])
    # a missing probability file, or probabilities that do not make the label map beside them: refused, no folder
    os.remove(os.path.join(b, f"{names[1]}.npz"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(b, f"{names[1]}.npz"))):
        ensemble_labels([a, b], names, ".nii.gz", str(tmp_path / "ens2"), [1, 2, 3])
    shape = np.load(os.path.join(a, f"{names[2]}.npz"))["probabilities"].shape
    np.savez_compressed(os.path.join(a, f"{names[2]}.npz"), probabilities=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="do not reproduce"):
        ensemble_labels([a], names, ".nii.gz", str(tmp_path / "ens3"), [1, 2, 3])
    assert sorted(os.listdir(tmp_path)).count("ens2") == 0 and not (tmp_path / "ens3").exists()
    assert not (tmp_path / "ens3.partial").exists()
    # the deployed student's dataset: every labelled case of the folds + each scan once (ens_<scan>)
    splits = teach_splits(source, str(tmp_path / "pre"), [0, 1])
    everything = sorted({c for k in (0, 1) for c in splits[k]["train"] + splits[k]["val"]})
    folder = write_student_dataset(source, scans, {0: out}, {0: names}, [{"train": everything, "val": []}], [0],
                                   str(tmp_path / "raw"), "Dataset747_All", ensemble=True)
    dj = json.load(open(os.path.join(folder, "dataset.json")))
    assert dj["pseudo_labelled_cases"] == [f"ens_{s}" for s in names]
    assert dj["numTraining"] == len(everything) + len(names) and "ensemble" in dj["description"]
    assert sorted(os.listdir(os.path.join(folder, "labelsTr"))) == sorted(
        [f"{c}.nii.gz" for c in everything] + [f"ens_{s}.nii.gz" for s in names])


def test_read_decision_prefers_the_deployed_student(tmp_path):
    f = tmp_path / "decision.json"
    model = {"dataset": 580, "trainer": "LowerBoundTrainer", "configuration": "3d_fullres", "folds": [0, 1]}
    f.write_text(json.dumps({"model": model, "deploy": {**model, "dataset": 590, "folds": [0]}}))
    assert read_decision(str(f))["dataset"] == 590 and read_decision(str(f))["folds"] == ["0"]


def test_real_repeats_by_hand_and_nnunets_loader_draws_at_that_share():
    assert real_repeats(4, 64, 0.5) == 16                   # 0.5 / 0.5 x 64 / 4
    assert real_repeats(4, 64, 0.25) == 5                   # round(1/3 x 16) = round(5.33)
    assert real_repeats(6, 2, 0.1) == 1                     # never below once
    assert real_repeats(4, 64, None) == 1 and real_repeats(4, 0, 0.5) == 1
    with pytest.raises(ValueError, match="share must be in"):
        real_repeats(4, 64, 1.0)
    # nnU-Net 2.8.1's own dataset and loader keep the repeats and draw uniformly over the list
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    split = student_splits([{"train": ["a", "b"], "val": ["c"]}], [0], {0: ["x", "y", "z", "w"]}, real_share=0.5)
    assert split[0]["train"] == ["a", "a", "b", "b", "pl0_w", "pl0_x", "pl0_y", "pl0_z"]
    loader = nnUNetDataLoader(nnUNetDatasetBlosc2("unused", list(split[0]["train"])), 2, (8, 8, 8), (8, 8, 8),
                              LabelManager({"background": 0, "x": 1}, None))
    np.random.seed(0)
    draws = np.concatenate([loader.get_indices() for _ in range(4000)])
    assert np.mean([not d.startswith("pl") for d in draws]) == pytest.approx(0.5, abs=0.02)


def test_cli_refuses_bad_input_before_any_work(source, tmp_path, monkeypatch, capsys):
    raw = str(tmp_path / "raw")
    for k, v in (("nnUNet_raw", raw), ("nnUNet_preprocessed", str(tmp_path / "pre")),
                 ("nnUNet_results", str(tmp_path / "res"))):
        monkeypatch.setenv(k, v)
        os.makedirs(v, exist_ok=True)
    unl = os.path.join(source, "imagesUnlabelled")
    args = ["teach", "-d", "741", "--scans", unl, "-o", "745", "-device", "cpu"]
    assert main(args) == 2
    assert "plan and preprocess dataset 741 first" in capsys.readouterr().err
    pre = tmp_path / "pre" / "Dataset741_BraTSTypesPhantom"
    pre.mkdir(parents=True)
    (pre / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    assert main(args[:-2] + ["-c", "3d_lowres", "-device", "cpu"]) == 2
    assert "has no configuration '3d_lowres'" in capsys.readouterr().err
    os.makedirs(os.path.join(raw, "Dataset745_Taken"))
    assert main(args) == 2
    assert "dataset id 745 is in use" in capsys.readouterr().err
    assert main(args[:6] + ["746", "-device", "cpu", "-f", "0", "7"]) == 2
    assert "fold 7" in capsys.readouterr().err
    # the DANTE candidate: both options or neither, its id neither the labelled nor the student dataset's,
    # nor a dataset that is not the labelled cases + these scans
    assert main(args[:6] + ["746", "-device", "cpu", "--dante-teach-id", "741"]) == 2
    assert "must be 1..999 and neither the labelled nor the student dataset's" in capsys.readouterr().err
    assert main(args[:6] + ["746", "-device", "cpu", "--dante-teach-id", "745"]) == 2
    err = capsys.readouterr().err
    assert "dataset id 745 is in use" in err and "Dataset745_Taken has no dataset.json" in err
    # the deployed student's dataset: a free id other than the recipe's, and not with a fine-tune
    assert main(args[:6] + ["746", "-device", "cpu", "--deploy-all", "746"]) == 2
    assert "the deployed student's dataset id 746 must be 1..999 and differ" in capsys.readouterr().err
    assert main(args[:6] + ["746", "-device", "cpu", "--deploy-all", "748", "--finetune", "0.5"]) == 2
    assert "--deploy-all with --finetune is not built" in capsys.readouterr().err
    # nothing was written: no student dataset, no work folder
    assert sorted(os.listdir(raw)) == ["Dataset741_BraTSTypesPhantom", "Dataset745_Taken"]
    assert not os.listdir(tmp_path / "res")


@pytest.mark.slow   # nnU-Net's trainer lookup imports every trainer module (about 20 s)
def test_a_rerun_voxel_checks_only_new_or_changed_scans_and_every_test_folder(source, tmp_path, monkeypatch, capsys):
    from dante_nnunet.jobs.nnunet_jobs import nnunet_environment
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    for k in ("nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, str(tmp_path / k))
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset741_BraTSTypesPhantom"
    pre.mkdir(parents=True)
    (pre / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    scans = tmp_path / "scans"
    shutil.copytree(os.path.join(source, "imagesUnlabelled"), scans)
    settings = TeachSettings(source=741, scans=str(scans), student_id=745, student_name="S", folds=[0, 1],
                             device="cpu")
    job = Teach(settings, nnunet_environment())
    job.check()
    said = capsys.readouterr().out
    assert "voxel check of 3 scan(s)" in said
    # 6 labelled cases, folds 0 and 1 validate on 3 of them (nnU-Net: 2, 1, 1, 1, 1): the gate's n is small, and the command says so
    assert "warning: the gate will judge on 3 validation case(s) (folds 0, 1)" in said
    assert "the split's folds 2, 3, 4 would add theirs (-f)" in said
    job.start()
    Teach(settings, nnunet_environment()).check()                     # a rerun: nothing new, nothing read
    assert "voxel check" not in capsys.readouterr().out
    labelled = sorted(os.listdir(os.path.join(source, "imagesTr")))[:4]   # a labelled case's 4 files
    for c, f in enumerate(labelled):
        shutil.copyfile(os.path.join(source, "imagesTr", f), scans / f"Late_{c:04d}.nii.gz")
    with pytest.raises(ValueError, match=r"scan 'Late' .* has the same voxels as labelled case"):
        Teach(settings, nnunet_environment()).check()
    assert "voxel check of 1 scan(s)" in capsys.readouterr().out      # only the new scan was read
    for c in range(4):
        os.remove(scans / f"Late_{c:04d}.nii.gz")
    # a test folder the first run did not know: every scan is checked against it
    test_dir = tmp_path / "outside_tests"
    test_dir.mkdir()
    first = sorted(os.listdir(scans))[0].rsplit("_", 1)[0]
    for new, c in enumerate((0, 2, 3)):                                 # its limited channels, renumbered
        shutil.copyfile(scans / f"{first}_{c:04d}.nii.gz", test_dir / f"Test1_{new:04d}.nii.gz")
    with pytest.raises(ValueError, match=rf"scan '{first}' .* same voxels as test case 'Test1'"):
        Teach(TeachSettings(**{**settings.__dict__, "test_dirs": [str(test_dir)]}), nnunet_environment()).check()
    with pytest.raises(TeachError, match="test folder .*missing does not exist"):
        Teach(TeachSettings(**{**settings.__dict__, "test_dirs": [str(tmp_path / "missing")]}),
              nnunet_environment()).check()
    # once the student dataset is written, a changed scan set is refused
    os.makedirs(tmp_path / "raw" / "Dataset745_S")
    os.remove(scans / f"{first}_0000.nii.gz")
    for c in range(1, 4):
        os.remove(scans / f"{first}_{c:04d}.nii.gz")
    with pytest.raises(TeachError, match=r"has changed since this run's student dataset was written \(0 scan\(s\) "
                                         r"added.*1 gone"):
        Teach(settings, nnunet_environment()).check()


@pytest.mark.parametrize("option, message", [(["--min-gain-se", "-1"], "level must be a finite number >= 0"),
                                             (["--run-noise", "-0.5"], "run_noise must be a finite number >= 0"),
                                             (["--gate-alpha", "0.6"], "alpha must be in \\(0, 0.5\\)")])
def test_cli_refuses_a_bad_gate_before_any_work(source, tmp_path, monkeypatch, capsys, option, message):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    for k in ("nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, str(tmp_path / k))
        os.makedirs(tmp_path / k)
    args = ["teach", "-d", "741", "--scans", os.path.join(source, "imagesUnlabelled"), "-o", "745", "-device", "cpu"]
    assert main(args + option) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.listdir(tmp_path / "nnUNet_results")


def test_teacher_predictions_are_kept_only_when_a_record_of_that_folds_teacher_vouches_for_them(source, tmp_path,
                                                                                               capsys):
    """Which model made fold k's pseudo-labels is recorded beside them (nnU-Net records no such thing): a
    folder of predictions made by another fold's teacher, by a teacher since retrained, or by hand is refused;
    the parts of a sharded prediction (nnU-Net's -part_id i -num_parts n: the sorted scans [i::n]) together
    vouch for every scan."""
    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res")}
    job = Teach(TeachSettings(source=741, scans=os.path.join(source, "imagesUnlabelled"), student_id=745,
                              student_name="S", folds=[0, 1], device="cpu"), env)
    scans = check_scans(job.s.scans, source)
    for k in (0, 1):   # the teachers' checkpoints: only their size and time are read
        ck = os.path.join(job.results("Dataset741_BraTSTypesPhantom", "UpperBoundTrainer"), f"fold_{k}")
        os.makedirs(ck)
        with open(os.path.join(ck, "checkpoint_final.pth"), "wb") as fh:
            fh.write(b"x" * (10 + k))
    out = _label_folder(scans, os.path.join(job.work, "fold_0", "teacher_predictions"), 1)
    with pytest.raises(TeachError, match=r"holds 3 prediction\(s\) that no record of fold 0's teacher .* vouches"):
        job.predict_scans(0, scans)
    made_by = job.predictions_made_by(0)
    os.makedirs(made_by)
    with open(os.path.join(made_by, "part0of1.json"), "w") as fh:      # made by fold 1's teacher
        json.dump({"model": job.teacher_model(1), "scans": sorted(scans)}, fh)
    with pytest.raises(TeachError, match="no record of fold 0's teacher"):
        job.predict_scans(0, scans)
    names = sorted(scans)
    for i in (0, 1):                                                    # two parts of fold 0's teacher
        with open(os.path.join(made_by, f"part{i}of2.json"), "w") as fh:
            json.dump({"model": job.teacher_model(0), "scans": names[i::2], "part": [i, 2]}, fh)
    assert job.predict_scans(0, scans) == out
    assert "holds every scan, skipped" in capsys.readouterr().out
    ck0 = os.path.join(job.results("Dataset741_BraTSTypesPhantom", "UpperBoundTrainer"), "fold_0", "checkpoint_final.pth")
    with open(ck0, "ab") as fh:                                         # the teacher was retrained since
        fh.write(b"more")
    with pytest.raises(TeachError, match="no record of fold 0's teacher"):
        job.predict_scans(0, scans)
    with pytest.raises(TeachError, match="needs 0 <= I < N"):
        job.predict_part([2, 2])
    # a teacher round: round 1's teacher (trained on round 1's dataset) writes and vouches for its own folder;
    # round 0's records vouch for nothing there
    rounds = Teach(TeachSettings(**{**job.s.__dict__, "rounds": [746]}), env)
    assert rounds.teacher_dataset(1) == (746, "Dataset746_SR1") and rounds.teacher_dataset(0)[0] == 741
    ck = os.path.join(rounds.results("Dataset746_SR1", "UpperBoundTrainer"), "fold_0")
    os.makedirs(ck)
    with open(os.path.join(ck, "checkpoint_final.pth"), "wb") as fh:
        fh.write(b"y" * 20)
    assert rounds.teacher_model(0, 1)["dataset"] == 746 and rounds.teacher_model(0, 0)["dataset"] == 741
    out1 = _label_folder(scans, os.path.join(rounds.work, "fold_0", "round1_predictions"), 2)
    assert rounds.predictions_made_by(0, 1) == out1 + "_made_by"
    shutil.copytree(made_by, out1 + "_made_by")                         # round 0's records, copied over
    with pytest.raises(TeachError, match="no record of fold 0's teacher"):
        rounds.predict_scans(0, scans, r=1)
    with open(os.path.join(out1 + "_made_by", "part0of1.json"), "w") as fh:
        json.dump({"model": rounds.teacher_model(0, 1), "scans": sorted(scans), "part": [0, 1]}, fh)
    assert rounds.predict_scans(0, scans, r=1) == out1


@pytest.mark.slow   # imports nnU-Net's predictor
def test_nnunets_part_of_the_scans_is_the_sorted_slice(source, tmp_path):
    """What predict_scans records for part i of n is what nnU-Net 2.8.1's nnUNetv2_predict -part_id i -num_parts n
    predicts (its own list handling, called here)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(device=__import__("torch").device("cpu"))
    predictor.dataset_json = json.load(open(os.path.join(source, "dataset.json")))
    scans = sorted(check_scans(os.path.join(source, "imagesUnlabelled"), source))
    for i, n in ((0, 2), (1, 2), (0, 1)):
        lists, outs, _ = predictor._manage_input_and_output_lists(os.path.join(source, "imagesUnlabelled"),
                                                                  str(tmp_path), part_id=i, num_parts=n)
        assert [os.path.basename(o) for o in outs] == scans[i::n]


def test_read_decision_refuses_other_files(tmp_path):
    f = tmp_path / "decision.json"
    f.write_text(json.dumps({"model": {"dataset": 580, "trainer": "LowerBoundTrainer", "configuration": "3d_fullres",
                                       "folds": [0, 1]}}))
    assert read_decision(str(f)) == {"dataset": 580, "trainer": "LowerBoundTrainer", "configuration": "3d_fullres",
                                     "plans": "nnUNetPlans", "folds": ["0", "1"]}
    f.write_text("{}")
    with pytest.raises(ValueError, match="is not a decision file"):
        read_decision(str(f))


def test_resume_accepts_another_bar_and_older_records_but_not_other_settings(tmp_path):
    env = {k: str(tmp_path / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    settings = TeachSettings(source=741, scans=str(tmp_path / "scans"), student_id=745, student_name="S",
                             rule=GateRule("se", level=1.0))
    job = Teach(settings, env)
    os.makedirs(job.work)
    old = settings.recorded()
    old.pop("real_share")                          # a record written before real_share existed
    old.pop("rounds")                              # and before rounds (default: none)
    old["min_gain_se"] = 2.0                       # and with another bar: the rerun only decides again
    with open(os.path.join(job.work, "teach.json"), "w") as fh:
        json.dump(old, fh)
    assert job._check_student_id() is True
    with open(os.path.join(job.work, "teach.json"), "w") as fh:
        json.dump({**old, "keep_fraction": 0.5}, fh)
    with pytest.raises(TeachError, match=r"other settings \(keep_fraction\)"):
        job._check_student_id()


def test_recipe_option_ranges_are_one_table_for_the_cli_and_configs():
    from dante_nnunet.jobs.teach import option_out_of_range
    assert option_out_of_range({"keep_fraction": 1.0, "real_share": None, "unsure_band": 0.9, "finetune": 1.0}) is None
    assert option_out_of_range({"keep_fraction": 1.0, "unsure_band": 0.5}) == ("unsure_band", "must be in (0.5, 1), got 0.5")
    assert option_out_of_range({"real_share": 1.0, "finetune": 0.0}) == ("real_share", "must be in (0, 1), got 1.0")
    assert option_out_of_range({"finetune": 0.0}) == ("finetune", "must be in (0, 1], got 0.0")
    from dante_nnunet.trainer_names import finetuned_name, parse_name
    assert finetuned_name("LowerBoundTrainer_transfer_seed1", 0.2) == "LowerBoundTrainer_transfer_seed1_tune0.2"
    assert parse_name(finetuned_name("LowerBoundTrainer_seed1", 0.5)).attrs["finetune_fraction"] == 0.5


def test_the_default_student_trains_twice_the_plain_models_epochs():
    """teach's default student (issue 46's default, chosen by its written rule): plain nnU-Net with the token
    long2, whose schedule is twice the plain model's; the plain model and the teacher keep nnU-Net's."""
    from dante_nnunet.cli import build_parser
    from dante_nnunet.trainer_names import DEFAULT_STUDENT
    from dante_nnunet.training.variants import trainer_class
    args = build_parser().parse_args(["teach", "-d", "741", "--scans", "scans", "-o", "745"])
    assert args.student == DEFAULT_STUDENT == TeachSettings(1, "s", 2, "n").student == "LowerBoundTrainer_long2"
    assert (args.plain, args.teacher) == ("LowerBoundTrainer", "UpperBoundTrainer")
    student, plain = trainer_class(args.student + "_demo"), trainer_class(args.plain + "_demo")
    assert student.schedule_scale == 2.0 and plain.schedule_scale == 1.0 and student.epochs == plain.epochs
