#!/usr/bin/env python
"""What DANTE costs against stock nnU-Net, measured in one process on a built-in phantom plan.

    python scripts/bench_speed.py --json OUT.json [--configuration tiny|small|brats] [--device cpu|cuda]
                                  [--patch-size N] [--repeats R] [--warmup W]

No dataset is needed: plans of a BraTS-like 4-channel dataset (T1ce privileged, region labels) are
made on the fly for the chosen configuration, and the real trainer classes (nnUNetTrainer,
DANTETrainer, DANTEPretrainTrainer) are initialised on them in a scratch folder. Each measurement is
one ``trainer.train_step(batch)`` (forward, loss, backward, optimiser step, exactly nnU-Net's
training iteration) on the same random batch, contenders alternated, after warm-up, median over
repeats. FLOPs are counted with ``torch.utils.flop_counter`` over forward + loss + backward.

Keys of the JSON: ``train_step_ratio`` (DANTETrainer / nnUNetTrainer, regularisers on),
``pretrain_step_ratio`` (DANTEPretrainTrainer / nnUNetTrainer), ``flop_ratio``,
``pretrain_flop_ratio``, ``frozen_step_ratio`` (DANTETrainer step while transferred encoders are
frozen / after), ``inference_ratio`` (sliding-window prediction of one patch-sized limited-channel
volume with mirroring: deployed DANTE model / stock model), ``memory_ratio`` and
``pretrain_memory_ratio`` (peak memory during two training steps, each trainer in its own process:
CPU peak RSS (high-water mark reset before the steps), CUDA max allocated), ``step_memory_ratio``
(CPU: growth of that peak over the RSS before the steps, i.e. without interpreter, libraries and
weights), ``checkpointing_step_ratio`` and ``checkpointing_memory_ratio`` (DANTETrainer_checkpointing
/ DANTETrainer), the raw times in seconds (``times``, ``inference_times``), FLOPs (``flops``),
memory in MB (``memory_mb``), and the setting.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict

CONFIGURATIONS = {
    # name: (patch size, features per stage, batch size)
    "tiny": ([16, 16, 16], [8, 16, 32, 64], 2),
    "small": ([64, 64, 64], [32, 64, 128, 256, 320], 2),
    "brats": ([128, 128, 128], [32, 64, 128, 256, 320, 320], 2),   # nnU-Net's BraTS 3d_fullres plan
}


def phantom_plans(name: str, patch_edge: int = None) -> dict:
    """The in-memory BraTS-like plans (``dante_nnunet.jobs.inmemory``) with this configuration's patch, widths
    and batch size (two convolutions per decoder stage and masked normalisation, as nnU-Net plans them)."""
    from dante_nnunet.jobs.inmemory import plans
    patch, features, batch = CONFIGURATIONS[name]
    return plans("Dataset900_BenchPhantom", name, features=features, patch=[patch_edge] * 3 if patch_edge else patch,
                 batch_size=batch, n_conv_decoder=2, use_mask_for_norm=True)


def _scratch_environment() -> str:
    """nnUNet_* folders in a temporary directory (removed at exit): the user's are never touched. Set
    before nnunetv2 is imported (it reads them at import)."""
    import atexit
    import shutil
    from dante_nnunet.jobs.nnunet_jobs import nnunet_environment
    root = tempfile.mkdtemp(prefix="dante_bench_")
    atexit.register(shutil.rmtree, root, True)
    os.environ.update(nnunet_environment(root))
    return root


PATCH_EDGE = None   # --patch-size: the configuration's widths with another (cubic) patch


def make_trainer(cls, configuration: str, device, plans_dict: dict = None):
    """An initialised trainer of ``cls`` on ``plans_dict`` (default: this script's phantom plans)."""
    from dante_nnunet.jobs.inmemory import initialisable_trainer
    t = initialisable_trainer(cls, plans_dict=plans_dict or phantom_plans(configuration, PATCH_EDGE),
                              configuration_name=configuration, device=device)
    t.print_to_log_file = lambda *a, **k: None
    t.initialize()
    return t


def trainer_class(name: str):
    """``nnUNetTrainer`` or a trainer class of ``dante_nnunet.training``, by name."""
    if name == "nnUNetTrainer":
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        return nnUNetTrainer
    import dante_nnunet.training as training
    return getattr(training, name)


def regularisers_on(trainer) -> None:
    """A DANTE trainer's regularisers on, as after their start epoch (the step computes every term)."""
    if hasattr(trainer, "lambda_pib") and hasattr(trainer.loss, "lambda_pib"):
        trainer.loss.lambda_pib, trainer.loss.lambda_align = trainer.lambda_pib, trainer.lambda_align


def make_batch(trainer, seed: int = 0) -> dict:
    from dante_nnunet.jobs.inmemory import trainer_batch
    return trainer_batch(trainer, seed)


def _sync(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def time_alternating(contenders: Dict[str, Callable[[], None]], device: str, warmup: int, repeats: int
                     ) -> Dict[str, float]:
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    _sync(device)
    times = {k: [] for k in contenders}
    for _ in range(repeats):
        for k, fn in contenders.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def count_step_flops(trainer, batch) -> int:
    """Forward + loss + backward FLOPs of one training iteration (no optimiser step)."""
    from torch.utils.flop_counter import FlopCounterMode
    data = batch["data"].to(trainer.device)
    target = batch["target"]
    target = [t.to(trainer.device) for t in target] if isinstance(target, list) else target.to(trainer.device)
    trainer.network.train()
    with FlopCounterMode(display=False) as counter:
        if hasattr(trainer, "masker"):     # Stage 1: the masked reconstruction step
            loss = trainer._masked_loss({"data": data}, trainer.masker)
        else:
            loss = trainer.loss(trainer.network(data), target)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def inference_contenders(dante, configuration: str, device: str, volume) -> Dict[str, Callable[[], None]]:
    """Sliding-window prediction (nnU-Net's predictor: Gaussian, 50% overlap, mirroring) of one
    limited-channel volume by (a) the deployed DANTE model, built the way nnUNetv2_predict builds it
    (``DANTETrainer.build_network_architecture`` on the limited plans, ``network_weights`` of a DANTE
    checkpoint), and (b) a stock nnU-Net model of the same plans and channels."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from dante_nnunet.deploy.deployment import limited_dataset_json, limited_plans
    from dante_nnunet.jobs.inmemory import dataset_json
    from dante_nnunet.networks.builder import deployed_state_dict
    from dante_nnunet.training import DANTETrainer

    split = dante.channel_split
    plans = PlansManager(limited_plans(phantom_plans(configuration, PATCH_EDGE), split))
    dj = limited_dataset_json(dataset_json(), split)
    cm = plans.get_configuration(configuration)
    n_in, n_out = len(split.limited_indices), 3
    image = torch.randn(n_in, *volume)
    out = {}
    for name, cls, weights in (("nnUNetTrainer", nnUNetTrainer, None),
                               ("DANTETrainer", DANTETrainer, deployed_state_dict(dante.dual_network()))):
        net = cls.build_network_architecture(plans, cm, n_in, n_out, False)
        if weights is not None:
            net.load_state_dict(weights)
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=device == "cuda", device=torch.device(device),
                                    allow_tqdm=False)
        predictor.manual_initialization(net, plans, cm, [net.state_dict()], dj, name, (0, 1, 2))
        out[name] = (lambda p=predictor: p.predict_sliding_window_return_logits(image))
    return out


def peak_memory_probe(trainer_name: str, configuration: str, device: str) -> Dict[str, float]:
    """Run in a fresh process: initialise one trainer, take two training steps, report memory (MB).
    CPU: the process's peak RSS during the steps (Linux high-water mark, reset before them) and its
    growth over the RSS before them; CUDA: peak allocated during the steps."""
    import torch
    t = make_trainer(trainer_class(trainer_name), configuration, device)
    regularisers_on(t)
    batch = make_batch(t)
    with open("/proc/self/clear_refs", "w") as fh:   # resets VmHWM, the peak RSS
        fh.write("5")
    rss_before = _status_mb("VmRSS")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        t.train_step(batch)
    peak = _status_mb("VmHWM")
    result = {"peak_rss_mb": peak, "step_rss_mb": peak - rss_before}
    if device == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return result


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024      # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_memory(configuration: str, device: str) -> Dict[str, Dict[str, float]]:
    import subprocess
    out = {}
    for name in ("nnUNetTrainer", "DANTETrainer", "DANTETrainer_checkpointing", "DANTEPretrainTrainer"):
        extra = ["--patch-size", str(PATCH_EDGE)] if PATCH_EDGE else []
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-probe", name,
                            "--configuration", configuration, "--device", device, "--json", "-"] + extra,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"memory probe of {name} failed:\n{p.stderr[-3000:]}")
        out[name] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="output file")
    p.add_argument("--configuration", default="tiny", choices=sorted(CONFIGURATIONS))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--patch-size", type=int, help="cubic patch edge instead of the configuration's patch")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)   # internal: one trainer, in a fresh process
    args = p.parse_args(argv)
    global PATCH_EDGE
    PATCH_EDGE = args.patch_size
    if args.memory_probe:
        _scratch_environment()
        result = peak_memory_probe(args.memory_probe, args.configuration, args.device)
        print(json.dumps(result))
        return 0
    if os.path.exists(args.json):
        print(f"{args.json} exists; not overwriting it", file=sys.stderr)
        return 2
    _scratch_environment()
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from dante_nnunet.training import DANTEPretrainTrainer, DANTETrainer, DANTETrainer_checkpointing

    cfg = args.configuration
    stock = make_trainer(nnUNetTrainer, cfg, args.device)
    dante = make_trainer(DANTETrainer, cfg, args.device)
    regularisers_on(dante)
    ckpt = make_trainer(DANTETrainer_checkpointing, cfg, args.device)
    regularisers_on(ckpt)
    pre = make_trainer(DANTEPretrainTrainer, cfg, args.device)
    frozen = make_trainer(DANTETrainer, cfg, args.device)
    frozen.dual_network().transferred_from = "bench"
    frozen.current_epoch = 0
    frozen._set_encoders_frozen(True)
    frozen.loss.lambda_pib, frozen.loss.lambda_align = 0.0, 0.0
    dante_unreg = make_trainer(DANTETrainer, cfg, args.device)   # same schedule point as `frozen`, not frozen

    batch, pre_batch = make_batch(stock), make_batch(pre)
    print(f"[bench] {cfg}: patch {stock.configuration_manager.patch_size}, batch "
          f"{stock.configuration_manager.batch_size}, device {args.device}, torch {torch.__version__}", flush=True)
    times = time_alternating({
        "nnUNetTrainer": lambda: stock.train_step(batch),
        "DANTETrainer": lambda: dante.train_step(batch),
        "DANTETrainer_checkpointing": lambda: ckpt.train_step(batch),
        "DANTEPretrainTrainer": lambda: pre.train_step(pre_batch),
        "DANTETrainer_frozen_encoders": lambda: frozen.train_step(batch),
        "DANTETrainer_before_regularisers": lambda: dante_unreg.train_step(batch),
    }, args.device, args.warmup, args.repeats)
    flops = {"nnUNetTrainer": count_step_flops(stock, batch), "DANTETrainer": count_step_flops(dante, batch),
             "DANTEPretrainTrainer": count_step_flops(pre, pre_batch)}
    volume = stock.configuration_manager.patch_size
    # the two deployed networks are the same computation: many cheap repeats to see through the noise
    inference = time_alternating(inference_contenders(dante, cfg, args.device, volume), args.device,
                                 2, max(3 * args.repeats, 15))
    memory = measure_memory(cfg, args.device)
    mem_key = "cuda_max_allocated_mb" if args.device == "cuda" else "peak_rss_mb"
    result = {
        "configuration": cfg, "patch_size": stock.configuration_manager.patch_size,
        "batch_size": stock.configuration_manager.batch_size, "device": args.device,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "train_step_ratio": times["DANTETrainer"] / times["nnUNetTrainer"],
        "pretrain_step_ratio": times["DANTEPretrainTrainer"] / times["nnUNetTrainer"],
        "flop_ratio": flops["DANTETrainer"] / flops["nnUNetTrainer"],
        "pretrain_flop_ratio": flops["DANTEPretrainTrainer"] / flops["nnUNetTrainer"],
        "frozen_step_ratio": times["DANTETrainer_frozen_encoders"] / times["DANTETrainer_before_regularisers"],
        "inference_ratio": inference["DANTETrainer"] / inference["nnUNetTrainer"],
        "memory_ratio": memory["DANTETrainer"][mem_key] / memory["nnUNetTrainer"][mem_key],
        "pretrain_memory_ratio": memory["DANTEPretrainTrainer"][mem_key] / memory["nnUNetTrainer"][mem_key],
        "step_memory_ratio": memory["DANTETrainer"]["step_rss_mb"] / memory["nnUNetTrainer"]["step_rss_mb"],
        "checkpointing_step_ratio": times["DANTETrainer_checkpointing"] / times["DANTETrainer"],
        "checkpointing_memory_ratio": memory["DANTETrainer_checkpointing"][mem_key] / memory["DANTETrainer"][mem_key],
        "inference_volume": volume,
        "times": times, "inference_times": inference, "flops": flops, "memory_mb": memory,
    }
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    for k in ("train_step_ratio", "flop_ratio", "pretrain_step_ratio", "pretrain_flop_ratio", "frozen_step_ratio",
              "inference_ratio", "memory_ratio", "step_memory_ratio", "pretrain_memory_ratio",
              "checkpointing_step_ratio",              "checkpointing_memory_ratio"):
        print(f"{k:>22}: {result[k]:.3f}")
    for k, v in times.items():
        print(f"{'train step ' + k:>45}: {v * 1000:.1f} ms")
    for k, v in inference.items():
        print(f"{'sliding-window prediction ' + k:>45}: {v * 1000:.1f} ms")
    for k, v in memory.items():
        print(f"{'memory ' + k:>45}: " + ", ".join(f"{m} {x:.0f}" for m, x in v.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
