"""`dante_nnunet pretrain-dataset`: images alone -> nnU-Net raw dataset with placeholder labels;
bad layouts are refused naming the case, before anything is written."""
import os

import numpy as np
import pytest
import SimpleITK as sitk

from dante_nnunet.cli import main
from dante_nnunet.config import DanteConfigError
from dante_nnunet.data.pretrain_dataset import placeholder_label, write_pretrain_dataset

NAMES = ["T1", "T1ce", "T2", "FLAIR"]


def _img(path, arr, spacing=(1.0, 1.0, 1.0)):
    im = sitk.GetImageFromArray(arr.astype(np.float32))
    im.SetSpacing(spacing)
    sitk.WriteImage(im, str(path))


def _case(folder, case, n=4, shape=(6, 7, 8), seed=0):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for c in range(n):
        a = np.zeros(shape)
        a[1:-1, 2:-2, 2:-2] = rng.uniform(1, 2, (shape[0] - 2, shape[1] - 4, shape[2] - 4))
        _img(folder / f"{case}_{c:04d}.nii.gz", a)


def test_placeholder_label_is_the_non_background():
    a = np.zeros((3, 3, 3), np.float32)
    b = np.full((3, 3, 3), -1000, np.float32)   # CT air at its minimum
    a[0, 0, 0] = 5
    b[2, 2, 2] = 40
    label = sitk.GetArrayFromImage(placeholder_label([sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)]))
    assert label.sum() == 2 and label[0, 0, 0] == 1 and label[2, 2, 2] == 1


def test_writes_a_raw_dataset_from_two_folders(tmp_path):
    _case(tmp_path / "a", "brats_001")
    _case(tmp_path / "b", "brats_002", seed=1)
    raw = tmp_path / "raw"
    out = write_pretrain_dataset([str(tmp_path / "a"), str(tmp_path / "b")], 7, "Pre", NAMES, ["T1ce"],
                                 raw_root=str(raw))
    assert os.path.basename(out) == "Dataset007_Pre" and os.listdir(raw) == ["Dataset007_Pre"]
    assert sorted(os.listdir(os.path.join(out, "labelsTr"))) == ["brats_001.nii.gz", "brats_002.nii.gz"]
    assert len(os.listdir(os.path.join(out, "imagesTr"))) == 8
    label = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "labelsTr", "brats_001.nii.gz")))
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "brats_001_0000.nii.gz")))
    assert np.array_equal(label == 1, img > 0)
    import json
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"} and d["numTraining"] == 2
    assert d["dante"] == {"privileged_channels": ["T1ce"]} and d["labels"]["background"] == 0


def _refused(tmp_path, match, **kw):
    raw = tmp_path / "raw"
    args = dict(channel_names=NAMES, privileged_channels=["T1ce"], raw_root=str(raw))
    args.update(kw)
    with pytest.raises((ValueError, FileNotFoundError, FileExistsError), match=match):
        write_pretrain_dataset([str(tmp_path / "src")], 8, "Bad", **args)
    assert not raw.exists() or not any(n.startswith(("Dataset008", ".Dataset008")) for n in os.listdir(raw))


def test_missing_or_extra_channel_file_names_the_case(tmp_path):
    _case(tmp_path / "src", "c1")
    _case(tmp_path / "src", "c2", n=3)
    _refused(tmp_path, r"case 'c2' .* has channel files \[0, 1, 2\]; expected exactly \[0, 1, 2, 3\]")
    _case(tmp_path / "src", "c2", n=5)
    _refused(tmp_path, r"case 'c2' .* has channel files \[0, 1, 2, 3, 4\]")


def test_mismatched_geometry_names_the_case_and_file(tmp_path):
    _case(tmp_path / "src", "c1")
    _img(tmp_path / "src" / "c1_0002.nii.gz", np.ones((6, 7, 8)), spacing=(1.0, 1.0, 2.0))
    _refused(tmp_path, r"case 'c1': c1_0002.nii.gz has geometry")


def test_stray_files_duplicates_bad_channels_and_taken_ids(tmp_path):
    _case(tmp_path / "src", "c1")
    (tmp_path / "src" / "notes.txt").write_text("x")
    _refused(tmp_path, r"notes.txt: not an image named <case>_XXXX.nii.gz")
    os.remove(tmp_path / "src" / "notes.txt")
    _refused(tmp_path, r"not in channel_names", privileged_channels=["T1c"])
    _case(tmp_path / "other", "c1")
    with pytest.raises(ValueError, match=r"case 'c1' is in both"):
        write_pretrain_dataset([str(tmp_path / "src"), str(tmp_path / "other")], 8, "Bad", NAMES, ["T1ce"],
                               raw_root=str(tmp_path / "raw"))
    (tmp_path / "raw" / "Dataset008_Mine").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="Dataset008_Mine already exists"):
        write_pretrain_dataset([str(tmp_path / "src")], 8, "Bad", NAMES, ["T1ce"], raw_root=str(tmp_path / "raw"))
    assert os.listdir(tmp_path / "raw") == ["Dataset008_Mine"]


def test_cli_copies_channels_from_a_dataset_json_and_reports_errors(tmp_path, monkeypatch, capsys):
    import json
    _case(tmp_path / "src", "c1")
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {str(i): n for i, n in enumerate(NAMES)},
                              "dante": {"privileged_channels": ["T1ce"]}, "file_ending": ".nii.gz"}))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["pretrain-dataset", str(tmp_path / "src"), "-d", "9", "-n", "Pre", "--like", str(dj)]) == 0
    assert os.path.isdir(tmp_path / "raw" / "Dataset009_Pre")
    assert main(["pretrain-dataset", str(tmp_path / "src"), "-d", "9", "-n", "Pre", "--like", str(dj)]) == 2
    assert "Dataset009_Pre already exists" in capsys.readouterr().err
    dj.write_text(json.dumps({"channel_names": {str(i): n for i, n in enumerate(NAMES)}}))
    with pytest.raises(DanteConfigError, match="no \"dante\" block"):
        write_pretrain_dataset([str(tmp_path / "src")], 10, "Pre", like=str(dj), raw_root=str(tmp_path / "raw"))


def test_like_a_ct_dataset_with_repeated_channel_names_keeps_the_privileged_number(tmp_path):
    """Two channels named "CT" (nnU-Net's CT normalisation goes by the name): the dante block of the
    pre-training dataset must give the CTPA by number, or it would not read back."""
    import json

    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.data.phantom import write_phantom
    ct = write_phantom("ct", 11, raw_root=str(tmp_path / "raw"), num_train=2, num_test=1, shape=(8, 16, 16))
    out = write_pretrain_dataset([os.path.join(ct, "imagesTr")], 12, "CTPre", like=os.path.join(ct, "dataset.json"),
                                 raw_root=str(tmp_path / "raw"))
    dj = json.load(open(os.path.join(out, "dataset.json")))
    assert dj["channel_names"] == {"0": "CT", "1": "CT"} and dj["dante"] == {"privileged_channels": [1]}
    assert ChannelSplit.from_dataset_json(dj).privileged_indices == (1,)
    assert ChannelSplit.from_names(NAMES, ["T1ce"]).dante_block() == {"privileged_channels": ["T1ce"]}


def test_non_finite_image_names_the_case_and_file(tmp_path):
    _case(tmp_path / "src", "c1")
    a = np.ones((6, 7, 8))
    a[3, 3, 3] = np.inf
    _img(tmp_path / "src" / "c1_0002.nii.gz", a)
    _refused(tmp_path, r"case 'c1': .*c1_0002.nii.gz holds 1 non-finite voxel\(s\) \(Inf\)")


def test_a_truncated_image_names_the_case_and_file(tmp_path):
    _case(tmp_path / "src", "c1")
    f = tmp_path / "src" / "c1_0001.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, r"case 'c1': .*c1_0001.nii.gz cannot be read whole")


def test_cases_without_the_privileged_channel_get_placeholders(tmp_path):
    _case(tmp_path / "src", "a")
    _case(tmp_path / "src", "b", seed=1)
    os.remove(tmp_path / "src" / "b_0001.nii.gz")
    _refused(tmp_path, r"case 'b' .* has channel files \[0, 2, 3\]")
    out = write_pretrain_dataset([str(tmp_path / "src")], 9, "Pre", NAMES, ["T1ce"], raw_root=str(tmp_path / "raw"),
                                 allow_missing_privileged=True)
    import json
    d = json.load(open(os.path.join(out, "dataset.json")))
    assert d["dante"] == {"privileged_channels": ["T1ce"], "cases_without_privileged": ["b"]}
    assert not sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "imagesTr", "b_0001.nii.gz"))).any()
    # the placeholder label comes from the channels that exist
    label = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "labelsTr", "b.nii.gz")))
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "src" / "b_0000.nii.gz")))
    assert np.array_equal(label == 1, img > 0)
    os.remove(tmp_path / "src" / "a_0001.nii.gz")
    _refused(tmp_path, "no case .* has its privileged", allow_missing_privileged=True)
