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


# ---------------------------------------------------------------- variational bottleneck (VIB form of PIB)
def test_vib_kl_by_hand():
    from dante_nnunet.losses.pib import vib_kl
    # level 1: two elements, (mu 1, log var 0) -> 0.5 * (1 + 1 - 0 - 1) = 0.5 and (mu 0, var 4) ->
    # 0.5 * (0 + 4 - ln 4 - 1) = 0.8068528; mean 0.6534264. Level 2: the prior itself -> 0.
    mu = torch.tensor([1.0, 0.0]).view(1, 1, 2, 1, 1)
    log_var = torch.tensor([0.0, math.log(4.0)]).view(1, 1, 2, 1, 1)
    level1 = torch.cat((mu, log_var), dim=1)
    level2 = torch.zeros(2, 6, 3, 3, 3)
    assert vib_kl([level1, level2]).item() == pytest.approx(0.5 * (0.5 + 0.5 * (3.0 - math.log(4.0))), abs=1e-6)
    assert vib_kl([level2]).item() == 0.0


def _vib_fusion(zero_init=False):
    from dante_nnunet.networks.fusion import VariationalFusion
    torch.manual_seed(0)
    fusion = VariationalFusion([3, 5], torch.nn.Conv3d, zero_init=zero_init)
    for p in fusion.proj:   # a trained-looking state: every weight non-zero
        torch.nn.init.normal_(p.weight, std=0.3)
        torch.nn.init.normal_(p.bias, std=0.3)
    z_a = [torch.randn(2, 3, 4, 4, 4), torch.randn(2, 5, 2, 2, 2)]
    z_p = [torch.randn(2, 3, 4, 4, 4), torch.randn(2, 5, 2, 2, 2)]
    return fusion, z_a, z_p


def test_vib_kl_and_code_do_not_move_under_any_per_channel_rescaling():
    """Rescaling Z^A and Z^P per case and channel (what a shrinking encoder can do) leaves the code and its
    KL unchanged and scales the correction with Z^A: the bottleneck cannot be passed by rescaling."""
    from dante_nnunet.losses.pib import vib_kl
    fusion, z_a, z_p = _vib_fusion()
    fusion.eval()
    fused, corr, codes = fusion(z_a, z_p)
    g = torch.Generator().manual_seed(3)
    k_a = [torch.rand(2, a.shape[1], 1, 1, 1, generator=g) * 10 + 0.01 for a in z_a]
    k_p = [torch.rand(2, p.shape[1], 1, 1, 1, generator=g) * 10 + 0.01 for p in z_p]
    fused2, corr2, codes2 = fusion([a * k for a, k in zip(z_a, k_a)], [p * k for p, k in zip(z_p, k_p)])
    for c, c2, x, x2, k in zip(codes, codes2, corr, corr2, k_a):
        assert torch.allclose(c, c2, atol=1e-5) and torch.allclose(x * k, x2, rtol=1e-4, atol=1e-6)
    assert vib_kl(codes2).item() == pytest.approx(vib_kl(codes).item(), rel=1e-5)
    assert vib_kl(codes).item() > 0.1
    # the correction is s^A * mu in evaluation: mu is the code's first half, s^A Z^A's channel scale
    mu = codes[0][:, :3]
    assert torch.allclose(corr[0], z_a[0].abs().mean(dim=(2, 3, 4), keepdim=True) * mu, atol=1e-6)
    assert torch.allclose(fused[0], corr[0] + z_a[0])


def test_vib_samples_in_training_only_and_starts_quiet():
    fusion, z_a, z_p = _vib_fusion()
    fusion.train()
    a, b = fusion(z_a, z_p)[1], fusion(z_a, z_p)[1]
    assert not torch.allclose(a[0], b[0])                      # a reparameterised sample each call
    torch.manual_seed(5)
    c = fusion(z_a, z_p)
    mu, log_var = c[2][0].chunk(2, dim=1)
    torch.manual_seed(5)
    eps = torch.randn_like(mu)
    s_a = z_a[0].abs().mean(dim=(2, 3, 4), keepdim=True)
    assert torch.allclose(c[1][0], s_a * (mu + torch.exp(0.5 * log_var) * eps), atol=1e-5)
    fusion.eval()
    assert torch.equal(fusion(z_a, z_p)[1][0], fusion(z_a, z_p)[1][0])
    from dante_nnunet.networks.fusion import VariationalFusion
    quiet = VariationalFusion([3], torch.nn.Conv3d, zero_init=True)   # mu 0, sigma exp(-2) at the start
    _, corr, codes = quiet.train()(z_a[:1], z_p[:1])
    assert torch.equal(codes[0][:, :3], torch.zeros_like(codes[0][:, :3]))
    assert torch.allclose(codes[0][:, 3:], torch.full_like(codes[0][:, 3:], -4.0))
    assert corr[0].abs().mean() < 0.2 * z_a[0].abs().mean()


@pytest.mark.slow   # initialises four trainers and runs their steps
def test_vib_and_club_trainers_build_their_parts_and_deploy_the_stock_network():
    """``vib`` (with the default form and with the paper's): the PIB term is the KL of the network's codes;
    ``club``: the estimator is part of the training network, trained by its own loss, and the bound is on
    once the regularisers are; the deployed weights are the stock network's in every case."""
    from dante_nnunet.jobs import inmemory as pf
    from dante_nnunet.losses.independence import CLUBEstimator
    from dante_nnunet.losses.pib import vib_kl
    from dante_nnunet.networks.builder import deployed_state_dict
    from dante_nnunet.networks.fusion import VariationalFusion
    from dante_nnunet.training import (DANTETrainer, DANTETrainer_club_1epoch, DANTETrainer_paper_vib,
                                       DANTETrainer_vib_1epoch)
    assert (DANTETrainer_vib_1epoch.epochs, DANTETrainer_vib_1epoch.bottleneck) == (1, "vib")
    assert (DANTETrainer_paper_vib.alignment, DANTETrainer_paper_vib.fusion_zero_init) == ("l1", False)
    assert DANTETrainer_club_1epoch.lambda_club == 0.1
    keys = None
    for cls in (DANTETrainer_vib_1epoch, DANTETrainer_paper_vib, DANTETrainer_club_1epoch, DANTETrainer):
        t = pf.initialisable_trainer(cls, "Dataset996_Vib")
        t.initialize()
        dual = t.dual_network()
        vib, club = cls.bottleneck == "vib", cls.lambda_club > 0
        assert isinstance(dual.fusion, VariationalFusion) == vib
        assert isinstance(dual.club_estimator, CLUBEstimator) == club and (t.loss.club is dual.club_estimator)
        t.loss.lambda_pib, t.loss.lambda_align, t.loss.lambda_club = 0.3, 0.5, t.lambda_club
        batch = pf.region_batch()
        out = t.network(batch["data"])
        loss = t.loss(out, batch["target"])
        terms = t.loss.last_terms
        loss.backward()
        if vib:
            assert terms["pib"].item() == pytest.approx(vib_kl(out.codes).item(), rel=1e-6)
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dual.fusion.parameters())
        else:
            assert out.codes is None
        if club:
            assert math.isfinite(terms["club"].item()) and math.isfinite(terms["club_q"].item())
            assert all(p.grad is not None for p in dual.club_estimator.parameters())
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dual.club_estimator.parameters())
        else:
            assert math.isnan(terms["club"].item()) and dual.club_estimator is None
        deployed = set(deployed_state_dict(dual))
        assert keys is None or deployed == keys
        keys = deployed
    assert not any("fusion" in k or "club" in k for k in keys)


# ---------------------------------------------------------------- CLUB independence term (IndiSeek)
def test_club_bound_by_hand():
    from dante_nnunet.losses.independence import club_bound, club_nll
    # N = 2, C = 1, unit variances: positive = -0.5 * [(1 - 0)^2, (3 - 2)^2] = [-0.5, -0.5];
    # mean_j (p_j - mu_i)^2 = [(1 + 9) / 2, (1 + 1) / 2] = [5, 1] -> negative = [-2.5, -0.5]; CLUB = mean [2, 0] = 1
    p, mu, logvar = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [2.0]]), torch.zeros(2, 1)
    assert club_bound(mu, logvar, p).item() == pytest.approx(1.0)
    # variance 4 divides both parts: 0.25; the NLL: 0.5 * mean((1 / 4 + ln 4), (1 / 4 + ln 4))
    logvar4 = torch.full((2, 1), math.log(4.0))
    assert club_bound(mu, logvar4, p).item() == pytest.approx(0.25)
    assert club_nll(mu, logvar4, p).item() == pytest.approx(0.5 * (0.25 + math.log(4.0)))


def _fit_club(z_a, z_p, steps=300):
    from dante_nnunet.losses.independence import CLUBEstimator, club_terms
    torch.manual_seed(0)
    q = CLUBEstimator([z_a.shape[1]])
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        _, nll = club_terms(q, [z_a], [z_p], samples=512)
        nll.backward()
        opt.step()
    torch.manual_seed(1)
    return float(torch.stack([club_terms(q, [z_a], [z_p], samples=2048)[0] for _ in range(5)]).mean())


def test_club_ranks_a_correlated_pair_above_an_independent_one():
    """Z^P = Z^A + noise (I about 1.2 nats per channel at rho 0.95) against an independent Z^P: the fitted
    bound is clearly positive for the first and near 0 for the second."""
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(2, 3, 8, 8, 8, generator=g)
    correlated = z_a + 0.33 * torch.randn(2, 3, 8, 8, 8, generator=g)
    independent = torch.randn(2, 3, 8, 8, 8, generator=g)
    dependent, free = _fit_club(z_a, correlated), _fit_club(z_a, independent)
    assert dependent > 0.5 and abs(free) < 0.1 and dependent > free + 0.4


def test_club_gradients_reach_the_encoders_through_the_bound_and_q_through_its_loss():
    from dante_nnunet.losses.independence import CLUBEstimator, club_terms
    torch.manual_seed(0)
    q = CLUBEstimator([3])
    z_a = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    z_p = (z_a.detach() + 0.1 * torch.randn(2, 3, 4, 4, 4)).requires_grad_()
    bound, nll = club_terms(q, [z_a], [z_p], samples=64)
    bound.backward()
    assert z_a.grad.abs().sum() > 0 and z_p.grad.abs().sum() > 0
    assert all(p.grad is None for p in q.parameters())
    z_a.grad = z_p.grad = None
    nll.backward()
    assert z_a.grad is None and z_p.grad is None
    assert all(p.grad is not None for p in q.parameters())
    # the estimate reads standardised maps: rescaling the features moves nothing
    torch.manual_seed(4)
    b1 = club_terms(q, [z_a], [z_p], samples=64)
    torch.manual_seed(4)
    b2 = club_terms(q, [3.0 * z_a + 1.0], [0.2 * z_p], samples=64)
    assert torch.allclose(b1[0], b2[0], rtol=1e-3) and torch.allclose(b1[1], b2[1], rtol=1e-3)   # up to eps
