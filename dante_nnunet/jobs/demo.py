"""The embedded default job: a BraTS-like phantom (``phantom --kind rim``, 4 channels) -> plan ->
DANTE training -> prediction on limited-only scans -> export -> plugin-free prediction -> Dice, all
through the stock nnUNetv2_* commands on the CPU (``nnunet_jobs``)."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.jobs.evaluation import evaluate_folders
from dante_nnunet.jobs.nnunet_jobs import add_configuration, nnunet_environment, run_command
from dante_nnunet.data.phantom import write_phantom


def run_demo(workdir: str, dataset_id: int = 990, trainer: str = "DANTETrainer_demo",
             configuration: str = "3d_demo", num_train: int = 10, num_test: int = 4, seed: int = 0,
             device: str = "cpu", shape: Sequence[int] = (32, 32, 32),
             features_per_stage: Union[int, Sequence[int]] = (8, 16, 32, 64), patch_size: Sequence[int] = (16, 16, 16),
             extra_env: Optional[Dict[str, str]] = None) -> dict:
    """The demo's job. ``device``, the phantom's ``shape`` and the added configuration's widths and patch
    default to the CPU demo (an int width: the first stage's, doubled per stage up to 320); the GPU check
    (scripts/gpu_check.py) runs it at a BraTS-sized configuration. ``extra_env``: further environment for
    every command (e.g. ``nnUNet_compile``)."""
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and os.listdir(workdir):
        raise FileExistsError(f"{workdir} exists and is not empty; choose a new --workdir or remove it")
    env = dict(nnunet_environment(workdir), **(extra_env or {}))
    logs = join(workdir, "logs")
    os.makedirs(logs)
    times: Dict[str, float] = {}

    def step(key: str, cmd, step_env=env) -> None:
        times[key] = run_command(cmd, step_env, join(logs, f"{key}.log")).seconds

    raw = write_phantom("rim", dataset_id, "DANTESynthetic", num_train=num_train, num_test=num_test, seed=seed,
                        shape=tuple(shape), raw_root=env["nnUNet_raw"])
    dataset_name = os.path.basename(raw)
    step("plan_and_preprocess", ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", "1",
                                 "-npfp", "1", "--verify_dataset_integrity"])
    add_configuration(join(env["nnUNet_preprocessed"], dataset_name, "nnUNetPlans.json"), configuration,
                      features_per_stage=features_per_stage if isinstance(features_per_stage, int) else list(features_per_stage),
                      patch_size=list(patch_size))
    step("train", ["nnUNetv2_train", dataset_id, configuration, "0", "-tr", trainer, "-device", device])
    pred_dante = join(workdir, "pred_dante")
    step("predict", ["nnUNetv2_predict", "-i", join(raw, "imagesTs"), "-o", pred_dante, "-d", dataset_id,
                     "-c", configuration, "-tr", trainer, "-f", "0", "-device", device])
    export_root = join(workdir, "exported")
    step("export", ["dante_nnunet", "export", "-d", dataset_id, "-c", configuration, "-tr", trainer, "-f", "0",
                    "-o", export_root])
    plain_env = dict(env, nnUNet_results=export_root)
    plain_env.pop("nnUNet_extTrainer")
    pred_plain = join(workdir, "pred_plain")
    step("predict_plain", ["nnUNetv2_predict", "-i", join(raw, "imagesTs"), "-o", pred_plain, "-d", dataset_id,
                           "-c", configuration, "-f", "0", "-device", device], plain_env)

    identical = all(
        np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(join(pred_dante, f))),
                       sitk.GetArrayFromImage(sitk.ReadImage(join(pred_plain, f))))
        for f in sorted(os.listdir(join(raw, "labelsTs"))))
    metrics = evaluate_folders(join(raw, "labelsTs"), pred_dante, load_json(join(raw, "dataset.json")))
    dice = {r: round(m["dice"], 4) for r, m in metrics["mean"].items()}
    hd95 = {r: round(m["hd95"], 2) for r, m in metrics["mean"].items()}
    val_summary = join(env["nnUNet_results"], dataset_name, f"{trainer}__nnUNetPlans__{configuration}", "fold_0")
    val = {k: load_json(join(val_summary, *p, "validation", "summary.json"))["foreground_mean"]["Dice"]
           for k, p in (("limited", ()), ("full_teacher", ("full_pathway",)))
           if isfile(join(val_summary, *p, "validation", "summary.json"))}
    outputs = {"predictions_dante": pred_dante, "predictions_plain_nnunet": pred_plain,
               "exported_model": join(export_root, dataset_name, f"nnUNetTrainer__nnUNetPlans__{configuration}"),
               "training_curves": join(val_summary, "progress.png"),
               "feature_diagnostics": join(val_summary, "diagnostics.png"), "logs": logs,
               "summary": join(workdir, "summary.json")}
    summary = {"workdir": workdir, "trainer": trainer, "configuration": configuration, "device": device,
               "seconds": times,
               "test_dice_limited_only_inputs": dice, "test_hd95_mm_limited_only_inputs": hd95,
               "validation_mean_dice": val,
               "plain_nnunet_prediction_identical": identical, "outputs": outputs}
    save_json(summary, join(workdir, "summary.json"))
    print(json.dumps(summary, indent=2))
    print(f"\ntest Dice from the limited channels only: {', '.join(f'{r} {v:.3f}' for r, v in dice.items())}\n"
          + ("the exported plain nnU-Net model (no plugin) predicted every test case identically to the DANTE model"
             if identical else "the exported plain nnU-Net model predicted DIFFERENTLY from the DANTE model")
          + f"\neverything the demo wrote: {workdir} (summary.json lists each path)", flush=True)
    if not identical:
        raise RuntimeError("the exported plain nnU-Net model predicted differently from the DANTE model")
    return summary
