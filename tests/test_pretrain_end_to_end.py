"""Stage 1 -> Stage 2 through the stock commands on the CPU: an unlabelled pre-training dataset from
images alone, the fine-tuning dataset's plans moved onto it, DANTEPretrainTrainer, DANTETrainer with
-pretrained_weights, prediction from limited-only scans; unfit checkpoints refused before training."""
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json

from tests.support import E2E_CONFIG, E2E_DATASET_ID, run
from dante_nnunet.networks.cross_modal_mae import TRANSFERRED_PARTS

pytestmark = pytest.mark.e2e
PRE_ID, PRE_TRAINER, TRAINER = 992, "DANTEPretrainTrainer_e2e", "DANTETrainer_e2eTransfer"


@pytest.fixture(scope="module")
def stage1(e2e_dataset):
    env, raw = e2e_dataset["env"], e2e_dataset["raw"]
    # the pre-training set: every image of the fine-tuning dataset, train and test, without labels
    run(["dante_nnunet", "pretrain-dataset", join(raw, "imagesTr"), join(raw, "imagesTs_allchannels"),
         "-d", PRE_ID, "-n", "DANTEe2ePre", "--like", join(raw, "dataset.json")], env)
    run(["nnUNetv2_extract_fingerprint", "-d", PRE_ID, "-np", "1"], env)
    run(["nnUNetv2_move_plans_between_datasets", "-s", E2E_DATASET_ID, "-t", PRE_ID, "-sp", "nnUNetPlans",
         "-tp", "nnUNetPlans"], env)
    pre_name = f"Dataset{PRE_ID}_DANTEe2ePre"
    # nnUNetv2_preprocess reads dataset.json from the preprocessed folder, which only planning fills
    # (nnU-Net issue #2560); the README's recipe has the same copy
    shutil.copyfile(join(env["nnUNet_raw"], pre_name, "dataset.json"),
                    join(env["nnUNet_preprocessed"], pre_name, "dataset.json"))
    run(["nnUNetv2_preprocess", "-d", PRE_ID, "-plans_name", "nnUNetPlans", "-c", "3d_fullres", "-np", "1"], env)
    run(["nnUNetv2_train", PRE_ID, E2E_CONFIG, 0, "-tr", PRE_TRAINER, "-device", "cpu"], env)
    fold = join(env["nnUNet_results"], pre_name, f"{PRE_TRAINER}__nnUNetPlans__{E2E_CONFIG}", "fold_0")
    return dict(e2e_dataset, pre_raw=join(env["nnUNet_raw"], pre_name), stage1_fold=fold,
                stage1_ck=join(fold, "checkpoint_final.pth"))


def test_pretrain_dataset_has_images_and_placeholder_labels(stage1):
    d = load_json(join(stage1["pre_raw"], "dataset.json"))
    assert d["numTraining"] == 10 and d["dante"] == {"privileged_channels": ["T1ce"]}
    assert d["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert len(os.listdir(join(stage1["pre_raw"], "imagesTr"))) == 40
    label = sitk.GetArrayFromImage(sitk.ReadImage(join(stage1["pre_raw"], "labelsTr", "DANTEe2e_000.nii.gz")))
    image = sitk.GetArrayFromImage(sitk.ReadImage(join(stage1["raw"], "imagesTr", "DANTEe2e_000_0000.nii.gz")))
    assert set(np.unique(label)) == {0, 1}
    assert np.array_equal(label == 1, image > image.min())   # synthetic scans: T1 is non-zero in the brain


def test_stage1_logged_three_losses_and_kept_the_lowest_validation_loss(stage1):
    ck = torch.load(stage1["stage1_ck"], map_location="cpu", weights_only=False)
    log = ck["logging"]
    for split in ("train", "val"):
        for t in ("l_to_l", "ap_to_f", "lp_to_f"):
            assert len(log[f"{split}_{t}"]) == 2 and np.isfinite(log[f"{split}_{t}"]).all(), (split, t)
    assert np.allclose(np.sum([log[f"train_{t}"] for t in ("l_to_l", "ap_to_f", "lp_to_f")], 0),
                       log["train_losses"], rtol=1e-5)
    assert ck["_best_ema"] == min(log["val_losses"])
    assert ck["dante_stage1"]["privileged_channels"] == ["T1ce"]
    assert os.path.isfile(join(stage1["stage1_fold"], "checkpoint_best.pth"))
    assert os.path.isfile(join(stage1["stage1_fold"], "progress.png"))
    assert not os.path.isdir(join(stage1["stage1_fold"], "validation"))   # validated by loss only


def test_continue_after_a_best_epoch_keeps_checkpoint_best(stage1, tmp_path):
    """Stage 1 killed after an epoch that set a new lowest validation loss, then --c: the next (worse)
    epoch does not replace checkpoint_best."""
    from tests.support import latest_after_a_best_epoch, newest_training_log
    env = dict(stage1["env"], nnUNet_results=str(tmp_path / "res"))
    model = os.path.dirname(stage1["stage1_fold"])
    copy = join(env["nnUNet_results"], os.path.basename(os.path.dirname(model)), os.path.basename(model))
    shutil.copytree(model, copy)
    fold = join(copy, "fold_0")
    best_bytes = open(join(fold, "checkpoint_best.pth"), "rb").read()
    epoch = latest_after_a_best_epoch(join(fold, "checkpoint_final.pth"), join(fold, "checkpoint_latest.pth"),
                                      "val_losses", 0.0, stale_best=10.0)
    os.remove(join(fold, "checkpoint_final.pth"))
    run(["nnUNetv2_train", PRE_ID, E2E_CONFIG, 0, "-tr", PRE_TRAINER, "-device", "cpu", "--c"], env)
    log = newest_training_log(fold)
    assert f"next epoch {epoch})" in log and "New lowest validation loss" not in log and "val_loss" in log
    assert open(join(fold, "checkpoint_best.pth"), "rb").read() == best_bytes
    ck = torch.load(join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert ck["_best_ema"] == 0.0 and ck["current_epoch"] == epoch + 1


def test_stage2_from_stage1_then_predict_on_limited_only_scans(stage1):
    env, raw = stage1["env"], stage1["raw"]
    p = run(["nnUNetv2_train", E2E_DATASET_ID, E2E_CONFIG, 0, "-tr", TRAINER, "-device", "cpu",
             "-pretrained_weights", stage1["stage1_ck"]], env)
    assert "DANTE: loaded" in p.stdout and "decoders and fusion start fresh" in p.stdout
    model = join(env["nnUNet_results"], stage1["name"], f"{TRAINER}__nnUNetPlans__{E2E_CONFIG}")
    logs = [f for f in os.listdir(join(model, "fold_0")) if f.startswith("training_log")]
    log = open(join(model, "fold_0", logs[0])).read()
    assert "E_L, E_A, E_P frozen from epoch 0" in log and "E_L, E_A, E_P trainable from epoch 1" in log
    ck = torch.load(join(model, "fold_0", "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert ck["dante_transferred_from"] == stage1["stage1_ck"]
    s1 = torch.load(stage1["stage1_ck"], map_location="cpu", weights_only=False)["network_weights"]
    s2 = ck["dante_network_weights"]
    key = "encoder_p.stages.0.0.convs.0.conv.weight"
    assert s2[key].shape == s1[key].shape and not torch.equal(s2[key], s1[key])   # trained after the freeze

    pred = stage1["root"] / "pred_transfer"
    run(["nnUNetv2_predict", "-i", join(raw, "imagesTs"), "-o", pred, "-d", E2E_DATASET_ID, "-c", E2E_CONFIG,
         "-tr", TRAINER, "-f", 0, "-device", "cpu"], env)
    for c in sorted(os.listdir(join(raw, "labelsTs"))):
        ref = sitk.GetArrayFromImage(sitk.ReadImage(join(raw, "labelsTs", c)))
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(pred / c))).shape == ref.shape


def test_an_unfit_checkpoint_stops_training_before_it_starts(stage1, tmp_path):
    from dante_nnunet.networks import build_stock_network
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    env = stage1["env"]
    plans = PlansManager(join(env["nnUNet_preprocessed"], stage1["name"], "nnUNetPlans.json"))
    net = build_stock_network(plans.get_configuration(E2E_CONFIG), 4, 3, True)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer"}, tmp_path / "plain.pth")
    p = run(["nnUNetv2_train", E2E_DATASET_ID, E2E_CONFIG, 1, "-tr", TRAINER, "-device", "cpu",
             "-pretrained_weights", tmp_path / "plain.pth"], env, ok=False)
    assert p.returncode != 0
    assert "tensor 'encoder_l.stages.0.0.convs.0.conv.weight' of this network is missing" in p.stderr
    assert "trainer_name 'nnUNetTrainer'" in p.stderr
    fold1 = join(env["nnUNet_results"], stage1["name"], f"{TRAINER}__nnUNetPlans__{E2E_CONFIG}", "fold_1")
    assert not any(f.startswith("checkpoint") for f in os.listdir(fold1))
    assert set(TRANSFERRED_PARTS) == {"encoder_l", "encoder_a", "encoder_p"}


@pytest.mark.parametrize("stage", [2, 1])
def test_continue_of_a_run_killed_before_its_first_checkpoint_keeps_the_stage1_weights(stage1, tmp_path, stage):
    """nnU-Net refuses --c with -pretrained_weights; a --c that finds no checkpoint would train from scratch
    without the Stage-1 encoders (Stage 2) or the weights a Stage 1 was continued from. The run record
    makes it stop and say how to restart."""
    import signal
    import subprocess
    from tests.support import BIN
    env = dict(stage1["env"], nnUNet_results=str(tmp_path / "res"))
    trainer, dataset_id, name = (("DANTETrainer_guard", E2E_DATASET_ID, stage1["name"]) if stage == 2 else
                                 (PRE_TRAINER, PRE_ID, os.path.basename(stage1["pre_raw"])))
    fold = join(env["nnUNet_results"], name, f"{trainer}__nnUNetPlans__{E2E_CONFIG}", "fold_0")
    cmd = [os.path.join(BIN, "nnUNetv2_train"), str(dataset_id), E2E_CONFIG, "0", "-tr", trainer, "-device", "cpu"]
    proc = subprocess.Popen(cmd + ["-pretrained_weights", stage1["stage1_ck"]], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    import time
    while not os.path.isfile(join(fold, "dante_run.json")):
        assert proc.poll() is None, "the run ended before it recorded itself"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any(f.startswith("checkpoint") for f in os.listdir(fold)), "killed too late for this test"
    assert load_json(join(fold, "dante_run.json"))["pretrained_weights"] == stage1["stage1_ck"]
    p = run(["nnUNetv2_train"] + cmd[1:] + ["--c"], env, ok=False)   # what a user types after the kill
    assert p.returncode != 0
    assert f"started from -pretrained_weights ({stage1['stage1_ck']}) that left no checkpoint" in p.stderr
    assert f"-tr {trainer} -pretrained_weights {stage1['stage1_ck']}" in p.stderr
    assert not any(f.startswith("checkpoint") for f in os.listdir(fold))


def test_stage1_checkpoint_written_on_a_gpu_transfers_and_continues_on_a_cpu_only_machine(stage1, monkeypatch,
                                                                                        tmp_path):
    """-pretrained_weights (nnU-Net's maybe_load_checkpoint -> the plugin's loader), the channel check and
    Stage 1's --c, from a Stage-1 checkpoint whose tensors were saved on CUDA."""
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    from tests.support import resave_as_if_on_cuda
    for k in ("nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, stage1["env"][k])
    ck_file = str(tmp_path / "stage1_cuda.pth")
    ck = resave_as_if_on_cuda(stage1["stage1_ck"], ck_file)
    with pytest.raises(RuntimeError, match="deserialize object on a CUDA device"):
        torch.load(ck_file, weights_only=False)
    t = get_trainer_from_args(str(E2E_DATASET_ID), E2E_CONFIG, 0, TRAINER, device=torch.device("cpu"))
    maybe_load_checkpoint(t, False, False, ck_file)
    dual = t.dual_network()
    assert dual.transferred_from == ck_file
    key = "encoder_a.stages.0.0.convs.0.conv.weight"
    assert torch.equal(dual.state_dict()[key], ck["network_weights"][key])
    t._warn_if_stage1_channels_differ(ck_file)   # reads the checkpoint's Stage-1 record
    pre = get_trainer_from_args(os.path.basename(stage1["pre_raw"]), E2E_CONFIG, 0, PRE_TRAINER,
                                device=torch.device("cpu"))
    pre.load_checkpoint(ck_file)
    assert torch.equal(pre.unwrapped_network().state_dict()[key], ck["network_weights"][key])


def _preprocessed_e2e(e2e_dataset):
    """(preprocessed folder, configuration manager, channel split, nnU-Net dataset) of the e2e dataset's
    E2E_CONFIG: what the Stage-1 diagnostics read, read here the way nnU-Net does, for hand computations."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from dante_nnunet.config import ChannelSplit

    pre = join(e2e_dataset["env"]["nnUNet_preprocessed"], e2e_dataset["name"])
    cm = PlansManager(join(pre, "nnUNetPlans.json")).get_configuration(E2E_CONFIG)
    split = ChannelSplit.from_dataset_json(load_json(join(pre, "dataset.json")), pre)
    return pre, cm, split, infer_dataset_class(join(pre, cm.data_identifier))(join(pre, cm.data_identifier))


def test_synthesis_diagnostic_scores_a_constant_synthesis_by_hand(e2e_dataset, tmp_path):
    """benchmark/features.synthesis_r2 on nnU-Net's preprocessed cases: a synthesis Stage 1 whose T1ce head
    outputs 0.5 everywhere scores 1 - sum((0.5 - t)^2) / sum((t - mean t)^2) over the brain's voxels."""
    from dante_nnunet.benchmark.features import synthesis_r2
    from dante_nnunet.networks.builder import build_cross_modal_mae

    pre, cm, split, ds = _preprocessed_e2e(e2e_dataset)
    net = build_cross_modal_mae(cm, split, cross_modal=False, limited_only=True, synthesis=True)
    head = net.decoder_l_rec.seg_layers[-1]
    with torch.no_grad():
        head.weight[3:] = 0.0
        head.bias[3:] = 0.5
    torch.save({"network_weights": net.state_dict()}, tmp_path / "s1.pth")
    cases = sorted(ds.identifiers)[:3]
    got = synthesis_r2(str(tmp_path / "s1.pth"), pre, E2E_CONFIG, cases)
    t, r = [], []
    for c in cases:
        data, seg = (np.asarray(a) for a in ds.load_case(c)[:2])
        brain = np.any(data[list(split.limited_indices)] != 0, axis=0)
        t.append(data[split.privileged_indices[0]][brain])
        r.append(seg[0][brain])
    t, r = np.concatenate(t).astype(np.float64), np.concatenate(r)
    assert got["r2_brain"] == pytest.approx(1 - ((0.5 - t) ** 2).sum() / ((t - t.mean()) ** 2).sum(), rel=1e-4)
    tt = t[r > 0]
    assert got["r2_tumour"] == pytest.approx(1 - ((0.5 - tt) ** 2).sum() / ((tt - tt.mean()) ** 2).sum(), rel=1e-4)
    assert got["top_label_synthesised"] == pytest.approx(0.5, abs=1e-5)
    assert got["top_label_true"] == pytest.approx(t[r == r.max()].mean(), rel=1e-4)
    assert got["cases"] == 3
    from dante_nnunet.guards import read_checkpoint
    assert synthesis_r2(read_checkpoint(str(tmp_path / "s1.pth")), pre, E2E_CONFIG, cases) == got   # read once


def test_privileged_probe_on_the_limited_channels_is_a_ridge_fit_by_hand(e2e_dataset):
    """benchmark/features.privileged_probe with the limited channels themselves as features ("inputs"), every
    brain voxel kept: R^2 on the test cases of a ridge regression fitted on the fit cases, computed here from
    nnU-Net's preprocessed arrays (brain: any limited channel non-zero; tumour: label > 0)."""
    from dante_nnunet.benchmark.features import privileged_probe, ridge_r2

    pre, _, split, ds = _preprocessed_e2e(e2e_dataset)
    cases = sorted(ds.identifiers)[:4]
    got = privileged_probe({"inputs": None}, pre, E2E_CONFIG, cases[:2], cases[2:], max_voxels_per_case=10 ** 9)

    def rows(part):
        x, y, tumour = [], [], []
        for c in part:
            data, seg = (np.asarray(a) for a in ds.load_case(c)[:2])
            lim = data[list(split.limited_indices)].astype(np.float32)
            brain = np.any(lim != 0, axis=0)
            x.append(lim[:, brain].T)
            y.append(data[split.privileged_indices[0]][brain].astype(np.float32))
            tumour.append(seg[0][brain] > 0)
        return np.concatenate(x), np.concatenate(y), np.concatenate(tumour)

    (xf, yf, _), (xt, yt, tt) = rows(cases[:2]), rows(cases[2:])
    assert got["inputs"]["features"] == len(split.limited_indices)
    assert got["inputs"]["r2_brain"] == pytest.approx(ridge_r2(xf, yf, xt, yt), rel=1e-4, abs=1e-6)
    assert got["inputs"]["r2_tumour"] == pytest.approx(ridge_r2(xf, yf, xt[tt], yt[tt]), rel=1e-4, abs=1e-6)
