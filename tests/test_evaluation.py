"""Dice / HD95 (dante_nnunet.jobs.evaluation) on analytic shapes, the BraTS empty-mask conventions, the ET
post-processing rule and the `dante_nnunet evaluate` command."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from dante_nnunet.cli import main
from dante_nnunet.jobs.evaluation import (HD95_EMPTY_PENALTY_MM, dice, evaluate_folders, hd95, postprocess_enhancing,
                                     regions_from_dataset_json)

BRATS = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
         "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz"}


def _ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_concentric_spheres_hd95_is_the_radius_difference():
    a = _ball((48, 48, 48), (24, 24, 24), 8)
    b = _ball((48, 48, 48), (24, 24, 24), 14)
    assert hd95(a, b, (1, 1, 1)) == pytest.approx(6, abs=1.0)


def test_offset_spheres_max_distance_is_the_offset_and_hd95_below_it():
    a = _ball((40, 40, 60), (20, 20, 22), 10)
    b = _ball((40, 40, 60), (20, 20, 34), 10)
    assert hd95(a, b, (1, 1, 1), percentile=100) == pytest.approx(12, abs=0.5)
    assert 6 < hd95(a, b, (1, 1, 1)) <= 12


def test_spacing_is_used_in_millimetres():
    # the same voxels at 2 mm along every axis: distances double
    a = _ball((48, 48, 48), (24, 24, 24), 8)
    b = _ball((48, 48, 48), (24, 24, 24), 14)
    assert hd95(a, b, (2, 2, 2)) == pytest.approx(2 * hd95(a, b, (1, 1, 1)), rel=1e-6)
    # anisotropic: balls defined in mm on a grid with 2 mm along axis 0
    sp = (2.0, 1.0, 1.0)
    a = _ball((30, 60, 60), (30, 30, 30), 10, sp)
    b = _ball((30, 60, 60), (30, 30, 30), 16, sp)
    assert hd95(a, b, sp) == pytest.approx(6, abs=1.5)


def test_empty_mask_conventions_and_dice_by_hand():
    empty = np.zeros((8, 8, 8), bool)
    one = empty.copy()
    one[2:4, 2:4, 2:4] = True          # 8 voxels
    other = empty.copy()
    other[3:5, 2:4, 2:4] = True        # 8 voxels, 4 shared
    assert dice(empty, empty) == 1.0 and hd95(empty, empty, (1, 1, 1)) == 0.0
    assert dice(one, empty) == 0.0 and hd95(one, empty, (1, 1, 1)) == HD95_EMPTY_PENALTY_MM
    assert hd95(empty, one, (1, 1, 1)) == pytest.approx(373.13, abs=0.01)
    assert dice(one, other) == pytest.approx(2 * 4 / 16)


def test_regions_from_dataset_json():
    assert regions_from_dataset_json(BRATS) == {"whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                                "enhancing tumor": [3]}
    assert regions_from_dataset_json({"labels": {"background": 0, "emboli": 1, "ignore": 2}}) == {"emboli": [1]}
    with pytest.raises(ValueError, match="no foreground region"):
        regions_from_dataset_json({"labels": {"background": 0}})


def test_et_postprocessing_rule():
    seg = np.zeros((10, 10, 10), np.uint8)
    seg[1:3, 1:3, 1:3] = 3            # 8 enhancing voxels
    seg[5, 5, 5] = 2
    assert (postprocess_enhancing(seg, 10) == 3).sum() == 0 and (postprocess_enhancing(seg, 10) == 2).sum() == 9
    assert np.array_equal(postprocess_enhancing(seg, 8), seg)    # not under the threshold


def _write(path, arr, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr if arr.dtype.kind == "f" else arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_evaluate_command_writes_metrics_json(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    r = np.zeros((20, 20, 20), np.uint8)
    r[5:15, 5:15, 5:15] = 1
    r[8:12, 8:12, 8:12] = 3
    _write(ref / "a.nii.gz", r)
    p = r.copy()
    p[p == 3] = 2                      # ET missed ...
    p[5, 5, 5] = 3                     # ... but for one stray enhancing voxel inside the whole tumour
    _write(pred / "a.nii.gz", p)
    b = np.zeros((20, 20, 20), np.uint8)
    _write(ref / "b.nii.gz", b)        # empty reference ...
    _write(pred / "b.nii.gz", b)       # ... predicted empty: Dice 1, HD95 0
    (tmp_path / "dataset.json").write_text(json.dumps(BRATS))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(ref), str(pred), "--dataset-json", str(tmp_path / "dataset.json"), "-o", str(out),
                 "--et-threshold", "5"]) == 0
    m = json.loads(out.read_text())
    assert m["per_case"]["a"]["whole tumor"] == {"dice": 1.0, "hd95": 0.0}
    assert m["per_case"]["a"]["enhancing tumor"]["dice"] == 0.0
    assert 0 < m["per_case"]["a"]["enhancing tumor"]["hd95"] < 20    # the stray voxel is near the ET
    assert m["per_case"]["b"]["enhancing tumor"] == {"dice": 1.0, "hd95": 0.0}
    assert m["mean"]["enhancing tumor"]["dice"] == pytest.approx(0.5)
    assert m["mean"]["enhancing tumor"]["dice_std"] == pytest.approx(0.5)
    # post-processing removes the stray voxel: ET is then empty in the prediction -> penalty stays for a
    assert m["per_case_et_postprocessed"]["a"]["enhancing tumor"]["hd95"] == pytest.approx(HD95_EMPTY_PENALTY_MM)
    assert set(m["mean"]) == {"whole tumor", "tumor core", "enhancing tumor"}
    # an existing output is not overwritten; a missing prediction is named
    assert main(["evaluate", str(ref), str(pred), "--dataset-json", str(tmp_path / "dataset.json"),
                 "-o", str(out)]) == 2
    os.remove(pred / "b.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"lacks the prediction of case\(s\) \['b'\]"):
        evaluate_folders(str(ref), str(pred), BRATS)
    _write(pred / "b.nii.gz", b, spacing=(2.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="case 'b': prediction has shape"):
        evaluate_folders(str(ref), str(pred), BRATS)


def test_undefined_label_values_and_a_missing_output_folder_are_refused_before_scoring(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    r = np.zeros((8, 8, 8), np.uint8)
    r[2:6, 2:6, 2:6] = 1
    _write(ref / "a.nii.gz", r)
    p = r.copy()
    p[3, 3, 3], p[4, 4, 4] = 7, 9      # values dataset.json does not define: once scored as background
    _write(pred / "a.nii.gz", p)
    (tmp_path / "dataset.json").write_text(json.dumps(BRATS))
    with pytest.raises(ValueError, match=r"case 'a': prediction .*a.nii.gz holds values \[7, 9\] that dataset.json"):
        evaluate_folders(str(ref), str(pred), BRATS)
    _write(pred / "a.nii.gz", r.astype(np.float32) * np.float32(np.nan))   # NaN where the tumour is
    with pytest.raises(ValueError, match=r"case 'a': .*pred/a.nii.gz holds 512 non-finite voxel\(s\) \(NaN\)"):
        evaluate_folders(str(ref), str(pred), BRATS)
    # a truncated prediction (SimpleITK reads it with zeros for the missing part) is not scored
    _write(pred / "a.nii.gz", r)
    data = (pred / "a.nii.gz").read_bytes()
    (pred / "a.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"case 'a': .*pred/a.nii.gz cannot be read whole"):
        evaluate_folders(str(ref), str(pred), BRATS)
    # predictions under another file ending are named as such
    os.remove(pred / "a.nii.gz")
    _write(pred / "a.nii", r)
    with pytest.raises(FileNotFoundError, match=r"lacks the prediction of case\(s\) \['a'\]: it holds them with the "
                                                r"file ending\(s\) \['.nii'\], but .nii.gz is expected"):
        evaluate_folders(str(ref), str(pred), BRATS)
    os.remove(pred / "a.nii")
    _write(pred / "a.nii.gz", r)
    out = tmp_path / "no" / "such" / "metrics.json"
    assert main(["evaluate", str(ref), str(pred), "--dataset-json", str(tmp_path / "dataset.json"),
                 "-o", str(out)]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
