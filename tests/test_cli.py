"""The `dante_nnunet` command's help texts and `add-configuration` on a real preprocessed dataset."""
import argparse
import json
import os

import pytest

from tests.support import E2E_DATASET_ID, run
from dante_nnunet.cli import build_parser, main


def _subparsers():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_subcommand_and_option_has_a_help_text(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "``" not in out and "add-configuration" in out
    for name, parser in _subparsers().items():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        text = capsys.readouterr().out
        assert e.value.code == 0 and f"usage: dante_nnunet {name}" in text, name
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.dest} has no help text"
        if name == "phantom":   # defaults are shown
            assert "(default: 24)" in " ".join(text.split()) and "(default: brats)" in " ".join(text.split())


@pytest.mark.e2e
def test_add_configuration_inherits_the_preprocessed_data(e2e_dataset):
    env = e2e_dataset["env"]
    args = ["dante_nnunet", "add-configuration", "-d", E2E_DATASET_ID, "-n", "3d_cpu", "--width", 8,
            "--patch-size", 16, 16, 16]
    p = run(args, env)
    assert (f"train it on a CPU: nnUNetv2_train {E2E_DATASET_ID} 3d_cpu 0 -tr DANTETrainer_demo -p nnUNetPlans "
            f"-device cpu") in p.stdout
    plans = json.load(open(os.path.join(env["nnUNet_preprocessed"], e2e_dataset["name"], "nnUNetPlans.json")))
    cfg = plans["configurations"]["3d_cpu"]
    assert cfg["inherits_from"] == "3d_fullres" and cfg["patch_size"] == [16, 16, 16]
    assert cfg["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 64]
    run(args, env)                                    # the same again: nothing to do
    p = run(args[:-3] + [24, 24, 24], env, ok=False)  # other settings under the same name: refused
    assert p.returncode == 2 and "configuration '3d_cpu' exists with other settings" in p.stderr
    assert "--replace replaces it" in p.stderr
    plans_file = os.path.join(env["nnUNet_preprocessed"], e2e_dataset["name"], "nnUNetPlans.json")
    before = open(plans_file).read()
    for bad in ([0], [-4]):                           # refused before anything is written
        p = run(["dante_nnunet", "add-configuration", "-d", E2E_DATASET_ID, "-n", "3d_bad", "--width", *bad], env,
                ok=False)
        assert p.returncode == 2 and f"every width must be a positive whole number; got {bad}" in p.stderr
    p = run(args[:-3] + [0, 16, 16], env, ok=False)
    assert p.returncode == 2 and "every patch size must be a positive whole number" in p.stderr
    assert open(plans_file).read() == before
    run(args[:-3] + [24, 24, 24, "--replace"], env)   # a configuration this command wrote: replaced on request
    assert json.load(open(plans_file))["configurations"]["3d_cpu"]["patch_size"] == [24, 24, 24]
    p = run(["dante_nnunet", "add-configuration", "-d", E2E_DATASET_ID, "-n", "3d_fullres", "--width", 8,
             "--replace"], env, ok=False)             # nnU-Net's own configuration is never replaced
    assert p.returncode == 2 and "was not written by add-configuration" in p.stderr
