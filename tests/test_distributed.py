"""DANTE's DDP code paths under torch.distributed (gloo) in two CPU processes: Stage 1, Stage 2 from
its checkpoint through -pretrained_weights, the refused encoder freeze, and what the epoch-end hooks
gather over the ranks (tests/ddp_worker.py runs them as nnU-Net's run_ddp does)."""
import json
import os
import subprocess
import sys

import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json

from tests.support import E2E_CONFIG, E2E_DATASET_ID

pytestmark = pytest.mark.e2e
WORKER = os.path.join(os.path.dirname(__file__), "ddp_worker.py")


@pytest.fixture(scope="module")
def ranks(e2e_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    with open(out / "worker.log", "w") as log:   # a file, not a pipe: a stray child cannot keep run() waiting
        p = subprocess.run([sys.executable, WORKER, str(E2E_DATASET_ID), E2E_CONFIG, str(out)],
                           env=e2e_dataset["env"], stdout=log, stderr=subprocess.STDOUT, timeout=900)
    records = [json.load(open(out / f"rank{r}.json")) for r in range(2) if (out / f"rank{r}.json").exists()]
    errors = [r.get("error") for r in records if r.get("error")]
    assert p.returncode == 0 and len(records) == 2 and not errors, \
        f"{errors}\n{(out / 'worker.log').read_text()[-4000:]}"
    return dict(e2e_dataset, records=records)


def test_both_stages_train_under_ddp_with_synchronised_weights(ranks):
    r0, r1 = ranks["records"]
    plans = load_json(join(ranks["env"]["nnUNet_preprocessed"], ranks["name"], "nnUNetPlans.json"))
    global_batch = plans["configurations"][E2E_CONFIG].get("batch_size") or \
        plans["configurations"]["3d_fullres"]["batch_size"]
    for stage in ("stage1", "stage2"):
        assert r0[stage]["wrapped"] == r1[stage]["wrapped"] == "DistributedDataParallel"
        assert r0[stage]["batch_size"] + r1[stage]["batch_size"] == global_batch   # nnU-Net splits the batch
        # DDP averaged every gradient: the ranks end with the same weights although they drew other batches
        assert r0[stage]["checksum"] == pytest.approx(r1[stage]["checksum"], rel=1e-9)
    assert r0["stage2"]["transferred_from"].endswith("checkpoint_final.pth")
    assert all(v == v for v in r0["stage2"]["train_align"][1:])   # regularisers on from epoch 1
    # rank 0 wrote the checkpoint (stock keys, no DDP prefix); the ranks validated their halves of the cases
    fold = join(ranks["env"]["nnUNet_results"], ranks["name"], f"DANTETrainer_ddp__nnUNetPlans__{E2E_CONFIG}",
                "fold_0")
    ck = torch.load(join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert not any(k.startswith("module.") for k in list(ck["network_weights"]) + list(ck["dante_network_weights"]))
    assert 0 <= load_json(join(fold, "validation", "summary.json"))["foreground_mean"]["Dice"] <= 1


def test_transferred_encoders_cannot_be_frozen_under_ddp(ranks):
    for r in ranks["records"]:
        assert "freezing transferred encoders is not supported under DDP" in r["freeze"]


def test_epoch_end_hooks_gather_over_ranks(ranks):
    """Rank r (1-based value v = r + 1) logged terms v, 2v, ... (one per LOSS_TERMS) and diagnostics v; hand
    values below."""
    r0, r1 = (r["crafted"] for r in ranks["records"])
    assert r0 == r1                                        # every rank logs the gathered values
    # seg_l, seg_f, pib, align, synthesis, club, club_q
    assert r0["train_terms"] == pytest.approx([1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 10.5])
    assert r0["train_loss"] == pytest.approx(1.5)
    assert r0["diag_abs_zl"] == pytest.approx([1.5] * len(r0["diag_abs_zl"]))
    # teacher counts summed over ranks: tp 2*([1,0,2]+[2,0,2]) = [6,0,8], fp [0,0,1]+[0,1,1] = [0,1,2],
    # fn 3*([0,1,0]+[1,1,0]) = [3,6,0]; Dice 2tp / (2tp + fp + fn)
    assert r0["dice_full"] == pytest.approx([12 / 15, 0.0, 16 / 18])
    assert r0["mean_fg_dice_full"] == pytest.approx((12 / 15 + 0 + 16 / 18) / 3)
    # the deployed pathway's (nnU-Net's own gather): tp [3,0,4], fp [0,1,2], fn [1,2,0]
    assert r0["mean_fg_dice"] == pytest.approx((6 / 7 + 0 + 8 / 10) / 3)
    assert r0["stage1_val"] == pytest.approx([1.5, 1.5, 3.0, 4.5, 6.0])


@pytest.mark.parametrize("cross_modal", [True, False])
def test_every_stage1_parameter_takes_a_gradient(cross_modal):
    """nnU-Net wraps the network in DDP without find_unused_parameters: a parameter without a gradient
    stops the second step. The reconstruction decoders have no deep supervision, so their unused output
    heads must not exist."""
    from dante_nnunet.jobs import inmemory as pf
    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.losses import ReconstructionLoss
    from dante_nnunet.networks.masking import MultiScaleBlockMasker, apply_mask
    from dante_nnunet.networks.builder import build_cross_modal_mae
    split = ChannelSplit.from_dataset_json(pf.dataset_json(), "dataset.json")
    net = build_cross_modal_mae(pf.configuration_manager(), split, cross_modal)
    x = torch.randn(2, 4, 16, 16, 16)
    mask = MultiScaleBlockMasker(0.75, seed=0)(2, x.shape[2:])
    ReconstructionLoss(split.limited_indices, cross_modal)(net(apply_mask(x, mask)), x, mask).backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []


def test_a_stage1_checkpoint_with_the_old_unused_heads_is_not_continued():
    from dante_nnunet.jobs import inmemory as pf
    from dante_nnunet.training import DANTEPretrainTrainer
    t = pf.initialisable_trainer(DANTEPretrainTrainer, "Dataset996_Cuda")
    t.initialize()
    ck = {**t._checkpoint_dict(t.unwrapped_network().state_dict()), "dante_channel_split": t._split_record(),
          "dante_stage1": {}}
    ck["network_weights"]["decoder_l_rec.seg_layers.0.weight"] = torch.zeros(3, 16, 1, 1, 1)
    with pytest.raises(ValueError, match=r"unused output heads .* cannot be continued with --c"):
        t.load_checkpoint(ck)
