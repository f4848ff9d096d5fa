"""How often the swapped-channel warning of nnUNetv2_predict (dante_nnunet/deploy/channel_profile.py) fires on
correct inputs, and how often it catches each swap of two limited channels, on the BraTS-like phantoms.

For each phantom kind: a raw dataset (train and test cases), nnU-Net's own planning and preprocessing,
the reference profiles taken from the preprocessed training cases as the trainers take them, then every
test case's limited-channel files as given (correct) and with each pair of channels exchanged.

    python scripts/measure_swap_check.py --out docs/results/swap_check.json [--kinds rim types] [--seeds 0 1]
"""
import argparse
import itertools
import json
import os
import sys
import tempfile

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dante_nnunet.deploy.channel_profile import (case_profiles, looks_swapped, reference_profiles,  # noqa: E402
                                          swap_evidence)
from dante_nnunet.config import ChannelSplit  # noqa: E402
from dante_nnunet.jobs.nnunet_jobs import nnunet_environment, run_command  # noqa: E402
from dante_nnunet.data.phantom import write_phantom  # noqa: E402

BRATS_KINDS = ("brats", "rim", "transfer", "reference", "types")


def measure(kind: str, seed: int, root: str, num_train: int, num_test: int, shape) -> dict:
    env = nnunet_environment(root)
    dataset_id = 700 + BRATS_KINDS.index(kind) * 10 + seed
    raw = write_phantom(kind, dataset_id, num_train=num_train, num_test=num_test, seed=seed, shape=shape,
                        raw_root=env["nnUNet_raw"])
    name = os.path.basename(raw)
    run_command(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    folder = os.path.join(env["nnUNet_preprocessed"], name, "nnUNetPlans_3d_fullres")
    dataset_class = infer_dataset_class(folder)
    split = ChannelSplit.from_dataset_json(json.load(open(os.path.join(raw, "dataset.json"))))

    def load(key):
        data, seg, _, _ = dataset_class(folder, [key]).load_case(key)
        return data, np.asarray(seg[0]) >= 0
    keys = sorted(dataset_class.get_identifiers(folder))[:16]
    reference = reference_profiles(load, keys, split.limited_indices)
    names = list(split.limited_names)
    test = sorted({f[:-12] for f in os.listdir(os.path.join(raw, "imagesTs")) if f.endswith(".nii.gz")})
    pairs = list(itertools.combinations(range(len(names)), 2))
    fired, caught = 0, {f"{names[i]}<->{names[j]}": 0 for i, j in pairs}
    worst_correct, least_swapped = 0.0, {k: float("inf") for k in caught}
    for case in test:
        arrays = [sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(raw, "imagesTs", f"{case}_{c:04d}.nii.gz")))
                  for c in range(len(names))]
        fired += bool(looks_swapped(case_profiles(arrays), reference))
        worst_correct = max(worst_correct, strongest(case_profiles(arrays), reference))
        for i, j in pairs:
            swapped = list(arrays)
            swapped[i], swapped[j] = arrays[j], arrays[i]
            key = f"{names[i]}<->{names[j]}"
            caught[key] += bool(looks_swapped(case_profiles(swapped), reference))
            least_swapped[key] = min(least_swapped[key], strongest(case_profiles(swapped), reference))
    return {"kind": kind, "seed": seed, "test_cases": len(test), "fired_on_correct": fired, "caught": caught,
            "largest_ratio_on_correct": round(worst_correct, 3),
            "smallest_ratio_on_swapped": {k: round(v, 3) for k, v in least_swapped.items()}}


def strongest(profiles, reference) -> float:
    """The largest evidence ratio over the case's channels (0 if none): the warning fires above RATIO."""
    return max([r for _, r in swap_evidence(profiles, reference).values()], default=0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", nargs="+", default=list(BRATS_KINDS), choices=BRATS_KINDS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--num-train", type=int, default=16)
    ap.add_argument("--num-test", type=int, default=20)
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 32, 32])
    args = ap.parse_args()
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; not overwriting it")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for kind in args.kinds:
            for seed in args.seeds:
                row = measure(kind, seed, root, args.num_train, args.num_test, tuple(args.shape))
                print(json.dumps(row), flush=True)
                rows.append(row)
    total = sum(r["test_cases"] for r in rows)
    summary = {"fired_on_correct": sum(r["fired_on_correct"] for r in rows), "correct_cases": total,
               "caught": {k: sum(r["caught"][k] for r in rows) for k in rows[0]["caught"]}, "swapped_cases": total}
    with open(args.out, "w") as fh:
        json.dump({"rows": rows, "summary": summary}, fh, indent=1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
