"""DANTE's trainers under torch.distributed in two CPU processes (gloo), run the way nnU-Net's
``run_ddp`` runs ``nnUNetv2_train -num_gpus 2`` (which needs CUDA and NCCL): per rank a trainer from
``get_trainer_from_args``, ``maybe_load_checkpoint``, ``run_training``, ``perform_actual_validation``.

    python tests/ddp_worker.py DATASET CONFIGURATION OUT_DIR

Stage 1 (DANTEPretrainTrainer_ddp), then Stage 2 from its checkpoint (DANTETrainer_ddp), then the
refused freeze (DANTETrainer_ddpFreeze); then every rank feeds its own hand-made epoch outputs to the
trainers' epoch-end hooks, so the test can check what was gathered. Each rank writes
OUT_DIR/rank<r>.json; the nnUNet_* variables come from the environment (tests/test_distributed.py).
"""
import json
import os
import socket
import sys
import traceback

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(module.parameters())))


def _trainer(dataset, configuration, name, pretrained=None):
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    t = get_trainer_from_args(dataset, configuration, 0, name, device=torch.device("cpu"))
    maybe_load_checkpoint(t, False, False, pretrained)
    return t


def _crafted_epoch_ends(stage2, stage1, rank: int) -> dict:
    """Rank-dependent epoch outputs through the real epoch-end hooks; returns what was logged."""
    r = float(rank + 1)
    e2 = stage2.current_epoch
    from dante_nnunet.training.diagnostics import FEATURE_STATS
    from dante_nnunet.losses.dante_loss import LOSS_TERMS
    diag = torch.full((len(stage2.dual_network().encoder_l.output_channels), len(FEATURE_STATS)), r)
    terms = {f"train_{t}": torch.tensor((i + 1) * r) for i, t in enumerate(LOSS_TERMS)}   # v, 2v, 3v, ...
    train = [{'loss': torch.tensor(r), **terms, 'diag': diag.clone()} for _ in range(2)]
    stage2.on_train_epoch_end(train)
    counts = np.array([[rank + 1, 0, 2], [0, rank, 1], [rank, 1, 0]], dtype=float)   # tp, fp, fn per region
    val = [{'loss': np.array(r), 'tp_hard': counts[0], 'fp_hard': counts[1], 'fn_hard': counts[2],
            'tp_hard_full': counts[0] * 2, 'fp_hard_full': counts[1], 'fn_hard_full': counts[2] * 3}]
    stage2.on_validation_epoch_end(val)
    log = stage2.logger.get_value
    e1 = stage1.current_epoch
    s1 = [{'loss': torch.tensor(r), 'val_l_to_l': torch.tensor(r), 'val_ap_to_f': torch.tensor(2 * r),
           'val_lp_to_f': torch.tensor(3 * r), 'val_synthesis': torch.tensor(4 * r)}]
    stage1.on_validation_epoch_end(s1)
    return {"train_terms": [log(f"train_{t}", step=e2) for t in LOSS_TERMS],
            "train_loss": log("train_losses", step=e2), "diag_abs_zl": log("diag_abs_zl", step=e2),
            "dice_full": log("dice_per_class_or_region_full", step=e2),
            "mean_fg_dice_full": log("mean_fg_dice_full", step=e2),
            "mean_fg_dice": float(log("mean_fg_dice", step=e2)),
            "stage1_val": [stage1.logger.get_value(k, step=e1) for k in
                           ("val_losses", "val_l_to_l", "val_ap_to_f", "val_lp_to_f", "val_synthesis")]}


def run_rank(rank: int, port: int, dataset: str, configuration: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    record = {"rank": rank}
    try:
        s1 = _trainer(dataset, configuration, "DANTEPretrainTrainer_ddp")
        s1.run_training()
        record["stage1"] = {"batch_size": s1.batch_size, "checksum": _checksum(s1.unwrapped_network()),
                            "wrapped": type(s1.network).__name__, "train_losses": s1.logger.get_value(
                                "train_losses", None)}
        ck = os.path.join(s1.output_folder, "checkpoint_final.pth")
        s2 = _trainer(dataset, configuration, "DANTETrainer_ddp", pretrained=ck)
        s2.run_training()
        s2.perform_actual_validation(False)
        record["stage2"] = {"batch_size": s2.batch_size, "checksum": _checksum(s2.dual_network()),
                            "wrapped": type(s2.network).__name__,
                            "transferred_from": s2.dual_network().transferred_from,
                            "train_align": s2.logger.get_value("train_align", None)}
        try:
            _trainer(dataset, configuration, "DANTETrainer_ddpFreeze", pretrained=ck).run_training()
            record["freeze"] = "trained"
        except RuntimeError as e:
            record["freeze"] = str(e)
        dist.barrier()
        record["crafted"] = _crafted_epoch_ends(s2, s1, rank)
    except BaseException:
        record["error"] = traceback.format_exc()
        raise
    finally:
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(record, f, default=float)
        dist.destroy_process_group()
    # batchgenerators' NonDetMultiThreadedAugmenter can leave a producer process blocked in Queue.put after
    # nnU-Net's on_train_end finished the loader; at interpreter exit its __del__ then blocks forever on a
    # semaphore (seen in 2 of 6 runs, py-spy: _finish -> Event.set -> SemLock.__enter__; the producers:
    # Queue.put in producer()). Not plugin code: stop such children, and leave without finalizers.
    for child in mp.active_children():
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv):
    dataset, configuration, out = argv
    os.makedirs(out, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run_rank, args=(port, dataset, configuration, out), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main(sys.argv[1:])
