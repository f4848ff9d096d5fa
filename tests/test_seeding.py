"""Seeded runs (training/seeding.py, `_seed<N>` names): nnU-Net still builds its augmenters the way the
seeding hook expects, names resolve, and the same seed trains the same weights through nnUNetv2_train."""
import inspect

import numpy as np
import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import join

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module
from tests.support import E2E_CONFIG, E2E_DATASET_ID, run
from dante_nnunet.training.seeding import (AUGMENTER_NAME, derived_seed, seed_everything,
                                           seeded_augmenter_workers)
from dante_nnunet.trainer_names import TrainerNameError, trainer_name


def test_nnunet_still_builds_unseeded_augmenters_by_that_name():
    """The hook relies on nnUNetTrainer.get_dataloaders (2.8.1) looking up NonDetMultiThreadedAugmenter in
    its module and passing seeds=None by keyword; a new nnU-Net that changes this fails here."""
    src = inspect.getsource(nnunet_trainer_module.nnUNetTrainer.get_dataloaders)
    assert src.count(f"{AUGMENTER_NAME}(") == 2 and src.count("seeds=None") == 2
    assert "num_processes=allowed_num_processes" in src


def test_hook_fills_seeds_and_restores_the_name():
    original = getattr(nnunet_trainer_module, AUGMENTER_NAME)
    with seeded_augmenter_workers(5):
        factory = getattr(nnunet_trainer_module, AUGMENTER_NAME)
        train = factory(data_loader=None, transform=None, num_processes=2, seeds=None)
        val = factory(data_loader=None, transform=None, num_processes=1, seeds=None)
        given = factory(data_loader=None, transform=None, num_processes=1, seeds=[7])
    assert getattr(nnunet_trainer_module, AUGMENTER_NAME) is original
    assert train.seeds == [derived_seed(5, 0, 0), derived_seed(5, 0, 1)] and val.seeds == [derived_seed(5, 1, 0)]
    assert len(set(train.seeds + val.seeds)) == 3 and given.seeds == [7]


def test_seed_everything_repeats_draws():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == a


def test_seed_names_resolve_for_every_trainer_family(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from dante_nnunet.jobs.nnunet_jobs import TRAINER_FOLDER
    monkeypatch.setenv("nnUNet_extTrainer", TRAINER_FOLDER)
    find = recursive_find_trainer_class_by_name
    lower = find("LowerBoundTrainer_demo_seed2")
    assert lower.seed == 2 and lower.epochs == 10
    student = find("DistillationTrainer_demo_seed1")
    assert student.teacher_trainer == "UpperBoundTrainer_demo_seed1"
    dante = find("DANTETrainer_demo_pib0.1_seed3")
    assert (dante.lambda_pib, dante.seed) == (0.1, 3)
    assert find("DANTEPretrainTrainer_demo_seed0").seed == 0
    with pytest.raises(TrainerNameError, match="which LowerBoundTrainer does not have"):
        find("LowerBoundTrainer_demo_pib0.1")        # loss weights only for DANTE trainers
    assert trainer_name("DANTETrainer", 1e-05, None, 4) == "DANTETrainer_pib1e-05_seed4"
    assert find("DANTETrainer_pib1e-05_seed4").lambda_pib == 1e-05
    with pytest.raises(ValueError, match="non-negative integer"):
        trainer_name("DANTETrainer", seed=1.5)


@pytest.mark.e2e
def test_same_seed_same_weights_other_seed_other_weights(e2e_dataset, tmp_path):
    """Three real trainings (augmentation in a worker process, nnUNet_n_proc_DA=1): seed 3 twice, seed 4 once."""
    weights = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        env = dict(e2e_dataset["env"], nnUNet_results=str(tmp_path / tag))
        trainer = f"DANTETrainer_tiny_seed{seed}"
        run(["nnUNetv2_train", E2E_DATASET_ID, E2E_CONFIG, 0, "-tr", trainer, "-device", "cpu"], env)
        ck = torch.load(join(env["nnUNet_results"], e2e_dataset["name"], f"{trainer}__nnUNetPlans__{E2E_CONFIG}",
                             "fold_0", "checkpoint_final.pth"), map_location="cpu", weights_only=False)
        weights[tag] = (ck["dante_network_weights"], ck["logging"]["train_losses"])
    (wa, la), (wb, lb), (wc, lc) = weights["a"], weights["b"], weights["c"]
    assert la == lb and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert la != lc and not all(torch.equal(wa[k], wc[k]) for k in wa)
