#!/usr/bin/env python
"""How good a teach run's pseudo-labels are, on a phantom whose scans' truth can be regenerated (issue 46):
python scripts/pseudo_label_quality.py TEACH_WORK_DIR --kind imperfect --seed 9 [--shape 32 32 32] [--band 0.9]

TEACH_WORK_DIR is nnUNet_results/<student dataset>/teach. Each scan j of a phantom's imagesUnlabelled is the
case of stream [seed, 3, j] (data/phantom.py), so its label is regenerated here and each fold's teacher's
prediction (fold_k/teacher_predictions, or --round r's) is scored against it: ET and TC Dice per tumour
type (kinds with types), and which share of the ET-error voxels the teacher was unsure of (some region's
probability in (1 - band, band): what --mask-unsure would ignore) and which share of the unsure voxels were
ET errors. A diagnostic of the phantoms only: real scans have no truth."""
import argparse
import os
import sys

import numpy as np
import SimpleITK as sitk

from dante_nnunet.data.phantom import KINDS, TUMOUR_TYPES


def dice(a, b):
    s = a.sum() + b.sum()
    return np.nan if s == 0 else 2 * (a & b).sum() / s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--seed", type=int, required=True, help="the phantom's dataset seed")
    p.add_argument("--shape", type=int, nargs=3, default=[32, 32, 32])
    p.add_argument("--band", type=float, default=0.9)
    p.add_argument("--round", type=int, default=0, help="teacher round (0: the first teachers)")
    a = p.parse_args()
    spec = KINDS[a.kind]
    folds = sorted(d for d in os.listdir(a.work) if d.startswith("fold_"))
    if not folds:
        sys.exit(f"{a.work} has no fold_k folders: not a teach work folder")
    for k in folds:
        pred_dir = os.path.join(a.work, k, "teacher_predictions" if a.round == 0 else f"round{a.round}_predictions")
        files = sorted(f for f in os.listdir(pred_dir) if f.endswith(".nii.gz"))
        rows = []
        for f in files:
            j = int(f[:-len(".nii.gz")].rsplit("_", 1)[1])
            typed = spec.get("test_types") is not None
            kind = TUMOUR_TYPES[int(np.random.default_rng([a.seed, 3, j]).integers(5))] if typed else "all"
            _, seg = spec["case"](np.random.default_rng([a.seed, 3, j]), tuple(a.shape))
            pred = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(pred_dir, f)))
            probs = np.load(os.path.join(pred_dir, f[:-len(".nii.gz")] + ".npz"))["probabilities"]
            unsure = np.any((probs > 1 - a.band) & (probs < a.band), axis=0)
            err = (seg == 3) ^ (pred == 3)
            rows.append((kind, dice(pred == 3, seg == 3), dice(pred >= 2, seg >= 2), err.sum(), (err & unsure).sum(),
                         unsure.sum()))
        print(f"{k} ({len(rows)} scans)")
        for kind in sorted({r[0] for r in rows}, key=lambda t: TUMOUR_TYPES.index(t) if t in TUMOUR_TYPES else -1):
            r = [x for x in rows if x[0] == kind]
            print(f"  {kind:7s} n={len(r):2d}  ET Dice {np.nanmean([x[1] for x in r]):.3f}  TC Dice "
                  f"{np.nanmean([x[2] for x in r]):.3f}  ET errors unsure {sum(x[4] for x in r) / max(1, sum(x[3] for x in r)):.2f}")
        print(f"  all: ET Dice {np.nanmean([x[1] for x in rows]):.3f}; ET-error voxels unsure "
              f"{sum(x[4] for x in rows) / max(1, sum(x[3] for x in rows)):.2f}; unsure voxels that are ET errors "
              f"{sum(x[4] for x in rows) / max(1, sum(x[5] for x in rows)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
