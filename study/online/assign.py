"""Which trials a session shows: the design loaded for serving, balanced list choice, and the active-policy hook.

Balanced (default): a new session gets the list with the fewest places taken, a place being a session
that finished or was active within `--abandon-after` seconds; ties go to the list with the fewest
sessions ever, then the lowest id. The caller runs this inside the transaction that inserts the session.

Active (`--policy active`): the participant's list still gives practice and catch trials and the order of
blocks; its main trials of pairwise kinds are open slots, filled a batch at a time by
`study.online.active.ActivePolicy(pool, seed).choose(answered, seen, n)` (see docs in INTERFACES: pool =
main-block design rows of every list of pairwise kinds; answered = (pool row, chosen run) over all sessions;
seen = pool indices this participant had).
"""
from __future__ import annotations

import functools

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from percept.contracts import InputError
from percept.contracts import kinds as kinds_c


class Policy(Protocol):
    """The active policy's interface (study/online/active.py implements it)."""

    def choose(self, answered: list[tuple[dict, str]], seen: set[int], n: int) -> list[int]:
        """n pool indices for one participant, given every answer so far and what they have seen."""


PolicyFactory = Callable[[list, int], Policy]


class PolicyError(RuntimeError):
    """The active policy answered something that is not a valid choice (a bug there, refused here)."""


@dataclass
class ServedDesign:
    """A design loaded for serving: rows by (list_id, trial), each list in order, the active pool."""

    path: Path
    meta: dict
    study: str  # the design file's sha256, first 16 hex: sessions of another design never mix
    rows: dict[tuple[int, int], dict]
    lists: dict[int, list[dict]]
    pool: list[dict] = field(default_factory=list)
    pool_index: dict[tuple[int, int], int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "ServedDesign":
        """Read design.csv + design.json (images checked) and index them."""
        from percept.contracts import design as design_c
        from percept.contracts.manifest import file_hash

        path = Path(path)
        df, meta = design_c.read_design_pair(path, check_files=True)
        records = df.to_dict("records")
        for r in records:
            r["list_id"], r["trial"] = int(r["list_id"]), int(r["trial"])
        rows = {(r["list_id"], r["trial"]): r for r in records}
        lists: dict[int, list[dict]] = {}
        for r in sorted(records, key=lambda r: (r["list_id"], r["trial"])):
            lists.setdefault(r["list_id"], []).append(r)
        kinds = set(kinds_c.of_family("pairwise"))
        pool = [r for r in sorted(records, key=lambda r: (r["list_id"], r["trial"]))
                if r["block"] == "main" and r["kind"] in kinds]
        return cls(path, meta, file_hash(path)[:16], rows, lists, pool,
                   {(r["list_id"], r["trial"]): i for i, r in enumerate(pool)})

    @property
    def n_lists(self) -> int:
        """Number of lists (mirrors included)."""
        return len(self.lists)

    def skeleton(self, list_id: int, policy: str) -> list[tuple[int, int, bool]]:
        """(list_id, trial, pending) per position of a new session; pending slots await the active policy."""
        if policy == "balanced":
            return [(list_id, r["trial"], False) for r in self.lists[list_id]]
        if policy == "active":
            if not self.pool:
                raise InputError(f"{self.path}: --policy active needs main trials of a pairwise kind "
                                 f"({', '.join(kinds_c.of_family('pairwise'))}); the design has none")
            return [(list_id, r["trial"], (list_id, r["trial"]) in self.pool_index) for r in self.lists[list_id]]
        raise InputError(f"--policy: {policy!r} is not one of balanced, active")


def choose_list(places: dict[int, int], ever: dict[int, int], n_lists: int) -> int:
    """The list with the fewest places taken; ties: fewest sessions ever, then the lowest id."""
    return min(range(n_lists), key=lambda k: (places.get(k, 0), ever.get(k, 0), k))


def load_policy(name: str, objective: str = "eig") -> PolicyFactory | None:
    """The policy factory of `--policy` (None for balanced); `active` is imported only when asked for."""
    if name == "balanced":
        return None
    if name == "active":
        try:
            from study.online.active import ActivePolicy
        except ImportError as exc:
            raise InputError(f"--policy active: study/online/active.py is not available ({exc})") from None
        return functools.partial(ActivePolicy, objective=objective)
    raise InputError(f"--policy: {name!r} is not one of balanced, active")


def check_choice(picked: list[int], pool_size: int, seen: set[int], n: int) -> list[int]:
    """Refuse a policy's answer that is not n (or all unseen) new, distinct pool indices (a bug there must not corrupt sessions)."""
    want = min(n, pool_size - len(seen))
    ok = (isinstance(picked, (list, tuple)) and len(picked) == want and len(set(picked)) == len(picked)
          and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < pool_size and i not in seen for i in picked))
    if not ok:
        raise PolicyError(f"active policy returned {str(picked)[:200]} for n={n}: not distinct new pool indices")
    return [int(i) for i in picked]
