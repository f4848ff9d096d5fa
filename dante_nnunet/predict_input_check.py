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
import sys
from typing import Optional, Sequence

from batchgenerators.utilities.file_and_folder_operations import join, load_json

from dante_nnunet.deployment import check_case_files, swapped_channel_warnings

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


def check_inputs_of_predict_command(num_input_channels: int, argv: Optional[Sequence[str]] = None) -> None:
    """When the running process is ``nnUNetv2_predict`` (or ``..._from_modelfolder``), check its ``-i``
    folder (``deployment.check_case_files``) before any preprocessing starts; the module docstring says
    why here."""
    argv = sys.argv if argv is None else argv
    if not argv or not os.path.basename(argv[0]).startswith("nnUNetv2_predict"):
        return
    folder, names, ending, model = _predict_arguments(argv)
    if folder is not None:
        cases = check_case_files(folder, num_input_channels,
                                 names if names and len(names) == num_input_channels else None, ending)
        if model is not None and ending is not None:
            for line in swapped_channel_warnings(folder, cases, ending, model):
                print(f"WARNING (dante_nnunet): {line}", file=sys.stderr, flush=True)
