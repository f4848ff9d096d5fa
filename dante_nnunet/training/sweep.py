"""Trainers whose name carries loss weights and a seed, for sweeps and repeated runs without code edits.

``<Base>_pib<l1>_align<l2>_seed<n>`` (each part may be left out, in this order), e.g.
``DANTETrainer_pib0.1_align1.0``, ``DANTETrainer_50epochs_pib0_align0.5`` or ``LowerBoundTrainer_demo_seed2``:
the class ``<Base>`` with ``lambda_pib = l1``, ``lambda_align = l2`` (DANTE trainers only) and ``seed = n``
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
                   rf"(?:_pib(?P<pib>{_NUMBER}))?(?:_align(?P<align>{_NUMBER}))?(?:_seed(?P<seed>\d+))?$")
_cache: Dict[str, type] = {}


def sweep_trainer_name(base: str, lambda_pib: Optional[float] = None, lambda_align: Optional[float] = None,
                       seed: Optional[int] = None) -> str:
    """The name that ``resolve_sweep_trainer`` turns back into ``base`` with these values; refuses values
    the name cannot carry (negative, NaN, Inf) and checks that the name reads back to the same numbers."""
    name = base
    for key, value in (("pib", lambda_pib), ("align", lambda_align)):
        if value is None:
            continue
        value = float(value)
        if not (value >= 0 and value != float("inf")):
            raise ValueError(f"lambda_{key} must be a finite number >= 0, got {value!r}")
        text = f"{value:.12g}"
        if float(text) != value or re.fullmatch(_NUMBER, text) is None:
            raise ValueError(f"lambda_{key}={value!r} has no exact short decimal form for a trainer name")
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
    if m is None or (m["pib"] is None and m["align"] is None and m["seed"] is None):
        return None
    base = namespace.get(m["base"])
    needs = DANTETrainer if (m["pib"] is not None or m["align"] is not None) else DANTEBaseTrainer
    if not (isinstance(base, type) and issubclass(base, needs)):
        return None
    attrs = {"__module__": __name__, "__qualname__": name}
    if m["pib"] is not None:
        attrs["lambda_pib"] = float(m["pib"])
    if m["align"] is not None:
        attrs["lambda_align"] = float(m["align"])
    if m["seed"] is not None:
        attrs["seed"] = int(m["seed"])
        teacher = getattr(base, "teacher_trainer", None)
        if teacher is not None:
            attrs["teacher_trainer"] = f"{teacher}_seed{int(m['seed'])}"
    cls = type(name, (base,), attrs)
    _cache[name] = cls
    return cls
