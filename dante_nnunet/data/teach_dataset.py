"""The dataset steps of the gated privileged-teacher recipe (``dante_nnunet teach``, jobs/teach.py).

The recipe cross-validates three models on the folds of a labelled dataset: the teacher (every channel,
the privileged one included), the plain model (the limited channels) and the student (the limited
channels, trained on the fold's labelled cases plus scans the fold's teacher labelled). What lives here:

- ``check_scans``: the unlabelled scans have every channel (a scan that lacks a privileged channel is named
  as such), no scan shares a name with a labelled case, and no scan *is* a labelled or test case (the same
  voxels on the limited channels, whatever its name), so no case the models are judged on is ever
  pseudo-labelled.
- ``teach_splits``: the labelled dataset's ``splits_final.json`` (nnU-Net's own seeded 5-fold split,
  written the way ``nnUNetTrainer.do_split`` writes it, when there is none yet), checked against the folds.
- ``stability``: what fold k records per scan, from fold k's teacher's probabilities only (its own
  confidence); ``keep_most_stable`` the filter on it. (The fold teachers' agreement, a diagnostic, is
  ``jobs/teach.agreement``: it needs the Dice of the job layer.)
- ``write_student_dataset`` / ``student_splits``: ONE raw dataset for every fold's student. It holds the
  labelled cases of the folds and, per fold k, a copy of each kept scan named ``pl<k>_<scan>`` with fold k's
  teacher's label. Fold k of its ``splits_final.json`` trains on fold k's training cases plus the
  ``pl<k>_`` scans and validates on fold k's validation cases: the student of fold k learns only from what
  fold k's training cases teach, and it is scored on the same annotated cases as the plain model.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json, save_json

from dante_nnunet.config import ChannelSplit
from dante_nnunet.data.pretrain_dataset import _find_cases
from dante_nnunet.data.pseudo_label_dataset import _case_files, _labelled_cases, check_pseudo_labels, dante_block_of
from dante_nnunet.data.rawdata import new_dataset_folder, read_whole

NNUNET_SPLIT_SEED = 12345   # nnUNetTrainer.do_split (2.8.1): generate_crossval_split(sorted ids, seed=12345, n_splits=5)
NNUNET_NUM_FOLDS = 5


def pseudo_case_name(fold: int, scan: str) -> str:
    """The student dataset's name of fold ``fold``'s copy of ``scan``."""
    return f"pl{int(fold)}_{scan}"


def ensemble_case_name(scan: str) -> str:
    """The deployed student's dataset's name of ``scan`` labelled by the fold teachers' ensemble."""
    return f"ens_{scan}"


# ------------------------------------------------------------------------------------------ checks
def check_scans(scans_dir: str, source: str) -> Dict[str, List[str]]:
    """{scan: its channel files, one per channel of ``source``'s dataset.json}, checked as the module says
    (names; channels), before anything is read whole. The voxel check is ``check_not_labelled_or_test``."""
    dj_file = join(source, "dataset.json")
    dj = load_json(dj_file)
    split = ChannelSplit.from_dataset_json(dj, dj_file)
    if not split.privileged_indices:
        raise ValueError(f"{dj_file} names no privileged channel (\"dante\": {{\"privileged_channels\": [...]}}): "
                         f"the teacher has nothing the plain model lacks")
    ending = dj["file_ending"]
    if not os.path.isdir(scans_dir):
        raise FileNotFoundError(f"scan folder {scans_dir} does not exist")
    pattern = re.compile(r"^.+_\d{4}" + re.escape(ending) + "$")
    stray = [f for f in sorted(os.listdir(scans_dir)) if not f.startswith(".")
             and not os.path.isdir(join(scans_dir, f)) and not pattern.match(f)]
    if stray:
        raise ValueError(f"{join(scans_dir, stray[0])}: not a scan's channel file (<case>_XXXX{ending}); the scan "
                         f"folder must hold only the scans' channel files" + (f" ({len(stray)} such files)"
                                                                               if len(stray) > 1 else ""))
    try:
        scans = _find_cases([scans_dir], ending, split.num_channels)
    except ValueError as e:
        # the commonest mistake: a folder of limited-channel scans; say which channel is missing
        limited = _find_cases_or_none(scans_dir, ending, len(split.limited_indices))
        if limited:
            case = next(iter(limited))
            raise ValueError(f"scan {case!r} of {scans_dir} has {len(split.limited_indices)} channel files; the "
                             f"teacher reads all {split.num_channels} ({', '.join(split.channel_names)}): the "
                             f"privileged channel(s) {', '.join(split.privileged_names)} are missing. The scans "
                             f"must have every channel, numbered as in {dj_file}") from None
        raise ValueError(f"{e}; the scans must have every channel of {dj_file}, the privileged "
                         f"{', '.join(split.privileged_names)} included") from None
    taken = sorted(set(scans) & set(_labelled_cases(source, ending)))
    if taken:
        raise ValueError(f"scan {taken[0]!r} of {scans_dir} has the name of a labelled case of {source}; rename "
                         f"the scan (or, if it is that case, leave it out: its label is known)")
    bad = [s for s in scans if s.startswith("pl") and s[2:3].isdigit()]
    if bad:
        raise ValueError(f"scan {bad[0]!r} of {scans_dir}: names 'pl<digit>...' are the recipe's own; rename it")
    return scans


def check_labelled_cases(source: str) -> None:
    """The labelled dataset holds what the recipe needs of every case: each labelled case has every channel
    (the teacher reads the privileged one on every training case and the student's validation compares on
    the same cases) and none is an unlabelled case (``dante.unlabelled_cases``: a label that is the ignore
    label everywhere; ``dante_nnunet add-scans`` writes such datasets for DANTETrainer_teach, not for
    teach). Refused before any work, naming the case."""
    dj_file = join(source, "dataset.json")
    dj = load_json(dj_file)
    split = ChannelSplit.from_dataset_json(dj, dj_file)
    ending = dj["file_ending"]
    cases = _labelled_cases(source, ending)
    unlabelled = sorted(set((dj.get("dante") or {}).get("unlabelled_cases", [])) & set(cases))
    if unlabelled:
        raise ValueError(f"{dj_file} lists {len(unlabelled)} unlabelled case(s) (dante.unlabelled_cases, e.g. "
                         f"{unlabelled[0]!r}): teach needs a dataset of labelled cases only; give it the labelled "
                         f"dataset and the scans as --scans")
    for case in cases:
        files = _case_files(source, case, split, ending)
        if len(files) != split.num_channels:
            raise ValueError(f"labelled case {case!r} of {source} has {len(files)} of the {split.num_channels} channel "
                             f"files ({', '.join(split.channel_names)}): the teacher trains on every channel of every "
                             f"case; teach needs the privileged channel on every labelled case")


def _find_cases_or_none(folder: str, ending: str, num_channels: int):
    try:
        return _find_cases([folder], ending, num_channels)
    except ValueError:
        return None


def _voxel_key(case: str, files: Sequence[str]) -> str:
    """A hash of the voxels (and shape) of ``files`` in order: equal keys, equal images."""
    h = hashlib.sha1()
    for f in files:
        arr = np.ascontiguousarray(read_whole(case, f))
        h.update(str(arr.shape).encode())
        h.update(arr.astype(np.float64).tobytes())
    return h.hexdigest()


def check_not_labelled_or_test(scans: Mapping[str, Sequence[str]], source: str,
                               extra_limited_dirs: Sequence[str] = ()) -> None:
    """Refuse a scan whose limited channels have the same voxels as a labelled case's (``imagesTr``) or a
    test case's: ``imagesTs`` (limited channels only, renumbered, as this package writes it),
    ``imagesTs_allchannels``, and any folder of limited-only cases in ``extra_limited_dirs``. Names the scan
    and the case it repeats."""
    dj = load_json(join(source, "dataset.json"))
    split = ChannelSplit.from_dataset_json(dj, join(source, "dataset.json"))
    ending = dj["file_ending"]
    lim = list(split.limited_indices)
    known: Dict[str, str] = {}
    for case in _labelled_cases(source, ending):
        files = [join(source, "imagesTr", f"{case}_{c:04d}{ending}") for c in lim]
        known.setdefault(_voxel_key(case, files), f"labelled case {case!r} ({join(source, 'imagesTr')})")
    folders = [(join(source, "imagesTs_allchannels"), split.num_channels, lim)]
    folders += [(d, len(lim), list(range(len(lim)))) for d in [join(source, "imagesTs"), *extra_limited_dirs]]
    for folder, n, take in folders:
        if not isdir(folder):
            continue
        cases = _find_cases_or_none(folder, ending, n)
        if cases is None:   # another layout (e.g. every channel in imagesTs): compare what it has
            cases = _find_cases_or_none(folder, ending, split.num_channels)
            take = lim
        for case, files in (cases or {}).items():
            known.setdefault(_voxel_key(case, [files[i] for i in take]), f"test case {case!r} ({folder})")
    for scan, files in scans.items():
        key = _voxel_key(scan, [files[c] for c in lim])
        if key in known:
            raise ValueError(f"scan {scan!r} ({os.path.dirname(files[0])}) has the same voxels as {known[key]}: a "
                             f"case the models are trained or judged on must not be pseudo-labelled; remove it "
                             f"from the scans")


def teach_splits(source: str, preprocessed: str, folds: Sequence[int], write: bool = True) -> List[dict]:
    """The labelled dataset's folds (``preprocessed``/splits_final.json). Without the file, nnU-Net's own
    split (what its first training would write: 5 folds of the sorted labelled cases, seed 12345), written
    there when ``write``. Refuses folds the file lacks, a fold without training or validation cases, and
    fewer labelled cases than nnU-Net's 5 folds need."""
    dj = load_json(join(source, "dataset.json"))
    cases = _labelled_cases(source, dj["file_ending"])
    f = join(preprocessed, "splits_final.json")
    if isfile(f):
        splits = load_json(f)
    else:
        if len(cases) < NNUNET_NUM_FOLDS:
            raise ValueError(f"{source} has {len(cases)} labelled case(s); nnU-Net's {NNUNET_NUM_FOLDS}-fold split "
                             f"needs at least {NNUNET_NUM_FOLDS} (or write {f} yourself)")
        from nnunetv2.utilities.crossval_split import generate_crossval_split
        splits = generate_crossval_split(sorted(cases), seed=NNUNET_SPLIT_SEED, n_splits=NNUNET_NUM_FOLDS)
        if write:
            os.makedirs(preprocessed, exist_ok=True)
            save_json(splits, f)
    if not folds:
        raise ValueError("no folds given")
    for k in folds:
        if not 0 <= int(k) < len(splits):
            raise ValueError(f"fold {k}: {f} has folds 0..{len(splits) - 1}")
        s = splits[int(k)]
        if not s.get("train") or not s.get("val"):
            raise ValueError(f"fold {k} of {f} has {len(s.get('train', []))} training and {len(s.get('val', []))} "
                             f"validation cases; each fold needs both")
        unknown = sorted((set(s["train"]) | set(s["val"])) - set(cases))
        if unknown:
            raise ValueError(f"fold {k} of {f} names case {unknown[0]!r}, which is not in {join(source, 'labelsTr')}")
        both = sorted(set(s["train"]) & set(s["val"]))
        if both:
            raise ValueError(f"fold {k} of {f} trains and validates on case {both[0]!r}"
                             + (f" (and {len(both) - 1} more)" if len(both) > 1 else "")
                             + ": its validation would not be held out")
    seen: Dict[str, int] = {}
    for k in folds:
        for c in splits[int(k)]["val"]:
            if c in seen and seen[c] != int(k):
                raise ValueError(f"folds {seen[c]} and {k} of {f} both validate on case {c!r}: the decision pools "
                                 f"each validation case once; choose folds whose validation cases differ")
            seen[c] = int(k)
    taken = sorted(c for c in cases if c.startswith("pl") and c[2:3].isdigit())
    if taken:
        raise ValueError(f"labelled case {taken[0]!r} of {source}: names 'pl<digit>...' are the recipe's own "
                         f"(fold k's pseudo-labelled copies); rename the case")
    return splits


# ------------------------------------------------------------------------------------------ per-scan record
def stability(probabilities: np.ndarray, low: float = 0.1, high: float = 0.9) -> float:
    """How sure one teacher is of one scan: per output channel c (a region, or a label's softmax channel,
    background left out by the caller), U_c = #voxels with low < p_c < high (unsure) and P_c = #voxels with
    p_c >= high (sure foreground); the scan's stability is min over channels of 1 - U_c / (U_c + P_c), and a
    channel with U_c + P_c = 0 (nothing there, surely) counts 1. 1 = every foreground voxel is sure;
    0 = none is. ``probabilities``: (channels, ...) in [0, 1]."""
    p = np.asarray(probabilities, dtype=np.float64)
    values = []
    for c in range(p.shape[0]):
        unsure = int(np.count_nonzero((p[c] > low) & (p[c] < high)))
        sure = int(np.count_nonzero(p[c] >= high))
        values.append(1.0 if unsure + sure == 0 else 1.0 - unsure / (unsure + sure))
    return float(min(values)) if values else 1.0


def keep_most_stable(scores: Mapping[str, float], keep_fraction: float) -> List[str]:
    """The ceil(keep_fraction * n) scans of highest score (ties by name), sorted by name."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep fraction must be in (0, 1], got {keep_fraction}")
    n = math.ceil(keep_fraction * len(scores) - 1e-9)
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    return sorted(ranked[:n])


# ------------------------------------------------------------------------------------------ student dataset
def mask_unsure(seg: np.ndarray, probabilities: np.ndarray, band: float, ignore_label: int,
                has_regions: bool) -> np.ndarray:
    """The teacher's label map with the voxels it is unsure of set to ``ignore_label`` (nnU-Net's ignore label:
    those voxels add nothing to the student's loss). Regions (``probabilities``: one sigmoid channel per
    region): voxel v is unsure when 1 - band < p_r(v) < band for some region r. Labels (softmax channels,
    background first): when max_c p_c(v) < band. ``band`` in (0.5, 1); 0.9 is the band of ``stability``
    (sure = p <= 0.1 or p >= 0.9). ``seg`` and each channel share one shape; the input is not changed."""
    if not 0.5 < band < 1.0:
        raise ValueError(f"the unsure band must be in (0.5, 1), got {band}")
    p = np.asarray(probabilities)
    if p.shape[1:] != seg.shape:
        raise ValueError(f"probabilities of shape {p.shape[1:]} do not match the label map's {seg.shape}")
    if has_regions:
        unsure = np.any((p > 1.0 - band) & (p < band), axis=0)
    else:
        unsure = p.max(axis=0) < band
    out = np.array(seg, copy=True)
    out[unsure] = ignore_label
    return out


def ignore_label_of(dataset_json: dict) -> int:
    """The dataset's ignore label, or the value nnU-Net requires for a new one (the largest label + 1)."""
    labels = dataset_json["labels"]
    if "ignore" in labels:
        return int(labels["ignore"])
    return 1 + max(max(v) if isinstance(v, (list, tuple)) else v for v in labels.values())


def real_repeats(n_real: int, n_pseudo: int, real_share: Optional[float]) -> int:
    """How many times each real case is listed in a student fold's training split, so that real cases make
    about ``real_share`` of the cases nnU-Net's data loader draws (it draws uniformly from the split's list,
    repeats included): r = max(1, round(share / (1 - share) x n_pseudo / n_real)). ``None``: 1, each case
    once (the real share is then n_real / (n_real + n_pseudo))."""
    if real_share is None or n_pseudo == 0 or n_real == 0:
        return 1
    if not 0.0 < real_share < 1.0:
        raise ValueError(f"the real cases' share must be in (0, 1), got {real_share}")
    return max(1, int(round(real_share / (1.0 - real_share) * n_pseudo / n_real)))


def student_splits(splits: Sequence[dict], folds: Sequence[int], kept: Mapping[int, Sequence[str]],
                   real_share: Optional[float] = None) -> List[dict]:
    """splits_final.json of the student dataset: fold k (one of ``folds``) = fold k's training cases (each
    listed ``real_repeats`` times) + its kept scans' ``pl<k>_`` copies, fold k's validation cases; other
    folds as in ``splits`` (no scans)."""
    out = []
    for k, s in enumerate(splits):
        if k in folds:
            r = real_repeats(len(s["train"]), len(kept[k]), real_share)
            train = list(s["train"]) * r + [pseudo_case_name(k, c) for c in kept[k]]
        else:
            train = list(s["train"])
        out.append({"train": sorted(train), "val": sorted(s["val"])})
    return out


def write_student_dataset(source: str, scans: Mapping[str, Sequence[str]], labels: Mapping[int, str],
                          kept: Mapping[int, Sequence[str]], splits: Sequence[dict], folds: Sequence[int],
                          raw_root: str, folder_name: str, settings: Optional[dict] = None,
                          unsure_band: Optional[float] = None, ensemble: bool = False) -> str:
    """The student dataset (module docstring) as ``raw_root/folder_name``, written into a temporary folder
    and renamed. ``labels[k]``: fold k's teacher's predictions of every scan; ``kept[k]``: the scans fold k
    keeps. Every prediction is checked (one per scan, on its grid, known label values) before writing.
    ``unsure_band``: each copy's label is ``mask_unsure`` of fold k's teacher's label and probabilities
    (``labels[k]/<scan>.npz``, nnUNetv2_predict --save_probabilities), the ignore label added to the
    dataset.json, and the masked share of each copy's voxels recorded there (``pseudo_label_masking``).
    ``ensemble``: the deployed student's dataset instead (one fold, ``labels[0]`` the fold teachers'
    ensemble labels, ``ensemble_labels``; copies named ``ens_<scan>``)."""
    dj = load_json(join(source, "dataset.json"))
    ending = dj["file_ending"]
    split = ChannelSplit.from_dataset_json(dj, join(source, "dataset.json"))
    scans_dir = os.path.dirname(next(iter(scans.values()))[0])
    for k in folds:
        check_pseudo_labels(scans_dir, labels[k], dj, source)
    labelled = sorted({c for k in folds for c in list(splits[k]["train"]) + list(splits[k]["val"])})
    pseudo = []
    masked: Dict[str, float] = {}
    ignore, order = ignore_label_of(dj), dj.get("regions_class_order")
    if unsure_band is not None:
        if not 0.5 < unsure_band < 1.0:
            raise ValueError(f"the unsure band must be in (0.5, 1), got {unsure_band}")
        missing = [join(labels[k], c + ".npz") for k in folds for c in kept[k] if not isfile(join(labels[k], c + ".npz"))]
        if missing:
            raise FileNotFoundError(f"{missing[0]} does not exist ({len(missing)} missing): masking unsure voxels needs "
                                    f"the teacher's probabilities (nnUNetv2_predict --save_probabilities)")
    with new_dataset_folder(raw_root, folder_name) as tmp:
        for case in labelled:
            for f in _case_files(source, case, split, ending):
                shutil.copyfile(f, join(tmp, "imagesTr", os.path.basename(f)))
            shutil.copyfile(join(source, "labelsTr", case + ending), join(tmp, "labelsTr", case + ending))
        for k in folds:
            for scan in kept[k]:
                name = ensemble_case_name(scan) if ensemble else pseudo_case_name(k, scan)
                pseudo.append(name)
                for c, f in enumerate(scans[scan]):
                    shutil.copyfile(f, join(tmp, "imagesTr", f"{name}_{c:04d}{ending}"))
                if unsure_band is None:
                    shutil.copyfile(join(labels[k], scan + ending), join(tmp, "labelsTr", name + ending))
                else:
                    masked[name] = _write_masked(join(labels[k], scan), ending, join(tmp, "labelsTr", name + ending),
                                                 unsure_band, ignore, order)
        out = dict(dj)
        if unsure_band is not None:
            out["labels"] = {**dj["labels"], "ignore": ignore}
            out["pseudo_label_masking"] = {"unsure_band": unsure_band, "ignore_label": ignore,
                                           "masked_fraction": masked}
        out.update({"numTraining": len(labelled) + len(pseudo), "name": folder_name.split("_", 1)[1],
                    "dante": dante_block_of(dj, labelled),
                    "description": f"dante_nnunet teach: {len(labelled)} labelled cases of "
                                   f"{os.path.basename(source)} and "
                                   + (f"the scans of {scans_dir} labelled by the fold teachers' ensemble (ens_<scan>), "
                                      f"for the deployed student" if ensemble else
                                      f"per fold k of {list(folds)}, the scans of {scans_dir} labelled by fold k's "
                                      f"teacher (pl<k>_<scan>)"),
                    "pseudo_labelled_cases": sorted(pseudo)})
        if settings is not None:
            out["teach"] = settings
        save_json(out, join(tmp, "dataset.json"), sort_keys=False)
    return join(raw_root, folder_name)


def labels_from_probabilities(probabilities: np.ndarray, regions_class_order: Optional[Sequence[int]]) -> np.ndarray:
    """The label map nnU-Net makes of its probabilities: regions, each region's p > 0.5 painted in
    ``regions_class_order`` (later ones over earlier ones); labels, the argmax."""
    p = np.asarray(probabilities)
    if regions_class_order is None:
        return np.argmax(p, axis=0)
    out = np.zeros(p.shape[1:], dtype=np.int16)
    for channel, value in zip(p, regions_class_order):
        out[channel > 0.5] = value
    return out


def ensemble_labels(label_dirs: Sequence[str], scans: Sequence[str], ending: str, out_dir: str,
                    regions_class_order: Optional[Sequence[int]]) -> str:
    """The fold teachers' ensemble labels of ``scans`` into ``out_dir`` (new): per scan, the mean over
    ``label_dirs`` of each teacher's probabilities (``<scan>.npz``, nnUNetv2_predict --save_probabilities),
    made a label map as nnU-Net makes one (``labels_from_probabilities``; what ``nnUNetv2_predict -f`` with
    several folds writes) on the grid of the first folder's ``<scan><ending>``. Every file is read and checked
    (present; each scan's probabilities of one shape and reproducing the first folder's label map) before
    the folder is complete: written into a temporary folder and renamed, removed on an error."""
    if isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists; the ensemble labels are written into a new folder")
    for scan in scans:
        for d in label_dirs:
            for f in (join(d, scan + ".npz"), join(d, scan + ending)):
                if not isfile(f):
                    raise FileNotFoundError(f"{f} does not exist: the ensemble needs every fold teacher's label and "
                                            f"probabilities of every scan (nnUNetv2_predict --save_probabilities)")
    tmp = out_dir.rstrip("/") + ".partial"
    if isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        _write_ensemble(label_dirs, scans, ending, tmp, regions_class_order)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, out_dir)
    return out_dir


def _write_ensemble(label_dirs: Sequence[str], scans: Sequence[str], ending: str, out_dir: str,
                    regions_class_order: Optional[Sequence[int]]) -> None:
    import SimpleITK as sitk
    for scan in scans:
        probs = [np.load(join(d, scan + ".npz"))["probabilities"].astype(np.float32) for d in label_dirs]
        if len({p.shape for p in probs}) != 1:
            raise ValueError(f"{scan}: the fold teachers' probabilities differ in shape "
                             f"({', '.join(f'{d}: {p.shape}' for d, p in zip(label_dirs, probs))})")
        image = sitk.ReadImage(join(label_dirs[0], scan + ending))
        first = sitk.GetArrayFromImage(image)
        if probs[0].shape[1:] != first.shape or \
                np.mean(labels_from_probabilities(probs[0], regions_class_order) != first) > 0.001:
            raise ValueError(f"{join(label_dirs[0], scan + '.npz')}: its probabilities do not reproduce "
                             f"{join(label_dirs[0], scan + ending)}; both must come from one nnUNetv2_predict "
                             f"--save_probabilities run")
        seg = labels_from_probabilities(np.mean(probs, axis=0), regions_class_order)
        written = sitk.GetImageFromArray(seg.astype(np.uint8))
        written.CopyInformation(image)
        sitk.WriteImage(written, join(out_dir, scan + ending))


def _write_masked(prediction: str, ending: str, out_file: str, band: float, ignore: int,
                  regions_class_order: Optional[Sequence[int]]) -> float:
    """``prediction + ending`` with its unsure voxels (``mask_unsure``, probabilities from ``prediction.npz``)
    set to ``ignore``, written to ``out_file`` on the prediction's grid; returns the masked share of voxels.
    The probabilities must reproduce the label map where the teacher is sure (a file of another scan, or
    axes in another order, does not)."""
    import SimpleITK as sitk
    image = sitk.ReadImage(prediction + ending)
    seg = sitk.GetArrayFromImage(image)
    probs = np.load(prediction + ".npz")["probabilities"]
    if probs.shape[1:] != seg.shape:
        raise ValueError(f"{prediction}.npz: probabilities of shape {probs.shape[1:]} do not match "
                         f"{prediction + ending}'s {seg.shape}")
    has_regions = regions_class_order is not None
    out = mask_unsure(seg, probs, band, ignore, has_regions)
    sure = out != ignore
    if np.mean(labels_from_probabilities(probs, regions_class_order)[sure] != seg[sure]) > 0.001:
        raise ValueError(f"{prediction}.npz: its probabilities do not reproduce {prediction + ending} where the "
                         f"teacher is sure; both must come from one nnUNetv2_predict --save_probabilities run")
    written = sitk.GetImageFromArray(out.astype(seg.dtype))
    written.CopyInformation(image)
    sitk.WriteImage(written, out_file)
    return float(np.mean(out == ignore))
