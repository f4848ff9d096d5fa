"""Stage 1 -> Stage 2: -pretrained_weights loads E_L/E_A/E_P only, refuses unfit checkpoints naming the
tensor, loads GPU-written checkpoints on the CPU, and the encoders stay frozen for the first epochs."""

import pytest
import torch

from dante_nnunet.jobs import inmemory as pf
from tests.support import cpu_storages_tagged_cuda
from dante_nnunet.config import ChannelSplit
from dante_nnunet.networks import build_cross_modal_mae, build_dual_pathway_network, build_stock_network
from dante_nnunet.networks.cross_modal_mae import TRANSFERRED_PARTS
from dante_nnunet.training import DANTEPretrainTrainer, DANTETrainer
from dante_nnunet.training.transfer import (PretrainedWeightsError, install_pretrained_weights_hook,
                                            load_stage1_encoders, load_stage1_limited_encoder)

SPLIT = ChannelSplit.from_names(["T1", "T1ce", "T2", "FLAIR"], ["T1ce"])


def _stage1_checkpoint(path, cm=None, split=SPLIT, seed=1, **extra):
    torch.manual_seed(seed)
    mae = build_cross_modal_mae(cm or pf.configuration_manager(), split)
    with torch.no_grad():   # as if trained: no tensor keeps its initial value (biases 0, norm weights 1)
        for q in mae.parameters():
            q.add_(torch.rand_like(q) + 0.1)
    torch.save({"network_weights": mae.state_dict(), "trainer_name": "DANTEPretrainTrainer", **extra}, path)
    return mae


def _dual(cm=None, split=SPLIT, seed=2):
    torch.manual_seed(seed)
    return build_dual_pathway_network(cm or pf.configuration_manager(), split, 3)


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("arch,dim", [("PlainConvUNet", 3), ("ResidualEncoderUNet", 3), ("PlainConvUNet", 2)])
def test_exactly_the_stage1_encoder_tensors_are_transferred(tmp_path, arch, dim):
    cm = pf.configuration_manager(arch, dim)
    mae = _stage1_checkpoint(tmp_path / "s1.pth", cm)
    dual = _dual(cm)
    before = _snapshot(dual)
    n = load_stage1_encoders(dual, str(tmp_path / "s1.pth"))
    after = dual.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    encoder_keys = {f"{p}.{k}" for p in TRANSFERRED_PARTS for k in getattr(dual, p).state_dict()}
    assert n == len(encoder_keys)
    assert moved == encoder_keys
    for p in TRANSFERRED_PARTS:
        for k, v in getattr(mae, p).state_dict().items():
            assert torch.equal(after[f"{p}.{k}"], v), f"{p}.{k}"
    for k in after:
        if k not in encoder_keys:   # decoders and fusion keep their fresh initialisation
            assert torch.equal(after[k], before[k]), k
    assert dual.transferred_from == str(tmp_path / "s1.pth")


def test_unfit_checkpoints_stop_with_the_first_mismatched_tensor(tmp_path):
    dual = _dual()
    before = _snapshot(dual)
    # another width
    _stage1_checkpoint(tmp_path / "wide.pth", pf.configuration_manager(features=(8, 16, 32)))
    with pytest.raises(PretrainedWeightsError, match=r"wide.pth: tensor 'encoder_l\.[^']+' has shape \(8, 3"):
        load_stage1_encoders(dual, str(tmp_path / "wide.pth"))
    # another channel split: 2 limited channels -> E_L's first convolution differs
    _stage1_checkpoint(tmp_path / "split.pth", split=ChannelSplit.from_names(["T1", "T1ce", "T2", "FLAIR"],
                                                                              ["T1ce", "FLAIR"]))
    with pytest.raises(PretrainedWeightsError, match=r"tensor 'encoder_l\.stages\.0\.0\.convs\.0\.conv\.weight' "
                                                     r"has shape \(4, 2, 3, 3, 3\) in the checkpoint but "
                                                     r"\(4, 3, 3, 3, 3\)"):
        load_stage1_encoders(dual, str(tmp_path / "split.pth"))
    # another depth: the checkpoint has a stage this network lacks
    _stage1_checkpoint(tmp_path / "deep.pth", pf.configuration_manager(features=(4, 8, 16, 32)))
    with pytest.raises(PretrainedWeightsError, match=r"tensor 'encoder_l\.stages\.3\.[^']+', which this network's"):
        load_stage1_encoders(dual, str(tmp_path / "deep.pth"))
    # another architecture
    _stage1_checkpoint(tmp_path / "resenc.pth", pf.configuration_manager("ResidualEncoderUNet"))
    with pytest.raises(PretrainedWeightsError, match=r"tensor 'encoder_l\.[^']+' of this network is missing"):
        load_stage1_encoders(dual, str(tmp_path / "resenc.pth"))
    # a plain nnU-Net checkpoint
    torch.save({"network_weights": build_stock_network(pf.configuration_manager(), 4, 3, True).state_dict(),
                "trainer_name": "nnUNetTrainer"}, tmp_path / "plain.pth")
    with pytest.raises(PretrainedWeightsError, match=r"plain.pth: tensor 'encoder_l\.stages\.0\.0\.convs\.0\.conv\."
                                                     r"weight' of this network is missing from the checkpoint "
                                                     r"\(trainer_name 'nnUNetTrainer'\); it has no encoder_l/"):
        load_stage1_encoders(dual, str(tmp_path / "plain.pth"))
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(PretrainedWeightsError, match="not an nnU-Net checkpoint"):
        load_stage1_encoders(dual, str(tmp_path / "other.pth"))
    after = dual.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())   # nothing copied on failure
    assert dual.transferred_from is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading a GPU checkpoint without a GPU")
def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path):
    with cpu_storages_tagged_cuda():
        mae = _stage1_checkpoint(tmp_path / "gpu.pth")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "gpu.pth", weights_only=False)       # what the stock loader does
    dual = _dual()
    load_stage1_encoders(dual, str(tmp_path / "gpu.pth"))
    assert torch.equal(dual.encoder_p.state_dict()["stages.0.0.convs.0.conv.weight"],
                       mae.encoder_p.state_dict()["stages.0.0.convs.0.conv.weight"])


def test_hook_routes_dante_networks_and_leaves_others_to_nnunet(tmp_path):
    import nnunetv2.run.run_training as run_training
    install_pretrained_weights_hook()
    hooked = run_training.load_pretrained_weights
    install_pretrained_weights_hook()
    assert run_training.load_pretrained_weights is hooked    # idempotent
    _stage1_checkpoint(tmp_path / "s1.pth")
    dual = _dual()
    hooked(dual, str(tmp_path / "s1.pth"))
    assert dual.transferred_from is not None
    # a stock network with a stock checkpoint still goes through nnU-Net's own loader
    torch.manual_seed(3)
    src = build_stock_network(pf.configuration_manager(), 4, 3, True)
    torch.save({"network_weights": src.state_dict()}, tmp_path / "stock.pth")
    dst = build_stock_network(pf.configuration_manager(), 4, 3, True)
    hooked(dst, str(tmp_path / "stock.pth"))
    assert torch.equal(dst.encoder.stages[0][0].convs[0].conv.weight, src.encoder.stages[0][0].convs[0].conv.weight)
    with pytest.raises(AssertionError, match="missing in the pretrained model weights"):
        hooked(dst, str(tmp_path / "s1.pth"))


class _Freeze10(DANTETrainer):
    epochs = 10          # encoders frozen in epoch 0 (round(0.1 * 10) = 1)


def _initialized(cls):
    t = pf.initialisable_trainer(cls, "Dataset999_Unit")
    t.initialize()
    return t


def _batch(seed=0):
    return pf.region_batch(2, seed)


def test_transferred_encoders_frozen_during_the_freeze_epochs_then_trained(tmp_path):
    import nnunetv2.run.run_training as run_training
    t = _initialized(_Freeze10)
    mae = _stage1_checkpoint(tmp_path / "s1.pth", t.configuration_manager)
    run_training.load_pretrained_weights(t.network, str(tmp_path / "s1.pth"))   # what -pretrained_weights calls
    dual = t.dual_network()
    assert t.encoder_freeze_end_epoch == 1
    stage1 = {p: _snapshot(getattr(mae, p)) for p in TRANSFERRED_PARTS}
    decoder_before = _snapshot(dual.decoder_l)

    t.current_epoch = 0
    t.on_train_epoch_start()
    for i in range(2):
        t.train_step(_batch(i))
    for p in TRANSFERRED_PARTS:
        enc = getattr(dual, p)
        assert not enc.training and not any(q.requires_grad for q in enc.parameters())
        assert all(torch.equal(v, stage1[p][k]) for k, v in enc.state_dict().items()), p
    assert not all(torch.equal(v, decoder_before[k]) for k, v in dual.decoder_l.state_dict().items())

    t.current_epoch = 1
    t.on_train_epoch_start()
    t.train_step(_batch(2))
    for p in TRANSFERRED_PARTS:
        enc = getattr(dual, p)
        assert enc.training and all(q.requires_grad for q in enc.parameters())
        assert not all(torch.equal(v, stage1[p][k]) for k, v in enc.state_dict().items()), p


def test_without_pretrained_weights_nothing_is_frozen():
    t = _initialized(_Freeze10)
    assert t.encoder_freeze_end_epoch == 0
    t.current_epoch = 0
    t.on_train_epoch_start()
    assert all(q.requires_grad for q in t.dual_network().parameters())


def test_pretrain_trainer_refuses_to_build_a_segmentation_network():
    with pytest.raises(RuntimeError, match="cannot segment"):
        DANTEPretrainTrainer.build_network_architecture(None, None, 4, 3, True)


def test_other_channel_names_in_stage1_are_reported(tmp_path):
    t = _initialized(_Freeze10)
    lines = []
    t.print_to_log_file = lambda *args, **kw: lines.append(" ".join(map(str, args)))
    same = {"limited_channels": ["T1", "T2", "FLAIR"], "privileged_channels": ["T1ce"]}
    _stage1_checkpoint(tmp_path / "same.pth", dante_stage1=same)
    t._warn_if_stage1_channels_differ(str(tmp_path / "same.pth"))
    assert lines == []
    other = {"limited_channels": ["T1", "T1ce", "T2"], "privileged_channels": ["FLAIR"]}
    _stage1_checkpoint(tmp_path / "other.pth", dante_stage1=other)
    t._warn_if_stage1_channels_differ(str(tmp_path / "other.pth"))
    assert len(lines) == 1 and "WARNING: Stage 1 was trained with limited ['T1', 'T1ce', 'T2']" in lines[0]


@pytest.mark.parametrize("limited_only,synthesis", [(False, False), (True, False), (True, True)])
def test_lower_bound_takes_e_l_into_its_encoder_and_refuses_checkpoints_without_it(tmp_path, limited_only, synthesis):
    """The lower bound fine-tuned from Stage 1: E_L (of a cross-modal, a limited-only MAE or one that also
    synthesises the privileged channel) goes into the stock network's encoder (and so its decoder's
    registration of it), the decoder stays fresh; through nnU-Net's -pretrained_weights hook; a checkpoint
    without E_L is refused, naming why."""
    cm = pf.configuration_manager()
    torch.manual_seed(1)
    mae = build_cross_modal_mae(cm, SPLIT, cross_modal=not limited_only, limited_only=limited_only,
                                synthesis=synthesis)
    with torch.no_grad():
        for q in mae.parameters():
            q.add_(torch.rand_like(q) + 0.1)
    torch.save({"network_weights": mae.state_dict(), "trainer_name": "DANTEPretrainTrainer",
                "dante_stage1": {"limited_only": limited_only}}, tmp_path / "s1.pth")
    torch.manual_seed(2)
    net = build_stock_network(cm, 3, 3, True)
    before = _snapshot(net)
    install_pretrained_weights_hook()
    import nnunetv2.run.run_training as run_training
    run_training.load_pretrained_weights(net, str(tmp_path / "s1.pth"))
    after = net.state_dict()
    for k, v in mae.encoder_l.state_dict().items():
        assert torch.equal(after[f"encoder.{k}"], v) and torch.equal(after[f"decoder.encoder.{k}"], v), k
    fresh = [k for k in after if k.startswith("decoder.") and not k.startswith("decoder.encoder.")]
    assert fresh and all(torch.equal(after[k], before[k]) for k in fresh)
    assert net.transferred_from == str(tmp_path / "s1.pth")
    # no E_L in the file (e.g. a Stage-2 model): refused, nothing copied
    other = build_stock_network(cm, 3, 3, True)
    torch.save({"network_weights": {k: v for k, v in mae.state_dict().items() if not k.startswith("encoder_l.")},
                "dante_stage1": {}}, tmp_path / "no_el.pth")
    snap = _snapshot(other)
    with pytest.raises(PretrainedWeightsError, match="no encoder_l"):
        load_stage1_limited_encoder(other, str(tmp_path / "no_el.pth"))
    assert all(torch.equal(other.state_dict()[k], v) for k, v in snap.items())
    # E_L of another width: refused naming the tensor
    wide = build_cross_modal_mae(pf.configuration_manager(features=(8, 16, 32)), SPLIT, cross_modal=False,
                                 limited_only=True)
    torch.save({"network_weights": wide.state_dict(), "dante_stage1": {}}, tmp_path / "wide.pth")
    with pytest.raises(PretrainedWeightsError, match=r"'encoder_l\..*' has shape"):
        load_stage1_limited_encoder(other, str(tmp_path / "wide.pth"))


def test_finetune_start_loads_every_tensor_segmentation_layers_included(tmp_path):
    """A fine-tune (token tune<x>, the network marked finetune_whole): -pretrained_weights loads the whole
    model of the same network, the segmentation layers included (nnU-Net's stock loading starts them fresh),
    and refuses a model of another width, copying nothing."""
    from dante_nnunet.training.transfer import load_whole_network
    cm = pf.configuration_manager()
    torch.manual_seed(1)
    student = build_stock_network(cm, 3, 3, True)
    with torch.no_grad():
        for q in student.parameters():
            q.add_(torch.rand_like(q) + 0.1)
    torch.save({"network_weights": student.state_dict(), "trainer_name": "LowerBoundTrainer"}, tmp_path / "s.pth")
    torch.manual_seed(2)
    net = build_stock_network(cm, 3, 3, True)
    net.finetune_whole = True
    install_pretrained_weights_hook()
    import nnunetv2.run.run_training as run_training
    run_training.load_pretrained_weights(net, str(tmp_path / "s.pth"))
    seg = [k for k in net.state_dict() if ".seg_layers." in k]
    assert seg and all(torch.equal(net.state_dict()[k], v) for k, v in student.state_dict().items())
    assert net.transferred_from == str(tmp_path / "s.pth")
    # the stock route (no mark) keeps fresh segmentation layers: what the fine-tune must not do
    plain = build_stock_network(cm, 3, 3, True)
    fresh = {k: v.clone() for k, v in plain.state_dict().items() if ".seg_layers." in k}
    run_training.load_pretrained_weights(plain, str(tmp_path / "s.pth"))
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in fresh.items())
    wide = build_stock_network(pf.configuration_manager(features=(8, 16, 32)), 3, 3, True)
    torch.save({"network_weights": wide.state_dict()}, tmp_path / "wide.pth")
    other = build_stock_network(cm, 3, 3, True)
    snap = _snapshot(other)
    with pytest.raises(PretrainedWeightsError, match="has shape"):
        load_whole_network(other, str(tmp_path / "wide.pth"))
    assert all(torch.equal(other.state_dict()[k], v) for k, v in snap.items())
