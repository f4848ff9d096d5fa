import pytest
import torch

from dante_nnunet.config import ChannelSplit
from dante_nnunet.losses import DANTELoss, InfoNCEAlignment, RegressionAlignment, pib_loss
from dante_nnunet.networks.builder import build_dual_pathway_network, build_stock_network, deployed_state_dict
from dante_nnunet.jobs.inmemory import configuration_manager

SPLIT = ChannelSplit.from_names(["T1", "T1ce", "T2", "FLAIR"], ["T1ce"])
PARTS = ("encoder_l", "decoder_l", "encoder_a", "encoder_p", "fusion", "decoder_f")


def _net(arch, dim, ds=True):
    torch.manual_seed(0)
    return build_dual_pathway_network(configuration_manager(arch, dim), SPLIT, 3, deep_supervision=ds)


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
@pytest.mark.parametrize("dim", [2, 3])
def test_shapes_both_architectures_2d_3d(arch, dim):
    net = _net(arch, dim)
    x = torch.randn(2, 4, *[16] * dim)
    out = net(x)
    widths = [4, 8, 16]
    for name in ("z_limited", "z_alignable", "z_privileged", "corrections"):
        feats = getattr(out, name)
        assert [f.shape[1] for f in feats] == widths, name
        assert [f.shape[2] for f in feats] == [16, 8, 4], name
    for seg in (out.seg_limited, out.seg_full):
        assert [tuple(s.shape) for s in seg] == [(2, 3, *[16] * dim), (2, 3, *[8] * dim)]
    net.set_deep_supervision(False)
    assert net(x).seg_limited.shape == (2, 3, *[16] * dim)
    # E_L sees only the 3 limited channels, E_A and E_P all 4
    assert net.encoder_l(torch.randn(1, 3, *[16] * dim))[0].shape[1] == 4
    with pytest.raises(RuntimeError):
        net.encoder_l(torch.randn(1, 4, *[16] * dim))


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_no_weight_registered_twice(arch):
    net = _net(arch, 3)
    sd = net.state_dict()
    assert not any(".encoder." in k for k in sd if k.startswith(("decoder_l.", "decoder_f."))), \
        "a decoder re-registers its encoder"
    owner = {}
    for k, v in sd.items():
        owner.setdefault(v.data_ptr(), set()).add(k.split(".")[0])
    assert all(len(parts) == 1 for parts in owner.values()), "a tensor is shared between pathway parts"
    assert sum(p.numel() for p in net.parameters()) == \
        sum(p.numel() for part in PARTS for p in getattr(net, part).parameters())


def test_limited_pathway_ignores_privileged_channel():
    net = _net("PlainConvUNet", 3, ds=False).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    y = x.clone()
    y[:, 1] = torch.randn(16, 16, 16)   # change only T1ce
    with torch.no_grad():
        assert torch.equal(net(x).seg_limited, net(y).seg_limited)
        assert not torch.equal(net(x).seg_full, net(y).seg_full)


@pytest.mark.parametrize("arch", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_deployed_weights_load_strictly_into_stock_network(arch):
    net = _net(arch, 3, ds=False).eval()
    stock = build_stock_network(configuration_manager(arch, 3), 3, 3, deep_supervision=False).eval()
    stock.load_state_dict(deployed_state_dict(net))   # strict
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(stock(x[:, [0, 2, 3]]), net(x).seg_limited)


def _grads_of(net, loss):
    net.zero_grad(set_to_none=True)
    loss.backward()
    return {p: any(q.grad is not None and q.grad.abs().sum() > 0 for q in getattr(net, p).parameters())
            for p in PARTS}


@pytest.mark.parametrize("alignment", [RegressionAlignment(1), InfoNCEAlignment(num_anchors=32)])
def test_which_parameters_each_term_reaches(alignment):
    net = _net("PlainConvUNet", 3)
    x = torch.randn(2, 4, 16, 16, 16)
    target = [torch.randint(0, 3, (2, 1, 16, 16, 16)).float(), torch.randint(0, 3, (2, 1, 8, 8, 8)).float()]
    task = lambda seg, t: sum(torch.nn.functional.mse_loss(s, t_.expand_as(s)) for s, t_ in zip(seg, t))
    reach = {}
    out = net(x)
    reach["seg_limited"] = _grads_of(net, task(out.seg_limited, target))
    out = net(x)
    reach["seg_full"] = _grads_of(net, task(out.seg_full, target))
    out = net(x)
    reach["pib"] = _grads_of(net, pib_loss(out.corrections))
    out = net(x)
    reach["align"] = _grads_of(net, alignment(out.z_alignable, out.z_limited))

    on = lambda r: {p for p, v in r.items() if v}
    assert on(reach["seg_limited"]) == {"encoder_l", "decoder_l"}
    assert on(reach["seg_full"]) == {"encoder_a", "encoder_p", "fusion", "decoder_f"}
    assert on(reach["pib"]) == {"encoder_a", "encoder_p", "fusion"}
    assert on(reach["align"]) == {"encoder_l", "encoder_a"}   # bidirectional, nothing else


def test_dante_loss_eq6_weighting_and_off_terms():
    net = _net("PlainConvUNet", 3)
    out = net(torch.randn(2, 4, 16, 16, 16))
    task = lambda seg, t: seg[0].mean() * 0 + 1.0   # constant task loss 1 per pathway
    align = RegressionAlignment(1)
    full = DANTELoss(task, align, lambda_pib=0.3, lambda_align=0.5)(out, None)
    expected = 2.0 + 0.3 * pib_loss(out.corrections) + 0.5 * align(out.z_alignable, out.z_limited)
    assert torch.allclose(full, expected)
    off = DANTELoss(task, align, 0.0, 0.0)
    assert off(out, None).item() == pytest.approx(2.0)
    assert torch.isnan(off.last_terms["pib"]) and torch.isnan(off.last_terms["align"])


def test_activation_checkpointing_changes_neither_outputs_nor_gradients():
    x = torch.randn(2, 4, 16, 16, 16)
    target = torch.randn(2, 3, 16, 16, 16)
    results = []
    for ckpt in (False, True):
        net = _net("PlainConvUNet", 3, ds=False)   # same seed, same weights
        net.activation_checkpointing = ckpt
        out = net(x)
        loss = ((out.seg_limited - target) ** 2).mean() + ((out.seg_full - target) ** 2).mean() \
            + pib_loss(out.corrections) + RegressionAlignment(1)(out.z_alignable, out.z_limited)
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}))
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1)
    assert g0.keys() == g1.keys() and len(g0) > 100
    assert all(torch.allclose(g0[k], g1[k], atol=1e-6) for k in g0)


def _synth_net(ds=True):
    torch.manual_seed(0)
    return build_dual_pathway_network(configuration_manager("PlainConvUNet", 3), SPLIT, 3, deep_supervision=ds,
                                      synthesis=True)


def test_synthesis_head_predicts_the_privileged_channels_and_is_not_deployed():
    net = _synth_net()
    x = torch.randn(2, 4, 16, 16, 16)
    out = net(x)
    assert out.synthesis.shape == (2, 1, 16, 16, 16)                   # one map per privileged channel
    assert torch.equal(out.privileged_input, x[:, 1:2])                # T1ce is channel 1
    assert not any("synthesis" in k for k in deployed_state_dict(net))
    stock = build_stock_network(configuration_manager("PlainConvUNet", 3), 3, 3, True)
    stock.load_state_dict(deployed_state_dict(net))                    # strict: the head is not deployed
    # the head reads D_L's last feature map: replaying D_L's stages by hand gives the same prediction
    with torch.no_grad():
        feats = []
        h = net.decoder_l.stages[-1].register_forward_hook(lambda m, i, o: feats.append(o))
        net.forward_limited(x[:, [0, 2, 3]])
        h.remove()
        assert torch.allclose(net.synthesis_head(feats[0]), net(x).synthesis, atol=1e-6)
    assert _net("PlainConvUNet", 3)(x).synthesis is None               # no head, no prediction
    with pytest.raises(ValueError, match="privileged"):
        type(net)(net.encoder_l, net.decoder_l, net.encoder_a, net.encoder_p, net.fusion, net.decoder_f,
                  SPLIT.limited_indices, net.synthesis_head, ())


def test_dante_loss_adds_the_synthesis_term_and_refuses_without_a_head():
    from dante_nnunet.losses import synthesis_loss
    out = _synth_net()(torch.randn(2, 4, 16, 16, 16))
    task = lambda seg, t: seg[0].mean() * 0 + 1.0
    loss = DANTELoss(task, RegressionAlignment(1), 0.0, 0.0, lambda_synthesis=0.7)
    assert torch.allclose(loss(out, None), 2.0 + 0.7 * synthesis_loss(out.synthesis, out.privileged_input))
    assert loss.last_terms["synthesis"].item() == pytest.approx(synthesis_loss(out.synthesis,
                                                                               out.privileged_input).item())
    off = DANTELoss(task, RegressionAlignment(1), 0.0, 0.0)
    assert off(out, None).item() == pytest.approx(2.0) and torch.isnan(off.last_terms["synthesis"])
    with pytest.raises(ValueError, match="no synthesis head"):
        loss(_net("PlainConvUNet", 3)(torch.randn(2, 4, 16, 16, 16)), None)


def test_synthesis_gradients_unchanged_by_activation_checkpointing():
    from dante_nnunet.losses import synthesis_loss
    x = torch.randn(2, 4, 16, 16, 16)
    grads = []
    for ckpt in (False, True):
        net = _synth_net(ds=False)
        net.activation_checkpointing = ckpt
        out = net(x)
        synthesis_loss(out.synthesis, out.privileged_input).backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})
    g0, g1 = grads
    assert g0.keys() == g1.keys()
    assert {k.split(".")[0] for k in g0} == {"encoder_l", "decoder_l", "synthesis_head"}   # nothing else learns from it
    assert all(torch.allclose(g0[k], g1[k], atol=1e-6) for k in g0)
