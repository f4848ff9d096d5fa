"""`dante_nnunet check-dataset` on a real phantom raw dataset: silent on a good one; each fault named with
its case and file (a truncated integer and float NIfTI, mixed grids, undefined label values, a
placeholder the "dante" block does not list, a listed case with a real scan, a file of another ending)."""
import json
import os

import SimpleITK as sitk

from dante_nnunet.data.check_dataset import check_raw_dataset
from dante_nnunet.cli import main
from dante_nnunet.data.phantom import write_phantom


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])


def test_check_dataset_names_every_fault(tmp_path, capsys):
    folder = write_phantom("rim", 611, "Check", num_train=8, num_test=2, seed=1, shape=(16, 16, 16),
                           raw_root=str(tmp_path), missing_privileged=0.3)
    assert main(["check-dataset", "-d", folder]) == 0
    assert "no problem found" in capsys.readouterr().out
    dj = json.load(open(os.path.join(folder, "dataset.json")))
    listed = dj["dante"]["cases_without_privileged"]
    unlisted = sorted({f[:-12] for f in os.listdir(os.path.join(folder, "imagesTr"))} - set(listed))
    img = lambda case, ch: os.path.join(folder, "imagesTr", f"{case}_{ch:04d}.nii.gz")  # noqa: E731
    lab = lambda case: os.path.join(folder, "labelsTr", f"{case}.nii.gz")  # noqa: E731

    _truncate(img(unlisted[0], 2))                                  # float image
    _truncate(lab(unlisted[1]))                                     # integer label
    a = sitk.ReadImage(img(unlisted[2], 0))
    sitk.WriteImage(a[1:, :, :], img(unlisted[2], 0))               # another grid
    seg = sitk.GetArrayFromImage(sitk.ReadImage(lab(unlisted[3])))
    seg[0, 0, 0] = 7
    out = sitk.GetImageFromArray(seg)
    out.CopyInformation(sitk.ReadImage(lab(unlisted[3])))
    sitk.WriteImage(out, lab(unlisted[3]))                          # an undefined label value
    ref = sitk.ReadImage(img(listed[0], 0))
    zero = sitk.Image(ref.GetSize(), ref.GetPixelID())
    zero.CopyInformation(ref)
    sitk.WriteImage(zero, img(unlisted[4], 1))                      # a placeholder T1ce of an unlisted case
    sitk.WriteImage(ref, img(listed[0], 1))                         # a listed case with an image as T1ce
    sitk.WriteImage(ref, os.path.join(folder, "imagesTr", "Extra_0000.nii"))   # another ending

    problems = check_raw_dataset(folder)
    text = "\n".join(problems)
    assert f"case '{unlisted[0]}': {img(unlisted[0], 2)} cannot be read whole" in text
    assert f"case '{unlisted[1]}': {lab(unlisted[1])} cannot be read whole" in text
    assert f"case '{unlisted[2]}': its files are on different grids" in text
    assert f"case '{unlisted[3]}': {lab(unlisted[3])} holds values [7]" in text
    assert f"case '{unlisted[4]}': privileged channel(s) ['T1ce'] are constant (no scan), but the case is not " \
           f"listed" in text
    assert f"case '{listed[0]}' is listed in \"cases_without_privileged\", but its privileged file(s) " \
           f"['{listed[0]}_0001.nii.gz'] hold an image" in text
    assert "1 file(s) not named CASE_XXXX.nii.gz" in text and "Extra_0000.nii" in text
    assert len(problems) == 7, text
    assert main(["check-dataset", "-d", folder]) == 1
    assert "7 problem(s)" in capsys.readouterr().err


def test_check_dataset_knows_unlabelled_cases(tmp_path):
    """A case listed in dante.unlabelled_cases must have the ignore label everywhere; the list must name
    cases imagesTr has, and needs the ignore label in dataset.json."""
    folder = write_phantom("rim", 612, "Unl", num_train=4, num_test=1, seed=1, shape=(16, 16, 16),
                           raw_root=str(tmp_path))
    dj_file = os.path.join(folder, "dataset.json")
    dj = json.load(open(dj_file))
    case = "Unl_000"
    lab = os.path.join(folder, "labelsTr", f"{case}.nii.gz")
    dj["dante"]["unlabelled_cases"] = [case]
    json.dump(dj, open(dj_file, "w"))
    assert any("needs nnU-Net's ignore label" in p for p in check_raw_dataset(folder))
    dj["labels"]["ignore"] = 4
    dj["dante"]["unlabelled_cases"] = [case, "Unl_999"]
    json.dump(dj, open(dj_file, "w"))
    problems = check_raw_dataset(folder)
    assert f"case '{case}' is listed in \"unlabelled_cases\", but {lab} is not the ignore label (4) everywhere" \
        in problems
    assert any("\"unlabelled_cases\" names cases imagesTr lacks: ['Unl_999']" in p for p in problems)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(lab))
    out = sitk.GetImageFromArray(seg * 0 + 4)
    out.CopyInformation(sitk.ReadImage(lab))
    sitk.WriteImage(out, lab)
    dj["dante"]["unlabelled_cases"] = [case]
    json.dump(dj, open(dj_file, "w"))
    assert check_raw_dataset(folder) == []
