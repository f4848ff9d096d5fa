"""`dante_nnunet pseudo-label-dataset`: a labelled dataset plus scans labelled by a model's predictions;
bad predictions are refused naming the scan and file, before anything is written. Real phantom files,
predictions written by hand."""
import filecmp
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from dante_nnunet.cli import main
from dante_nnunet.data.phantom import write_phantom
from dante_nnunet.data.pseudo_label_dataset import (limited_channel_copies, pseudo_label_split,
                                                    write_pseudo_label_dataset)


@pytest.fixture()
def source(tmp_path):
    """A types phantom: 5 labelled cases, 3 unlabelled scans with every channel."""
    return write_phantom("types", 731, raw_root=str(tmp_path / "raw"), num_train=5, num_test=1, shape=(16, 16, 16),
                         seed=1, num_unlabelled=3)


def _predictions(source, out, values=(0, 1, 2, 3), skip=()):
    """One 'prediction' per unlabelled scan on its grid: the T1 thresholded into ``values``."""
    os.makedirs(out)
    scans = sorted({f[:-12] for f in os.listdir(os.path.join(source, "imagesUnlabelled"))})
    for s in scans:
        if s in skip:
            continue
        im = sitk.ReadImage(os.path.join(source, "imagesUnlabelled", f"{s}_0000.nii.gz"))
        a = sitk.GetArrayFromImage(im)
        lab = np.digitize(a, np.quantile(a, [0.7, 0.8, 0.9])).astype(np.uint8)
        lab = np.asarray(values, np.uint8)[lab]
        out_im = sitk.GetImageFromArray(lab)
        out_im.CopyInformation(im)
        sitk.WriteImage(out_im, os.path.join(out, f"{s}.nii.gz"))
    with open(os.path.join(out, "plans.json"), "w") as f:   # nnUNetv2_predict writes json files beside them
        f.write("{}")
    return scans


def test_writes_labelled_cases_and_pseudo_labelled_scans(source, tmp_path):
    scans = _predictions(source, str(tmp_path / "pred"))
    keep = ["BraTSTypesPhantom_000", "BraTSTypesPhantom_001", "BraTSTypesPhantom_004"]
    folder, pseudo = write_pseudo_label_dataset(source, os.path.join(source, "imagesUnlabelled"),
                                                str(tmp_path / "pred"), 732, "Pseudo", labelled_cases=keep,
                                                raw_root=str(tmp_path / "raw"))
    assert pseudo == scans and os.path.basename(folder) == "Dataset732_Pseudo"
    labels = sorted(os.listdir(os.path.join(folder, "labelsTr")))
    assert labels == sorted(f"{c}.nii.gz" for c in keep + scans)
    assert len(os.listdir(os.path.join(folder, "imagesTr"))) == 4 * (len(keep) + len(scans))
    for s in scans:   # the scans' labels are the predictions, their images the scans, byte for byte
        assert filecmp.cmp(os.path.join(folder, "labelsTr", f"{s}.nii.gz"), tmp_path / "pred" / f"{s}.nii.gz",
                           shallow=False)
        assert filecmp.cmp(os.path.join(folder, "imagesTr", f"{s}_0001.nii.gz"),
                           os.path.join(source, "imagesUnlabelled", f"{s}_0001.nii.gz"), shallow=False)
    assert filecmp.cmp(os.path.join(folder, "labelsTr", f"{keep[2]}.nii.gz"),
                       os.path.join(source, "labelsTr", f"{keep[2]}.nii.gz"), shallow=False)
    dj, src = (json.load(open(os.path.join(f, "dataset.json"))) for f in (folder, source))
    assert dj["numTraining"] == 6 and dj["name"] == "Pseudo" and dj["pseudo_labelled_cases"] == scans
    assert dj["labels"] == src["labels"] and dj["channel_names"] == src["channel_names"] and dj["dante"] == src["dante"]
    fold = {"train": keep[:2], "val": keep[2:]}
    assert pseudo_label_split(fold, scans) == [{"train": sorted(keep[:2] + scans), "val": keep[2:]}]


def test_bad_predictions_are_refused_naming_the_scan(source, tmp_path):
    unl = os.path.join(source, "imagesUnlabelled")
    args = dict(dataset_id=733, name="Pseudo", raw_root=str(tmp_path / "raw"))
    scans = _predictions(source, str(tmp_path / "missing"), skip=("BraTSTypesPhantomU_0001",))
    with pytest.raises(ValueError, match="have no prediction in .* e.g. 'BraTSTypesPhantomU_0001'"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "missing"), **args)
    _predictions(source, str(tmp_path / "values"), values=(0, 1, 2, 7))
    with pytest.raises(ValueError, match=r"BraTSTypesPhantomU_0000.nii.gz: label value\(s\) \[7\] are not in"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "values"), **args)
    _predictions(source, str(tmp_path / "grid"))
    lab = sitk.ReadImage(str(tmp_path / "grid" / f"{scans[1]}.nii.gz"))
    lab.SetSpacing((2.0, 1.0, 1.0))
    sitk.WriteImage(lab, str(tmp_path / "grid" / f"{scans[1]}.nii.gz"))
    with pytest.raises(ValueError, match=f"{scans[1]}.nii.gz: grid .* differs from its scan's"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "grid"), **args)
    _predictions(source, str(tmp_path / "extra"))
    sitk.WriteImage(lab, str(tmp_path / "extra" / "Stray_000.nii.gz"))
    with pytest.raises(ValueError, match="Stray_000.nii.gz has no scan 'Stray_000'"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "extra"), **args)
    with pytest.raises(ValueError, match="labelled case 'Nope' is not in"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "grid"), labelled_cases=["Nope"], **args)
    # a scan named like a labelled case would overwrite it
    clash = tmp_path / "clash"
    os.makedirs(clash)
    for c in range(4):
        os.link(os.path.join(unl, f"{scans[0]}_{c:04d}.nii.gz"), clash / f"BraTSTypesPhantom_002_{c:04d}.nii.gz")
    _predictions(source, str(tmp_path / "clashpred"))
    os.makedirs(tmp_path / "clashlab")
    os.link(tmp_path / "clashpred" / f"{scans[0]}.nii.gz", tmp_path / "clashlab" / "BraTSTypesPhantom_002.nii.gz")
    with pytest.raises(ValueError, match="scan 'BraTSTypesPhantom_002' .* has the name of a labelled case"):
        write_pseudo_label_dataset(source, str(clash), str(tmp_path / "clashlab"), **args)
    assert sorted(os.listdir(tmp_path / "raw")) == [os.path.basename(source)]   # nothing half-written
    with pytest.raises(FileExistsError, match="Dataset731_BraTSTypesPhantom already exists"):
        write_pseudo_label_dataset(source, unl, str(tmp_path / "extra"), dataset_id=731, name="X",
                                   raw_root=str(tmp_path / "raw"))


def test_cli_keeps_one_fold_and_writes_its_split(source, tmp_path, monkeypatch, capsys):
    pre = tmp_path / "pre"
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "res"))
    scans = _predictions(source, str(tmp_path / "pred"))
    cases = [f"BraTSTypesPhantom_{i:03d}" for i in range(5)]
    os.makedirs(pre / "Dataset731_BraTSTypesPhantom")
    folds = [{"train": cases[:2], "val": cases[4:]}, {"train": cases[:4], "val": cases[4:]}]
    (pre / "Dataset731_BraTSTypesPhantom" / "splits_final.json").write_text(json.dumps(folds))
    argv = ["pseudo-label-dataset", "-s", "731", "--images", os.path.join(source, "imagesUnlabelled"),
            "--labels", str(tmp_path / "pred"), "-d", "734", "-n", "Pseudo"]
    assert main(argv + ["--fold", "2"]) != 0
    assert "splits_final.json has folds 0..1" in capsys.readouterr().err
    assert not (tmp_path / "raw" / "Dataset734_Pseudo").exists()
    assert main(argv + ["--fold", "0"]) == 0
    assert "nnUNetv2_move_plans_between_datasets -s 731 -t 734" in capsys.readouterr().out
    new = tmp_path / "raw" / "Dataset734_Pseudo"
    assert sorted(f[:-7] for f in os.listdir(new / "labelsTr")) == sorted(cases[:2] + cases[4:] + scans)
    assert json.loads((pre / "Dataset734_Pseudo" / "splits_final.json").read_text()) == \
        [{"train": sorted(cases[:2] + scans), "val": cases[4:]}]


def test_limited_channel_copies_renumber_the_limited_channels(source, tmp_path):
    out = limited_channel_copies(os.path.join(source, "imagesUnlabelled"), str(tmp_path / "lim"),
                                 os.path.join(source, "dataset.json"))
    files = sorted(os.listdir(out))
    assert len(files) == 3 * 3 and not os.path.exists(str(tmp_path / "lim") + ".tmp")
    s = "BraTSTypesPhantomU_0002"
    for new, old in enumerate((0, 2, 3)):   # T1, T2, FLAIR; T1ce (1) left out
        assert filecmp.cmp(os.path.join(out, f"{s}_{new:04d}.nii.gz"),
                           os.path.join(source, "imagesUnlabelled", f"{s}_{old:04d}.nii.gz"), shallow=False)
    with pytest.raises(FileExistsError, match="exists; remove it"):
        limited_channel_copies(os.path.join(source, "imagesUnlabelled"), out, os.path.join(source, "dataset.json"))
