"""The comparison methods: their network pieces and losses on small tensors (hand computations), and
their trainer classes' wiring on plans dicts (no data needed)."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from dante_nnunet.jobs import inmemory as pf
from tests.support import resave_as_if_on_cuda
from dante_nnunet.losses.distillation import DistillationLoss, feature_distillation, logit_distillation
from dante_nnunet.networks.builder import build_stock_network
from dante_nnunet.networks.input_channels import (ModalityDropout, drop_input_channels, first_convolution,
                                                  first_convolution_keys, select_channels)
from dante_nnunet.training import (DistillationTrainer_demo, LowerBoundTrainer, ModalityDropoutTrainer,
                                   UpperBoundTrainer, UpperBoundTrainer_demo)


# ------------------------------------------------------------------ losses, by hand
def test_feature_distillation_hand():
    s = [torch.tensor([[1.0, 2.0]]), torch.zeros(1, 1, 2, 2)]
    t = [torch.tensor([[0.0, 0.0]]), torch.ones(1, 1, 2, 2)]
    # level 1: mean(1, 4) = 2.5; level 2: mean of four 1s = 1
    assert feature_distillation(s, t).item() == pytest.approx(3.5)
    with pytest.raises(ValueError):
        feature_distillation(s, t[:1])


def test_logit_distillation_softmax_hand():
    # one voxel, two classes; T = 1: KL(q || p) with q = softmax(0, ln 3) = (1/4, 3/4), p = (1/2, 1/2)
    s = torch.zeros(1, 2, 1)
    t = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert logit_distillation(s, t, temperature=1.0).item() == pytest.approx(kl, rel=1e-5)
    # T = 2 softens both (teacher logits halved) and scales by T^2 = 4
    q = torch.softmax(t / 2, 1).flatten().tolist()
    kl2 = sum(qi * math.log(qi / 0.5) for qi in q) * 4
    assert logit_distillation(s, t, temperature=2.0).item() == pytest.approx(kl2, rel=1e-5)
    assert logit_distillation(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_logit_distillation_regions_hand():
    # two regions of one voxel: teacher sigmoid(ln 3) = 3/4 vs student 1/2, and 1/2 vs 1/2 (KL 0)
    s = torch.zeros(1, 2, 1)
    t = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert logit_distillation(s, t, temperature=1.0, regions=True).item() == pytest.approx(kl, rel=1e-5)


def test_distillation_loss_sums_weighted_terms():
    task = lambda out, target: F.mse_loss(out[0], target)  # noqa: E731
    loss = DistillationLoss(task, feature_weight=2.0, logit_weight=0.5, temperature=1.0)
    s_out, t_out = [torch.zeros(1, 2, 1)], [torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1)]
    total = loss(s_out, t_out, [torch.ones(1, 1, 2)], [torch.zeros(1, 1, 2)], torch.ones(1, 2, 1))
    terms = loss.last_terms
    assert terms["task"].item() == pytest.approx(1.0) and terms["feature"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(1.0 + 2.0 * 1.0 + 0.5 * terms["logit"].item())


# ------------------------------------------------------------------ input-channel pieces
def _net(n_in, arch="PlainConvUNet"):
    torch.manual_seed(0)
    return build_stock_network(pf.configuration_manager(arch), n_in, 3, deep_supervision=False).eval()


def test_select_channels_feeds_only_the_limited_channels():
    net = _net(3)
    select_channels(net.encoder, [0, 2, 3])
    x = torch.randn(2, 4, 16, 16, 16)
    y = net(x)
    x2 = x.clone()
    x2[:, 1] = 1e3          # the privileged channel is never seen
    assert torch.equal(net(x2), y)
    assert net.state_dict().keys() == _net(3).state_dict().keys()   # stock keys


def test_modality_dropout_train_and_eval():
    hook = ModalityDropout([1], p=0.5)
    torch.manual_seed(0)
    m = torch.nn.Identity()
    x = torch.ones(64, 3, 2)
    out = hook(m.train(), (x,))[0]
    dropped = out[:, 1, 0] == 0
    assert 10 < int(dropped.sum()) < 54                      # about half the cases lose the channel
    assert torch.equal(out[:, [0, 2]], x[:, [0, 2]])          # the others never do
    assert (out[:, 1][~dropped] == 1).all()
    assert (hook(m.eval(), (x,))[0][:, 1] == 0).all()         # absent at test
    assert torch.equal(x, torch.ones(64, 3, 2))               # input not modified in place
    with pytest.raises(ValueError):
        ModalityDropout([1], p=1.5)


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_drop_input_channels_is_exact_when_dropped_channels_are_zero(arch):
    full = _net(4, arch)
    name, conv = first_convolution(full.encoder)
    assert conv.in_channels == 4
    keys = first_convolution_keys(full)
    assert len(keys) >= 2 and all(k.startswith(("encoder.", "decoder.encoder.")) for k in keys)
    limited = _net(3, arch)
    limited.load_state_dict(drop_input_channels(full.state_dict(), keys, [0, 2, 3]))   # strict
    x = torch.randn(1, 4, 16, 16, 16)
    x[:, 1] = 0
    with torch.no_grad():
        torch.testing.assert_close(limited(x[:, [0, 2, 3]]), full(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ trainer wiring
def _trainer(cls, **dj):
    return pf.initialisable_trainer(cls, "Dataset997_Baselines", **dj)


@pytest.mark.parametrize("cls,n_in", [(LowerBoundTrainer, 3), (ModalityDropoutTrainer, 4), (UpperBoundTrainer, 4)])
def test_baseline_networks_and_a_training_step(cls, n_in):
    t = _trainer(cls)
    t.initialize()
    net = t.unwrapped_network()
    assert first_convolution(net.encoder)[1].in_channels == n_in
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = t.train_step(pf.region_batch())
    assert math.isfinite(float(out["loss"]))
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_modality_dropout_checkpoint_holds_the_limited_network(tmp_path):
    t = _trainer(ModalityDropoutTrainer)
    t.initialize()
    t.save_checkpoint(str(tmp_path / "ck.pth"))
    ck = torch.load(tmp_path / "ck.pth", weights_only=False)
    deployed = ModalityDropoutTrainer.build_network_architecture(
        t.plans_manager, t.configuration_manager, 3, t.label_manager.num_segmentation_heads, False)
    deployed.load_state_dict(ck["network_weights"])                       # strict, 3 channels
    t.unwrapped_network().load_state_dict(ck["dante_network_weights"])     # the all-channel network


def test_distillation_needs_its_teacher_before_any_folder(monkeypatch):
    from nnunetv2.paths import nnUNet_results
    monkeypatch.delenv("DANTE_TEACHER_CHECKPOINT", raising=False)
    with pytest.raises(FileNotFoundError, match="UpperBoundTrainer_demo__nnUNetPlans__3d_fullres"):
        _trainer(DistillationTrainer_demo)
    assert not os.path.exists(os.path.join(nnUNet_results, "Dataset997_Baselines",
                                           "DistillationTrainer_demo__nnUNetPlans__3d_fullres"))


def test_distillation_step_uses_frozen_teacher(tmp_path, monkeypatch):
    teacher = _trainer(UpperBoundTrainer_demo)
    teacher.initialize()
    teacher.save_checkpoint(str(tmp_path / "teacher.pth"))
    resave_as_if_on_cuda(tmp_path / "teacher.pth", tmp_path / "teacher.pth")   # a teacher trained on a GPU
    monkeypatch.setenv("DANTE_TEACHER_CHECKPOINT", str(tmp_path / "teacher.pth"))
    t = _trainer(DistillationTrainer_demo)
    t.initialize()
    t.on_train_epoch_start()
    t_before = {k: v.clone() for k, v in t.teacher.state_dict().items()}
    assert all(not p.requires_grad for p in t.teacher.parameters())
    out = t.train_step(pf.region_batch())
    terms = t.loss.last_terms
    assert terms["feature"] > 0 and terms["logit"] > 0
    expected = terms["task"] + t.feature_weight * terms["feature"] + t.logit_weight * terms["logit"]
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert all(torch.equal(t_before[k], v) for k, v in t.teacher.state_dict().items())
    # validation scores the student with nnU-Net's task loss only
    t.network.eval()
    val = t.validation_step(pf.region_batch())
    assert math.isfinite(float(val["loss"])) and len(val["tp_hard"]) == 3
