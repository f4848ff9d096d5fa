"""The check of ``nnUNetv2_predict``'s input folder, before any preprocessing starts.

nnU-Net's predictor does not check channel counts: with one file too many a case fails deep in
normalisation, with one too few in a convolution, and an empty folder exits 0 having predicted nothing.
The only plugin code nnU-Net 2.8.1 runs before that work is the trainer class's
``build_network_architecture`` (``nnUNetPredictor.initialize_from_trained_model_folder``), and it is
given no input folder. So the check reads the predict command's own arguments from ``sys.argv``, here
and nowhere else, and only when the process is one of nnU-Net's predict commands.
"""
from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, load_json

from dante_nnunet.data.rawdata import size_and_spacing
from dante_nnunet.deploy.channel_profile import CHANNEL_PROFILE, QUANTILES, case_profiles, distances, looks_swapped

_PREDICT_OPTIONS = ("-i", "-o", "-m", "-d", "-p", "-tr", "-c", "-f", "-step_size", "-chk", "-npp", "-nps",
                    "-prev_stage_predictions", "-num_parts", "-part_id", "-device")


def _predict_arguments(argv: Sequence[str]):
    """The -i folder, and the model's limited channel names, file ending (from its results folder's
    dataset.json) and folder, when -d/-tr/-c/-p or -m name one, of an nnUNetv2_predict command line, parsed the way argparse
    parses it (``-i DIR``, ``-iDIR``, ``-i=DIR``). The single-dash options of both predict commands
    (2.8.1) are declared so that ``-chk x`` is not read as ``-c hk``."""
    import argparse
    p = argparse.ArgumentParser(add_help=False)
    for opt in _PREDICT_OPTIONS:
        p.add_argument(opt, nargs="+" if opt == "-f" else None)
    ns, _ = p.parse_known_args(list(argv[1:]))
    names, ending, folder = None, None, None
    try:
        if ns.m:
            folder = ns.m
        else:
            from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
            from nnunetv2.utilities.file_path_utilities import get_output_folder
            folder = get_output_folder(maybe_convert_to_dataset_name(ns.d), ns.tr or "nnUNetTrainer",
                                       ns.p or "nnUNetPlans", ns.c)
        dataset_json = load_json(join(folder, "dataset.json"))
        names = list(dataset_json["channel_names"].values())
        ending = dataset_json.get("file_ending")
    except Exception:   # names and ending need the model folder; nnU-Net reports a bad model folder itself
        pass
    return ns.i, names, ending, folder


def check_inputs_of_predict_command(num_input_channels: int, argv: Optional[Sequence[str]] = None,
                                    all_channels: bool = False) -> None:
    """When the running process is ``nnUNetv2_predict`` (or ``..._from_modelfolder``), check its ``-i``
    folder (``check_case_files`` below) before any preprocessing starts; the module docstring says
    why here. ``all_channels``: the model reads every channel, the privileged ones included (the upper
    bound, a privileged teacher)."""
    argv = sys.argv if argv is None else argv
    if not argv or not os.path.basename(argv[0]).startswith("nnUNetv2_predict"):
        return
    folder, names, ending, model = _predict_arguments(argv)
    if folder is not None:
        cases = check_case_files(folder, num_input_channels,
                                 names if names and len(names) == num_input_channels else None, ending,
                                 all_channels=all_channels)
        if model is not None and ending is not None:
            for line in swapped_channel_warnings(folder, cases, ending, model):
                print(f"WARNING (dante_nnunet): {line}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the files of each case

_CASE_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\..+)$")


def check_case_files(folder: str, num_channels: int, channel_names: Optional[Sequence[str]] = None,
                     file_ending: Optional[str] = None, all_channels: bool = False) -> List[str]:
    """Raise ValueError naming the case and files when a case's files are not exactly ``_0000`` ..
    ``_{num_channels-1:04d}`` (with the channels expected), when files do not end in the model's
    ``file_ending`` (nnU-Net would skip them or feed a case too few channels), when a case's files
    differ in size or spacing (nnU-Net stops far up its log, and its last line blames memory), or when
    the folder holds no case; return the case identifiers. Files that do not look like nnU-Net image
    files (``CASE_XXXX.ending``) are ignored, as nnU-Net ignores them."""
    if not isdir(folder):
        raise FileNotFoundError(f"input folder {folder} does not exist")
    cases: Dict[str, List[int]] = defaultdict(list)
    files: Dict[str, List[str]] = defaultdict(list)
    other_ending: List[str] = []
    ours = _CASE_FILE if file_ending is None else \
        re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}})(?P<ending>{re.escape(file_ending)})$")
    for f in sorted(os.listdir(folder)):
        m = ours.match(f)
        if m is None:
            if _CASE_FILE.match(f) is not None:
                other_ending.append(f)
            continue
        cases[m["case"]].append(int(m["channel"]))
        files[m["case"]].append(f)
    if other_ending:
        raise ValueError(f"{folder}: {len(other_ending)} image file(s) do not end in {file_ending!r}, the file ending "
                         f"this model was trained with (its dataset.json's file_ending): {other_ending[:6]}"
                         f"{' ...' if len(other_ending) > 6 else ''}. nnU-Net would leave them out; convert them to "
                         f"{file_ending}")
    if not cases:
        raise ValueError(f"{folder} holds no image files named CASE_XXXX.ending (e.g. case_0000.nii.gz): nothing to "
                         f"predict")
    expected = list(range(num_channels))
    names = f" ({', '.join(channel_names)})" if channel_names else ""
    for case, chans in cases.items():
        if sorted(chans) != expected and all_channels:
            raise ValueError(
                f"{folder}: case '{case}' has {len(chans)} image file(s) {files[case]}, but this model reads all "
                f"{num_channels} channels{names}, the privileged ones included, as the files "
                f"_0000.._{num_channels - 1:04d}: it is an all-channel model (e.g. the upper bound or a privileged "
                f"teacher). Give it scans with every channel, or predict limited-channel scans with a "
                f"limited-channel model (LowerBoundTrainer, DANTETrainer).")
        if sorted(chans) != expected:
            raise ValueError(
                f"{folder}: case '{case}' has {len(chans)} image file(s) {files[case]}, but this model is deployed "
                f"on {num_channels} limited channel(s){names}, which must be the files _0000.._{num_channels - 1:04d} "
                f"in that order. Privileged channels are not inputs of the deployed model: leave their files out "
                f"and number the remaining channels consecutively.")
    for case in cases:
        _check_same_size_and_spacing(folder, case, files[case])
    return sorted(cases)


def _check_same_size_and_spacing(folder: str, case: str, names: Sequence[str]) -> None:
    geometry = {f: size_and_spacing(join(folder, f)) for f in names}
    known = {f: g for f, g in geometry.items() if g is not None}
    if len(set(known.values())) > 1:
        described = ", ".join(f"{f}: size {g[0]}, spacing {g[1]}" for f, g in known.items())
        raise ValueError(f"{folder}: case '{case}' has images of different size or spacing ({described}); nnU-Net "
                         f"needs every channel of a case on one grid: resample them to one")


# ------------------------------------------------------------------ swapped channels
def swapped_channel_warnings(folder: str, cases: Sequence[str], file_ending: str, model_folder: str) -> List[str]:
    """One line per input case whose channel files look swapped against the model's reference profiles
    (none when the model folder has no profile, or deploys a single channel)."""
    path = join(model_folder, CHANNEL_PROFILE)
    if not isfile(path):
        return []
    profile = load_json(path)
    names, reference = profile["channel_names"], np.asarray(profile["reference"])
    if len(names) < 2 or tuple(profile.get("quantiles", ())) != QUANTILES:
        return []
    lines = []
    for case in cases:
        files = [join(folder, f"{case}_{c:04d}{file_ending}") for c in range(len(names))]
        try:
            arrays = [sitk.GetArrayFromImage(sitk.ReadImage(f)).astype(np.float32) for f in files]
        except RuntimeError:
            continue   # unreadable files are nnU-Net's to report
        profiles = case_profiles(arrays)
        swapped = looks_swapped(profiles, reference)
        if swapped:
            d = distances(profiles, reference)
            which = "; ".join(f"{os.path.basename(files[i])} (given as {names[i]}) looks like {names[j]} "
                              f"(profile distance {d[i, j]:.2f}, to {names[i]}: {d[i, i]:.2f})"
                              for i, j in sorted(swapped.items()))
            lines.append(f"case '{case}': {which}. Check the channel order: the files must be "
                         f"{', '.join(f'_{c:04d} = {n}' for c, n in enumerate(names))}")
    return lines
