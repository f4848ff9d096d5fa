"""dante_nnunet: DANTE for nnU-Net v2 (a privileged modality during training, the limited modalities at
inference). Training and prediction use the stock commands (nnUNetv2_train -tr DANTETrainer,
nnUNetv2_predict); these subcommands prepare data, export and evaluate. Run `dante_nnunet SUBCOMMAND -h`
for each one's options."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import List, Optional

from dante_nnunet.trainer_names import DEFAULT_STUDENT


def _env(args) -> int:
    from dante_nnunet.jobs.nnunet_jobs import ext_trainer_value
    print(f"export nnUNet_extTrainer={shlex.quote(ext_trainer_value(os.environ.get('nnUNet_extTrainer')))}")
    return 0


def _export(args) -> int:
    from dante_nnunet.deploy.export import export_model
    if args.decision:
        from dante_nnunet.jobs.teach import read_decision
        given = [k for k in ("d", "c", "tr", "f") if getattr(args, k) is not None]
        if given:
            raise ValueError(f"--decision names the model; leave out -{', -'.join(given)}")
        m = read_decision(args.decision)
        args.d, args.c, args.tr, args.f, args.p = str(m["dataset"]), m["configuration"], m["trainer"], m["folds"], m["plans"]
    else:
        missing = [k for k in ("d", "c", "tr", "f") if getattr(args, k) is None]
        if missing:
            raise ValueError(f"export needs -{', -'.join(missing)} (or --decision FILE of dante_nnunet teach)")
    dest = export_model(args.d, args.c, args.tr, args.f, args.o, plans_identifier=args.p, checkpoint_name=args.chk)
    print(f"exported plain nnU-Net model: {dest}")
    chk = "" if args.chk == "checkpoint_final.pth" else f" -chk {shlex.quote(args.chk)}"   # export keeps the name
    import torch
    device = "" if torch.cuda.is_available() else " -device cpu"   # nnU-Net's default (cuda) fails without a GPU
    print(f"predict without the plugin: nnUNet_results={shlex.quote(os.path.abspath(args.o))} "
          f"nnUNetv2_predict -i INPUT -o OUTPUT -d {args.d} -c {args.c} -p {args.p} -f {' '.join(args.f)}{chk}"
          f"{device}")
    return 0


def _demo(args) -> int:
    from dante_nnunet.jobs.demo import run_demo
    run_demo(args.workdir, dataset_id=args.dataset_id, trainer=args.tr, seed=args.seed)
    return 0


def _sweep(args) -> int:
    from dante_nnunet.trainer_names import trainer_name
    names = [trainer_name(args.base, l1, l2) for l1 in args.pib for l2 in args.align]   # all checked first
    for name in names:
        print(" ".join(["nnUNetv2_train", str(args.d), args.c, str(args.f), "-tr", name] + args.extra))
    return 0


def _pretrain_dataset(args) -> int:
    from dante_nnunet.data.pretrain_dataset import write_pretrain_dataset
    folder = write_pretrain_dataset(args.sources, args.d, args.n, channel_names=args.channels,
                                    privileged_channels=args.privileged, like=args.like,
                                    file_ending=args.file_ending,
                                    allow_missing_privileged=args.allow_missing_privileged)
    print(f"wrote {folder}")
    print(f"next: nnUNetv2_plan_and_preprocess -d {args.d} -c 3d_fullres   (or move the fine-tuning dataset's plans "
          f"here: nnUNetv2_extract_fingerprint -d {args.d}; nnUNetv2_move_plans_between_datasets -s FT -t {args.d} "
          f"-sp nnUNetPlans -tp nnUNetPlans; nnUNetv2_preprocess -d {args.d} -c 3d_fullres)")
    print(f"then: nnUNetv2_train {args.d} 3d_fullres all -tr DANTEPretrainTrainer")
    return 0


def _pseudo_label_dataset(args) -> int:
    from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json, save_json
    from dante_nnunet.data.check_dataset import dataset_folder
    from dante_nnunet.data.pseudo_label_dataset import pseudo_label_split, write_pseudo_label_dataset
    from nnunetv2.paths import nnUNet_preprocessed
    source = dataset_folder(args.s)
    fold = None
    if args.fold is not None:
        splits_file = join(str(nnUNet_preprocessed), os.path.basename(source), "splits_final.json")
        if not isfile(splits_file):
            raise FileNotFoundError(f"--fold {args.fold}: {splits_file} does not exist (nnU-Net writes it at the first "
                                    f"training of {os.path.basename(source)}; or write it yourself)")
        splits = load_json(splits_file)
        if not 0 <= args.fold < len(splits):
            raise ValueError(f"--fold {args.fold}: {splits_file} has folds 0..{len(splits) - 1}")
        fold = splits[args.fold]
    folder, scans = write_pseudo_label_dataset(source, args.images, args.labels, args.d, args.n,
                                               labelled_cases=None if fold is None else fold["train"] + fold["val"])
    print(f"wrote {folder}: {len(scans)} pseudo-labelled scans")
    name = os.path.basename(folder)
    if fold is not None:
        pre = join(str(nnUNet_preprocessed), name)
        os.makedirs(pre, exist_ok=True)
        save_json(pseudo_label_split(fold, scans), join(pre, "splits_final.json"))
        print(f"wrote {join(pre, 'splits_final.json')}: fold 0 trains on fold {args.fold}'s {len(fold['train'])} "
              f"cases + the {len(scans)} scans, validates on its {len(fold['val'])}")
    src_id = int(os.path.basename(source)[7:10])
    name_id = int(name[7:10])
    print(f"next: nnUNetv2_extract_fingerprint -d {name_id}; nnUNetv2_move_plans_between_datasets -s {src_id} "
          f"-t {name_id} -sp nnUNetPlans -tp nnUNetPlans; cp {join(folder, 'dataset.json')} "
          f"$nnUNet_preprocessed/{name}/ (nnU-Net issue #2560); nnUNetv2_preprocess -d {name_id} -c CONFIGURATION")
    print(f"then: nnUNetv2_train {name_id} CONFIGURATION {0 if fold is not None else 'FOLD'} -tr LowerBoundTrainer")
    return 0


def _add_scans(args) -> int:
    from batchgenerators.utilities.file_and_folder_operations import isfile, join
    from dante_nnunet.data.check_dataset import dataset_folder
    from dante_nnunet.data.rawdata import check_new_dataset, resolve_raw_root, sibling_roots
    from dante_nnunet.data.unlabelled_cases import write_dataset_with_scans
    from dante_nnunet.jobs.nnunet_jobs import copy_split_of, nnunet_environment, preprocess_with_plans_of, run_command
    source = dataset_folder(str(args.d))
    env = nnunet_environment()
    src_id = int(os.path.basename(source)[7:10])
    src_pre = join(env["nnUNet_preprocessed"], os.path.basename(source))
    if args.c is not None and not isfile(join(src_pre, f"{args.p}.json")):
        raise FileNotFoundError(f"-c {args.c}: plan and preprocess dataset {src_id} first ({src_pre}/{args.p}.json "
                                f"does not exist)")
    name = args.n or os.path.basename(source).split("_", 1)[1][:40] + "Scans"
    raw_root = resolve_raw_root(None)
    folder_name = check_new_dataset(raw_root, args.o, name, sibling_roots(None))
    folder = write_dataset_with_scans(source, args.scans, raw_root, folder_name)
    print(f"wrote {folder}: the labelled cases of {os.path.basename(source)} and the scans of {args.scans} as "
          f"unlabelled cases (ignore label; dante.unlabelled_cases)")
    if args.c is None:
        print(f"next: preprocess it with dataset {src_id}'s plans (dante_nnunet add-scans ... -c CONFIGURATION does "
              f"it), then nnUNetv2_train {args.o} CONFIGURATION FOLD -tr DANTETrainer_teach")
        return 0
    preprocess_with_plans_of(src_id, args.o, env, lambda key, cmd: run_command(cmd, env), args.c, "scans", args.p)
    copy_split_of(src_id, args.o, env)   # the same folds as the labelled dataset's models
    print(f"then: nnUNetv2_train {args.o} {args.c} FOLD -tr DANTETrainer_teach")
    return 0


def _teach(args) -> int:
    from dante_nnunet.jobs.nnunet_jobs import nnunet_environment
    from dante_nnunet.jobs.teach import Teach, TeachSettings
    from dante_nnunet.data.check_dataset import dataset_folder
    from dante_nnunet.jobs.gate import rule_with
    try:   # a bad value is refused here, before any work
        rule = rule_with(args.gate_alpha, args.run_noise, args.min_gain_se)
    except ValueError as e:
        raise ValueError(f"teach: {e}") from None
    tokens = "".join(f"_{t}" for t in args.tokens)
    name = args.student_name or os.path.basename(dataset_folder(str(args.d))).split("_", 1)[1][:40] + "Teach"
    settings = TeachSettings(source=args.d, scans=args.scans, student_id=args.student_id, student_name=name,
                             configuration=args.c, folds=args.folds, teacher=args.teacher + tokens,
                             plain=args.plain + tokens, student=args.student + tokens,
                             keep_fraction=args.keep_fraction, real_share=args.real_share,
                             unsure_band=args.mask_unsure, finetune=args.finetune, rounds=args.rounds,
                             deploy_all=args.deploy_all,
                             plans=args.p,
                             device=args.device,
                             predict_args=["--disable_tta"] if args.disable_tta else [], test_dirs=args.test_dirs,
                             rule=rule,
                             dante_teach=None if args.dante_teach_id is None else args.dante_teach + tokens,
                             dante_teach_id=args.dante_teach_id)
    job = Teach(settings, nnunet_environment())
    if args.predict_part is not None:
        job.predict_part(args.predict_part)
    else:
        job.run()
    return 0


def _check_dataset(args) -> int:
    from dante_nnunet.data.check_dataset import check_raw_dataset, dataset_folder, summary
    folder = dataset_folder(args.d)
    problems = check_raw_dataset(folder)
    print(summary(folder, problems), file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def _evaluate(args) -> int:
    import json
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from dante_nnunet.jobs.evaluation import evaluate_folders
    if os.path.exists(args.o):
        raise FileExistsError(f"{args.o} already exists; not overwriting it")
    out_dir = os.path.dirname(os.path.abspath(args.o))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"the folder of -o, {out_dir}, does not exist; create it first")
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"the folder of -o, {out_dir}, is not writable")
    result = evaluate_folders(args.ref, args.pred, load_json(args.dataset_json), args.et_threshold)
    tmp = args.o + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, args.o)
    for key in ("mean", "mean_et_postprocessed"):
        if key in result:
            print(key)
            for r, m in result[key].items():
                print(f"  {r:>20}: Dice {m['dice']:.4f} +- {m['dice_std']:.4f}   HD95 {m['hd95']:.2f} +- "
                      f"{m['hd95_std']:.2f} mm")
    print(f"wrote {args.o}")
    return 0


def _add_configuration(args) -> int:
    from batchgenerators.utilities.file_and_folder_operations import join
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from dante_nnunet.jobs.nnunet_jobs import add_configuration
    if not nnUNet_preprocessed.is_set():
        raise ValueError("nnUNet_preprocessed is not set")
    name = maybe_convert_to_dataset_name(args.d)
    plans = join(str(nnUNet_preprocessed), name, f"{args.p}.json")
    widths = args.widths if args.widths is not None else args.width
    add_configuration(plans, args.n, base=args.b, features_per_stage=widths, patch_size=args.patch_size,
                      replace=args.replace)
    print(f"added configuration {args.n!r} to {plans} (inherits {args.b}'s preprocessed data)")
    print(f"train it on a CPU: nnUNetv2_train {args.d} {args.n} 0 -tr DANTETrainer_demo -p {args.p} -device cpu   "
          f"(10 epochs of 50 iterations; <n>epochs keeps nnU-Net's 250 iterations an epoch)\n"
          f"on a GPU: nnUNetv2_train {args.d} {args.n} 0 -tr DANTETrainer -p {args.p}   (the paper's 500 epochs)")
    return 0


def _convert_brats(args) -> int:
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from dante_nnunet.data.converters import convert_brats, read_exclusion
    if args.exclude_columns and not args.exclude:
        raise ValueError("--exclude-columns goes with --exclude")
    exclude = read_exclusion(args.exclude, args.exclude_columns) if args.exclude else None
    folder = convert_brats(args.src, args.d, args.name, allow_missing_privileged=args.allow_missing_privileged,
                           exclude=exclude, allow_unlabelled=args.allow_unlabelled)
    print(f"wrote {folder}" + (f" ({len(load_json(join(folder, 'dataset.json')).get('excluded_cases', []))} case(s) "
                               f"of --exclude left out)" if exclude else ""))
    return 0


def _convert_ct_pairs(args) -> int:
    from dante_nnunet.data.converters import convert_ct_pairs
    folder = convert_ct_pairs(args.src, args.d, args.name, allow_missing_privileged=args.allow_missing_privileged,
                              allow_unlabelled=args.allow_unlabelled)
    print(f"wrote {folder}")
    return 0


def _fingerprint(args) -> int:
    from dante_nnunet.data.fingerprint import fix_fingerprint
    path = fix_fingerprint(args.d)
    print(f"wrote {path}: the privileged channels' intensity statistics now come from the cases with the privileged "
          f"scan only (nnU-Net's file kept beside it as dataset_fingerprint.nnunet.json)")
    print(f"next: nnUNetv2_plan_experiment -d {args.d}; nnUNetv2_preprocess -d {args.d}")
    return 0


def _phantom(args) -> int:
    from dante_nnunet.data.phantom import write_phantom
    folder = write_phantom(args.kind, args.d, args.name, num_train=args.num_train, num_test=args.num_test,
                           seed=args.seed, shape=args.shape, missing_privileged=args.missing_privileged,
                           num_unlabelled=args.num_unlabelled)
    print(f"wrote {folder} (imagesTs: limited channels only; imagesTs_allchannels; labelsTs"
          + ("; imagesUnlabelled: every channel, no labels)" if args.num_unlabelled else ")"))
    return 0


def _allow_missing_privileged_option(parser: argparse.ArgumentParser) -> None:
    """The converters' option for training cases without the privileged scan."""
    parser.add_argument("--allow-missing-privileged", action="store_true",
                        help="convert cases that lack only the privileged image: it is written as zeros and the "
                             "case listed in dataset.json's \"dante\" -> \"cases_without_privileged\"")


def _allow_unlabelled_option(parser: argparse.ArgumentParser) -> None:
    """The converters' option for training cases without a label."""
    parser.add_argument("--allow-unlabelled", action="store_true",
                        help="convert cases that lack only their _seg file (every image present) as unlabelled "
                             "cases: the label is nnU-Net's ignore label everywhere and the case is listed in "
                             "\"dante\" -> \"unlabelled_cases\" (never validated on; DANTETrainer_teach learns from it)")


def build_parser() -> argparse.ArgumentParser:
    from dante_nnunet.data.phantom import KINDS
    fmt = argparse.ArgumentDefaultsHelpFormatter    # every option with a help text shows its default
    p = argparse.ArgumentParser(prog="dante_nnunet", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    _add_parser = sub.add_parser

    def add_parser(name, **kw):   # the subcommand's help is also its description (shown by SUBCOMMAND -h)
        return _add_parser(name, description=kw.get("help"), formatter_class=fmt, **kw)
    sub.add_parser = add_parser

    s = sub.add_parser("env", help="print shell lines that let nnUNetv2_train/predict find the DANTE trainers; "
                                   'use as: eval "$(dante_nnunet env)"')
    s.set_defaults(func=_env)

    s = sub.add_parser("export", help="write the deployed limited pathway as a plain nnU-Net model "
                                      "(trainer nnUNetTrainer, no plugin needed to predict)")
    s.add_argument("-d", help="dataset name or id")
    s.add_argument("-c", help="configuration")
    s.add_argument("-tr", help="DANTE trainer the model was trained with")
    s.add_argument("-f", nargs="+", help="fold(s)")
    s.add_argument("-o", required=True, help="output root, laid out like nnUNet_results")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    s.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name in each fold folder")
    s.add_argument("--decision", default=None, metavar="DECISION_JSON",
                   help="export the model dante_nnunet teach chose (its decision.json) instead of -d/-c/-tr/-f")
    s.set_defaults(func=_export)

    s = sub.add_parser("teach", help="the gated privileged-teacher recipe for unlabelled scans with every channel: "
                                     "on each fold, an all-channel teacher and a plain limited-channel model, the "
                                     "teacher's labels on the scans, a limited-channel student on labelled + "
                                     "pseudo-labelled cases, and the choice of student or plain model from their "
                                     "cross-validated Dice on the real cases (stock nnU-Net commands, each printed; "
                                     "a rerun resumes)")
    s.add_argument("-d", type=int, required=True, help="labelled dataset id (planned and preprocessed; its "
                                                       "dataset.json names the privileged channels)")
    s.add_argument("--scans", required=True, help="folder of unlabelled scans with every channel, <case>_XXXX<ending>")
    s.add_argument("-o", type=int, required=True, dest="student_id", help="new dataset id for the student dataset")
    s.add_argument("-n", default=None, dest="student_name",
                   help="student dataset name (letters and digits; if not given: the labelled dataset's + 'Teach')")
    s.add_argument("-c", default="3d_fullres", help="configuration")
    s.add_argument("-f", "--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="folds of the labelled dataset's splits_final.json (nnU-Net's five by default; one fold is "
                        "a quick run, the decision then rests on its validation cases only)")
    s.add_argument("-t", "--tokens", nargs="*", default=[],
                   help="trainer-name tokens added to every trainer, e.g. demo, 250epochs, seed0")
    s.add_argument("--teacher", default="UpperBoundTrainer", help="the teacher's trainer family")
    s.add_argument("--plain", default="LowerBoundTrainer", help="the plain model's trainer family")
    s.add_argument("--student", default=DEFAULT_STUDENT,
                   help="the student's trainer family (default: plain nnU-Net on twice the epochs, token long2: the "
                        "student learns from many more cases than the plain model; `LowerBoundTrainer` for the "
                        "plain model's schedule)")
    s.add_argument("--keep-fraction", type=float, default=1.0,
                   help="per fold, keep this fraction of the scans, those the fold's teacher is surest of")
    s.add_argument("--real-share", type=float, default=None,
                   help="list each real training case several times in the student's split so that real labels "
                        "make about this share of the cases nnU-Net draws (default: each case once)")
    s.add_argument("--mask-unsure", type=float, default=None, metavar="BAND",
                   help="give the voxels each fold's teacher is unsure of (a region's probability between 1 - BAND "
                        "and BAND, e.g. 0.9) nnU-Net's ignore label in the student's copies, so that the student "
                        "learns there from the real labels only (default: every voxel taught)")
    s.add_argument("--finetune", type=float, default=None, metavar="X",
                   help="fine-tune each fold's student on that fold's labelled cases for X of the schedule's epochs "
                        "(0 < X <= 1; the trainer token tune<X>: every tensor of the student, a tenth of nnU-Net's "
                        "learning rate); the fine-tuned model is then the student the gate judges")
    s.add_argument("--rounds", nargs="+", type=int, default=[], metavar="ID",
                   help="teacher rounds: for each ID (a free dataset id), each fold's teacher is trained again on its "
                        "fold's labelled cases + the scans it labelled (dataset ID) and labels the scans anew; the "
                        "student learns from the last round's labels (default: one round, no ID)")
    s.add_argument("--deploy-all", type=int, default=None, metavar="ID",
                   help="when the gate chooses the student, train the deployed student: one more student, on every case "
                        "of a new dataset ID holding every labelled case of the folds and the scans labelled by the "
                        "fold teachers' ensemble (their mean probabilities); decision.json then deploys it "
                        "(default: the fold students' ensemble); a rerun may add it")
    s.add_argument("--test-dir", nargs="+", default=[], dest="test_dirs", metavar="DIR",
                   help="folders of test cases (limited channels only, numbered as for nnUNetv2_predict, or every "
                        "channel) that no scan may repeat: a scan with a test case's voxels is refused before any "
                        "work (the labelled dataset's imagesTs and imagesTs_allchannels are always checked)")
    s.add_argument("--gate-alpha", type=float, default=None,
                   help="the gate's one-sided level: the student is chosen only if its mean cross-validated Dice "
                        "gain over the regions exceeds the (1 - alpha) t quantile times its SE (which counts "
                        "--run-noise) and no region is worse by more than one SE (default 0.05; docs/"
                        "gated_teacher.md, 'The rule', gives its measured false-accept rate and power); a rerun "
                        "with another rule only decides again")
    s.add_argument("--run-noise", type=float, default=None, metavar="DICE_POINTS",
                   help="the SD of the difference between two trainings that differ only in their seed, on one "
                        "fold's validation cases, mean Dice over the regions in points (default: the calibrated "
                        "value, docs/gated_teacher.md)")
    s.add_argument("--min-gain-se", type=float, default=None,
                   help="instead of the t bar, the rule used before issue 47: gain > this many SE (1: the "
                        "one-standard-error rule), to decide an earlier run again as it was decided")
    s.add_argument("--dante-teach-id", type=int, default=None,
                   help="also try DANTE as its own teacher: a new dataset of this id (the labelled cases + the scans "
                        "as unlabelled cases) and --dante-teach on each fold, a second candidate held to the same "
                        "rule; of the candidates that pass, the larger gain is chosen")
    s.add_argument("--dante-teach", default="DANTETrainer_teach",
                   help="the DANTE candidate's trainer (with the token teach; -t tokens are added)")
    s.add_argument("--disable_tta", action="store_true", help="the teacher predicts the scans without mirroring "
                                                              "(8x fewer network passes in 3D)")
    s.add_argument("--predict-part", type=int, nargs=2, default=None, metavar=("I", "N"),
                   help="only train each fold's teacher (if needed) and let it label part I of N of the scans "
                        "(nnU-Net's -part_id I -num_parts N), recording which model did; for a large pool on "
                        "several machines sharing nnU-Net's folders, then the full run without this option")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    s.add_argument("-device", default="cuda", choices=["cuda", "cpu", "mps"], help="as nnUNetv2_train's")
    s.set_defaults(func=_teach)

    s = sub.add_parser("demo", help="4-channel BraTS-like phantom (--kind rim) -> plan -> train -> predict on "
                                    "limited-only scans -> export -> plugin-free prediction, on the CPU")
    s.add_argument("--workdir", default="demo_output", help="new or empty folder for nnUNet_raw/_preprocessed/"
                                                            "_results and the logs")
    s.add_argument("--dataset-id", type=int, default=990, help="id of the phantom dataset inside the workdir")
    s.add_argument("-tr", default="DANTETrainer_demo", help="trainer to run (a CPU-sized DANTE variant)")
    s.add_argument("--seed", type=int, default=0, help="seed of the phantom data")
    s.set_defaults(func=_demo)

    s = sub.add_parser("pretrain-dataset", help="an nnU-Net raw dataset for Stage-1 pre-training from images alone "
                                                "(placeholder labels)")
    s.add_argument("sources", nargs="+", help="folder(s) of images named <case>_XXXX<file_ending>")
    s.add_argument("-d", type=int, required=True, help="new dataset id")
    s.add_argument("-n", required=True, help="dataset name (letters and digits)")
    s.add_argument("--like", help="dataset.json to copy channel_names, the dante block and file_ending from")
    s.add_argument("--channels", nargs="+", help="channel names in file order (_0000, _0001, ...)")
    s.add_argument("--privileged", nargs="+", help="privileged channel name(s)")
    s.add_argument("--file-ending", help="image file ending (if not given: from --like, else .nii.gz)")
    _allow_missing_privileged_option(s)
    s.set_defaults(func=_pretrain_dataset)

    s = sub.add_parser("pseudo-label-dataset", help="a labelled dataset plus scans labelled by a model's predictions "
                                                    "(e.g. an all-channel teacher's on unlabelled scans with every "
                                                    "channel): the student's training dataset")
    s.add_argument("-s", required=True, help="the labelled dataset (name or id)")
    s.add_argument("--images", required=True, help="folder of the scans, every channel, named <case>_XXXX<ending>")
    s.add_argument("--labels", required=True, help="folder of the predictions of those scans (nnUNetv2_predict -o)")
    s.add_argument("-d", type=int, required=True, help="new dataset id")
    s.add_argument("-n", required=True, help="new dataset name (letters and digits)")
    s.add_argument("--fold", type=int, default=None,
                   help="keep only this fold's labelled cases (splits_final.json of -s) and write the new dataset's "
                        "splits_final.json: fold 0 = its training cases + the scans, the same validation cases")
    s.set_defaults(func=_pseudo_label_dataset)

    s = sub.add_parser("add-scans", help="a new dataset: a labelled dataset's cases plus a folder of unlabelled "
                                         "scans (every channel) as cases whose label is nnU-Net's ignore label, "
                                         "listed in dante.unlabelled_cases (for DANTETrainer_teach)")
    s.add_argument("-d", required=True, help="the labelled dataset (name or id)")
    s.add_argument("--scans", required=True, help="folder of the scans, every channel, named <scan>_XXXX<ending>")
    s.add_argument("-o", type=int, required=True, help="the new dataset's id")
    s.add_argument("-n", default=None, help="the new dataset's name (default: the labelled one's + Scans)")
    s.add_argument("-c", default=None, help="also preprocess it with the labelled dataset's plans for this "
                                            "configuration and copy its splits_final.json")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    s.set_defaults(func=_add_scans)

    s = sub.add_parser("check-dataset", help="read every image and label of an nnU-Net raw dataset whole and report "
                                             "each truncated, unreadable or non-finite file, mixed grids within a "
                                             "case, undefined label values and privileged placeholders the "
                                             "\"dante\" block does not list; run it before "
                                             "nnUNetv2_plan_and_preprocess (exit 1 if anything is found; writes "
                                             "nothing)")
    s.add_argument("-d", required=True, help="dataset name or id under nnUNet_raw, or a dataset folder")
    s.set_defaults(func=_check_dataset)

    s = sub.add_parser("evaluate", help="Dice and HD95 (mm) per case and region, BraTS conventions for empty masks")
    s.add_argument("ref", help="folder of reference segmentations")
    s.add_argument("pred", help="folder of predictions (same file names)")
    s.add_argument("--dataset-json", required=True, help="dataset.json giving labels/regions and file_ending")
    s.add_argument("-o", required=True, help="metrics.json to write (must not exist)")
    s.add_argument("--et-threshold", type=int, default=None,
                   help="also report BraTS ET post-processing: fewer enhancing voxels (label 3) than this in a "
                        "case -> relabelled 2")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("add-configuration", help="add a configuration with other widths and patch size to a "
                                                 "preprocessed dataset's plans, e.g. one a CPU can train; it "
                                                 "inherits the base configuration's preprocessed data")
    s.add_argument("-d", required=True, help="dataset name or id (planned and preprocessed)")
    s.add_argument("-n", required=True, help="name of the new configuration, e.g. 3d_cpu")
    s.add_argument("-b", default="3d_fullres", help="configuration to inherit from")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    s.add_argument("--width", type=int, default=None, help="first stage's width, doubled per stage up to 320 (if "
                                                           "not given: the base's widths)")
    s.add_argument("--widths", type=int, nargs="+", default=None, help="every stage's width (instead of --width)")
    s.add_argument("--patch-size", type=int, nargs="+", default=None, help="patch size, e.g. 64 64 64 (a multiple "
                                                                            "of the network's total stride per "
                                                                            "axis; if not given: the base's)")
    s.add_argument("--replace", action="store_true", help="replace a configuration of that name that this command "
                                                          "wrote earlier (models trained with it no longer match)")
    s.set_defaults(func=_add_configuration)

    s = sub.add_parser("convert-brats", help="BraTS 2018/2020/2021 case folders -> nnU-Net raw dataset (Dataset137 "
                                             "labels, regions, T1ce privileged)")
    s.add_argument("src", help="folder of BraTS case folders (subfolders such as HGG/LGG are searched)")
    s.add_argument("-d", type=int, required=True, help="new dataset id")
    s.add_argument("--name", default="BraTS", help="dataset name (letters and digits)")
    s.add_argument("--exclude", default=None, metavar="FILE",
                   help="leave these cases out: a list of case names (one per line), or a CSV such as BraTS 2021's "
                        "name-mapping file, whose rows with column IN filled name a case in column ID (default "
                        "BraTS2021 BraTS2018: the BraTS 2021 copies of the BraTS 2018 cases)")
    s.add_argument("--exclude-columns", nargs=2, default=None, metavar=("ID", "IN"),
                   help="the CSV's id column and the column that marks a case to leave out")
    _allow_missing_privileged_option(s)
    _allow_unlabelled_option(s)
    s.set_defaults(func=_convert_brats)

    s = sub.add_parser("convert-ct-pairs", help="paired non-contrast CT + CTPA case folders -> nnU-Net raw dataset "
                                                "(CT normalisation, CTPA privileged)")
    s.add_argument("src", help="folder of case folders, each with <case>_ncct, <case>_ctpa, <case>_seg .nii.gz")
    s.add_argument("-d", type=int, required=True, help="new dataset id")
    s.add_argument("--name", default="DP2E", help="dataset name (letters and digits)")
    _allow_missing_privileged_option(s)
    _allow_unlabelled_option(s)
    s.set_defaults(func=_convert_ct_pairs)

    s = sub.add_parser("phantom", help="a phantom raw dataset with a held-out test split: BraTS-like (T1ce "
                                       "privileged), its easy rim form (the demo's data), the transfer phantom (T1ce "
                                       "shows a continuous enhancement strength that T2 shows relative to a per-case "
                                       "offset), its reference form (the offset on the whole tumour, so the edema "
                                       "shows it), several tumour types whose ET pattern T1/FLAIR announce (types), "
                                       "or DP2E-like CT (CTPA privileged)")
    s.add_argument("--kind", choices=sorted(KINDS), default="brats", help="which phantom")
    s.add_argument("-d", type=int, required=True, help="new dataset id (written into $nnUNet_raw, which must be set, "
                                                       "as must nnUNet_preprocessed and nnUNet_results for the "
                                                       "next steps)")
    s.add_argument("--name", default=None, help="dataset name (if not given: BraTSPhantom, BraTSRimPhantom, "
                                                "BraTSTransferPhantom, BraTSReferencePhantom, BraTSTypesPhantom or DP2EPhantom)")
    s.add_argument("--num-train", type=int, default=24, help="training cases (imagesTr/labelsTr)")
    s.add_argument("--num-test", type=int, default=8, help="held-out test cases (imagesTs, imagesTs_allchannels, "
                                                           "labelsTs)")
    s.add_argument("--seed", type=int, default=0, help="seed of the generator (same seed, same volumes)")
    s.add_argument("--shape", type=int, nargs=3, default=None, help="volume shape Z Y X (if not given: 40 40 40 for "
                                                                     "brats, transfer and reference, 32 32 32 for rim and types, "
                                                                     "24 64 64 for ct)")
    s.add_argument("--missing-privileged", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of the training cases written without their privileged scan (zeros, listed in "
                        "dataset.json's \"dante\" -> \"cases_without_privileged\"); test cases keep it")
    s.add_argument("--num-unlabelled", type=int, default=0, metavar="U",
                   help="also write U unlabelled cases with every channel into imagesUnlabelled/: the scans of "
                        "dante_nnunet teach (--scans) and add-scans, or the input of pretrain-dataset for Stage 1")
    s.set_defaults(func=_phantom)

    s = sub.add_parser("fingerprint", help="after nnUNetv2_extract_fingerprint, for a dataset that lists "
                                           "cases_without_privileged: recompute the privileged channels' intensity "
                                           "statistics (CT normalisation) from the cases that have the scan, so that "
                                           "placeholders do not enter them; then plan and preprocess")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.set_defaults(func=_fingerprint)

    s = sub.add_parser("sweep", help="print the nnUNetv2_train commands of a lambda1 x lambda2 grid")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("-c", required=True, help="configuration")
    s.add_argument("-f", default="0", help="fold")
    s.add_argument("--base", default="DANTETrainer", help="DANTE trainer to vary")
    s.add_argument("--pib", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 1.0], help="lambda1 values")
    s.add_argument("--align", type=float, nargs="+", default=[0.5], help="lambda2 values")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="further nnUNetv2_train arguments")
    s.set_defaults(func=_sweep)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from dante_nnunet.guards import CheckpointWriteError
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, CheckpointWriteError) as e:
        print(f"dante_nnunet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
