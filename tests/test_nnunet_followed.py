"""The pieces of nnUNetTrainer that DANTE restates (dante_nnunet/training/nnunet_followed.py) against the
methods they follow, run on nnU-Net's own trainer: the same update, the same counts, the same
checkpoint, the same restored state. And a test that fails when one of those methods changes in the
installed nnU-Net, so the restatement is re-read instead of silently diverging."""
import copy
import inspect
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from dante_nnunet.jobs import inmemory as pf
from dante_nnunet.training.nnunet_followed import FOLLOWED_VERSION, NNUNET_SOURCES, NNUNetFollowed, source_hash

DATASET = "Dataset995_Followed"


def test_the_followed_nnunet_methods_are_unchanged():
    changed = [name for name, h in NNUNET_SOURCES.items() if source_hash(getattr(nnUNetTrainer, name)) != h]
    assert not changed, (f"nnUNetTrainer.{', '.join(changed)} changed since nnunetv2 {FOLLOWED_VERSION}: re-read "
                         f"dante_nnunet/training/nnunet_followed.py against it, then update NNUNET_SOURCES")


def _twins(**dj):
    """Two initialised stock nnUNetTrainers with the same weights and optimiser state."""
    a = pf.initialisable_trainer(nnUNetTrainer, DATASET, **dj)
    a.initialize()
    b = pf.initialisable_trainer(nnUNetTrainer, DATASET, **dj)
    b.initialize()
    b.network.load_state_dict(a.network.state_dict())
    return a, b


def _label_batch(seed=0):
    """Softmax labels (0..3) as nnU-Net's loader gives them at the three deep-supervision scales."""
    batch = pf.region_batch(2, seed)
    seg = batch["target"][0].sum(1, keepdim=True)          # WT + TC + ET = the label 0..3
    batch["target"] = [seg, F.max_pool3d(seg, 2), F.max_pool3d(seg, 4)]
    return batch


def test_update_step_is_nnunets_train_step():
    a, b = _twins()
    for t in (a, b):   # large enough that the gradient is clipped at 12
        loss = t.loss
        t.loss = lambda out, target, loss=loss: 1e3 * loss(out, target)
    batch = pf.region_batch(2, 3)
    nnUNetTrainer.train_step(a, batch)
    data, target = NNUNetFollowed._to_device(b, batch)
    b.optimizer.zero_grad(set_to_none=True)
    with NNUNetFollowed._autocast(b):
        loss = b.loss(b.network(data), target)
    NNUNetFollowed._backward_and_step(b, loss)
    for (name, p), q in zip(a.network.named_parameters(), b.network.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("regions", [True, False])
def test_hard_counts_are_nnunets_validation_counts(regions):
    a, _ = _twins(regions=regions)
    batch = pf.region_batch(2, 4) if regions else _label_batch(4)
    a.network.eval()
    expected = nnUNetTrainer.validation_step(a, copy.deepcopy(batch))
    with torch.no_grad():
        out = a.network(batch["data"])
    tp, fp, fn = NNUNetFollowed._hard_counts(a, out, batch["target"])
    for k, ours in zip(("tp_hard", "fp_hard", "fn_hard"), (tp, fp, fn)):
        np.testing.assert_array_equal(ours, expected[k])
    assert len(tp) == 3 and tp.sum() > 0


def _same(x, y) -> bool:
    """Equal nested checkpoint content (dicts, lists, tensors, numbers)."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
    if torch.is_tensor(x):
        return torch.is_tensor(y) and torch.equal(x, y)
    return x == y


def _step_once(t, seed=5):
    nnUNetTrainer.train_step(t, pf.region_batch(2, seed))
    t.logger.log("train_losses", 0.5, 0)
    t.current_epoch, t._best_ema = 3, 0.25


def test_checkpoint_is_nnunets(tmp_path):
    a, _ = _twins()
    _step_once(a)
    nnUNetTrainer.save_checkpoint(a, str(tmp_path / "stock.pth"))
    stock = torch.load(tmp_path / "stock.pth", weights_only=False)
    ours = NNUNetFollowed._checkpoint_dict(a, a.network.state_dict())
    assert ours.keys() == stock.keys()
    for k in ours:
        assert _same(ours[k], stock[k]), k
    assert len(stock["optimizer_state"]["state"]) > 0   # momentum buffers, after one step


def test_restored_state_is_nnunets(tmp_path):
    a, _ = _twins()
    _step_once(a)
    ck = NNUNetFollowed._checkpoint_dict(a, a.network.state_dict())
    torch.save(ck, tmp_path / "ck.pth")
    c, d = _twins()
    nnUNetTrainer.load_checkpoint(c, str(tmp_path / "ck.pth"))   # (2.8.1 fails on a dict)
    NNUNetFollowed._restore_training_state(d, copy.deepcopy(ck))
    for attr in ("my_init_kwargs", "current_epoch", "_best_ema", "inference_allowed_mirroring_axes"):
        assert getattr(c, attr) == getattr(d, attr), attr
    assert c.logger.get_checkpoint() == d.logger.get_checkpoint()
    assert _same(c.optimizer.state_dict(), d.optimizer.state_dict())


def test_latest_checkpoint_cadence_is_nnunets(monkeypatch):
    """Which epochs write checkpoint_latest in nnU-Net's on_epoch_end, and in ours."""
    a, _ = _twins()
    a.num_epochs, a.save_every = 6, 2   # epoch 5 would be due, but it is the last
    written = []
    monkeypatch.setattr(a, "save_checkpoint", lambda f: written.append((a.current_epoch, f.rsplit("/", 1)[1])))
    monkeypatch.setattr(a.logger, "plot_progress_png", lambda *args: None)
    ours = []
    for e in range(a.num_epochs):
        for key, v in (("train_losses", 0.1), ("val_losses", 0.1), ("dice_per_class_or_region", [0.5]),
                       ("mean_fg_dice", 0.5), ("epoch_start_timestamps", 0.0)):
            a.logger.log(key, v, e)
        if NNUNetFollowed._latest_checkpoint_due(a):
            ours.append(e)
        nnUNetTrainer.on_epoch_end(a)
    assert [e for e, f in written if f == "checkpoint_latest.pth"] == ours == [1, 3]


def test_cpu_validation_workers_size_nnunets_pools_on_the_cpu_only(monkeypatch):
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as module
    from dante_nnunet.training.nnunet_followed import cpu_validation_processes, cpu_validation_workers
    assert [cpu_validation_processes(8, c) for c in (1, 2, 4, 16, 64)] == [1, 1, 2, 8, 8]
    assert cpu_validation_processes(3, 16) == 3
    monkeypatch.delenv("nnUNet_def_n_proc", raising=False)
    monkeypatch.setattr(module, "default_num_processes", 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with cpu_validation_workers(torch.device("cpu")) as n:
        assert n == module.default_num_processes == 1   # what perform_actual_validation's pools read
    assert module.default_num_processes == 8
    with cpu_validation_workers(torch.device("cuda")) as n:
        assert n == module.default_num_processes == 8
    monkeypatch.setenv("nnUNet_def_n_proc", "8")         # the user's own setting is kept
    with cpu_validation_workers(torch.device("cpu")) as n:
        assert n == 8
    # the pools of nnU-Net's final validation read this module global at each call
    src = inspect.getsource(nnUNetTrainer.perform_actual_validation)
    assert src.count("default_num_processes") >= 2 and 'Pool(default_num_processes)' in src
