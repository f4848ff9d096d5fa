"""The trainer classes that token names ask for (``dante_nnunet/trainer_names.py``), built on demand.

``DANTETrainer_transfer_S1_seed2`` is ``DANTETrainer`` with the attributes of the tokens ``transfer``,
``S1`` and ``seed2`` and nothing else: every variant changes class attributes only, the nnU-Net way. The
class is made once per name (the same object on every lookup) and carries the name, so nnU-Net's lookup
(``nnUNet_extTrainer``: the shim module's ``__getattr__``), the results folder and ``nnUNetv2_predict``'s
reload all see one trainer.

Schedule tokens scale the whole schedule: the regularisers still join at ``regularizer_start_fraction`` of
training (epoch 10 of 50, 2 of 10, 1 of 5, 0 of 1) and transferred encoders stay frozen for
``encoder_freeze_fraction``.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from dante_nnunet.trainer_names import (FAMILIES, NAMED_TOKENS, NUMERIC_TOKENS, TrainerNameError, parse_name,
                                        parse_tokens, teacher_name)
from dante_nnunet.training.base import DANTEBaseTrainer
from dante_nnunet.training.baselines import (DistillationTrainer, LowerBoundTrainer, ModalityDropoutTrainer,
                                             UpperBoundTrainer)
from dante_nnunet.training.dante_trainer import DANTETrainer
from dante_nnunet.training.pretrain_trainer import DANTEPretrainTrainer

FAMILY_CLASSES: Dict[str, type] = {c.__name__: c for c in (DANTETrainer, DANTEPretrainTrainer, UpperBoundTrainer,
                                                           LowerBoundTrainer, ModalityDropoutTrainer,
                                                           DistillationTrainer)}
assert tuple(FAMILY_CLASSES) == FAMILIES
_cache: Dict[str, type] = {}


def _family_of(base: type) -> str:
    for c in base.__mro__:
        if FAMILY_CLASSES.get(c.__name__) is c:
            return c.__name__
    raise TypeError(f"{base.__name__} is not a trainer of this package's families ({', '.join(FAMILIES)})")


def _describe(tokens) -> str:
    docs = []
    for token in tokens:
        if token in NAMED_TOKENS:
            docs.append(f"``{token}``: {NAMED_TOKENS[token].doc}")
        else:
            docs.append(next(f"``{token}``: {text.split(': ', 1)[1]}" for pattern, _, _, text, _ in NUMERIC_TOKENS
                             if pattern.fullmatch(token)))
    return "\n".join(docs)


def build_variant(base: type, name: str) -> type:
    """The class ``name`` = ``base.__name__`` + ``_token...``: ``base`` with the tokens' attributes (cached by
    name). Raises TrainerNameError for a name the tokens do not allow."""
    if name in _cache:
        return _cache[name]
    if not name.startswith(base.__name__ + "_"):
        raise ValueError(f"{name!r} does not start with {base.__name__}_")
    tokens = name[len(base.__name__) + 1:].split("_")
    parsed = parse_tokens(_family_of(base), tokens, name)
    attrs = dict(parsed.attrs)
    teacher = getattr(base, "teacher_trainer", None)
    if teacher is not None and (parsed.schedule or parsed.seed is not None):
        attrs["teacher_trainer"] = teacher_name(teacher, parsed)
    doc = f"{base.__name__} with\n{_describe(tokens)}"
    cls = type(name, (base,), {"__module__": __name__, "__qualname__": name, "__doc__": doc, **attrs})
    _cache[name] = cls
    return cls


def trainer_class(name: str) -> Optional[type]:
    """The package's trainer called ``name`` (a family or ``<Family>_<tokens>``), None for a name of no
    family; raises TrainerNameError for a family name with tokens that name no trainer."""
    if name in FAMILY_CLASSES:
        return FAMILY_CLASSES[name]
    parsed = parse_name(name)   # refuses bad tokens with the family's token list
    return None if parsed is None else build_variant(FAMILY_CLASSES[parsed.family], name)


def variant_of(name: str, namespace: Mapping[str, object]) -> Optional[type]:
    """For a module of one's own trainer classes (``nnUNet_extTrainer``): ``<Class>_<tokens>`` where
    ``<Class>`` is a trainer of this package's families in ``namespace`` (the longest such prefix), else None.
    Lenient: a name whose tokens do not resolve is left to the other trainer folders."""
    parts = name.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        base = namespace.get("_".join(parts[:cut]))
        if isinstance(base, type) and issubclass(base, DANTEBaseTrainer):
            try:
                return build_variant(base, name)
            except TrainerNameError:
                return None
    return None


def __getattr__(name: str):
    cls = trainer_class(name)
    if cls is None:
        raise AttributeError(name)
    return cls
