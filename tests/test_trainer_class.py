"""The real trainer classes, constructed on plans and dataset.json dicts (no data needed)."""
import os

import pytest
import torch

from dante_nnunet.config import DanteConfigError
from dante_nnunet.config import ChannelSplit
from dante_nnunet.deploy.deployment import limited_dataset_json, limited_plans
from dante_nnunet.training import (DANTETrainer, DANTETrainer_1epoch, DANTETrainer_5epochs, DANTETrainer_10epochs,
                                   DANTETrainer_50epochs, DANTETrainer_InfoNCE, DANTETrainer_L2Align,
                                   DANTETrainer_noAlign, DANTETrainer_noPIB)
from dante_nnunet.jobs import inmemory as pf


def _trainer(cls=DANTETrainer, dataset_name="Dataset999_Unit", **dj):
    return pf.trainer(cls, dataset_name, **dj)


@pytest.mark.parametrize("cls,epochs,start", [(DANTETrainer, 500, 100), (DANTETrainer_50epochs, 50, 10),
                                              (DANTETrainer_10epochs, 10, 2), (DANTETrainer_5epochs, 5, 1),
                                              (DANTETrainer_1epoch, 1, 0)])
def test_schedule_scales(cls, epochs, start):
    t = _trainer(cls)
    assert (t.num_epochs, t.regularizer_start_epoch) == (epochs, start)
    assert (t.initial_lr, t.weight_decay) == (1e-2, 3e-5)


def test_long_token_scales_the_epochs_of_the_schedule():
    from dante_nnunet.training.variants import trainer_class
    t = _trainer(trainer_class("LowerBoundTrainer_transfer_long2.5"))
    assert (t.num_epochs, t.num_iterations_per_epoch) == (250, 50)               # round(100 x 2.5) of 50 iterations
    assert _trainer(trainer_class("LowerBoundTrainer_demo_long0.01")).num_epochs == 1   # never below one
    with pytest.raises(ValueError, match="must be > 0"):
        _trainer(trainer_class("LowerBoundTrainer_transfer_long0"))


def test_tune_token_is_a_short_fine_tune_from_a_tenth_of_the_learning_rate():
    from dante_nnunet.training.variants import trainer_class
    t = _trainer(trainer_class("LowerBoundTrainer_transfer_tune0.2_seed1"))
    assert (t.num_epochs, t.initial_lr, t.finetune_fraction) == (20, pytest.approx(1e-3), 0.2)
    # initialised: its network loads every tensor on -pretrained_weights, and nothing is frozen once it has
    ft = pf.initialisable_trainer(trainer_class("LowerBoundTrainer_transfer_tune0.2"))
    ft.initialize()
    assert ft.network.finetune_whole
    ft.network.transferred_from = "student/checkpoint_final.pth"
    assert ft.encoder_freeze_end_epoch == 0
    assert _trainer(trainer_class("LowerBoundTrainer_transfer")).initial_lr == 1e-2
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        _trainer(trainer_class("LowerBoundTrainer_transfer_tune1.5"))
    from dante_nnunet.trainer_names import TrainerNameError, parse_name
    with pytest.raises(TrainerNameError, match="tune0.2"):
        parse_name("UpperBoundTrainer_tune0.2")


def test_ablation_attributes():
    assert (DANTETrainer.lambda_pib, DANTETrainer.lambda_align, DANTETrainer.alignment) == (0.3, 0.5, "std_l1")
    assert DANTETrainer_L2Align.alignment == "std_l2" and DANTETrainer_InfoNCE.alignment == "infonce"
    assert DANTETrainer_noPIB.lambda_pib == 0 and DANTETrainer_noPIB.lambda_align == 0.5
    assert DANTETrainer_noAlign.lambda_align == 0 and DANTETrainer_noAlign.lambda_pib == 0.3


def test_regulariser_form_variants():
    from dante_nnunet.training import (DANTETrainer_paper, DANTETrainer_paper_transfer, DANTETrainer_stdBidir,
                                       DANTETrainer_stdBidir_demo, DANTETrainer_transfer, DANTETrainer_transfer_S1,
                                       DistillationTrainer_transfer)
    form = lambda c: (c.alignment, c.alignment_stop_gradient, c.pib, c.fusion_zero_init)
    assert form(DANTETrainer) == form(DANTETrainer_transfer) == ("std_l1", True, "relative", True)
    assert form(DANTETrainer_paper) == form(DANTETrainer_paper_transfer) == ("l1", False, "l1", False)
    assert form(DANTETrainer_stdBidir) == form(DANTETrainer_stdBidir_demo) == ("std_l1", False, "relative", True)
    assert DANTETrainer_stdBidir_demo.epochs == 10
    loss = _trainer(DANTETrainer)._build_loss()      # the attributes reach the loss the trainer builds
    assert loss.alignment.stop_gradient and loss.pib.relative and type(loss.alignment).__name__ == "StandardizedAlignment"
    t = _trainer(DANTETrainer_paper_transfer)
    assert (t.num_epochs, t.num_iterations_per_epoch, t.regularizer_start_epoch) == (100, 50, 20)
    assert DANTETrainer_transfer_S1.requires_pretrained_weights
    assert DistillationTrainer_transfer.teacher_trainer == "UpperBoundTrainer_transfer"


def test_config_error_before_any_output_folder():
    from nnunetv2.paths import nnUNet_results
    with pytest.raises(DanteConfigError, match=r"Dataset998_Bad.dataset\.json: no \"dante\" block") as e:
        _trainer(dataset_name="Dataset998_Bad", privileged=None)
    assert "edit $nnUNet_raw/Dataset998_Bad/dataset.json and copy it over this one" in str(e.value)
    assert "FLAIR\"]" not in str(e.value)    # no channel is suggested as the privileged one
    assert not os.path.exists(os.path.join(nnUNet_results, "Dataset998_Bad"))


def test_sweep_names_resolve_through_nnunet_lookup(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from dante_nnunet.jobs.nnunet_jobs import TRAINER_FOLDER
    monkeypatch.setenv("nnUNet_extTrainer", TRAINER_FOLDER)
    cls = recursive_find_trainer_class_by_name("DANTETrainer_50epochs_pib0.1_align1.5")
    assert issubclass(cls, DANTETrainer)
    assert (cls.lambda_pib, cls.lambda_align, cls.epochs) == (0.1, 1.5, 50)
    assert recursive_find_trainer_class_by_name("DANTETrainer_pib0.1_align1.5") is not cls
    assert recursive_find_trainer_class_by_name("DANTETrainer_InfoNCE") is DANTETrainer_InfoNCE
    syn = recursive_find_trainer_class_by_name("DANTETrainer_synth_demo_syn0.1_seed2")   # synthesis weight
    assert (syn.lambda_synthesis, syn.seed, syn.epochs, syn.lambda_pib) == (0.1, 2, 10, 0.3)
    from dante_nnunet.trainer_names import TrainerNameError, trainer_name
    assert trainer_name("DANTETrainer_synth_demo", lambda_synthesis=0.1, seed=2) == syn.__name__
    with pytest.raises(ValueError, match="lambda_synthesis must be a finite number"):
        trainer_name("DANTETrainer", lambda_synthesis=-1)
    with pytest.raises(TrainerNameError, match="sets lambda_synthesis, which LowerBoundTrainer does not have"):
        recursive_find_trainer_class_by_name("LowerBoundTrainer_demo_syn0.1")   # DANTE trainers only
    with pytest.raises(RuntimeError, match="Could not find"):
        recursive_find_trainer_class_by_name("NotATrainer_pib0.1")


def test_sweep_command_prints_only_names_that_resolve(monkeypatch, capsys):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from dante_nnunet.cli import main
    from dante_nnunet.jobs.nnunet_jobs import TRAINER_FOLDER
    monkeypatch.setenv("nnUNet_extTrainer", TRAINER_FOLDER)
    assert main(["sweep", "-d", "1", "-c", "3d_fullres", "--pib", "1e-05", "1e6", "0", "--align", "0.25"]) == 0
    lines = capsys.readouterr().out.split("\n")[:3]
    values = []
    for line in lines:
        cls = recursive_find_trainer_class_by_name(line.split("-tr ")[1].split()[0])
        values.append((cls.lambda_pib, cls.lambda_align))
    assert values == [(1e-05, 0.25), (1e6, 0.25), (0.0, 0.25)]
    capsys.readouterr()                 # nnU-Net's lookup prints its search
    for bad in ("-1", "nan", "inf"):   # refused, naming the value, before any line is printed
        assert main(["sweep", "-d", "1", "-c", "3d_fullres", "--pib", "0.1", bad]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "lambda_pib must be a finite number >= 0" in captured.err


def test_deployment_json_and_plans_reindexed():
    split = ChannelSplit.from_dataset_json(pf.dataset_json(("T1ce",)))
    d = limited_dataset_json(pf.dataset_json(), split)
    assert d["channel_names"] == {"0": "T1", "1": "T2", "2": "FLAIR"} and "dante" not in d
    p = pf.plans()
    p["configurations"]["3d_fullres"]["normalization_schemes"] = ["A", "B", "C", "D"]
    lp = limited_plans(p, split)
    assert lp["configurations"]["3d_fullres"]["normalization_schemes"] == ["A", "C", "D"]
    assert [v["mean"] for v in lp["foreground_intensity_properties_per_channel"].values()] == [0.0, 2.0, 3.0]
    assert list(lp["foreground_intensity_properties_per_channel"]) == ["0", "1", "2"]
    assert "normalization_schemes" not in lp["configurations"]["3d_small"]   # inherited, untouched


def test_pretrain_variants_and_settings():
    from dante_nnunet.training import (DANTEPretrainTrainer, DANTEPretrainTrainer_1epoch,
                                       DANTEPretrainTrainer_5epochs, DANTEPretrainTrainer_10epochs,
                                       DANTEPretrainTrainer_50epochs, DANTEPretrainTrainer_selfMAE,
                                       DANTETrainer_noFreeze)
    for cls, n in [(DANTEPretrainTrainer, 500), (DANTEPretrainTrainer_50epochs, 50),
                   (DANTEPretrainTrainer_10epochs, 10), (DANTEPretrainTrainer_5epochs, 5),
                   (DANTEPretrainTrainer_1epoch, 1)]:
        t = _trainer(cls)
        assert t.num_epochs == n and not t.enable_deep_supervision and t.cross_modal
        assert (t.masker.ratio, t.masker.block_sizes) == (0.75, (8, 16, 32))
    assert not DANTEPretrainTrainer_selfMAE.cross_modal
    assert DANTETrainer.encoder_freeze_fraction == 0.1 and DANTETrainer_noFreeze.encoder_freeze_fraction == 0
    with pytest.raises(DanteConfigError, match="no \"dante\" block"):
        _trainer(DANTEPretrainTrainer, dataset_name="Dataset997_Bad", privileged=None)


def test_predict_option_list_matches_nnunet():
    """predict_input_check._PREDICT_OPTIONS restates the single-dash options of nnU-Net's two predict commands."""
    import re
    import nnunetv2.inference.predict_from_raw_data as source
    from dante_nnunet.deploy.predict_input_check import _PREDICT_OPTIONS, _predict_arguments
    text = open(source.__file__).read()
    assert set(re.findall(r"add_argument\(['\"](-[a-z_]+)['\"]", text)) == set(_PREDICT_OPTIONS)
    folder, _, _, _ = _predict_arguments(["nnUNetv2_predict", "-device", "cpu", "-chk", "x.pth", "-iIN", "-d", "5"])
    assert folder == "IN"


def test_save_every_scales_and_the_epoch_end_non_finite_check():
    from dante_nnunet.guards import NonFiniteTrainingError
    assert [_trainer(c).save_every for c in (DANTETrainer, DANTETrainer_50epochs, DANTETrainer_10epochs,
                                             DANTETrainer_1epoch)] == [50, 5, 1, 1]
    # the path CUDA runs take (device losses reach the host once per epoch): the first bad step is named
    t = _trainer(DANTETrainer_10epochs)
    # (the data check of the named cases runs on real preprocessed data in test_reliability.py)
    t._step_keys = [["case_a", "case_b"], ["case_c"], []]
    t.logger.log("train_losses", float("nan"), 0)
    outputs = [{"loss": torch.tensor(0.5)}, {"loss": torch.tensor(0.7)}, {"loss": torch.tensor(float("inf"))}]
    with pytest.raises(NonFiniteTrainingError, match=r"epoch 0, step 2: the training loss is inf for the batch of "
                                                     r"cases \[\]; the batch's data are finite"):
        t._stop_if_non_finite(outputs)
    t.logger.log("train_losses", 0.6, 0)
    t._stop_if_non_finite(outputs[:2])     # a finite epoch passes


def test_synthesis_variants_reach_network_loss_and_log():
    from dante_nnunet.training import DANTETrainer_synth, DANTETrainer_synth_transfer, DANTETrainer_synthOnly_transfer
    from dante_nnunet.training.progress import DANTELocalLogger
    assert DANTETrainer.lambda_synthesis == 0 and DANTETrainer_synth.lambda_synthesis == 1.0
    assert (DANTETrainer_synthOnly_transfer.lambda_pib, DANTETrainer_synthOnly_transfer.lambda_align) == (0, 0)
    t = pf.initialisable_trainer(DANTETrainer_synth_transfer, "Dataset994_Synth")
    t.initialize()
    assert t.dual_network().synthesis_head is not None and t.loss.lambda_synthesis == 1.0
    t.on_train_epoch_start()                          # epoch 0: synthesis on, Eqs. 3-4 not yet
    out = t.train_step(pf.trainer_batch(t))
    assert torch.isfinite(out["train_synthesis"]) and torch.isnan(out["train_pib"])
    plain = pf.initialisable_trainer(DANTETrainer, "Dataset994_Synth")
    plain.initialize()
    assert plain.dual_network().synthesis_head is None and plain.loss.lambda_synthesis == 0
    # a checkpoint's logging from before the synthesis term loads, the missing curve as NaN
    old = DANTELocalLogger()
    for k in old.my_fantastic_logging:
        old.my_fantastic_logging[k] = [float("nan")] * 2
    saved = old.get_checkpoint()
    del saved["train_synthesis"]
    new = DANTELocalLogger()
    new.load_checkpoint(saved)
    assert len(new.my_fantastic_logging["train_synthesis"]) == 2
