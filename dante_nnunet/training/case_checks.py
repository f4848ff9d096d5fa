"""Checks of the training cases' privileged channels against the "dante" block, run by every trainer
before anything is written (``DANTEBaseTrainer.__init__``).

- Cases listed in "cases_without_privileged": each exists in the preprocessed data, not every case is
  listed, the plans' intensity statistics did not count the placeholders, and each listed case's privileged
  channels are constant (a placeholder; anything else is probably a list naming the wrong cases).
- Cases not listed: none has a constant privileged channel (an all-zero T1ce would be trained on as a real
  scan). Every preprocessed case's privileged channels are read once; the answer is kept beside the
  preprocessed data (``guards.ConstantChannelCache``) and reread only for cases preprocessed again.
"""
from __future__ import annotations

import os
from typing import AbstractSet

from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from dante_nnunet.config import ChannelSplit, DanteConfigError, check_cases_without_privileged, non_constant_channels
from dante_nnunet.data.fingerprint import check_plans_statistics
from dante_nnunet.guards import ConstantChannelCache


def check_privileged_cases(plans: dict, configuration: str, split: ChannelSplit, listed: AbstractSet[str],
                           source: str) -> None:
    """Both checks for the preprocessed data of ``configuration`` (nothing to check without
    ``nnUNet_preprocessed``). ``listed``: the cases of "cases_without_privileged"; ``source``: the
    dataset.json the messages name."""
    if not nnUNet_preprocessed.is_set() or "dataset_name" not in plans:
        return
    base = join(nnUNet_preprocessed, plans["dataset_name"])
    identifier = PlansManager(plans).get_configuration(configuration).data_identifier
    folder = join(base, identifier)
    if not os.path.isdir(folder):
        if listed:
            raise FileNotFoundError(f"{source} lists cases without the privileged channel, but there is no "
                                    f"preprocessed data in {folder} to check them against: run "
                                    f"nnUNetv2_plan_and_preprocess (or nnUNetv2_preprocess -c {configuration}) first")
        return   # nnU-Net's own error follows
    dataset_class = infer_dataset_class(folder)
    identifiers = dataset_class.get_identifiers(folder)
    privileged = split.privileged_indices

    def non_constant(case: str):
        return non_constant_channels(dataset_class(folder, [case]).load_case(case)[0], privileged)

    if listed:
        check_cases_without_privileged(sorted(listed), identifiers, source)
        check_plans_statistics(plans, configuration, join(base, "dataset_fingerprint.json"), sorted(listed), split,
                               plans["dataset_name"])
        for case in sorted(listed):
            bad = non_constant(case)
            if bad:
                names = [split.channel_names[c] for c in bad]
                raise DanteConfigError(
                    f'{source}: "dante" -> "cases_without_privileged" lists {case}, but its privileged channel(s) '
                    f'{names} hold an image, not a constant placeholder (in {folder}). Remove {case} from the list, '
                    f'or replace its {names} file(s) with a constant image (e.g. zeros) and preprocess again')

    cache = ConstantChannelCache(join(base, f"dante_constant_channels_{identifier}.json"), folder)
    constant = cache.constant_channels(identifiers, non_constant, privileged)
    bad = {case: c for case, c in constant.items() if case not in listed}
    if bad:
        names = sorted(bad)
        channels = sorted({split.channel_names[c] for cs in bad.values() for c in cs})
        raise DanteConfigError(
            f"{len(names)} case(s) of {folder} have a constant privileged channel {channels} (all zeros or one "
            f"value: no scan) but are not listed in {source} \"dante\" -> \"cases_without_privileged\": "
            f"{names[:20]}{' ...' if len(names) > 20 else ''}. Trained on, they would teach the fusion that the "
            f"privileged scan is blank. List them there if they lack the scan, or give them their scan and "
            f"preprocess again")
