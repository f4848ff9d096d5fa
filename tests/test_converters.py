"""`dante_nnunet convert-brats` and `convert-ct-pairs` on tiny fake folders: label mapping checked
exactly, bad layouts refused naming the case, nothing half-written."""
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dante_nnunet.benchmark import Runner, load_config
from dante_nnunet.cli import main
from dante_nnunet.data.converters import convert_brats


def _img(path, arr, spacing=(1.0, 1.0, 1.0)):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    sitk.WriteImage(im, str(path))


def _case(root, case, seg_values=(0, 1, 2, 4), ending=".nii.gz", skip=()):
    d = root / case
    d.mkdir(parents=True)
    rng = np.random.default_rng(len(case))
    for i, m in enumerate(("t1", "t1ce", "t2", "flair")):
        if m not in skip:
            _img(d / f"{case}_{m}{ending}", (rng.random((5, 6, 7)) + i).astype(np.float32))
    seg = np.zeros((5, 6, 7), np.uint8)
    for k, v in enumerate(seg_values):
        seg[k] = v
    if "seg" not in skip:
        _img(d / f"{case}_seg{ending}", seg)
    return seg


def test_brats2018_layout_with_grades_and_label_mapping(tmp_path):
    src = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    seg = _case(src / "HGG", "Brats18_2013_2_1")
    _case(src / "LGG", "Brats18_2013_0_1", ending=".nii")
    out = convert_brats(str(src), 501, "BraTS2018", raw_root=str(tmp_path / "raw"))
    assert os.path.basename(out) == "Dataset501_BraTS2018"
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert d["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    assert d["regions_class_order"] == [1, 2, 3] and d["numTraining"] == 2
    assert d["dante"] == {"privileged_channels": ["T1ce"]}
    lab = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "labelsTr", "Brats18_2013_2_1.nii.gz")))
    expected = {0: 0, 1: 2, 2: 1, 4: 3}
    for v in (0, 1, 2, 4):
        assert (lab[seg == v] == expected[v]).all()
    images = sorted(os.listdir(os.path.join(out, "imagesTr")))
    assert images[:4] == [f"Brats18_2013_0_1_{c:04d}.nii.gz" for c in range(4)]
    src_t1ce = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "HGG" / "Brats18_2013_2_1" /
                                                         "Brats18_2013_2_1_t1ce.nii.gz")))
    out_1 = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "imagesTr", "Brats18_2013_2_1_0001.nii.gz")))
    assert np.array_equal(src_t1ce, out_1)   # channel 1 is T1ce


def _refused(tmp_path, src, match):
    raw = tmp_path / "raw"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        convert_brats(str(src), 502, raw_root=str(raw))
    assert not raw.exists() or os.listdir(raw) == []


def test_missing_file_names_the_case(tmp_path):
    _case(tmp_path / "src", "BraTS20_Training_001")
    _case(tmp_path / "src", "BraTS20_Training_355", skip=("seg",))
    _refused(tmp_path, tmp_path / "src", r"case 'BraTS20_Training_355' .* lacks BraTS20_Training_355_seg")


def test_extra_file_and_unknown_labels_name_the_case(tmp_path):
    _case(tmp_path / "a", "BraTS2021_00000")
    (tmp_path / "a" / "BraTS2021_00000" / "BraTS2021_00000_t1gd.nii.gz").write_bytes(b"")
    _refused(tmp_path, tmp_path / "a", r"case 'BraTS2021_00000': unexpected file BraTS2021_00000_t1gd")
    _case(tmp_path / "b", "BraTS2021_00001", seg_values=(0, 1, 3))
    _refused(tmp_path, tmp_path / "b", r"case 'BraTS2021_00001': BraTS2021_00001_seg.nii.gz has label values \[3\]")


def test_mismatched_geometry_names_the_case(tmp_path):
    _case(tmp_path / "src", "BraTS2021_00002")
    _img(tmp_path / "src" / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz",
         np.zeros((5, 6, 7), np.float32), spacing=(1.0, 1.0, 3.0))
    _refused(tmp_path, tmp_path / "src", r"case 'BraTS2021_00002': BraTS2021_00002_t2.nii.gz has geometry")


def test_cli_never_overwrites(tmp_path, monkeypatch, capsys):
    _case(tmp_path / "src", "BraTS2021_00003")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert-brats", str(tmp_path / "src"), "-d", "503"]) == 0
    assert main(["convert-brats", str(tmp_path / "src"), "-d", "503", "--name", "Other"]) == 2
    assert "Dataset503_BraTS already exists" in capsys.readouterr().err
    assert main(["convert-brats", str(tmp_path / "nothing"), "-d", "504"]) == 2


# ------------------------------------------------------------------ paired CT (DP2E-like)
def _ct_case(root, case, labels=(0, 1), shift_ctpa=False):
    d = root / case
    d.mkdir(parents=True)
    rng = np.random.default_rng(len(case))
    ncct = (rng.normal(40, 20, (4, 6, 6))).astype(np.float32)
    ctpa = ncct + 300
    _img(d / f"{case}_ncct.nii.gz", ncct, spacing=(0.7, 0.7, 2.0))
    _img(d / f"{case}_ctpa.nii.gz", ctpa, spacing=(0.7, 0.7, 3.0) if shift_ctpa else (0.7, 0.7, 2.0))
    seg = np.zeros((4, 6, 6), np.uint8)
    for k, v in enumerate(labels):
        seg[k] = v
    _img(d / f"{case}_seg.nii.gz", seg, spacing=(0.7, 0.7, 2.0))
    return ncct, ctpa, seg


def test_ct_pairs_layout_channels_and_plan_hint(tmp_path):
    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.data.converters import convert_ct_pairs
    ncct, ctpa, seg = _ct_case(tmp_path / "src", "PE001")
    _ct_case(tmp_path / "src", "PE002", labels=(0,))
    out = convert_ct_pairs(str(tmp_path / "src"), 511, raw_root=str(tmp_path / "raw"))
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["channel_names"] == {"0": "CT", "1": "CT"} and d["labels"] == {"background": 0, "embolus": 1}
    assert d["dante_plans"] == {"target_spacing": [2.0, 0.7, 0.7], "patch_size": [64, 160, 192]}
    split = ChannelSplit.from_dataset_json(d)      # duplicate names, CTPA given by number
    assert split.limited_indices == (0,) and split.privileged_indices == (1,)
    read = lambda f: sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, f)))  # noqa: E731
    assert np.array_equal(read("imagesTr/PE001_0000.nii.gz"), ncct)
    assert np.array_equal(read("imagesTr/PE001_0001.nii.gz"), ctpa)
    assert np.array_equal(read("labelsTr/PE001.nii.gz"), seg)


def test_ct_pairs_bad_layouts_name_the_case(tmp_path):
    from dante_nnunet.data.converters import convert_ct_pairs
    raw = tmp_path / "raw"
    _ct_case(tmp_path / "a", "PE003", labels=(0, 2))
    with pytest.raises(ValueError, match=r"case 'PE003': PE003_seg.nii.gz has label values \[2\]"):
        convert_ct_pairs(str(tmp_path / "a"), 512, raw_root=str(raw))
    _ct_case(tmp_path / "b", "PE004", shift_ctpa=True)
    with pytest.raises(ValueError, match=r"case 'PE004': PE004_ctpa.nii.gz has geometry"):
        convert_ct_pairs(str(tmp_path / "b"), 512, raw_root=str(raw))
    _ct_case(tmp_path / "c", "PE005")
    os.remove(tmp_path / "c" / "PE005" / "PE005_ctpa.nii.gz")
    with pytest.raises(ValueError, match=r"case 'PE005' .* lacks PE005_ctpa"):
        convert_ct_pairs(str(tmp_path / "c"), 512, raw_root=str(raw))
    assert not raw.exists() or os.listdir(raw) == []


# ------------------------------------------------------------------ issue 13: gaps found by trying
def test_a_case_lacking_the_marker_file_is_reported_not_dropped(tmp_path):
    # cases used to be found by their FLAIR (BraTS) / NCCT (CT) file only: a case without it vanished
    _case(tmp_path / "src", "BraTS20_Training_001")
    _case(tmp_path / "src", "BraTS20_Training_002", skip=("flair",))
    _refused(tmp_path, tmp_path / "src", r"case 'BraTS20_Training_002' .* lacks BraTS20_Training_002_flair")
    from dante_nnunet.data.converters import convert_ct_pairs
    _ct_case(tmp_path / "ct", "PE006")
    _ct_case(tmp_path / "ct", "PE007")
    os.remove(tmp_path / "ct" / "PE007" / "PE007_ncct.nii.gz")
    with pytest.raises(ValueError, match=r"case 'PE007' .* lacks PE007_ncct"):
        convert_ct_pairs(str(tmp_path / "ct"), 513, raw_root=str(tmp_path / "raw"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_intensities_name_case_and_file(tmp_path, bad):
    _case(tmp_path / "src", "BraTS2021_00004")
    f = tmp_path / "src" / "BraTS2021_00004" / "BraTS2021_00004_t2.nii.gz"
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
    arr[2, 3, 4] = bad
    _img(f, arr)
    kind = "NaN" if np.isnan(bad) else "Inf"
    _refused(tmp_path, tmp_path / "src", rf"case 'BraTS2021_00004': .*BraTS2021_00004_t2.nii.gz holds 1 non-finite "
                                         rf"voxel\(s\) \({kind}\)")


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_a_truncated_image_names_case_and_file(tmp_path, dtype):
    """SimpleITK reads a truncated .nii.gz with zeros for the missing voxels; integer files were not read
    by the non-finite check at all."""
    _case(tmp_path / "src", "BraTS2021_00006")
    f = tmp_path / "src" / "BraTS2021_00006" / "BraTS2021_00006_t2.nii.gz"
    _img(f, (np.arange(5 * 6 * 7).reshape(5, 6, 7) * 7).astype(dtype))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    _refused(tmp_path, tmp_path / "src", r"case 'BraTS2021_00006': .*BraTS2021_00006_t2.nii.gz cannot be read whole "
                                         r"\(\d+ bytes; ")


def test_an_id_left_in_preprocessed_or_results_is_refused(tmp_path, monkeypatch, capsys):
    # nnU-Net resolves ids across all three folders; a leftover there breaks every later command
    _case(tmp_path / "src", "BraTS2021_00005")
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, str(tmp_path / key))
    (tmp_path / "nnUNet_results" / "Dataset506_Old").mkdir(parents=True)
    assert main(["convert-brats", str(tmp_path / "src"), "-d", "506"]) == 2
    err = capsys.readouterr().err
    assert "dataset id 506 is still used by" in err and "Dataset506_Old" in err
    assert not (tmp_path / "nnUNet_raw").exists() or os.listdir(tmp_path / "nnUNet_raw") == []
    assert main(["convert-brats", str(tmp_path / "src"), "-d", "507"]) == 0


def test_missing_privileged_scan_gets_a_placeholder_and_is_listed(tmp_path):
    from dante_nnunet.data.converters import convert_ct_pairs
    _case(tmp_path / "src", "BraTS20_Training_001")
    _case(tmp_path / "src", "BraTS20_Training_002", skip=("t1ce",))
    # without the option, the missing T1ce is an error like any missing file
    _refused(tmp_path, tmp_path / "src", r"case 'BraTS20_Training_002' .* lacks BraTS20_Training_002_t1ce")
    out = convert_brats(str(tmp_path / "src"), 503, raw_root=str(tmp_path / "raw"), allow_missing_privileged=True)
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["dante"] == {"privileged_channels": ["T1ce"], "cases_without_privileged": ["BraTS20_Training_002"]}
    ph = sitk.ReadImage(os.path.join(out, "imagesTr", "BraTS20_Training_002_0001.nii.gz"))
    t1 = sitk.ReadImage(os.path.join(out, "imagesTr", "BraTS20_Training_002_0000.nii.gz"))
    assert not sitk.GetArrayFromImage(ph).any() and ph.GetSize() == t1.GetSize() and ph.GetSpacing() == t1.GetSpacing()
    assert sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "imagesTr", "BraTS20_Training_001_0001.nii.gz"))).any()
    # every case without it: refused before writing
    _case(tmp_path / "none", "A", skip=("t1ce",))
    with pytest.raises(ValueError, match="no case under .* has its t1ce image"):
        convert_brats(str(tmp_path / "none"), 504, raw_root=str(tmp_path / "raw"), allow_missing_privileged=True)
    assert not any(n.startswith(("Dataset504", ".Dataset504")) for n in os.listdir(tmp_path / "raw"))
    # paired CT: a case without its CTPA
    _ct_case(tmp_path / "ct", "PE001")
    ncct, _, _ = _ct_case(tmp_path / "ct", "PE002")
    os.remove(tmp_path / "ct" / "PE002" / "PE002_ctpa.nii.gz")
    out = convert_ct_pairs(str(tmp_path / "ct"), 512, raw_root=str(tmp_path / "raw"), allow_missing_privileged=True)
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["dante"] == {"privileged_channels": [1], "cases_without_privileged": ["PE002"]}
    assert not sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "imagesTr", "PE002_0001.nii.gz"))).any()


def test_cases_without_a_label_become_unlabelled_cases_with_the_ignore_label(tmp_path, monkeypatch, capsys):
    """--allow-unlabelled: a case lacking only its _seg file is written with nnU-Net's ignore label everywhere and
    listed in dante.unlabelled_cases (check-dataset accepts the dataset); without the option, or for a case with
    neither label nor privileged image, or when no case is labelled, refused before anything is written."""
    from dante_nnunet.data.check_dataset import check_raw_dataset
    from dante_nnunet.data.converters import convert_ct_pairs
    from dante_nnunet.config import unlabelled_cases
    src = tmp_path / "src"
    for i in (1, 2, 3, 4, 5):
        _case(src, f"BraTS20_Training_00{i}")
    _case(src, "BraTS21_Scan_001", skip=("seg",))
    _refused(tmp_path, src, r"case 'BraTS21_Scan_001' .* lacks BraTS21_Scan_001_seg")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert-brats", str(src), "-d", "505", "--allow-unlabelled"]) == 0
    out = str(tmp_path / "raw" / "Dataset505_BraTS")
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["labels"]["ignore"] == 4 and d["dante"]["unlabelled_cases"] == ["BraTS21_Scan_001"]
    assert unlabelled_cases(d) == ("BraTS21_Scan_001",)
    lab = sitk.ReadImage(os.path.join(out, "labelsTr", "BraTS21_Scan_001.nii.gz"))
    t1 = sitk.ReadImage(os.path.join(out, "imagesTr", "BraTS21_Scan_001_0000.nii.gz"))
    assert (sitk.GetArrayFromImage(lab) == 4).all() and lab.GetSize() == t1.GetSize()
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "labelsTr",
                                                                          "BraTS20_Training_001.nii.gz"))))) == {0, 1, 2, 3}
    assert check_raw_dataset(out) == []
    # a case with neither label nor T1ce; no labelled case at all: refused, nothing written
    _case(tmp_path / "bare", "A")
    _case(tmp_path / "bare", "B", skip=("seg", "t1ce"))
    with pytest.raises(ValueError, match="case 'B' .* has neither a label nor its t1ce image"):
        convert_brats(str(tmp_path / "bare"), 506, raw_root=str(tmp_path / "raw"), allow_missing_privileged=True,
                      allow_unlabelled=True)
    _case(tmp_path / "none", "A", skip=("seg",))
    with pytest.raises(ValueError, match="no case under .* has a label"):
        convert_brats(str(tmp_path / "none"), 507, raw_root=str(tmp_path / "raw"), allow_unlabelled=True)
    assert sorted(os.listdir(tmp_path / "raw")) == ["Dataset505_BraTS"]
    # paired CT: a pair without its label
    _ct_case(tmp_path / "ct", "PE001")
    _ct_case(tmp_path / "ct", "PE002")
    os.remove(tmp_path / "ct" / "PE002" / "PE002_seg.nii.gz")
    out = convert_ct_pairs(str(tmp_path / "ct"), 513, raw_root=str(tmp_path / "raw"), allow_unlabelled=True)
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["labels"] == {"background": 0, "embolus": 1, "ignore": 2} and d["dante"]["unlabelled_cases"] == ["PE002"]
    assert (sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "labelsTr", "PE002.nii.gz"))) == 2).all()


def test_brats2021_pool_leaves_out_the_brats2018_cases_of_a_mapping_file(tmp_path, capsys, monkeypatch):
    """BraTS 2021 as the unlabelled pool of a model tested on BraTS 2018: the organisers' name-mapping CSV
    says which 2021 cases are 2018 cases; they are left out and listed in dataset.json."""
    from dante_nnunet.data.converters import read_exclusion
    src = tmp_path / "BraTS2021"
    for i in range(4):
        _case(src, f"BraTS2021_{i:05d}")
    mapping = tmp_path / "BraTS21-17_Mapping.csv"
    mapping.write_text("BraTS2021,BraTS2020,BraTS2019,BraTS2018,BraTS2017\n"
                       "BraTS2021_00000,BraTS20_Training_001,BraTS19_x,Brats18_2013_2_1,Brats17_x\n"
                       "BraTS2021_00001,BraTS20_Training_002,NA,NA,NA\n"
                       "BraTS2021_00002,BraTS20_Training_003,BraTS19_y,Brats18_CBICA_AAB_1,\n"
                       "BraTS2021_00003,,,,\n")
    assert read_exclusion(str(mapping)) == ["BraTS2021_00000", "BraTS2021_00002"]
    assert read_exclusion(str(mapping), ["BraTS2021", "BraTS2020"]) == [f"BraTS2021_{i:05d}" for i in range(3)]
    with pytest.raises(ValueError, match=r"no column 'BraTS18'; its columns are \['BraTS2021'"):
        read_exclusion(str(mapping), ["BraTS2021", "BraTS18"])
    names = tmp_path / "list.txt"
    names.write_text("# 2018 cases\nBraTS2021_00001\n\n")
    assert read_exclusion(str(names)) == ["BraTS2021_00001"]
    raw = tmp_path / "raw"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    for k in ("nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)
    assert main(["convert-brats", str(src), "-d", "520", "--name", "Pool", "--exclude", str(mapping)]) == 0
    assert "(2 case(s) of --exclude left out)" in capsys.readouterr().out
    out = str(raw / "Dataset520_Pool")
    dj = json.load(open(os.path.join(out, "dataset.json")))
    assert dj["excluded_cases"] == ["BraTS2021_00000", "BraTS2021_00002"] and dj["numTraining"] == 2
    assert sorted(os.listdir(os.path.join(out, "labelsTr"))) == ["BraTS2021_00001.nii.gz", "BraTS2021_00003.nii.gz"]
    with pytest.raises(ValueError, match="none of the 1 case.* to exclude .* is a case of"):
        convert_brats(str(src), 521, "Pool2", raw_root=str(raw), exclude=["Brats18_2013_2_1"])


# ------------------------------------------------------------------ the BraTS 2018 config with its BraTS 2021 pool

def _fake_brats_tree(root, cases, shape=(24, 24, 24), seed=0):
    """BraTS case folders (<case>_t1, _t1ce, _t2, _flair, _seg .nii.gz), a small tumour of labels 1, 2, 4."""
    import numpy as np
    import SimpleITK as sitk
    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
    for i, case in enumerate(cases):
        rng = np.random.default_rng(seed + i)
        c = np.array(shape) // 2 + rng.integers(-3, 4, 3)
        r = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        seg = np.where(r < 3, 4, np.where(r < 5, 1, np.where(r < 8, 2, 0))).astype(np.uint8)
        d = root / case
        d.mkdir(parents=True)
        for k, m in enumerate(("t1", "t1ce", "t2", "flair")):
            img = (100 + 10 * k + 20 * (seg > 0) + rng.normal(0, 5, shape)).astype(np.float32)
            sitk.WriteImage(sitk.GetImageFromArray(img), str(d / f"{case}_{m}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(d / f"{case}_seg.nii.gz"))


@pytest.mark.slow
def test_brats2018_config_plans_on_a_fake_tree_with_a_brats2021_pool_minus_its_2018_cases(tmp_path, monkeypatch):
    """configs/brats2018.json as shipped, on a tiny fake BraTS 2018 tree and a fake BraTS 2021 pool converted
    with the name-mapping exclusion: every check, the conversion, nnU-Net's planning and the 70/10/20 split
    (a CPU dry run: nothing trains). The pool holds no 2018 case, and no test case is among its scans."""
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)
    b18 = [f"Brats18_2013_{i}_1" for i in range(10)]
    _fake_brats_tree(tmp_path / "BraTS2018" / "HGG", b18)
    _fake_brats_tree(tmp_path / "BraTS2021", [f"BraTS2021_{i:05d}" for i in range(4)], seed=100)
    # 2021 cases 0 and 1 are 2018 cases (their voxels too); 2 and 3 are new
    for i in range(2):
        for m in ("t1", "t1ce", "t2", "flair", "seg"):
            shutil.copyfile(tmp_path / "BraTS2018" / "HGG" / b18[i] / f"{b18[i]}_{m}.nii.gz",
                            tmp_path / "BraTS2021" / f"BraTS2021_{i:05d}" / f"BraTS2021_{i:05d}_{m}.nii.gz")
    mapping = tmp_path / "BraTS21-17_Mapping.csv"
    mapping.write_text("BraTS2021,BraTS2020,BraTS2019,BraTS2018,BraTS2017\n"
                       + "".join(f"BraTS2021_{i:05d},x,x,{b18[i] if i < 2 else 'NA'},x\n" for i in range(4)))
    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "brats2018.json"))
    cfg["dataset"]["source"]["brats"] = str(tmp_path / "BraTS2018")
    cfg["workdir"] = True
    runner = Runner(cfg, str(tmp_path / "results"))
    env = runner.env
    from dante_nnunet.data.converters import convert_brats, read_exclusion
    pool = convert_brats(str(tmp_path / "BraTS2021"), 519, "BraTS2021Pool", raw_root=env["nnUNet_raw"],
                         exclude=read_exclusion(str(mapping)))
    assert sorted(os.listdir(os.path.join(pool, "labelsTr"))) == ["BraTS2021_00002.nii.gz", "BraTS2021_00003.nii.gz"]
    runner.check_trainers(sweep=True)
    runner.check_inputs()
    runner.step_data()
    runner.step_plan()
    test = runner.step_split()
    assert len(os.listdir(test["labels"])) == 2 and len(os.listdir(test["limited"])) == 2 * 3
    gated = next(m for m in cfg["methods"] if m.get("teach"))
    images = runner.resolve_folder(gated["teach"]["images"])
    assert images == os.path.join(pool, "imagesTr")
    assert runner.stage1_images(runner.stage1_block()) == [images]
    # the teach job's own check (before any training) passes on the excluded pool and refuses the full one
    from dante_nnunet.data.teach_dataset import check_not_labelled_or_test, check_scans
    raw18 = runner.raw_folder()
    check_not_labelled_or_test(check_scans(images, raw18), raw18, [test["limited"]])
    full = convert_brats(str(tmp_path / "BraTS2021"), 521, "BraTS2021All", raw_root=env["nnUNet_raw"])
    with pytest.raises(ValueError, match="has the same voxels as (labelled|test) case 'Brats18_2013_[01]_1'"):
        check_not_labelled_or_test(check_scans(os.path.join(full, "imagesTr"), raw18), raw18, [test["limited"]])

