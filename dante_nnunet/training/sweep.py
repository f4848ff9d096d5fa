"""Trainers whose name carries the loss weights, for lambda1/lambda2 sweeps without code edits.

``<Base>_pib<l1>_align<l2>`` (either part may be left out), e.g. ``DANTETrainer_pib0.1_align1.0`` or
``DANTETrainer_50epochs_pib0_align0.5``: the class ``<Base>`` (any DANTE trainer) with
``lambda_pib = l1`` and ``lambda_align = l2``. The name is also the results-folder name, so each sweep
point trains, continues (--c) and predicts like any named trainer. The shim module that
nnUNet_extTrainer points at resolves such names through a module ``__getattr__``.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

_NAME = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9]*?(?:_[A-Za-z0-9]+?)*?)"
                   r"(?:_pib(?P<pib>\d+(?:\.\d+)?))?(?:_align(?P<align>\d+(?:\.\d+)?))?$")
_cache: Dict[str, type] = {}


def sweep_trainer_name(base: str, lambda_pib: Optional[float] = None, lambda_align: Optional[float] = None) -> str:
    name = base
    if lambda_pib is not None:
        name += f"_pib{lambda_pib:g}"
    if lambda_align is not None:
        name += f"_align{lambda_align:g}"
    return name


def resolve_sweep_trainer(name: str, namespace: dict) -> Optional[type]:
    """The trainer class for a sweep name whose base is a DANTE trainer in ``namespace``, else None."""
    from dante_nnunet.training.dante_trainer import DANTETrainer

    if name in _cache:
        return _cache[name]
    m = _NAME.match(name)
    if m is None or (m["pib"] is None and m["align"] is None):
        return None
    base = namespace.get(m["base"])
    if not (isinstance(base, type) and issubclass(base, DANTETrainer)):
        return None
    attrs = {"__module__": __name__, "__qualname__": name}
    if m["pib"] is not None:
        attrs["lambda_pib"] = float(m["pib"])
    if m["align"] is not None:
        attrs["lambda_align"] = float(m["align"])
    cls = type(name, (base,), attrs)
    _cache[name] = cls
    return cls
