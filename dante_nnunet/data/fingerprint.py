"""The privileged channels' intensity statistics without the placeholders of cases that lack the scan
(``dante_nnunet fingerprint -d ID``).

nnU-Net's CT normalisation clips each channel to the 0.5 / 99.5 percentiles of the foreground
intensities of the whole training set and z-scores it with their mean and SD
(``foreground_intensity_properties_per_channel`` of ``dataset_fingerprint.json``, copied into the
plans). A placeholder (zeros) of a case without its CTPA would enter those statistics as real
foreground intensities. This module recomputes them, for the privileged channels only, from the cases
that have the scan, the way nnU-Net computes them (its own ``DatasetFingerprintExtractor.analyze_case``
samples each case's foreground; the same number of samples per case, the same seed), writes them into
the fingerprint and records which cases were left out. Run it between ``nnUNetv2_extract_fingerprint``
and ``nnUNetv2_plan_experiment``. Z-score normalisation (MRI) is per image and reads none of this.

The statistics of the limited channels are nnU-Net's, untouched. ``tests/test_phantom.py`` (the CT phantom test)
checks, on nnU-Net's own fingerprint, that this computation over every case gives exactly its numbers.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json

from dante_nnunet.config import (ChannelSplit, DanteConfigError, cases_without_privileged,
                                 check_cases_without_privileged, non_constant_channels)

FINGERPRINT_KEY = "dante_privileged_statistics"   # in dataset_fingerprint.json: what this module changed
BACKUP_NAME = "dataset_fingerprint.nnunet.json"   # nnU-Net's fingerprint as it wrote it
PERCENTILES = (0.5, 50.0, 99.5)


def intensity_statistics(samples: np.ndarray) -> Dict[str, float]:
    """The seven numbers nnU-Net's fingerprint keeps per channel (DatasetFingerprintExtractor.run, 2.8.1)."""
    p00_5, median, p99_5 = np.percentile(samples, PERCENTILES)
    return {"mean": float(np.mean(samples)), "median": float(median), "std": float(np.std(samples)),
            "min": float(np.min(samples)), "max": float(np.max(samples)), "percentile_99_5": float(p99_5),
            "percentile_00_5": float(p00_5)}


def privileged_statistics(dataset_name_or_id, cases: Sequence[str], channels: Sequence[int]) -> Dict[str, dict]:
    """{str(channel): statistics} over the foreground of ``cases`` only, each case sampled as nnU-Net's
    fingerprint samples it (1e8 voxels / the number of *all* training cases, seed 1234)."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    fpe = DatasetFingerprintExtractor(dataset_name_or_id, num_processes=1)
    reader = determine_reader_writer_from_dataset_json(fpe.dataset_json,
                                                       fpe.dataset[next(iter(fpe.dataset))]['images'][0])
    per_case = int(fpe.num_foreground_voxels_for_intensitystats // len(fpe.dataset))
    samples: Dict[int, List[np.ndarray]] = {c: [] for c in channels}
    for case in cases:
        entry = fpe.dataset[case]
        foreground = DatasetFingerprintExtractor.analyze_case(entry['images'], entry['label'], reader, per_case)[2]
        for c in channels:
            samples[c].append(np.asarray(foreground[c]))
    return {str(c): intensity_statistics(np.concatenate(samples[c])) for c in channels}


def check_raw_placeholders(raw_folder: str, dataset_json: Mapping, listed: Sequence[str],
                           split: ChannelSplit) -> None:
    """Each listed case's privileged files in ``imagesTr`` are constant (a placeholder)."""
    import SimpleITK as sitk
    ending = dataset_json["file_ending"]
    for case in listed:
        for c in split.privileged_indices:
            f = join(raw_folder, "imagesTr", f"{case}_{c:04d}{ending}")
            if non_constant_channels([sitk.GetArrayFromImage(sitk.ReadImage(f))], [0]):
                raise DanteConfigError(f'{join(raw_folder, "dataset.json")}: "dante" -> "cases_without_privileged" '
                                       f'lists {case}, but {f} holds an image, not a constant placeholder')


def fix_fingerprint(dataset_name_or_id) -> str:
    """Rewrite the privileged channels' statistics in ``nnUNet_preprocessed/<dataset>/dataset_fingerprint.json``
    from the cases with the privileged scan (nnU-Net's file kept as ``dataset_fingerprint.nnunet.json``);
    returns the fingerprint's path."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    name = maybe_convert_to_dataset_name(dataset_name_or_id)
    raw = join(nnUNet_raw, name)
    dj_file = join(raw, "dataset.json")
    dj = load_json(dj_file)
    split = ChannelSplit.from_dataset_json(dj, dj_file)
    listed = cases_without_privileged(dj, dj_file)
    if not listed:
        raise DanteConfigError(f'{dj_file} lists no "cases_without_privileged": nnU-Net\'s fingerprint is right as '
                               f'it is, nothing to do')
    fp_file = join(nnUNet_preprocessed, name, "dataset_fingerprint.json")
    if not isfile(fp_file):
        raise FileNotFoundError(f"{fp_file} does not exist: run nnUNetv2_extract_fingerprint -d {dataset_name_or_id} "
                                f"first")
    ending = dj["file_ending"]
    cases = sorted(f[:-len(ending)] for f in os.listdir(join(raw, "labelsTr")) if f.endswith(ending))
    check_cases_without_privileged(listed, cases, dj_file)
    check_raw_placeholders(raw, dj, listed, split)
    fingerprint = load_json(fp_file)
    backup = join(nnUNet_preprocessed, name, BACKUP_NAME)
    if FINGERPRINT_KEY not in fingerprint:
        save_json(fingerprint, backup, sort_keys=False)   # nnU-Net's own numbers, kept
    elif not isfile(backup):
        raise FileNotFoundError(f"{fp_file} was already changed by dante_nnunet fingerprint but nnU-Net's original "
                                f"({backup}) is gone; run nnUNetv2_extract_fingerprint -d {dataset_name_or_id} "
                                f"--clean, then this command again")
    complete = [c for c in cases if c not in set(listed)]
    stats = privileged_statistics(name, complete, split.privileged_indices)
    fingerprint = load_json(backup)
    fingerprint["foreground_intensity_properties_per_channel"].update(stats)
    fingerprint[FINGERPRINT_KEY] = {"channels": list(split.privileged_indices),
                                    "cases_without_privileged": sorted(listed), "cases_used": len(complete)}
    save_json(fingerprint, fp_file + ".partial", sort_keys=False)
    os.replace(fp_file + ".partial", fp_file)
    return fp_file


def check_plans_statistics(plans: Mapping, configuration: str, fingerprint_file: str, listed: Sequence[str],
                           split: ChannelSplit, dataset: str) -> None:
    """Refuse plans whose CT-normalised privileged channels were normalised with statistics that include the
    placeholders of ``listed`` (no ``dante_nnunet fingerprint`` run for this list, or plans made before it)."""
    schemes = plans["configurations"][configuration].get("normalization_schemes")
    if schemes is None:   # inherited from another configuration
        parent = plans["configurations"][configuration].get("inherits_from")
        if parent is None:
            return
        return check_plans_statistics(plans, parent, fingerprint_file, listed, split, dataset)
    ct = [c for c in split.privileged_indices if schemes[c] == "CTNormalization"]
    if not ct:
        return
    steps = (f"nnUNetv2_extract_fingerprint -d {dataset} (if not done), dante_nnunet fingerprint -d {dataset}, "
             f"nnUNetv2_plan_experiment -d {dataset}, nnUNetv2_preprocess -d {dataset}")
    fingerprint = load_json(fingerprint_file) if isfile(fingerprint_file) else {}
    record = fingerprint.get(FINGERPRINT_KEY)
    if record is None or sorted(record["cases_without_privileged"]) != sorted(listed):
        raise DanteConfigError(
            f"channel(s) {[split.channel_names[c] for c in ct]} use CT normalisation, whose statistics "
            f"({fingerprint_file}) still count the placeholders of the cases without the privileged scan"
            + ("" if record is None else " of another list") + f". Run: {steps}")
    props = plans["foreground_intensity_properties_per_channel"]
    if any(props[str(c)] != fingerprint["foreground_intensity_properties_per_channel"][str(c)] for c in ct):
        raise DanteConfigError(f"the plans' CT statistics of channel(s) {[split.channel_names[c] for c in ct]} "
                               f"predate dante_nnunet fingerprint (they differ from {fingerprint_file}): run "
                               f"nnUNetv2_plan_experiment -d {dataset} and nnUNetv2_preprocess -d {dataset} again")
