"""Plan -> train -> predict on limited-only scans -> export -> plugin-free predict, through the real
nnUNetv2_* commands on a synthetic 4-channel dataset, on the CPU."""
import math
import os
import shutil
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json

from tests.support import E2E_CONFIG, E2E_DATASET_ID, run

pytestmark = pytest.mark.e2e
DATASET_ID, CONFIG, TRAINER = E2E_DATASET_ID, E2E_CONFIG, "DANTETrainer_e2e"


@pytest.fixture(scope="module")
def ws(e2e_dataset):
    env, name = e2e_dataset["env"], e2e_dataset["name"]
    run(["nnUNetv2_train", DATASET_ID, CONFIG, 0, "-tr", TRAINER, "-device", "cpu"], env)
    model = join(env["nnUNet_results"], name, f"{TRAINER}__nnUNetPlans__{CONFIG}")
    return dict(e2e_dataset, model=model)


def test_results_folder_describes_limited_channels(ws):
    d = load_json(join(ws["model"], "dataset.json"))
    assert d["channel_names"] == {"0": "T1", "1": "T2", "2": "FLAIR"}
    p = load_json(join(ws["model"], "plans.json"))
    assert len(p["foreground_intensity_properties_per_channel"]) == 3
    assert len(p["configurations"]["3d_fullres"]["normalization_schemes"]) == 3
    fp = load_json(join(ws["model"], "dataset_fingerprint.json"))
    assert len(fp["foreground_intensity_properties_per_channel"]) == 3


def test_training_logged_terms_and_both_validations(ws):
    fold = join(ws["model"], "fold_0")
    ck = torch.load(join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    log = ck["logging"]
    assert math.isnan(log["train_pib"][0]) and math.isnan(log["train_align"][0])     # before epoch 1
    assert all(np.isfinite(log[f"train_{t}"][1:]).all() for t in ("pib", "align"))   # regularisers on
    assert len(log["mean_fg_dice_full"]) == 3 and len(log["train_seg_limited"]) == 3
    assert os.path.isfile(join(fold, "progress.png")) and os.path.isfile(join(fold, "diagnostics.png"))
    # feature diagnostics: one value per encoder level (4 stages) and epoch, in the checkpoint and the log
    assert all(len(log[f"diag_{k}"]) == 3 and all(len(v) == 4 for v in log[f"diag_{k}"])
               for k in ("abs_zl", "abs_za", "align_dist", "dead_zl", "dead_za", "corr_ratio"))
    assert all(0 <= v <= 1 for epoch in log["diag_dead_zl"] for v in epoch)
    training_log = open(join(fold, sorted(f for f in os.listdir(fold) if f.startswith("training_log"))[-1])).read()
    assert "DANTE features align_dist per level:" in training_log and "pib off" in training_log
    # the demo and the benchmark echo these lines of nnU-Net's output while a training runs (nnunet_jobs.PROGRESS)
    from dante_nnunet.jobs.nnunet_jobs import PROGRESS as _PROGRESS
    echoed = [line for line in training_log.splitlines() if _PROGRESS.search(line)]
    for expected in ("Epoch 0", "Epoch 2", "train_loss", "val_loss", "Pseudo dice", "Epoch time",
                     "DANTE regularisers on", "Validation Dice, limited (deployed) pathway"):
        assert any(expected in line for line in echoed), expected
    assert len(echoed) < len(training_log.splitlines()) / 2   # a filter, not the whole log
    assert all(k.startswith(("encoder.", "decoder.")) for k in ck["network_weights"])
    assert any(k.startswith("encoder_p.") for k in ck["dante_network_weights"])
    for sub in ((), ("full_pathway",)):
        summary = load_json(join(fold, *sub, "validation", "summary.json"))
        assert 0 <= summary["foreground_mean"]["Dice"] <= 1


def test_continue_restores_dual_network_optimizer_and_schedule(ws, monkeypatch):
    """What `nnUNetv2_train --c` does: run_training's trainer factory, then load_checkpoint."""
    from nnunetv2.run.run_training import get_trainer_from_args
    for k in ("nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, ws["env"][k])   # nnunetv2.paths reads them lazily
    trainer = get_trainer_from_args(str(DATASET_ID), CONFIG, 0, TRAINER, device=torch.device("cpu"))
    ck_file = join(ws["model"], "fold_0", "checkpoint_final.pth")
    trainer.load_checkpoint(ck_file)
    ck = torch.load(ck_file, map_location="cpu", weights_only=False)
    sd = trainer.dual_network().state_dict()
    assert sd.keys() == ck["dante_network_weights"].keys()
    assert all(torch.equal(sd[k], v) for k, v in ck["dante_network_weights"].items())
    assert trainer.current_epoch == 3
    mom = [s["momentum_buffer"] for s in trainer.optimizer.state_dict()["state"].values()]
    ref = [s["momentum_buffer"] for s in ck["optimizer_state"]["state"].values()]
    assert len(mom) == len(ref) > 0 and all(torch.equal(a, b) for a, b in zip(mom, ref))
    np.testing.assert_array_equal(trainer.logger.get_value("train_align", None), ck["logging"]["train_align"])
    with pytest.raises(ValueError, match="no 'dante_network_weights'"):
        trainer.load_checkpoint({k: v for k, v in ck.items() if k != "dante_network_weights"})


def test_predict_limited_only_export_and_plugin_free_predict_agree(ws):
    env, raw, root = ws["env"], ws["raw"], ws["root"]
    pred = root / "pred_dante"
    p = run(["nnUNetv2_predict", "-i", join(raw, "imagesTs"), "-o", pred, "-d", DATASET_ID, "-c", CONFIG,
             "-tr", TRAINER, "-f", 0, "-device", "cpu"], env)
    assert "WARNING (dante_nnunet)" not in p.stderr   # correct channel order: the swap check stays silent

    export_root = root / "exported"
    run(["dante_nnunet", "export", "-d", DATASET_ID, "-c", CONFIG, "-tr", TRAINER, "-f", 0, "-o", export_root], env)
    again = run(["dante_nnunet", "export", "-d", DATASET_ID, "-c", CONFIG, "-tr", TRAINER, "-f", 0,
                 "-o", export_root], env, ok=False)
    assert again.returncode == 2 and "already exists" in again.stderr

    plain_env = dict(env, nnUNet_results=str(export_root))
    plain_env.pop("nnUNet_extTrainer")
    ck = torch.load(join(export_root, ws["name"], f"nnUNetTrainer__nnUNetPlans__{CONFIG}", "fold_0",
                         "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert ck["trainer_name"] == "nnUNetTrainer"
    plain = root / "pred_plain"
    run(["nnUNetv2_predict", "-i", join(raw, "imagesTs"), "-o", plain, "-d", DATASET_ID, "-c", CONFIG,
         "-f", 0, "-device", "cpu"], plain_env)
    cases = sorted(os.listdir(join(raw, "labelsTs")))
    assert len(cases) == 2
    for c in cases:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / c)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(plain / c)))
        ref = sitk.ReadImage(join(raw, "labelsTs", c))
        assert a.shape == sitk.GetArrayFromImage(ref).shape
        assert np.array_equal(a, b), c

    run(["nnUNetv2_export_model_to_zip", "-d", DATASET_ID, "-c", CONFIG, "-f", 0, "-o", root / "model.zip"],
        plain_env)
    with zipfile.ZipFile(root / "model.zip") as z:
        assert any(n.endswith("fold_0/checkpoint_final.pth") for n in z.namelist())


def test_wrong_number_of_files_is_a_clear_error(ws):
    p = run(["nnUNetv2_predict", "-i", join(ws["raw"], "imagesTs_allchannels"), "-o", ws["root"] / "pred_bad",
             "-d", DATASET_ID, "-c", CONFIG, "-tr", TRAINER, "-f", 0, "-device", "cpu"], ws["env"], ok=False)
    assert p.returncode != 0
    assert "case 'DANTEe2e_008' has 4 image file(s)" in p.stderr
    assert "deployed on 3 limited channel(s) (T1, T2, FLAIR)" in p.stderr
    # -iDIR (argparse's attached form) is checked too, and -chk is not mistaken for -c
    p = run(["nnUNetv2_predict", f"-i{join(ws['raw'], 'imagesTs_allchannels')}", "-o", ws["root"] / "pred_bad2",
             "-d", DATASET_ID, "-c", CONFIG, "-tr", TRAINER, "-f", 0, "-chk", "checkpoint_final.pth",
             "-device", "cpu"], ws["env"], ok=False)
    assert p.returncode != 0 and "deployed on 3 limited channel(s) (T1, T2, FLAIR)" in p.stderr
    empty = ws["root"] / "empty_input"
    empty.mkdir()
    p = run(["nnUNetv2_predict", "-i", empty, "-o", ws["root"] / "pred_empty", "-d", DATASET_ID, "-c", CONFIG,
             "-tr", TRAINER, "-f", 0, "-device", "cpu"], ws["env"], ok=False)
    assert p.returncode != 0 and "holds no image files named CASE_XXXX.ending" in p.stderr
    assert not os.path.exists(ws["root"] / "pred_empty") or not os.listdir(ws["root"] / "pred_empty")
    # a file in another ending than the model's (.nii among .nii.gz), and a case whose channels differ in size
    src = join(ws["raw"], "imagesTs")
    case = sorted(f for f in os.listdir(src) if f.endswith("_0000.nii.gz"))[0][:-len("_0000.nii.gz")]
    # T1 and T2 given in each other's place: predicted, with a warning naming the case and files
    swapped = ws["root"] / "input_swapped"
    swapped.mkdir()
    for c, source in enumerate((1, 0, 2)):
        shutil.copyfile(join(src, f"{case}_{source:04d}.nii.gz"), swapped / f"{case}_{c:04d}.nii.gz")
    p = run(["nnUNetv2_predict", "-i", swapped, "-o", ws["root"] / "pred_swapped", "-d", DATASET_ID, "-c", CONFIG,
             "-tr", TRAINER, "-f", 0, "-device", "cpu"], ws["env"])
    assert f"WARNING (dante_nnunet): case '{case}': {case}_0000.nii.gz (given as T1) looks like" in p.stderr
    assert os.path.isfile(ws["root"] / "pred_swapped" / f"{case}.nii.gz")
    for name, edit in (("ending", lambda d: sitk.WriteImage(sitk.ReadImage(join(d, f"{case}_0001.nii.gz")),
                                                            join(d, f"{case}_0001.nii"))
                        or os.remove(join(d, f"{case}_0001.nii.gz"))),
                       ("size", lambda d: sitk.WriteImage(sitk.ReadImage(join(d, f"{case}_0002.nii.gz"))[1:, :, :],
                                                          join(d, f"{case}_0002.nii.gz")))):
        d = ws["root"] / f"input_{name}"
        d.mkdir()
        for f in os.listdir(src):
            if f.startswith(case + "_"):
                shutil.copyfile(join(src, f), d / f)
        edit(str(d))
        p = run(["nnUNetv2_predict", "-i", d, "-o", ws["root"] / f"pred_{name}", "-d", DATASET_ID, "-c", CONFIG,
                 "-tr", TRAINER, "-f", 0, "-device", "cpu"], ws["env"], ok=False)
        assert p.returncode != 0, name
        expected = (f"1 image file(s) do not end in '.nii.gz', the file ending this model was trained with (its "
                    f"dataset.json's file_ending): ['{case}_0001.nii']" if name == "ending" else
                    f"case '{case}' has images of different size or spacing")
        assert expected in p.stderr, (name, p.stderr[-2000:])
        assert not os.path.exists(ws["root"] / f"pred_{name}") or not os.listdir(ws["root"] / f"pred_{name}")


def test_a_checkpoint_written_on_a_gpu_loads_on_a_cpu_only_machine(ws, monkeypatch, tmp_path):
    """--c and --val (the trainer's load_checkpoint), nnUNetv2_predict's loading and the export, from a
    checkpoint whose tensors were saved on CUDA (tests/support.py)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import get_trainer_from_args
    from tests.support import resave_as_if_on_cuda
    from dante_nnunet.deploy.export import export_model
    for k in ("nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, ws["env"][k])
    fold = join(ws["model"], "fold_0")
    name = "checkpoint_cuda.pth"
    ck = resave_as_if_on_cuda(join(fold, "checkpoint_final.pth"), join(fold, name))
    try:
        with pytest.raises(RuntimeError, match="deserialize object on a CUDA device"):
            torch.load(join(fold, name), weights_only=False)        # it is a GPU checkpoint to torch
        trainer = get_trainer_from_args(str(DATASET_ID), CONFIG, 0, TRAINER, device=torch.device("cpu"))
        trainer.load_checkpoint(join(fold, name))
        sd = trainer.dual_network().state_dict()
        assert all(v.device.type == "cpu" and torch.equal(v, ck["dante_network_weights"][k]) for k, v in sd.items())
        assert all(s["momentum_buffer"].device.type == "cpu" for s in trainer.optimizer.state_dict()["state"].values())
        predictor = nnUNetPredictor(device=torch.device("cpu"))
        predictor.initialize_from_trained_model_folder(ws["model"], (0,), name)
        assert all(torch.equal(v, ck["network_weights"][k]) for k, v in predictor.list_of_parameters[0].items())
        dest = export_model(str(DATASET_ID), CONFIG, TRAINER, ["0"], str(tmp_path), checkpoint_name=name)
        exported = torch.load(join(dest, "fold_0", name), weights_only=False)   # no map_location needed
        assert all(v.device.type == "cpu" for v in exported["network_weights"].values())
    finally:
        os.remove(join(fold, name))
