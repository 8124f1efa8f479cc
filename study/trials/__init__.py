"""Trial kinds, one module each; the registry finds every module's `KIND` (and `CATCH`).

Adding a kind: a module here defining `KIND = MyKind()` (a `study.trials.base.TrialKind`), an entry
in `percept/contracts/kinds.py` (its slots, family and answers), and its tests. Nothing else names kinds.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from percept.contracts import InputError
from percept.contracts import kinds as kinds_c


@lru_cache(maxsize=1)
def registry() -> dict:
    """{name: TrialKind} of every kind module in this package, in percept.contracts.kinds order."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for attr in ("KIND", "CATCH"):
            kind = getattr(module, attr, None)
            if kind is not None:
                found[kind.name] = kind
    missing = [k for k in kinds_c.KINDS if k not in found]
    extra = [k for k in found if k not in kinds_c.KINDS]
    if missing or extra:
        raise InputError(f"study/trials: kinds without a module: {missing}; modules without a contract entry: {extra}")
    return {k: found[k] for k in kinds_c.KINDS}


def get(name: str):
    """The kind called `name`; an unknown name is refused."""
    kinds = registry()
    if name not in kinds:
        raise InputError(f"unknown trial kind {name!r} (known: {', '.join(kinds)})")
    return kinds[name]


def main_kinds() -> tuple[str, ...]:
    """Kinds that can be asked for in a design (not catch kinds), in registry order."""
    return kinds_c.MAIN_KINDS
