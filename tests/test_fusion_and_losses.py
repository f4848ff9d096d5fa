"""Each equation against a hand computation on small tensors."""
import math

import pytest
import torch
from torch import nn

from dante_nnunet.losses import (InfoNCEAlignment, RegressionAlignment, StandardizedAlignment, build_alignment,
                                 build_pib, pib_loss, relative_pib_loss, standardize)
from dante_nnunet.networks.fusion import ResidualFusion


@pytest.mark.parametrize("conv_op,shape", [(nn.Conv2d, (1, 1, 1, 2)), (nn.Conv3d, (1, 1, 1, 1, 2))])
def test_fusion_eq2(conv_op, shape):
    fusion = ResidualFusion([1], conv_op)
    with torch.no_grad():
        fusion.proj[0].weight.copy_(torch.tensor([0.5, -1.0]).reshape(fusion.proj[0].weight.shape))
        fusion.proj[0].bias.fill_(0.1)
    z_a = torch.tensor([1.0, 2.0]).reshape(shape)
    z_p = torch.tensor([3.0, 4.0]).reshape(shape)
    fused, corr = fusion([z_a], [z_p])
    # proj(cat(a, p)) = 0.5 a - p + 0.1 ; Z^F = that + a
    assert torch.allclose(corr[0].flatten(), torch.tensor([0.5 - 3 + 0.1, 1.0 - 4 + 0.1]))
    assert torch.allclose(fused[0].flatten(), torch.tensor([0.5 - 3 + 0.1 + 1, 1.0 - 4 + 0.1 + 2]))


def test_fusion_levels_and_shapes():
    fusion = ResidualFusion([2, 4], nn.Conv3d)
    z_a = [torch.randn(2, 2, 4, 4, 4), torch.randn(2, 4, 2, 2, 2)]
    z_p = [torch.randn(2, 2, 4, 4, 4), torch.randn(2, 4, 2, 2, 2)]
    fused, corr = fusion(z_a, z_p)
    assert [f.shape for f in fused] == [a.shape for a in z_a]
    assert all(torch.allclose(f - c, a, atol=1e-6) for f, c, a in zip(fused, corr, z_a))
    with pytest.raises(ValueError, match="2 levels"):
        fusion(z_a[:1], z_p[:1])


def test_pib_eq3_mean_l1_per_level_summed():
    c1 = torch.tensor([1.0, -2.0, 3.0, -4.0]).reshape(1, 1, 2, 2)   # mean |.| = 2.5
    c2 = torch.tensor([0.5, -0.5]).reshape(1, 2, 1, 1)              # mean |.| = 0.5
    assert pib_loss([c1, c2]).item() == pytest.approx(3.0)


def test_regression_alignment_eq4_p1_and_p2():
    a1 = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    l1 = torch.tensor([1.0, 0.0, 3.0, 0.0]).reshape(1, 1, 2, 2)    # d = 0, 2, 0, 4
    a2 = torch.tensor([3.0, 0.0]).reshape(1, 2, 1, 1)
    l2 = torch.tensor([0.0, 4.0]).reshape(1, 2, 1, 1)              # d = 3, -4
    assert RegressionAlignment(1)([a1, a2], [l1, l2]).item() == pytest.approx(6 / 4 + 7 / 2)
    rms = math.sqrt((4 + 16) / 4) + math.sqrt((9 + 16) / 2)
    assert RegressionAlignment(2)([a1, a2], [l1, l2]).item() == pytest.approx(rms)


def test_regression_alignment_p2_zero_difference_has_finite_gradient():
    a = torch.ones(1, 2, 2, 2, requires_grad=True)
    loss = RegressionAlignment(2)([a], [a.detach().clone()])
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(a.grad).all()


def test_infonce_eq5_hand_computation():
    # level with 1 case, 2 channels, 3 voxels: anchors are all 3 positions
    za = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).reshape(1, 2, 3)
    zl = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]]).reshape(1, 2, 3)
    tau = 0.5
    loss = InfoNCEAlignment(temperature=tau, num_anchors=8)([za], [zl]).item()
    A = torch.nn.functional.normalize(za[0].t(), dim=1)
    L = torch.nn.functional.normalize(zl[0].t(), dim=1)
    expected = 0.0
    for i in range(3):
        sims = [float(A[i] @ L[j]) / tau for j in range(3)]
        expected += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    assert loss == pytest.approx(expected / 3, rel=1e-5)


def test_infonce_positive_is_same_voxel_same_case_negatives_span_the_batch():
    # Z^L equals Z^A: each anchor's positive has similarity 1. Every feature vector is a distinct one-hot,
    # so every negative, in the same case or the other one, has similarity 0.
    C = 8
    eye = torch.eye(C)
    za = torch.stack([eye[:, :4], eye[:, 4:]]).reshape(2, C, 2, 2)   # 2 cases x 4 voxels, all orthogonal
    tau = 0.1
    loss = InfoNCEAlignment(temperature=tau, num_anchors=100)([za], [za.clone()]).item()
    K = 8
    assert loss == pytest.approx(-math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (K - 1))), abs=1e-6)
    # Z^L of case 1 swapped with case 0: the true positive is gone, so the loss rises sharply
    swapped = torch.stack([za[1], za[0]])
    assert InfoNCEAlignment(temperature=tau, num_anchors=100)([za], [swapped]).item() > 10 * loss


def test_infonce_anchor_sampling_is_bounded_and_covers_cases():
    module = InfoNCEAlignment(num_anchors=64, generator=torch.Generator().manual_seed(0))
    z = torch.zeros(2, 3, 16, 16, 16)
    pos = module.sample_positions(z)
    assert pos.shape == (64,) and pos.unique().numel() == 64
    assert set((pos // 16 ** 3).tolist()) == {0, 1}
    small = torch.zeros(1, 3, 2, 2, 2)
    assert module.sample_positions(small).tolist() == list(range(8))


@pytest.mark.parametrize("alignment", [RegressionAlignment(1), RegressionAlignment(2),
                                       InfoNCEAlignment(num_anchors=16)])
def test_alignment_gradients_reach_both_sides(alignment):
    za = torch.randn(2, 4, 4, 4, requires_grad=True)
    zl = torch.randn(2, 4, 4, 4, requires_grad=True)
    alignment([za], [zl]).backward()
    assert za.grad.abs().sum() > 0 and zl.grad.abs().sum() > 0


# ---------------------------------------------------------------- forms that rescaling cannot satisfy

def test_standardized_alignment_by_hand():
    # level 1: one case, one channel, 4 voxels; Z^L is Z^A reversed, so std(Z^L) = -std(Z^A)
    a1 = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    l1 = torch.tensor([4.0, 3.0, 2.0, 1.0]).reshape(1, 1, 2, 2)
    # mean 2.5, biased variance 1.25: std(a) = (a - 2.5) / sqrt(1.25 + 1e-5), |std a - std l| = 2 |std a|
    level1 = 2 * (1.5 + 0.5 + 0.5 + 1.5) / 4 / math.sqrt(1.25 + 1e-5)
    # level 2: two channels, Z^L an affine copy of Z^A per channel (positive scales): distance 0
    a2 = torch.tensor([[0.0, 1.0], [5.0, -1.0]]).reshape(1, 2, 2, 1)
    l2 = torch.tensor([[3.0, 5.0], [0.5, -0.1]]).reshape(1, 2, 2, 1)   # 2a + 3 and 0.1a
    assert StandardizedAlignment(1)([a1, a2], [l1, l2]).item() == pytest.approx(level1, abs=1e-4)   # eps: ~5e-5
    assert StandardizedAlignment(1)([a2], [l2]).item() == pytest.approx(0.0, abs=1e-4)
    # p = 2: root mean square of the same differences
    level1_rms = 2 * math.sqrt((1.5 ** 2 + 0.5 ** 2 + 0.5 ** 2 + 1.5 ** 2) / 4) / math.sqrt(1.25 + 1e-5)
    assert StandardizedAlignment(2)([a1], [l1]).item() == pytest.approx(level1_rms, rel=1e-5)


def test_standardize_by_hand_and_dead_channel_costs_most():
    z = torch.tensor([[1.0, 3.0], [2.0, 2.0]]).reshape(1, 2, 2)   # channel 0 mean 2 var 1; channel 1 constant
    s = standardize(z)
    assert torch.allclose(s[0, 0], torch.tensor([-1.0, 1.0]) / math.sqrt(1 + 1e-5))
    assert torch.equal(s[0, 1], torch.zeros(2))
    # a dead (constant) Z^L channel against a live Z^A channel costs mean |std(Z^A)|, more than a live, unrelated one
    torch.manual_seed(0)
    za = torch.randn(2, 1, 8, 8, 8)
    dead = StandardizedAlignment(1)([za], [torch.zeros_like(za)]).item()
    assert dead == pytest.approx(standardize(za).abs().mean().item(), rel=1e-5) and dead > 0.7


@pytest.mark.parametrize("p", [1, 2])
def test_standardized_alignment_ignores_rescaling_raw_alignment_does_not(p):
    torch.manual_seed(1)
    za = [torch.randn(2, 3, 6, 6, 6), torch.randn(2, 5, 3, 3, 3)]
    zl = [a + 0.5 * torch.randn_like(a) for a in za]
    scale = lambda z, lo, hi: z * torch.empty(1, z.shape[1], 1, 1, 1).uniform_(lo, hi) + torch.randn(1, z.shape[1], 1, 1, 1)
    ref = StandardizedAlignment(p)(za, zl)
    assert torch.allclose(StandardizedAlignment(p)([scale(a, 0.3, 0.5) for a in za], [scale(l, 3, 10) for l in zl]),
                          ref, rtol=1e-4)
    # the paper-literal form is minimised by shrinking both maps
    raw = RegressionAlignment(p)
    assert raw([a * 0.01 for a in za], [l * 0.01 for l in zl]) < 0.02 * raw(za, zl)


@pytest.mark.parametrize("alignment", [RegressionAlignment(1, stop_gradient=True),
                                       StandardizedAlignment(1, stop_gradient=True),
                                       InfoNCEAlignment(num_anchors=16, stop_gradient=True)])
def test_stop_gradient_pulls_only_the_limited_side(alignment):
    za = torch.randn(2, 4, 4, 4, requires_grad=True)
    zl = torch.randn(2, 4, 4, 4, requires_grad=True)
    alignment([za], [zl]).backward()
    assert za.grad is None and zl.grad.abs().sum() > 0


def test_build_alignment_forms():
    assert isinstance(build_alignment("std_l2"), StandardizedAlignment) and build_alignment("std_l2").p == 2
    assert build_alignment("l1", stop_gradient=True).stop_gradient
    with pytest.raises(ValueError, match="std_l1"):
        build_alignment("cosine")


def test_relative_pib_by_hand_and_invariant_to_joint_rescaling():
    c1 = torch.tensor([1.0, -2.0, 3.0, -4.0]).reshape(1, 1, 2, 2)   # mean |.| = 2.5
    a1 = torch.tensor([5.0, -5.0, 5.0, 5.0]).reshape(1, 1, 2, 2)    # mean |.| = 5
    c2 = torch.tensor([0.5, -0.5]).reshape(1, 2, 1, 1)              # mean |.| = 0.5
    a2 = torch.tensor([0.25, 0.75]).reshape(1, 2, 1, 1)             # mean |.| = 0.5
    assert relative_pib_loss([c1, c2], [a1, a2]).item() == pytest.approx(2.5 / 5 + 0.5 / 0.5)
    assert relative_pib_loss([c1 * 0.01, c2 * 7], [a1 * 0.01, a2 * 7]).item() == pytest.approx(1.5)
    assert pib_loss([c1 * 0.01, c2 * 0.01]).item() == pytest.approx(0.03)   # Eq. 3 as written follows the scale
    module = build_pib("relative")
    assert module([c1, c2], [a1, a2]).item() == pytest.approx(1.5)
    assert build_pib("l1")([c1, c2], [a1, a2]).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="relative"):
        build_pib("l2")


def test_relative_pib_gives_no_gradient_to_a_joint_rescaling_of_the_fused_features():
    # The correction is computed from Z^A and Z^P: d/dk of the loss at features k * (Z^A, Z^P), k = 1,
    # is <grad, features> (Euler), which is 0 for a scale-invariant loss and a bias-free proj.
    torch.manual_seed(0)
    proj = nn.Conv3d(4, 2, kernel_size=1, bias=False)
    z_a, z_p = torch.randn(2, 2, 3, 3, 3), torch.randn(2, 2, 3, 3, 3)
    k = torch.ones((), requires_grad=True)
    relative_pib_loss([proj(torch.cat((k * z_a, k * z_p), 1))], [k * z_a]).backward()
    assert abs(k.grad.item()) < 1e-6
    k.grad = None   # Eq. 3 as written asks the features to shrink: d/dk = its own value
    value = pib_loss([proj(torch.cat((k * z_a, k * z_p), 1))])
    value.backward()
    assert k.grad.item() == pytest.approx(value.item(), rel=1e-5) and k.grad.item() > 0
    c, a = torch.randn(1, 2, 3, 3, requires_grad=True), torch.randn(1, 2, 3, 3, requires_grad=True)
    relative_pib_loss([c], [a]).backward()   # a larger Z^A lowers the ratio: the push is upwards
    assert (a.grad * a).sum() < 0 and c.grad.abs().sum() > 0


def test_zero_initialised_fusion_starts_with_no_correction_and_still_learns():
    fusion = ResidualFusion([3], nn.Conv3d, zero_init=True)
    z_a, z_p = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4)
    fused, corr = fusion([z_a], [z_p])
    assert torch.equal(corr[0], torch.zeros_like(corr[0])) and torch.equal(fused[0], z_a)
    (fused[0] * torch.randn_like(fused[0])).sum().backward()
    assert fusion.proj[0].weight.grad.abs().sum() > 0


def test_synthesis_loss_by_hand_and_only_the_prediction_learns():
    from dante_nnunet.losses import synthesis_loss
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2).requires_grad_()
    target = torch.tensor([0.0, 2.0, 5.0, 4.0]).reshape(1, 1, 2, 2).requires_grad_()
    value = synthesis_loss(pred, target)          # differences 1, 0, -2, 0 -> squares 1, 0, 4, 0
    assert value.item() == pytest.approx(1.25)
    value.backward()
    assert torch.allclose(pred.grad.flatten(), torch.tensor([0.5, 0.0, -1.0, 0.0]))   # 2 d / 4
    assert target.grad is None                    # X^P is data, not something to pull
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\).*\(1, 2, 2, 2\)"):
        synthesis_loss(pred, torch.zeros(1, 2, 2, 2))
