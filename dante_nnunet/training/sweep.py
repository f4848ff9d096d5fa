"""Trainers whose name carries loss weights and a seed, for sweeps and repeated runs without code edits.

``<Base>_pib<l1>_align<l2>_syn<ls>_seed<n>`` (each part may be left out, in this order), e.g.
``DANTETrainer_pib0.1_align1.0``, ``DANTETrainer_50epochs_pib0_align0.5``, ``DANTETrainer_synth_demo_syn0.1``
or ``LowerBoundTrainer_demo_seed2``: the class ``<Base>`` with ``lambda_pib = l1``, ``lambda_align = l2``,
``lambda_synthesis = ls`` (DANTE trainers only; losses/synthesis.py) and ``seed = n``
(any trainer of this package: DANTE, Stage 1, the baselines; see ``training/seeding.py``). A seeded
distillation student learns from the teacher of the same seed (``teacher_trainer`` + ``_seed<n>``).
The name is also the results-folder name, so each sweep point and each seed trains, continues (--c) and
predicts like any named trainer. The shim module that nnUNet_extTrainer points at resolves such names
through a module ``__getattr__``.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

_NUMBER = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NAME = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9]*?(?:_[A-Za-z0-9]+?)*?)"
                   rf"(?:_pib(?P<pib>{_NUMBER}))?(?:_align(?P<align>{_NUMBER}))?(?:_syn(?P<syn>{_NUMBER}))?"
                   r"(?:_seed(?P<seed>\d+))?$")
_WEIGHTS = (("pib", "lambda_pib"), ("align", "lambda_align"), ("syn", "lambda_synthesis"))
_cache: Dict[str, type] = {}


def sweep_trainer_name(base: str, lambda_pib: Optional[float] = None, lambda_align: Optional[float] = None,
                       seed: Optional[int] = None, lambda_synthesis: Optional[float] = None) -> str:
    """The name that ``resolve_sweep_trainer`` turns back into ``base`` with these values; refuses values
    the name cannot carry (negative, NaN, Inf) and checks that the name reads back to the same numbers."""
    name = base
    for (key, attr), value in zip(_WEIGHTS, (lambda_pib, lambda_align, lambda_synthesis)):
        if value is None:
            continue
        value = float(value)
        if not (value >= 0 and value != float("inf")):
            raise ValueError(f"{attr} must be a finite number >= 0, got {value!r}")
        text = f"{value:.12g}"
        if float(text) != value or re.fullmatch(_NUMBER, text) is None:
            raise ValueError(f"{attr}={value!r} has no exact short decimal form for a trainer name")
        name += f"_{key}{text}"
    if seed is not None:
        if int(seed) != seed or seed < 0:
            raise ValueError(f"a seed is a non-negative integer, got {seed!r}")
        name += f"_seed{int(seed)}"
    return name


def resolve_sweep_trainer(name: str, namespace: dict) -> Optional[type]:
    """The trainer class for a suffixed name whose base is a trainer in ``namespace``, else None."""
    from dante_nnunet.training.base import DANTEBaseTrainer
    from dante_nnunet.training.dante_trainer import DANTETrainer

    if name in _cache:
        return _cache[name]
    m = _NAME.match(name)
    if m is None:
        return None
    weights = {attr: float(m[key]) for key, attr in _WEIGHTS if m[key] is not None}
    if not weights and m["seed"] is None:
        return None
    base = namespace.get(m["base"])
    needs = DANTETrainer if weights else DANTEBaseTrainer
    if not (isinstance(base, type) and issubclass(base, needs)):
        return None
    attrs = {"__module__": __name__, "__qualname__": name, **weights}
    if m["seed"] is not None:
        attrs["seed"] = int(m["seed"])
        teacher = getattr(base, "teacher_trainer", None)
        if teacher is not None:
            attrs["teacher_trainer"] = f"{teacher}_seed{int(m['seed'])}"
    cls = type(name, (base,), attrs)
    _cache[name] = cls
    return cls
