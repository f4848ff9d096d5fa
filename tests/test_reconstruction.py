"""Stage 1: Eqs. 7-9 against hand computations, the CrossModalMAE's wiring, and the loss falling."""
import math

import numpy as np
import pytest
import torch

from dante_nnunet.config import ChannelSplit
from dante_nnunet.losses import ReconstructionLoss, masked_mse
from dante_nnunet.networks.masking import MultiScaleBlockMasker, apply_mask
from dante_nnunet.networks import CrossModalMAEOutput, build_cross_modal_mae
from dante_nnunet.data.phantom import brats_rim_case
from dante_nnunet.jobs.inmemory import configuration_manager

SPLIT = ChannelSplit.from_names(["T1", "T1ce", "T2", "FLAIR"], ["T1ce"])


def test_masked_mse_by_hand():
    # one case, 2 channels, 2x2 voxels; mask covers voxels (0,0) and (1,1)
    pred = torch.tensor([[[[1., 2.], [3., 4.]], [[0., 0.], [0., 0.]]]])
    target = torch.tensor([[[[0., 0.], [0., 1.]], [[1., 5.], [5., 2.]]]])
    mask = torch.tensor([[[[1., 0.], [0., 1.]]]])
    # masked squared errors: ch0 (1-0)^2 + (4-1)^2 = 10; ch1 (0-1)^2 + (0-2)^2 = 5
    # -> 15 / (2 masked voxels x 2 channels) = 3.75; visible errors (2^2, 3^2, 5^2, 5^2) do not count
    assert masked_mse(pred, target, mask).item() == pytest.approx(3.75)
    assert masked_mse(pred, target, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="shape"):
        masked_mse(pred, target[:, :1], mask)


def test_stage1_loss_is_the_sum_of_eqs_7_8_9_by_hand():
    x = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2)
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = mask[1, 0, 1, 1] = mask[1, 0, 0, 1] = 1     # 3 masked voxels in the batch
    out = CrossModalMAEOutput(rec_limited=x[:, [0, 2, 3]] + 1.0,   # error 1 everywhere -> Eq. 7 = 1
                              rec_full_ap=x + 2.0,                 # error 2 -> Eq. 8 = 4
                              rec_full_lp=x - 3.0)                 # error 3 -> Eq. 9 = 9
    loss = ReconstructionLoss(SPLIT.limited_indices)
    assert loss(out, x, mask).item() == pytest.approx(1 + 4 + 9)
    terms = {k: v.item() for k, v in loss.last_terms.items()}
    assert math.isnan(terms.pop("synthesis"))   # the limited-only synthesis form's term
    assert terms == pytest.approx({"l_to_l": 1, "ap_to_f": 4, "lp_to_f": 9})
    # Eq. 7 targets the limited channels only: an error on T1ce (channel 1) does not reach it
    bad = out._replace(rec_limited=x[:, [0, 2, 3]].clone())
    assert loss(bad, x, mask).item() == pytest.approx(0 + 4 + 9)
    self_only = ReconstructionLoss(SPLIT.limited_indices, cross_modal=False)
    assert self_only(out._replace(rec_full_lp=None), x, mask).item() == pytest.approx(1 + 4)
    assert math.isnan(self_only.last_terms["lp_to_f"].item())


def _grads(net, loss):
    net.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name for name, mod in net.named_children()
            if mod is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())}


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
@pytest.mark.parametrize("dim", [2, 3])
def test_each_equation_trains_exactly_its_parts(arch, dim):
    torch.manual_seed(0)
    net = build_cross_modal_mae(configuration_manager(arch, dim), SPLIT)
    x = torch.randn(2, 4, *[16] * dim)
    mask = MultiScaleBlockMasker(seed=0)(2, x.shape[2:])
    out = net(apply_mask(x, mask))
    assert out.rec_limited.shape == (2, 3, *[16] * dim)
    assert out.rec_full_ap.shape == out.rec_full_lp.shape == (2, 4, *[16] * dim)
    limited = x[:, list(SPLIT.limited_indices)]
    assert _grads(net, masked_mse(out.rec_limited, limited, mask)) == {"encoder_l", "decoder_l_rec"}          # Eq. 7
    assert _grads(net, masked_mse(out.rec_full_ap, x, mask)) == {"encoder_a", "encoder_p", "fusion_ap",
                                                                 "decoder_f_rec"}                             # Eq. 8
    assert _grads(net, masked_mse(out.rec_full_lp, x, mask)) == {"encoder_l", "encoder_p", "fusion_lp",
                                                                 "decoder_f_rec"}                             # Eq. 9


def test_self_reconstruction_ablation_has_no_cross_branch():
    net = build_cross_modal_mae(configuration_manager(), SPLIT, cross_modal=False)
    assert net.fusion_lp is None and not any(k.startswith("fusion_lp") for k in net.state_dict())
    assert net(torch.randn(1, 4, 16, 16, 16)).rec_full_lp is None


def _with_privileged_shifted(net):
    """A limited-only Stage-1 network has E_L and D_L^REC only; its outputs (a, b) for an input x and for x
    with another privileged channel, under one mask."""
    assert {k.split(".")[0] for k in net.state_dict()} == {"encoder_l", "decoder_l_rec"}
    x = torch.randn(2, 4, 16, 16, 16)
    mask = MultiScaleBlockMasker(seed=1)(2, x.shape[2:])
    y = x.clone()
    y[:, 1] += 5.0
    with torch.no_grad():
        return x, mask, net(apply_mask(x, mask)), net(apply_mask(y, mask))


def test_limited_only_mae_reads_no_privileged_channel_and_trains_eq7_alone():
    torch.manual_seed(0)
    net = build_cross_modal_mae(configuration_manager(), SPLIT, cross_modal=False, limited_only=True)
    x, mask, a, b = _with_privileged_shifted(net)
    assert a.rec_full_ap is None and a.rec_full_lp is None and torch.equal(a.rec_limited, b.rec_limited)
    # the loss is Eq. 7 alone, by hand: error 2 on every limited voxel -> 4; Eqs. 8-9 reported NaN
    loss = ReconstructionLoss(SPLIT.limited_indices, cross_modal=False)
    out = CrossModalMAEOutput(x[:, [0, 2, 3]] + 2.0, None, None)
    assert loss(out, x, mask).item() == pytest.approx(4.0)
    assert math.isnan(loss.last_terms["ap_to_f"].item()) and math.isnan(loss.last_terms["lp_to_f"].item())
    with pytest.raises(ValueError, match="limited-only"):
        ReconstructionLoss(SPLIT.limited_indices)(out, x, mask)
    with pytest.raises(ValueError, match="cross_modal=False"):
        build_cross_modal_mae(configuration_manager(), SPLIT, limited_only=True)


def test_stage1_privileged_synthesis_by_hand():
    """Eq. 7 + L_Syn: the synthesis term is the mean squared error over every voxel (masked or not) of the
    privileged channel, over the complete cases only; NaN (adding 0) when no case of the batch has it."""
    x = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2)
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = mask[1, 0, 1, 1] = 1
    syn = x[:, [1]].clone()
    syn[0] += 3.0   # case 0: error 3 on every voxel -> 9
    syn[1] -= 5.0   # case 1: error 5 -> 25
    out = CrossModalMAEOutput(x[:, [0, 2, 3]] + 1.0, None, None, syn)   # Eq. 7 = 1
    loss = ReconstructionLoss(SPLIT.limited_indices, cross_modal=False, privileged_indices=SPLIT.privileged_indices)
    assert loss(out, x, mask).item() == pytest.approx(1 + (9 + 25) / 2)
    assert loss.last_terms["synthesis"].item() == pytest.approx(17.0)
    assert math.isnan(loss.last_terms["ap_to_f"].item()) and math.isnan(loss.last_terms["lp_to_f"].item())
    # visible voxels count as much as masked ones: the same total with no voxel masked but Eq. 7's
    assert loss(out, x, torch.zeros_like(mask)).item() == pytest.approx(0 + 17)
    # case 1 without its privileged scan: only case 0's error
    assert loss(out, x, mask, [True, False]).item() == pytest.approx(1 + 9)
    total = loss(out, x, mask, [False, False])
    assert total.item() == pytest.approx(1.0) and math.isnan(loss.last_terms["synthesis"].item())
    # the cross-modal form reports the synthesis term as NaN
    full = ReconstructionLoss(SPLIT.limited_indices)
    full(CrossModalMAEOutput(x[:, [0, 2, 3]], x, x), x, mask)
    assert math.isnan(full.last_terms["synthesis"].item())
    with pytest.raises(ValueError, match="1 privileged channel"):
        ReconstructionLoss(SPLIT.limited_indices, cross_modal=False)(out, x, mask)


def test_synthesis_mae_reads_no_privileged_channel_and_trains_e_l_and_its_decoder():
    torch.manual_seed(0)
    net = build_cross_modal_mae(configuration_manager(), SPLIT, cross_modal=False, limited_only=True, synthesis=True)
    x, mask, a, b = _with_privileged_shifted(net)
    assert a.rec_limited.shape == (2, 3, 16, 16, 16) and a.syn_privileged.shape == (2, 1, 16, 16, 16)
    assert torch.equal(a.syn_privileged, b.syn_privileged) and torch.equal(a.rec_limited, b.rec_limited)
    out = net(apply_mask(x, mask))
    loss = ReconstructionLoss(SPLIT.limited_indices, cross_modal=False, privileged_indices=SPLIT.privileged_indices)
    assert _grads(net, loss(out, x, mask)) == {"encoder_l", "decoder_l_rec"}
    with pytest.raises(ValueError, match="limited_only=True"):
        build_cross_modal_mae(configuration_manager(), SPLIT, cross_modal=False, synthesis=True)


def test_masked_input_voxels_are_invisible_to_the_network():
    torch.manual_seed(0)
    net = build_cross_modal_mae(configuration_manager(), SPLIT).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    mask = MultiScaleBlockMasker(seed=2)(1, x.shape[2:])
    y = x + 10 * mask   # differs from x only at masked voxels
    with torch.no_grad():
        a, b = net(apply_mask(x, mask)), net(apply_mask(y, mask))
    assert a.syn_privileged is None and all(torch.equal(p, q) for p, q in zip(a[:3], b[:3]))


@pytest.mark.slow
def test_stage1_loss_falls_on_a_tiny_phantom_dataset():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cases = [brats_rim_case(rng, (16, 16, 16))[0] for _ in range(4)]
    x = torch.from_numpy(np.stack(cases))
    x = (x - x.mean((2, 3, 4), keepdim=True)) / x.std((2, 3, 4), keepdim=True)   # nnU-Net z-scoring
    net = build_cross_modal_mae(configuration_manager(features=(8, 16, 32)), SPLIT)
    loss_fn = ReconstructionLoss(SPLIT.limited_indices)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    masker, val_masker = MultiScaleBlockMasker(seed=0), MultiScaleBlockMasker(seed=1)

    def val_loss():
        val_masker.reseed(1)
        with torch.no_grad():
            m = val_masker(4, x.shape[2:])
            return loss_fn(net(apply_mask(x, m)), x, m).item()

    before = val_loss()
    for _ in range(40):
        m = masker(4, x.shape[2:])
        opt.zero_grad()
        loss = loss_fn(net(apply_mask(x, m)), x, m)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        opt.step()
    after = val_loss()
    assert after < 0.7 * before, (before, after)
