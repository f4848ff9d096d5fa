"""Trainer names built from tokens (dante_nnunet/trainer_names.py, training/variants.py)."""
import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from dante_nnunet.trainer_names import NAMED_TOKENS, TrainerNameError, parse_name, trainer_name

HERE = os.path.dirname(os.path.abspath(__file__))
# every trainer name that resolved before names were built from tokens (49 hand-written classes, the six
# families and a sample of suffixed names), with the attributes it had: written at commit 81b32a0
SNAPSHOT = json.load(open(os.path.join(HERE, "data", "trainer_names.json")))
# names that resolved before only by contradicting themselves (a form that switches a term off, then a
# weight for it); refused now
NOW_REFUSED = ["DANTETrainer_noPIB_pib0.1", "DANTETrainer_synthOnly_align0.5"]


def _lookup(name):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net narrates its search
        return recursive_find_trainer_class_by_name(name)


@pytest.fixture
def package_trainers(monkeypatch):
    from dante_nnunet.jobs.nnunet_jobs import TRAINER_FOLDER
    monkeypatch.setenv("nnUNet_extTrainer", TRAINER_FOLDER)


def _attributes(cls):
    out = {}
    for key in SNAPSHOT["attributes"]:
        if hasattr(cls, key):
            value = getattr(cls, key)
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


@pytest.mark.parametrize("name", sorted(SNAPSHOT["trainers"]))
def test_every_name_of_before_resolves_to_the_same_trainer(name, package_trainers):
    want = dict(SNAPSHOT["trainers"][name])
    family = want.pop("_family")
    cls = _lookup(name)
    assert cls.__name__ == name
    assert any(c.__name__ == family for c in cls.__mro__)
    assert _attributes(cls) == want


def test_lookup_gives_one_class_per_name_and_tokens_in_any_order(package_trainers):
    from dante_nnunet.training import DANTETrainer_demo_S1
    assert _lookup("DANTETrainer_demo_S1") is DANTETrainer_demo_S1
    a, b = _lookup("DANTETrainer_S1_demo"), _lookup("DANTETrainer_demo_S1")
    assert a is not b and _attributes(a) == _attributes(b)   # two names, two results folders, one behaviour


@pytest.mark.parametrize("name, says", [
    ("DANTETrainer_demo_transfer", "tokens 'demo' and 'transfer' both set epochs"),
    ("DANTETrainer_demo_10epochs", "tokens 'demo' and '10epochs' both set epochs"),
    ("DANTETrainer_paper_stdBidir", "both set alignment_stop_gradient"),
    ("DANTETrainer_seed1_seed2", "both set seed"),
    ("DANTETrainer_demo_fast", "unknown token 'fast'"),
    ("DANTETrainer_demo_", "an empty token"),
    ("UpperBoundTrainer_S1", "token 'S1' is for DANTETrainer, LowerBoundTrainer, not UpperBoundTrainer"),
    ("LowerBoundTrainer_pib0.1", "sets lambda_pib, which LowerBoundTrainer does not have"),
    *[(n, "both set") for n in NOW_REFUSED],
])
def test_bad_names_are_refused_through_nnunets_lookup_listing_the_tokens(name, says, package_trainers):
    with pytest.raises(TrainerNameError) as err:
        _lookup(name)
    assert says in str(err.value) and name in str(err.value)
    family = name.split("_")[0]
    for token in NAMED_TOKENS.values():   # the message lists the family's tokens
        assert (f"  {token.name}: " in str(err.value)) == (family in token.families)


def test_names_of_no_family_are_left_to_nnunet(package_trainers):
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer"):
        _lookup("MyTrainer_demo")


def test_weight_token_refines_the_form_it_belongs_to():
    assert parse_name("DANTETrainer_synth_syn0.1").attrs["lambda_synthesis"] == 0.1
    assert parse_name("DANTETrainer_syn0.1_synth").attrs["lambda_synthesis"] == 0.1
    assert parse_name("DANTETrainer_synthOnly_syn2").attrs == {"lambda_synthesis": 2.0, "lambda_pib": 0.0,
                                                               "lambda_align": 0.0}


def test_synthesis_stage1_tokens(package_trainers):
    """limitedSynth adds privileged synthesis to the limited-channel MAE; denseSynth also masks nothing
    (the trainer class carries the attributes its masker and loss are built from)."""
    assert parse_name("DANTEPretrainTrainer_limitedSynth").attrs == {
        "cross_modal": False, "limited_only": True, "privileged_synthesis": True}
    dense = _lookup("DANTEPretrainTrainer_denseSynth_transfer_seed1")
    assert (dense.mask_ratio, dense.privileged_synthesis, dense.limited_only, dense.seed) == (0.0, True, True, 1)
    assert _lookup("LowerBoundTrainer_S1dense").requires_pretrained_weights
    with pytest.raises(TrainerNameError, match="both set"):
        parse_name("DANTEPretrainTrainer_limitedSynth_denseSynth")


def test_teacher_follows_the_students_schedule_and_seed(package_trainers):
    assert _lookup("DistillationTrainer").teacher_trainer == "UpperBoundTrainer"
    assert _lookup("DistillationTrainer_transfer_seed2").teacher_trainer == "UpperBoundTrainer_transfer_seed2"
    assert _lookup("DistillationTrainer_seed1_7epochs").teacher_trainer == "UpperBoundTrainer_7epochs_seed1"
    assert _lookup("DistillationTrainer_gpuCheck").teacher_trainer == "UpperBoundTrainer_gpuCheck"


def test_long_token_scales_the_schedules_epochs(package_trainers):
    assert parse_name("LowerBoundTrainer_transfer_long2").attrs["schedule_scale"] == 2.0
    assert _lookup("LowerBoundTrainer_transfer_long2.5").schedule_scale == 2.5
    assert _lookup("LowerBoundTrainer_transfer_long2.5").epochs == 100     # nnU-Net's num_epochs: round(100 x 2.5)


def test_fg_token_sets_nnunets_foreground_oversampling(package_trainers):
    """fg<x> (issue 48's sampling screen): the trainer's oversample_foreground_percent, which nnU-Net's loader
    reads; out of [0, 1] refused when the trainer is built."""
    from dante_nnunet.jobs import inmemory as pf
    assert parse_name("LowerBoundTrainer_transfer_fg0").attrs["foreground_share"] == 0.0
    t = pf.trainer(_lookup("LowerBoundTrainer_fg0.5"), "Dataset996_Fg")
    assert t.oversample_foreground_percent == 0.5
    assert pf.trainer(_lookup("LowerBoundTrainer"), "Dataset996_Fg").oversample_foreground_percent == 0.33
    with pytest.raises(ValueError, match="foreground_share .token fg<x>. must be in"):
        pf.trainer(_lookup("LowerBoundTrainer_fg1.5"), "Dataset996_Fg")


def test_trainer_name_formats_what_parse_reads():
    name = trainer_name("DANTETrainer_transfer", lambda_pib=0.25, lambda_align=1e-05, seed=3, lambda_synthesis=0)
    assert name == "DANTETrainer_transfer_pib0.25_align1e-05_syn0_seed3"
    assert parse_name(name).attrs == {"epochs": 100, "iterations_per_epoch": 50, "val_iterations_per_epoch": 5,
                                      "lambda_pib": 0.25, "lambda_align": 1e-05, "lambda_synthesis": 0.0,
                                      "seed": 3}
    for bad in (dict(lambda_pib=-1), dict(lambda_align=float("nan")), dict(seed=1.5), dict(seed=True)):
        with pytest.raises(ValueError):
            trainer_name("DANTETrainer", **bad)


def test_the_names_module_loads_no_trainer():
    code = ("import sys, dante_nnunet.trainer_names; "
            "assert not {'torch', 'nnunetv2', 'dante_nnunet.training'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(HERE))


def test_readme_lists_every_token():
    readme = open(os.path.join(os.path.dirname(HERE), "README.md")).read()
    missing = [t for t in list(NAMED_TOKENS) + ["<n>epochs", "seed<n>", "pib<x>", "align<x>", "syn<x>",
                                              "share<x>", "warm<x>", "sure<x>", "long<x>"]
               if f"`{t}`" not in readme]
    assert not missing
