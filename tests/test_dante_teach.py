"""DANTETrainer_teach (issue 40): unlabelled cases (nnU-Net's ignore label everywhere, listed in
dante.unlabelled_cases) are never validated on, are in training only for a trainer that learns from them,
and the full pathway's sure predictions are the limited pathway's target on them. Real trainers on
in-memory plans and batches."""
import json
import math
import os

import numpy as np
import pytest
import torch

from dante_nnunet.config import DanteConfigError
from dante_nnunet.jobs import inmemory as pf
from dante_nnunet.training import DANTETrainer
from dante_nnunet.training.variants import trainer_class

DATASET = "Dataset995_Teach"
LABELLED = [f"c{i}" for i in range(6)]
SCANS = ["u0", "u1", "u2"]


def _dj(unlabelled=SCANS, ignore=True):
    dj = pf.dataset_json()
    if ignore:
        dj["labels"]["ignore"] = 4
    dj["dante"]["unlabelled_cases"] = list(unlabelled)
    return dj


def _trainer(cls, dj=None, split=None, **configuration):
    """A real trainer of ``cls`` on in-memory plans (``configuration``: inmemory.configuration's arguments)."""
    from nnunetv2.paths import nnUNet_preprocessed
    p = pf.plans(DATASET, "3d_fullres", **{"features": (4, 8, 16), **configuration})
    folder = os.path.join(str(nnUNet_preprocessed), DATASET)
    os.makedirs(os.path.join(folder, p["configurations"]["3d_fullres"]["data_identifier"]), exist_ok=True)
    open(os.path.join(folder, p["configurations"]["3d_fullres"]["data_identifier"], "case.b2nd"), "w").close()
    # nnU-Net's split may put scans anywhere; fold 0 validates on c4, c5 and u2
    split = split or [{"train": LABELLED[:4] + SCANS[:2], "val": LABELLED[4:] + SCANS[2:]}]
    with open(os.path.join(folder, "splits_final.json"), "w") as fh:
        json.dump(split, fh)
    p = dict(p)
    p["continue_training"] = False
    return cls(p, "3d_fullres", 0, dj or _dj(), device=torch.device("cpu"))


def test_unlabelled_cases_never_validate_and_train_only_for_the_teaching_trainer():
    teach = _trainer(trainer_class("DANTETrainer_teach"))
    tr, val = teach.do_split()
    assert val == ["c4", "c5"]                                   # u2 moved out of validation
    # labelled cases listed so that they are about half of the draws: r = round(3 / 4) = 1 ... at least once
    assert sorted(set(tr)) == sorted(LABELLED[:4] + SCANS) and tr.count("c0") == 1
    plain = _trainer(DANTETrainer)
    tr, val = plain.do_split()
    assert tr == LABELLED[:4] and val == ["c4", "c5"]            # not in training either
    many = [f"u{i}" for i in range(12)]
    teach = _trainer(trainer_class("DANTETrainer_teach"), _dj(many),
                     [{"train": LABELLED[:4] + many, "val": LABELLED[4:]}])
    tr, _ = teach.do_split()
    assert tr.count("c0") == 3 and len(tr) == 4 * 3 + 12          # r = round(0.5/0.5 x 12 / 4) = 3


def test_teaching_trainer_refuses_a_dataset_without_unlabelled_cases_or_ignore_label():
    with pytest.raises(DanteConfigError, match="lists none"):
        _trainer(trainer_class("DANTETrainer_teach"), _dj([]))
    with pytest.raises(DanteConfigError, match="needs nnU-Net's ignore label"):
        _trainer(DANTETrainer, _dj(ignore=False))


def test_share_and_warm_tokens_set_the_teaching_schedule_and_bad_values_are_refused():
    many = [f"u{i}" for i in range(12)]
    split = [{"train": LABELLED[:4] + many, "val": LABELLED[4:]}]
    t = _trainer(trainer_class("DANTETrainer_teach_share0.2_warm0.1_sure0.5_transfer"), _dj(many), split)
    assert (t.labelled_share, t.teach_start_fraction, t.teach_start_epoch, t.teach_threshold) == (0.2, 0.1, 10, 0.5)
    tr, _ = t.do_split()
    assert tr.count("c0") == 1                                    # r = round(0.2/0.8 x 12 / 4) = round(0.75)
    for name, says in (("DANTETrainer_teach_share1", "labelled_share=1.0"),
                       ("DANTETrainer_teach_warm1", "teach_start_fraction=1.0"),
                       ("DANTETrainer_teach_sure0.4", "teach_threshold=0.4")):
        with pytest.raises(DanteConfigError, match=says):
            _trainer(trainer_class(name), _dj(many), split)


def _batch(t, keys):
    b = pf.trainer_batch(t, seed=3)
    n = len(keys)
    b["data"] = b["data"][:1].repeat(n, 1, 1, 1, 1) if b["data"].shape[0] < n else b["data"][:n]
    targets = []
    for r in b["target"]:
        r = r[:1].repeat(n, 1, 1, 1, 1) if r.shape[0] < n else r[:n]
        ign = torch.zeros_like(r[:, :1])
        for i, k in enumerate(keys):
            if k.startswith("u"):
                r[i] = 0
                ign[i] = 1                                        # the ignore label everywhere
        targets.append(torch.cat([r, ign], 1))
    b["target"], b["keys"] = targets, np.array(keys)
    return b


def test_teaching_step_uses_the_full_pathways_targets_after_the_warm_up(monkeypatch, tmp_path):
    t = _trainer(trainer_class("DANTETrainer_teach"))
    t.initialize()
    seen = []
    real_loss = t.loss.forward

    def spy(output, target, has_privileged=None, limited_target=None):
        seen.append(limited_target)
        logits.append(output.seg_full[0].detach())
        return real_loss(output, target, has_privileged, limited_target)

    logits = []

    monkeypatch.setattr(t.loss, "forward", spy)
    batch = _batch(t, ["c0", "u0"])
    t.current_epoch = 0                                          # warm-up: the scan's voxels all ignored
    out = t.train_step(batch)
    assert seen[-1] is not None and bool(seen[-1][0][1, -1].eq(1).all())
    assert torch.equal(seen[-1][0][0], batch["target"][0][0])     # the labelled case keeps its label
    assert out["teach"].shape == (7,) and bool(torch.isfinite(out["teach"]).all())
    t.current_epoch = t.teach_start_epoch                        # teaching: sure voxels get the teacher's label
    t.teach_threshold = 0.55                                     # an untrained full pathway is rarely surer
    t.train_step(batch)
    p = torch.sigmoid(logits[-1][1].float())                     # the same step's full pathway, the scan
    sure = torch.maximum(p, 1 - p).amin(0) >= 0.55
    target = seen[-1][0][1]
    assert 0 < int(sure.sum()) < sure.numel()
    assert torch.equal(target[-1].bool(), ~sure)                 # ignored where the full pathway is unsure
    assert torch.equal(target[:3].bool(), p > 0.5)               # its hard prediction elsewhere
    assert torch.equal(seen[-1][0][0], batch["target"][0][0])
    # a batch of labelled cases only: nnU-Net's target, no teaching statistics
    out = t.train_step(_batch(t, ["c0", "c1"]))
    assert seen[-1] is None and bool(torch.isnan(out["teach"]).all())
    # the epoch's log line and curves, drawn as a third progress.png panel
    t.output_folder = str(tmp_path)
    t.current_epoch = 0
    outs = [t.train_step(batch) for _ in range(2)]
    t.on_train_epoch_end(outs)
    log = t.logger.local_logger.my_fantastic_logging
    assert len(log["teach_passed"][-1]) == 4 and len(log["teach_agreement"][-1]) == 3
    assert all(0 <= v <= 1 for v in log["teach_passed"][-1] + log["teach_agreement"][-1])


# ------------------------------------------------------------------ through the stock commands
def test_add_scans_then_nnunetv2_train_teaches_on_them(e2e_dataset, tmp_path):
    """``dante_nnunet add-scans -c``: the labelled cases + 3 scans (ignore label, listed), preprocessed with the
    labelled dataset's plans and split; ``nnUNetv2_train -tr DANTETrainer_e2e_teach`` trains on them (log
    lines from the warm-up epoch 0 and the teaching epochs 1-2) and validates on the labelled cases only."""
    import SimpleITK as sitk
    from tests.support import E2E_CONFIG, E2E_DATASET_ID, run
    from dante_nnunet.data.phantom import write_phantom
    env = e2e_dataset["env"]
    other = write_phantom("rim", 990, "Scans", num_train=2, num_test=1, seed=5, shape=(32, 32, 32),
                          raw_root=str(tmp_path / "raw"), num_unlabelled=3)
    scans = os.path.join(other, "imagesUnlabelled")
    bad = run(["dante_nnunet", "add-scans", "-d", str(E2E_DATASET_ID), "--scans", os.path.join(e2e_dataset["raw"], "imagesTr"),
               "-o", "993", "-c", E2E_CONFIG], env, ok=False)
    assert bad.returncode != 0 and "Dataset993" not in " ".join(os.listdir(env["nnUNet_raw"]))
    run(["dante_nnunet", "add-scans", "-d", str(E2E_DATASET_ID), "--scans", scans, "-o", "994", "-c", E2E_CONFIG], env)
    raw = os.path.join(env["nnUNet_raw"], "Dataset994_DANTEe2eScans")
    dj = json.load(open(os.path.join(raw, "dataset.json")))
    assert dj["labels"]["ignore"] == 4 and dj["dante"]["unlabelled_cases"] == ["ScansU_0000", "ScansU_0001", "ScansU_0002"]
    lab = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(raw, "labelsTr", "ScansU_0001.nii.gz")))
    assert (lab == 4).all()
    assert run(["dante_nnunet", "check-dataset", "-d", "994"], env).returncode == 0   # it knows them
    pre = os.path.join(env["nnUNet_preprocessed"], "Dataset994_DANTEe2eScans")
    assert os.path.isfile(os.path.join(pre, "nnUNetPlans.json"))
    run(["nnUNetv2_train", "994", E2E_CONFIG, "0", "-tr", "DANTETrainer_e2e_teach", "-device", "cpu"], env)
    fold = os.path.join(env["nnUNet_results"], "Dataset994_DANTEe2eScans",
                        f"DANTETrainer_e2e_teach__nnUNetPlans__{E2E_CONFIG}", "fold_0")
    log = open(next(os.path.join(fold, f) for f in os.listdir(fold) if f.startswith("training_log"))).read()
    assert "DANTE teach: 3 unlabelled cases" in log
    assert "DANTE teach (warm-up to epoch 1" in log and log.count("DANTE teach (teaching") == 2
    summary = json.load(open(os.path.join(fold, "validation", "summary.json")))
    validated = {os.path.basename(c["reference_file"]) for c in summary["metric_per_case"]}
    assert validated and not any(v.startswith("ScansU") for v in validated)
    assert os.path.isfile(os.path.join(fold, "progress.png"))


# ------------------------------------------------------------------ the target path, checked by hand (issue 48)
def _nested_labels(shape):
    """A label map whose regions are nested boxes of distinct sizes (WT = 1|2|3, TC = 2|3, ET = 3) and an
    ignore slab (4), so that every region channel and every level has its own hand-countable content."""
    lab = torch.zeros(1, *shape)
    lab[0, 1:15, 1:14, 2:13] = 1
    lab[0, 3:12, 4:11, 3:10] = 2
    lab[0, 5:9, 5:10, 5:8] = 3
    lab[0, :, :, 14:] = 4
    return lab


def _by_hand(lab, scales, regions, ignore):
    """Per deep-supervision level: nnU-Net's target written out by hand. Downsampling by 1/f is
    'nearest-exact', i.e. source voxel floor((i + 0.5) f) of each axis; channels are the regions in
    dataset.json order, then the ignore label."""
    out = []
    for sc in scales:
        idx = [torch.floor((torch.arange(round(n * s)) + 0.5) / s).long() for n, s in zip(lab.shape[1:], sc)]
        sub = lab[0][idx[0]][:, idx[1]][:, :, idx[2]]
        chans = [torch.isin(sub, torch.tensor(list(r), dtype=sub.dtype)) for r in regions] + [sub == ignore]
        out.append(torch.stack(chans).float())
    return out


def test_the_taught_target_reaches_every_level_in_nnunets_channel_order(monkeypatch):
    """Issue 48: nnU-Net's own transforms (its validation pipeline: regions + ignore label, then deep-supervision
    downsampling) make the real targets of a labelled case and of a scan; the step then mixes them with the
    full pathway's output. Checked against hand computations at every level: the labelled case's channels
    (region order, ignore last) and the scan's taught channels from the same level's full-pathway logits.
    A channel or level shifted anywhere on that path fails here."""
    t = _trainer(trainer_class("DANTETrainer_teach"), features=(4, 8, 16, 32), patch=(16, 16, 16))
    t.initialize()
    lm = t.label_manager
    assert lm.has_regions and lm.ignore_label == 4
    scales = t._get_deep_supervision_scales()
    assert len(scales) == 3 and len({tuple(s) for s in scales}) == 3      # three levels, each its own shape
    transforms = t.get_validation_transforms(scales, is_cascaded=False, foreground_labels=lm.foreground_labels,
                                             regions=lm.foreground_regions, ignore_label=lm.ignore_label)
    shape = tuple(t.configuration_manager.patch_size)
    lab = _nested_labels(shape)
    scan = torch.full((1, *shape), 4.0)                                  # add-scans: the ignore label everywhere
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(4, *shape, generator=g) for _ in range(2)]
    real = [transforms(image=im, segmentation=s) for im, s in zip(images, (lab, scan))]
    regions = [(1, 2, 3), (2, 3), (3,)]                                 # dataset.json: WT, TC, ET
    assert [tuple(sorted(r)) for r in lm.foreground_regions] == regions
    for level, (want_lab, want_scan) in enumerate(zip(_by_hand(lab, scales, regions, 4),
                                                      _by_hand(scan, scales, regions, 4))):
        assert torch.equal(real[0]["segmentation"][level].float(), want_lab), f"labelled case, level {level}"
        assert torch.equal(real[1]["segmentation"][level].float(), want_scan), f"scan, level {level}"
        assert want_lab[2].sum() < want_lab[1].sum() < want_lab[0].sum() and want_lab[3].any()
    batch = {"data": torch.stack([r["image"] for r in real]),
             "target": [torch.stack([r["segmentation"][k] for r in real]).float() for k in range(len(scales))],
             "keys": np.array(["c0", "u0"])}
    seen = {}
    real_loss = t.loss.forward

    def spy(output, target, has_privileged=None, limited_target=None):
        seen.update(output=output, limited_target=limited_target)
        return real_loss(output, target, has_privileged, limited_target)

    monkeypatch.setattr(t.loss, "forward", spy)
    t.current_epoch, t.teach_threshold = t.teach_start_epoch, 0.55      # an untrained full pathway is rarely surer
    t.train_step(batch)
    out, mixed = seen["output"], seen["limited_target"]
    assert len(mixed) == len(out.seg_full) == len(out.seg_limited) == len(scales)
    for level, sc in enumerate(scales):
        size = [round(n * s) for n, s in zip(shape, sc)]
        assert list(mixed[level].shape) == [2, 4, *size], f"level {level}"
        assert list(out.seg_limited[level].shape[2:]) == size and list(out.seg_full[level].shape[2:]) == size
        assert torch.equal(mixed[level][0], batch["target"][level][0]), f"labelled case changed at level {level}"
        pr = torch.sigmoid(out.seg_full[level][1].detach().float())       # this level's full pathway, the scan
        sure = torch.maximum(pr, 1 - pr).amin(0) >= 0.55
        assert 0 < int(sure.sum()) < sure.numel(), f"level {level}"
        assert torch.equal(mixed[level][1][3].bool(), ~sure), f"ignore channel, level {level}"
        for r in range(3):
            assert torch.equal(mixed[level][1][r].bool(), pr[r] > 0.5), f"region {r}, level {level}"
