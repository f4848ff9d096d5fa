#!/usr/bin/env python
"""What a training's final validation costs against ``nnUNetv2_predict`` of the same cases, on the CPU.

    python scripts/bench_validation.py --workdir DIR [--json OUT.json] [--trainers LowerBoundTrainer_1epochs ...]

In a new folder DIR (through the job layer, ``dante_nnunet.jobs.nnunet_jobs``): the README walkthrough's
phantom (``--kind rim``, 10 training cases of 32^3) planned, a CPU configuration added (widths 8..64,
16^3 patch), each trainer trained for one epoch on fold 0; then, per trainer, timed whole commands:

- ``nnUNetv2_train ... --val`` as a user's shell runs it, nnU-Net's default worker pools
  (``nnUNet_def_n_proc=8`` given: what a run did before ``nnunet_followed.cpu_validation_workers``);
- the same with ``nnUNet_def_n_proc`` unset (the trainer's CPU pool size: the shipped behaviour);
- ``nnUNetv2_predict`` (nnU-Net's defaults, mirroring on as in the validation) of the same validation cases
  from the limited channels (all channels for the all-channel upper bound).

Each command includes its start-up. Prints seconds per validation case and the ratio validation /
prediction per case, before and after; ``--json`` writes them. The machine's load (``os.getloadavg``) is
printed beside: on 2 cores, other work changes the times by 1.5x or more.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="new or empty folder")
    p.add_argument("--json", default=None, help="write the measurements here")
    p.add_argument("--trainers", nargs="+", default=["LowerBoundTrainer_1epochs", "DANTETrainer_1epochs"])
    p.add_argument("--dataset-id", type=int, default=512)
    a = p.parse_args(argv)
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from dante_nnunet.config import ChannelSplit
    from dante_nnunet.data.phantom import write_phantom
    from dante_nnunet.jobs.nnunet_jobs import add_configuration, nnunet_environment, run_command

    if os.path.isdir(a.workdir) and os.listdir(a.workdir):
        p.error(f"{a.workdir} is not empty")
    root = os.path.abspath(a.workdir)
    env = nnunet_environment(root)
    logs = join(root, "logs")
    os.makedirs(logs)
    did = str(a.dataset_id)
    raw = write_phantom("rim", a.dataset_id, num_train=10, num_test=1, seed=0, shape=(32, 32, 32),
                        raw_root=env["nnUNet_raw"])
    name = os.path.basename(raw)
    run_command(["nnUNetv2_plan_and_preprocess", "-d", did, "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env,
                join(logs, "plan.log"))
    add_configuration(join(env["nnUNet_preprocessed"], name, "nnUNetPlans.json"), "3d_cpu",
                      features_per_stage=[8, 16, 32, 64], patch_size=[16, 16, 16])
    dj = load_json(join(raw, "dataset.json"))
    split = ChannelSplit.from_dataset_json(dj, join(raw, "dataset.json"))
    out = {"trainers": {}, "cpu_count": os.cpu_count()}
    for tr in a.trainers:
        run_command(["nnUNetv2_train", did, "3d_cpu", "0", "-tr", tr, "-device", "cpu"], env, join(logs, f"{tr}.log"))
        splits = load_json(join(env["nnUNet_preprocessed"], name, "splits_final.json"))
        val = splits[0]["val"]
        all_channels = tr.startswith("UpperBound")
        inputs = join(root, f"inputs_{tr}")
        os.makedirs(inputs)
        for case in val:
            take = range(split.num_channels) if all_channels else split.limited_indices
            for new, c in enumerate(take):
                shutil.copyfile(join(raw, "imagesTr", f"{case}_{c:04d}.nii.gz"), join(inputs, f"{case}_{new:04d}.nii.gz"))
        row = {"validation_cases": len(val)}
        for label, n_proc in (("val_before_s", "8"), ("val_after_s", None)):
            e = dict(env)
            e.pop("nnUNet_def_n_proc", None)
            if n_proc is not None:
                e["nnUNet_def_n_proc"] = n_proc
            load = os.getloadavg()[0]
            t0 = time.time()
            run_command(["nnUNetv2_train", did, "3d_cpu", "0", "-tr", tr, "-device", "cpu", "--val"], e,
                        join(logs, f"{tr}_{label}.log"), echo=False)
            row[label] = round(time.time() - t0, 1)
            row[label.replace("_s", "_load")] = round(load, 1)
        e = dict(env)
        e.pop("nnUNet_def_n_proc", None)
        load = os.getloadavg()[0]
        t0 = time.time()
        run_command(["nnUNetv2_predict", "-i", inputs, "-o", join(root, f"pred_{tr}"), "-d", did, "-c", "3d_cpu",
                     "-tr", tr, "-f", "0", "-device", "cpu"], e, join(logs, f"{tr}_predict.log"), echo=False)
        row["predict_s"] = round(time.time() - t0, 1)
        row["predict_load"] = round(load, 1)
        n = len(val)
        row["ratio_before"] = round(row["val_before_s"] / row["predict_s"], 2)
        row["ratio_after"] = round(row["val_after_s"] / row["predict_s"], 2)
        out["trainers"][tr] = row
        print(f"{tr}: final validation {row['val_before_s'] / n:.1f} s a case with nnU-Net's default pools, "
              f"{row['val_after_s'] / n:.1f} s with the CPU pool size; nnUNetv2_predict {row['predict_s'] / n:.1f} s "
              f"a case; validation / prediction {row['ratio_before']} -> {row['ratio_after']} "
              f"(load {row['val_before_load']}, {row['val_after_load']}, {row['predict_load']}; whole commands, "
              f"{n} cases)", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
