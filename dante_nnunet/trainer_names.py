"""Trainer names built from tokens: ``<Family>_<token>_<token>...``, each token a set of class attributes.

A name is a family (one of ``FAMILIES``) followed by tokens in any order, e.g. ``DANTETrainer_demo``,
``DANTETrainer_transfer_S1_seed2``, ``DANTETrainer_synth_demo_syn0.1`` or ``LowerBoundTrainer_50epochs``.
The trainer it names is the family's class with the tokens' attributes (``training/variants.py`` builds
it when nnU-Net's lookup asks for the name). The name is also the results-folder name, so each
combination trains, continues (``--c``) and predicts like a hand-written trainer class.

Rules: every token must be known and meant for the family; two tokens that set the same attribute are
refused (``demo`` and ``transfer`` both set the schedule), except that a weight token refines the weight
a form turns on (``synth`` sets ``lambda_synthesis = 1``, ``synth_syn0.1`` sets 0.1). The message of a
refused name lists the family's tokens.

Distillation's teacher follows from the student's name: ``teacher_trainer`` plus the student's schedule
tokens and seed (``DistillationTrainer_demo_seed2`` learns from ``UpperBoundTrainer_demo_seed2``).

This module knows names only; it imports no trainer, so the benchmark and the CLI format names without
loading torch or nnU-Net.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# teach's default student: plain nnU-Net on twice the plain model's epochs (token long2), chosen on 2026-12-08
# by the rule written before its seeds were seen (docs/gated_teacher.md, "Choosing the default")
DEFAULT_STUDENT = "LowerBoundTrainer_long2"

DANTE, PRETRAIN = "DANTETrainer", "DANTEPretrainTrainer"
UPPER, LOWER, DROPOUT, DISTILL = ("UpperBoundTrainer", "LowerBoundTrainer", "ModalityDropoutTrainer",
                                  "DistillationTrainer")
FAMILIES = (DANTE, PRETRAIN, UPPER, LOWER, DROPOUT, DISTILL)
BASELINES = (UPPER, LOWER, DROPOUT, DISTILL)


class TrainerNameError(ValueError):
    """A trainer name of one of this package's families that names no trainer (unknown token, a token of
    another family, two tokens setting the same attribute)."""


@dataclass(frozen=True)
class Token:
    name: str
    doc: str
    attrs: Dict[str, object]
    families: Tuple[str, ...] = FAMILIES
    schedule: bool = False                 # carried over to a distillation student's teacher
    refinable: Tuple[str, ...] = ()        # weights a weight token may set again
    per_family: Dict[str, Dict[str, object]] = field(default_factory=dict)   # values that differ by family

    def attributes(self, family: str) -> Dict[str, object]:
        return {**self.attrs, **self.per_family.get(family, {})}


_DEMO = {"epochs": 10, "iterations_per_epoch": 50, "val_iterations_per_epoch": 10}
_GPU_CHECK = {"epochs": 3, "iterations_per_epoch": 20, "val_iterations_per_epoch": 5}
_TRANSFER = {"epochs": 100, "iterations_per_epoch": 50, "val_iterations_per_epoch": 5}
_PRETRAINED = {"requires_pretrained_weights": True}

NAMED_TOKENS: Dict[str, Token] = {t.name: t for t in (
    # --- schedules (the regularisers join at 20% of training, transferred encoders stay frozen for 10%)
    Token("demo", "the CPU demo's schedule: 10 epochs of 50 iterations, 10 validation iterations", _DEMO,
          schedule=True),
    Token("gpuCheck", "scripts/gpu_check.py's schedule: 3 epochs of 20 iterations, 5 validation iterations",
          _GPU_CHECK, schedule=True),
    Token("transfer", "the phantom benchmarks' CPU schedule: 100 epochs of 50 iterations, 5 validation "
          "iterations (Stage 1: 50 epochs)", _TRANSFER, schedule=True, per_family={PRETRAIN: {"epochs": 50}}),
    # --- DANTE's regulariser forms (losses/alignment.py, losses/pib.py, losses/synthesis.py)
    Token("paper", "Eqs. 3-4 as printed: L1 alignment of the raw maps both ways, L1 of the raw correction, "
          "torch's default initialisation of proj_i",
          {"alignment": "l1", "alignment_stop_gradient": False, "pib": "l1", "fusion_zero_init": False},
          families=(DANTE,)),
    Token("stdBidir", "the default form with the alignment pulling both pathways (Z^A not detached)",
          {"alignment_stop_gradient": False}, families=(DANTE,)),
    Token("L2Align", "Eq. 4 with p = 2 between standardised maps", {"alignment": "std_l2"}, families=(DANTE,)),
    Token("InfoNCE", "Eq. 5, pixel-level InfoNCE alignment", {"alignment": "infonce"}, families=(DANTE,)),
    Token("noPIB", "ablation: lambda1 = 0 (no privileged information bottleneck)", {"lambda_pib": 0.0},
          families=(DANTE,)),
    Token("noAlign", "ablation: lambda2 = 0 (no alignment)", {"lambda_align": 0.0}, families=(DANTE,)),
    Token("synth", "adds privileged synthesis: a training-only head on D_L regresses the privileged channels "
          "(weight 1; not in the paper)", {"lambda_synthesis": 1.0}, families=(DANTE,),
          refinable=("lambda_synthesis",)),
    Token("synthOnly", "ablation: the synthesis term without Eqs. 3-4 (no PIB, no alignment)",
          {"lambda_synthesis": 1.0, "lambda_pib": 0.0, "lambda_align": 0.0}, families=(DANTE,),
          refinable=("lambda_synthesis",)),
    Token("vib", "variational bottleneck (RedCore-style): the fusion's correction is a Gaussian code of "
          "scale-free inputs, sampled in training, its mean in evaluation; the PIB term is its KL to N(0, I)",
          {"bottleneck": "vib"}, families=(DANTE,)),
    Token("club", "IndiSeek-style independence: lambda_club = 0.1 x a CLUB upper bound on I(Z^A; Z^P) per level, "
          "from the regularisers' epoch, its estimator trained from epoch 0", {"lambda_club": 0.1},
          families=(DANTE,), refinable=("lambda_club",)),
    Token("checkpointing", "activation checkpointing of every encoder, decoder and the fusion (time for memory)",
          {"activation_checkpointing": True}, families=(DANTE,)),
    # --- Stage 1 and starting from it
    Token("S1", "fine-tuned from Stage 1: refuses to start without -pretrained_weights", _PRETRAINED,
          families=(DANTE, LOWER)),
    Token("S1selfMAE", "as S1, under its own name: a run from a self-reconstruction Stage 1", _PRETRAINED,
          families=(DANTE,)),
    Token("SSL", "as S1, under its own name: the lower bound from a limited-channel MAE", _PRETRAINED,
          families=(LOWER,)),
    Token("S1synth", "as S1, under its own name: the lower bound from a Stage 1 with privileged synthesis "
          "(limitedSynth)", _PRETRAINED, families=(LOWER,)),
    Token("S1dense", "as S1, under its own name: the lower bound from a denseSynth Stage 1", _PRETRAINED,
          families=(LOWER,)),
    Token("noFreeze", "transferred Stage-1 encoders train from the first epoch (needed under DDP)",
          {"encoder_freeze_fraction": 0.0}, families=(DANTE,)),
    Token("selfMAE", "Stage 1 'w/o cross-modal' (Table 2): each pathway reconstructs its own input only "
          "(Eqs. 7-8; no Eq. 9)", {"cross_modal": False}, families=(PRETRAIN,)),
    Token("limitedMAE", "not DANTE: a masked autoencoder of the limited channels alone (Eq. 7), "
          "self-supervised pre-training without privileged scans", {"cross_modal": False, "limited_only": True},
          families=(PRETRAIN,)),
    Token("limitedSynth", "not in the paper: the limited-channel MAE (Eq. 7) whose decoder also synthesises the "
          "privileged channels from E_L, so privileged scans without labels teach the deployed encoder",
          {"cross_modal": False, "limited_only": True, "privileged_synthesis": True}, families=(PRETRAIN,)),
    Token("denseSynth", "not in the paper: limitedSynth with nothing masked: E_L and its decoder translate the "
          "limited channels into the privileged ones (synthesis alone; Eq. 7 has no masked voxel)",
          {"cross_modal": False, "limited_only": True, "privileged_synthesis": True, "mask_ratio": 0.0},
          families=(PRETRAIN,)),
    # --- cases
    Token("teach", "learns from the dataset's unlabelled cases (\"dante\" -> \"unlabelled_cases\"): from 20% of "
          "training on, the limited pathway's target on them is the full pathway's prediction where it is sure "
          "(confidence >= 0.9, else ignored); labelled cases are half of the draws",
          {"trains_on_unlabelled": True, "teach_unlabelled": True}, families=(DANTE,)),
    Token("completeOnly", "trains and validates on the cases with the privileged scan only",
          {"complete_cases_only": True}, families=(DANTE, LOWER)),
)}

_NUMBER = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# numeric tokens: (pattern, attribute, families, help, converter)
_WEIGHTS = (("pib", "lambda_pib"), ("align", "lambda_align"), ("syn", "lambda_synthesis"))
_OTHER_WEIGHTS = (("club", "lambda_club"),)   # not formatted by trainer_name
NUMERIC_TOKENS = (
    (re.compile(r"(?P<v>[1-9]\d*)epochs?"), "epochs", FAMILIES, "<n>epochs: n epochs of the schedule's iterations (250, nnU-Net's, unless a schedule token sets them) ('1epoch')", int),
    *((re.compile(rf"{key}(?P<v>{_NUMBER})"), attr, (DANTE,), f"{key}<x>: {attr} = x", float)
      for key, attr in _WEIGHTS + _OTHER_WEIGHTS),
    (re.compile(rf"fg(?P<v>{_NUMBER})"), "foreground_share", FAMILIES,
     "fg<x>: the share of each batch nnU-Net centres on a foreground voxel (its oversample_foreground_percent, "
     "0.33 by default; 0 <= x <= 1)", float),
    (re.compile(r"seed(?P<v>\d+)"), "seed", FAMILIES, "seed<n>: training seed n (training/seeding.py)", int),
    (re.compile(rf"tune(?P<v>{_NUMBER})"), "finetune_fraction", (LOWER,),
     "tune<x>: a fine-tune of a whole model of the same network (-pretrained_weights, required, every tensor "
     "loaded): x of the schedule's epochs (0 < x <= 1) from a tenth of nnU-Net's learning rate", float),
    (re.compile(rf"long(?P<v>{_NUMBER})"), "schedule_scale", FAMILIES,
     "long<x>: the schedule's epochs times x (x > 0), e.g. a student of many more cases than its teacher had", float),
    (re.compile(rf"share(?P<v>{_NUMBER})"), "labelled_share", (DANTE,),
     "share<x>: with teach, labelled cases are about x of the draws (0 < x < 1; 0.5 unless set)", float),
    (re.compile(rf"warm(?P<v>{_NUMBER})"), "teach_start_fraction", (DANTE,),
     "warm<x>: with teach, the full pathway teaches from fraction x of training on (0 <= x < 1; 0.2 unless set)",
     float),
    (re.compile(rf"sure(?P<v>{_NUMBER})"), "teach_threshold", (DANTE,),
     "sure<x>: with teach, a voxel is taught where the full pathway's confidence is at least x in every region "
     "(0.5 <= x <= 1; 0.9 unless set; 0.5 teaches every voxel)", float),
)


@dataclass
class ParsedName:
    """What a name sets: ``attrs`` (attribute -> value), ``schedule`` (the schedule tokens in name order) and
    ``seed`` (or None)."""
    family: str
    tokens: List[str]
    attrs: Dict[str, object]
    schedule: List[str]
    seed: Optional[int]


def tokens_help(family: str) -> str:
    """One line per token usable with ``family``."""
    lines = [f"  {t.name}: {t.doc}" for t in NAMED_TOKENS.values() if family in t.families]
    lines += [f"  {text}" for _, _, fams, text, _ in NUMERIC_TOKENS if family in fams]
    return "\n".join(lines)


def _read_token(token: str, family: str, name: str):
    """(attributes, schedule?, numeric?) of one token of ``name``."""
    def refuse(why: str):
        raise TrainerNameError(f"trainer name {name!r}: {why}. {family}'s tokens (in any order, joined by '_'):\n"
                               f"{tokens_help(family)}")
    if token in NAMED_TOKENS:
        t = NAMED_TOKENS[token]
        if family not in t.families:
            refuse(f"token {token!r} is for {', '.join(t.families)}, not {family}")
        return t, t.attributes(family), t.schedule, False
    for pattern, attr, fams, _, convert in NUMERIC_TOKENS:
        m = pattern.fullmatch(token)
        if m:
            if family not in fams:
                refuse(f"token {token!r} sets {attr}, which {family} does not have")
            return None, {attr: convert(m["v"])}, attr == "epochs", True
    refuse(f"unknown token {token!r}" if token else "an empty token (two '_' in a row, or a trailing '_')")


def parse_tokens(family: str, tokens: Sequence[str], name: Optional[str] = None) -> ParsedName:
    """The attributes that ``tokens`` set on ``family``; raises TrainerNameError for an unknown token, a
    token of another family, or two tokens setting the same attribute."""
    name = name or "_".join([family, *tokens])
    read = [(token, *_read_token(token, family, name)) for token in tokens]
    attrs: Dict[str, object] = {}
    set_by: Dict[str, Tuple[str, Optional[Token]]] = {}
    for token, named, values, _, numeric in sorted(read, key=lambda r: r[4]):   # forms first, then numbers
        for attr, value in values.items():
            if attr in set_by:
                first, first_token = set_by[attr]
                if not (numeric and first_token is not None and attr in first_token.refinable):
                    raise TrainerNameError(
                        f"trainer name {name!r}: tokens {first!r} and {token!r} both set {attr}; keep one. "
                        f"{family}'s tokens:\n{tokens_help(family)}")
            set_by[attr] = (token, named)
            attrs[attr] = value
    schedule = [token for token, _, _, is_schedule, _ in read if is_schedule]
    seed = attrs.get("seed")
    return ParsedName(family, list(tokens), attrs, schedule, seed if seed is None else int(seed))


def parse_name(name: str) -> Optional[ParsedName]:
    """``<Family>_<tokens>`` -> ParsedName; None for a name of no family of this package (a bare family name
    included: it is a class, not a variant)."""
    family, sep, rest = name.partition("_")
    if family not in FAMILIES or not sep:
        return None
    return parse_tokens(family, rest.split("_"), name)


def _weight_text(attr: str, value) -> str:
    value = float(value)
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"{attr} must be a finite number >= 0, got {value!r}")
    text = f"{value:.12g}"
    if float(text) != value or re.fullmatch(_NUMBER, text) is None:
        raise ValueError(f"{attr}={value!r} has no exact short decimal form for a trainer name")
    return text


def trainer_name(base: str, lambda_pib: Optional[float] = None, lambda_align: Optional[float] = None,
                 seed: Optional[int] = None, lambda_synthesis: Optional[float] = None) -> str:
    """``base`` (a trainer name) with weight and seed tokens appended, in the order pib, align, syn, seed;
    refuses values a name cannot carry (negative, NaN, Inf, no exact short decimal) before any work."""
    name = base
    for (key, attr), value in zip(_WEIGHTS, (lambda_pib, lambda_align, lambda_synthesis)):
        if value is not None:
            name += f"_{key}{_weight_text(attr, value)}"
    if seed is not None:
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"a seed is a non-negative integer, got {seed!r}")
        name += f"_seed{int(seed)}"
    return name


def finetuned_name(trainer: str, fraction: float) -> str:
    """The fine-tune of a model of ``trainer`` (its seed included) for ``fraction`` of the schedule: the token
    tune<x> appended (``dante_nnunet teach --finetune``)."""
    return f"{trainer}_tune{float(fraction):g}"


def teacher_name(teacher: str, parsed: ParsedName) -> str:
    """A distillation student's teacher: ``teacher`` with the student's schedule tokens and seed."""
    return trainer_name("_".join([teacher, *parsed.schedule]), seed=parsed.seed)
