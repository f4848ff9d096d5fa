"""Training cases without the privileged scan (dataset.json "dante" -> "cases_without_privileged"): the
list's checks, the per-case masking of every loss by hand, ModDrop's forced drop, the phantom option, and
the trainers' refusals on real preprocessed data."""
import json
import math
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from dante_nnunet.config import (DanteConfigError, cases_without_privileged, check_cases_without_privileged,
                                 non_constant_channels)
from dante_nnunet.losses import DANTELoss, RegressionAlignment, ReconstructionLoss
from dante_nnunet.losses.distillation import DistillationLoss, feature_distillation, logit_distillation
from dante_nnunet.networks.cross_modal_mae import CrossModalMAEOutput
from dante_nnunet.networks.dual_pathway import DualPathwayOutput
from dante_nnunet.networks.input_channels import ModalityDropout


# ------------------------------------------------------------------ the list
def test_list_format_and_checks():
    dj = {"dante": {"privileged_channels": ["T1ce"], "cases_without_privileged": ["c1", "c3"]}}
    assert cases_without_privileged(dj) == ("c1", "c3")
    assert cases_without_privileged({"dante": {"privileged_channels": ["T1ce"]}}) == ()
    for bad in ("c1", [1, 2], ["c1", ""], {"c1": 1}):
        with pytest.raises(DanteConfigError, match="cases_without_privileged"):
            cases_without_privileged({"dante": {"cases_without_privileged": bad}})
    with pytest.raises(DanteConfigError, match=r"\['c1'\] more than once"):
        cases_without_privileged({"dante": {"cases_without_privileged": ["c1", "c2", "c1"]}})
    check_cases_without_privileged(["c1"], ["c0", "c1", "c2"])
    with pytest.raises(DanteConfigError, match=r"names \['c9'\].*does not have"):
        check_cases_without_privileged(["c1", "c9"], ["c0", "c1", "c2"], "x/dataset.json")
    with pytest.raises(DanteConfigError, match="every one of the 2 cases"):
        check_cases_without_privileged(["c0", "c1"], ["c0", "c1"])


def test_constant_channel_cache_reads_each_case_once_and_again_when_it_changes(tmp_path):
    from dante_nnunet.guards import ConstantChannelCache
    for case in ("a", "b"):
        (tmp_path / f"{case}.pkl").write_bytes(b"x")
    reads = []

    def non_constant(case):
        reads.append(case)
        return (1,) if case == "a" else ()       # b: channel 1 constant; channel 0 is not asked for

    cache = lambda: ConstantChannelCache(str(tmp_path / "cache.json"), str(tmp_path))  # noqa: E731
    assert cache().constant_channels(["a", "b"], non_constant, [1]) == {"b": [1]}
    assert cache().constant_channels(["a", "b"], non_constant, [1]) == {"b": [1]} and reads == ["a", "b"]
    (tmp_path / "b.pkl").write_bytes(b"preprocessed again")
    assert cache().constant_channels(["a", "b"], lambda c: reads.append(c) or (1,), [1]) == {}
    assert reads == ["a", "b", "b"]


def test_non_constant_channels():
    img = np.zeros((3, 4, 4, 4), np.float32)
    img[1] = -1000.0                                  # a CT placeholder: constant, not zero
    img[2] = np.random.default_rng(0).normal(size=(4, 4, 4))
    assert non_constant_channels(img, [0, 1]) == ()
    assert non_constant_channels(img, [0, 1, 2]) == (2,)
    img[0, 0, 0, 0] = 1e-7                            # resampling round-off stays "constant"
    assert non_constant_channels(img, [0]) == ()


# ------------------------------------------------------------------ Stage 2 (Eq. 6), by hand
def _dual_output(requires_grad=False):
    """Three cases, one voxel, one channel, one feature level; hand-picked values (case 1 is the one without
    the privileged scan, with values that would change every term if it counted)."""
    t = lambda v: torch.tensor(v, dtype=torch.float32).view(3, 1, 1).requires_grad_(requires_grad)  # noqa: E731
    return DualPathwayOutput(
        seg_limited=t([1.0, 1.0, 1.0]), seg_full=t([1.0, 7.0, 3.0]),
        z_limited=[t([1.0, 0.0, 1.0])], z_alignable=[t([2.0, 50.0, 4.0])], z_privileged=[t([0.0, 5.0, 0.0])],
        corrections=[t([1.0, 100.0, -3.0])], synthesis=t([0.0, 9.0, 2.0]), privileged_input=t([1.0, 0.0, 0.0]))


def _mse_task(seg, target):
    return ((seg - target) ** 2).mean()


def _loss():
    return DANTELoss(_mse_task, RegressionAlignment(1), lambda_pib=0.3, lambda_align=0.5, lambda_synthesis=0.2)


def test_dante_loss_uses_only_complete_cases_for_the_privileged_terms():
    out, target = _dual_output(), torch.zeros(3, 1, 1)
    loss = _loss()
    total = loss(out, target, [True, False, True])
    # cases 0 and 2: seg_f (1 + 9) / 2 = 5; PIB (1 + 3) / 2 = 2; align (|2-1| + |4-1|) / 2 = 2;
    # synthesis ((0-1)^2 + (2-0)^2) / 2 = 2.5; seg_l over all three cases: 1
    terms = {k: v.item() for k, v in loss.last_terms.items()}
    assert math.isnan(terms.pop("club")) and math.isnan(terms.pop("club_q"))   # no CLUB estimator here
    assert terms == pytest.approx({"seg_limited": 1.0, "seg_full": 5.0, "pib": 2.0, "align": 2.0, "synthesis": 2.5})
    assert total.item() == pytest.approx(1.0 + 5.0 + 0.3 * 2.0 + 0.5 * 2.0 + 0.2 * 2.5)
    # every case complete (or no list): the unmasked loss
    assert loss(out, target, [True, True, True]).item() == pytest.approx(loss(out, target).item())
    assert loss(out, target).item() == pytest.approx(1.0 + (1 + 49 + 9) / 3 + 0.3 * (1 + 100 + 3) / 3
                                                     + 0.5 * (1 + 50 + 3) / 3 + 0.2 * (1 + 81 + 4) / 3)
    with pytest.raises(ValueError, match="2 values for a batch of 3"):
        loss(out, target, [True, False])


def test_dante_loss_gradients_skip_the_cases_without_privileged_scan():
    out = _dual_output(requires_grad=True)
    _loss()(out, torch.zeros(3, 1, 1), torch.tensor([True, False, True])).backward()
    for g in (out.seg_full.grad, out.corrections[0].grad, out.z_limited[0].grad, out.synthesis.grad):
        assert g[1].abs().item() == 0 and g[[0, 2]].abs().sum().item() > 0
    assert out.seg_limited.grad.abs().flatten().gt(0).all()     # the limited task loss: every case


def test_dante_loss_batch_without_complete_cases_is_the_limited_task_loss_only():
    out = _dual_output(requires_grad=True)
    loss = _loss()
    total = loss(out, torch.zeros(3, 1, 1), [False, False, False])
    assert total.item() == pytest.approx(1.0)
    assert all(torch.isnan(loss.last_terms[k]) for k in ("seg_full", "pib", "align", "synthesis"))
    total.backward()
    # the privileged outputs stay in the graph with zero gradient (what DDP needs), no NaN from 0/0
    for g in (out.seg_full.grad, out.corrections[0].grad, out.z_alignable[0].grad, out.z_privileged[0].grad,
              out.synthesis.grad):
        assert g is not None and torch.equal(g, torch.zeros_like(g))


def test_dante_loss_masks_deep_supervision_lists():
    out = _dual_output()
    ds = out._replace(seg_limited=[out.seg_limited, out.seg_limited[:, :, :1]],
                      seg_full=[out.seg_full, out.seg_full[:, :, :1] * 0])
    task = lambda seg, target: _mse_task(seg[0], target[0]) + _mse_task(seg[1], target[1])  # noqa: E731
    loss = DANTELoss(task, RegressionAlignment(1), 0.0, 0.0)
    loss(ds, [torch.zeros(3, 1, 1), torch.zeros(3, 1, 1)], [True, False, True])
    assert loss.last_terms["seg_full"].item() == pytest.approx(5.0)   # (1 + 9) / 2 + 0


# ------------------------------------------------------------------ Stage 1 (Eqs. 7-9), by hand
def test_reconstruction_cases_without_privileged_scan_train_eq7_only():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]],      # case 0: channel 0 limited, channel 1 privileged
                      [[5.0, 6.0], [0.0, 0.0]]])     # case 1: placeholder privileged channel
    out = CrossModalMAEOutput(rec_limited=torch.zeros(2, 1, 2), rec_full_ap=torch.zeros(2, 2, 2),
                              rec_full_lp=torch.ones(2, 2, 2))
    mask = torch.ones(2, 1, 2)
    loss = ReconstructionLoss([0], cross_modal=True)
    total = loss(out, x, mask, [True, False])
    # Eq. 7 over both cases: (1 + 4 + 25 + 36) / 4; Eqs. 8-9 over case 0 only: (1+4+9+16)/4, (0+1+4+9)/4
    terms = {k: v.item() for k, v in loss.last_terms.items()}
    assert math.isnan(terms.pop("synthesis"))   # only a limited-only Stage 1 with synthesis has it
    assert terms == pytest.approx({"l_to_l": 66 / 4, "ap_to_f": 30 / 4, "lp_to_f": 14 / 4})
    assert total.item() == pytest.approx((66 + 30 + 14) / 4)
    total = loss(out, x, mask, [False, False])
    assert total.item() == pytest.approx(66 / 4)
    assert torch.isnan(loss.last_terms["ap_to_f"]) and torch.isnan(loss.last_terms["lp_to_f"])


# ------------------------------------------------------------------ baselines
def test_distillation_terms_only_on_complete_cases():
    task = lambda out, target: out[0].mean() * 0 + 1.0  # noqa: E731
    loss = DistillationLoss(task, feature_weight=1.0, logit_weight=1.0, temperature=1.0)
    s_out, t_out = [torch.zeros(2, 2, 1)], [torch.tensor([[0.0, 1.0], [0.0, 9.0]]).view(2, 2, 1)]
    s_f, t_f = [torch.zeros(2, 1, 2)], [torch.tensor([[[1.0, 1.0]], [[9.0, 9.0]]])]
    total = loss(s_out, t_out, s_f, t_f, None, [True, False])
    assert loss.last_terms["feature"].item() == pytest.approx(feature_distillation(s_f[0][:1], t_f[0][:1]).item())
    assert loss.last_terms["logit"].item() == pytest.approx(logit_distillation(s_out[0][:1], t_out[0][:1], 1.0).item())
    assert total.item() == pytest.approx(1.0 + 1.0 + loss.last_terms["logit"].item())
    assert loss(s_out, t_out, s_f, t_f, None, [False, False]).item() == pytest.approx(1.0)
    assert torch.isnan(loss.last_terms["feature"])


def test_modality_dropout_always_drops_an_absent_case():
    hook = ModalityDropout([1], p=0.0)                # never drops by chance
    module = torch.nn.Identity().train()
    x = torch.ones(2, 2, 3)
    hook.absent = torch.tensor([False, True])
    y = hook(module, (x,))[0]
    assert torch.equal(y[0], x[0]) and torch.equal(y[1, 1], torch.zeros(3)) and torch.equal(y[1, 0], x[1, 0])
    hook.absent = torch.tensor([True])
    with pytest.raises(ValueError, match="batch 2 cases"):
        hook(module, (x,))


# ------------------------------------------------------------------ phantom
def test_phantom_writes_placeholders_and_lists_them(tmp_path):
    from dante_nnunet.data.phantom import cases_missing_privileged, write_phantom
    full = write_phantom("transfer", 601, "Full", num_train=4, num_test=1, seed=3, shape=(16, 16, 16),
                         raw_root=str(tmp_path))
    part = write_phantom("transfer", 602, "Part", num_train=4, num_test=1, seed=3, shape=(16, 16, 16),
                         raw_root=str(tmp_path), missing_privileged=0.5)
    listed = json.load(open(os.path.join(part, "dataset.json")))["dante"]["cases_without_privileged"]
    assert listed == [f"Part_{i:03d}" for i in cases_missing_privileged(4, 0.5, 3)] and len(listed) == 2
    read = lambda folder, name: sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, "imagesTr", name)))  # noqa
    for i in range(4):
        for ch in range(4):
            a, b = read(full, f"Full_{i:03d}_{ch:04d}.nii.gz"), read(part, f"Part_{i:03d}_{ch:04d}.nii.gz")
            if ch == 1 and f"Part_{i:03d}" in listed:     # T1ce
                assert not b.any() and a.any()
            else:
                assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="leaves none"):
        cases_missing_privileged(2, 0.9, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cases_missing_privileged(4, 1.0, 0)


# ------------------------------------------------------------------ trainers on real preprocessed data
def _trainer_args(e2e_dataset, listed):
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    pre = join(e2e_dataset["env"]["nnUNet_preprocessed"], e2e_dataset["name"])
    plans = load_json(join(pre, "nnUNetPlans.json"))
    dj = load_json(join(pre, "dataset.json"))
    dj["dante"]["cases_without_privileged"] = listed
    return plans, dj, pre


@pytest.mark.parametrize("listed, match", [
    (["DANTEe2e_099"], r"names \['DANTEe2e_099'\]"),
    (["DANTEe2e_001"], r"lists DANTEe2e_001, but its privileged channel\(s\) \['T1ce'\] hold an image"),
    ([f"DANTEe2e_{i:03d}" for i in range(8)], "every one of the 8 cases"),
])
def test_trainer_refuses_a_wrong_list_before_writing(e2e_dataset, monkeypatch, listed, match):
    from dante_nnunet.training import DANTETrainer
    from tests.support import E2E_CONFIG
    plans, dj, pre = _trainer_args(e2e_dataset, listed)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, e2e_dataset["env"][k])
    results = e2e_dataset["env"]["nnUNet_results"]
    before = sorted(os.listdir(results)) if os.path.isdir(results) else []
    with pytest.raises(DanteConfigError, match=match):
        DANTETrainer(plans, E2E_CONFIG, 0, dj, torch.device("cpu"))
    assert (sorted(os.listdir(results)) if os.path.isdir(results) else []) == before
