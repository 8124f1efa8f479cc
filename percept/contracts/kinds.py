"""Trial kinds as data: what each kind puts in design.csv and responses/*.csv, shared by every reader.

A kind's behaviour (layout, keys, design balancing, simulated answers) lives in its module under
`study/trials/`; what the files must hold for it lives here, so the contracts, the study and the
analysis agree without importing each other. Adding a kind: one `KindSpec` entry below and one
module in `study/trials/` (see the README, "Adding a trial kind").

Families say which statistics consume a kind's responses:
- `pairwise`: `choice` is one of the runs in the slots; each answer is a win of that run over the other.
- `ranking`: `choice` is the full order best-first of the three runs joined by ORDER_SEP.
- `rating`: `choice` is a category "1".."5" of the kind's `scale` (5 = best).
- `same_different`: `choice` is "same" or "different".
Catch kinds (`catch_of` set) have a known `answer` in design.csv and are excluded from statistics.
"""
from __future__ import annotations

from dataclasses import dataclass

from percept.contracts.tables import ContractError

ORDER_SEP = ">"
FAMILIES = ("pairwise", "ranking", "rating", "same_different")
# ITU-T P.910 absolute category rating and ITU-R BT.500 / P.910 degradation (impairment) scale, 5 = best.
ACR_SCALE = ("Bad", "Poor", "Fair", "Good", "Excellent")
DCR_SCALE = ("Very annoying", "Annoying", "Slightly annoying", "Perceptible but not annoying", "Imperceptible")
SAME_DIFFERENT = ("same", "different")
# Runs that are not reconstructions: the original itself and the catch trials' degraded copy.
ORIGINAL_RUN = "original"
DEGRADED_RUN = "degraded"


@dataclass(frozen=True)
class KindSpec:
    """What one trial kind puts in the design and response files."""

    name: str
    family: str  # one of FAMILIES
    slots: tuple[str, ...]  # design slots filled, in screen (or presentation) order
    reference: bool  # the original (reference_path) is shown on screen
    catch_of: str | None = None  # for a catch kind: the kind whose attention it checks
    answers: tuple[str, ...] = ()  # allowed `answer` values of a catch kind
    scale: tuple[str, ...] = ()  # rating kinds: category labels, value 1 first

    def choices(self) -> tuple[str, ...]:
        """The fixed `choice` values of a rating or same/different kind; () when the choice is a run."""
        if self.family == "rating":
            return tuple(str(k) for k in range(1, len(self.scale) + 1))
        if self.family == "same_different":
            return SAME_DIFFERENT
        return ()


KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (
    KindSpec("triplet", "pairwise", ("left", "right"), True),
    KindSpec("ranking", "ranking", ("left", "third", "right"), True),
    KindSpec("catch", "pairwise", ("left", "right"), True, catch_of="triplet", answers=("left", "right")),
    KindSpec("pair", "pairwise", ("left", "right"), False),
    KindSpec("pair_catch", "pairwise", ("left", "right"), False, catch_of="pair", answers=("left", "right")),
    KindSpec("rating", "rating", ("left",), False, scale=ACR_SCALE),
    KindSpec("rating_catch", "rating", ("left",), False, catch_of="rating", answers=("1", "5"), scale=ACR_SCALE),
    KindSpec("rating_ref", "rating", ("left",), True, scale=DCR_SCALE),
    KindSpec("rating_ref_catch", "rating", ("left",), True, catch_of="rating_ref", answers=("1", "5"), scale=DCR_SCALE),
    # jnd: `left` is shown first, `right` second; one of them is the original itself (run "original").
    KindSpec("jnd", "same_different", ("left", "right"), False),
    KindSpec("jnd_catch", "same_different", ("left", "right"), False, catch_of="jnd", answers=SAME_DIFFERENT),
)}
MAIN_KINDS = tuple(k for k, s in KINDS.items() if s.catch_of is None)
CATCH_KINDS = tuple(k for k, s in KINDS.items() if s.catch_of is not None)
ANSWERS = frozenset(a for s in KINDS.values() for a in s.answers)


def spec(kind: str, where: str = "") -> KindSpec:
    """The spec of a kind; an unknown kind is refused (never read as a triplet)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ContractError(f"{where + ': ' if where else ''}unknown trial kind {kind!r} "
                            f"(known: {', '.join(KINDS)})") from None


def of_family(family: str) -> tuple[str, ...]:
    """The main (non-catch) kinds of one family."""
    if family not in FAMILIES:
        raise ContractError(f"unknown kind family {family!r} (known: {', '.join(FAMILIES)})")
    return tuple(k for k in MAIN_KINDS if KINDS[k].family == family)


def check_choice(kind: str, choice: str, shown: dict[str, str]) -> str | None:
    """Why `choice` is not a valid answer of a `kind` trial showing {slot: run}; None when it is."""
    s = spec(kind)
    runs = [shown[slot] for slot in s.slots]
    if s.family == "ranking":
        order = choice.split(ORDER_SEP)
        if len(order) != len(runs) or set(order) != set(runs):
            return f"{choice!r} is not an order of the {len(runs)} runs shown"
        return None
    if s.family == "pairwise":
        return None if choice in runs else f"{choice!r} was not shown on that trial"
    return None if choice in s.choices() else f"{choice!r} is not one of {', '.join(s.choices())}"


# Catch trials are easy: below 80 % of them right means not attending. The analysis's default exclusion rule
# (analysis.load.ExclusionRules) and the online server's release of the completion code use this one number.
CATCH_THRESHOLD = 0.8


def catch_correct(kind: str, answer: str, choice: str, shown: dict[str, str]) -> bool:
    """Whether a catch trial was answered correctly: the original chosen, the right end of the scale, same/different."""
    s = spec(kind)
    if s.catch_of is None:
        raise ContractError(f"{kind!r} is not a catch kind")
    if s.family == "pairwise":
        return choice == shown[answer]
    if s.family == "rating":
        # The original should be rated at the top (≥ 4 of 5), the degraded copy at the bottom (≤ 2).
        return int(choice) >= 4 if answer == "5" else int(choice) <= 2
    return choice == answer


def expand(kind: str, choice: str, shown: dict[str, str]) -> dict:
    """What statistics consume from one answer: pairwise `wins` [(winner run, loser run)], the `order` best-first,
    the `rating` (1..5) or `different` (bool); keys that do not apply are None."""
    s = spec(kind)
    why = check_choice(kind, choice, shown)
    if why is not None:
        raise ContractError(f"{kind} answer: {why}")
    out = {"wins": None, "order": None, "rating": None, "different": None}
    if s.family == "pairwise":
        runs = [shown[slot] for slot in s.slots]
        out["order"] = [choice] + [r for r in runs if r != choice]
    elif s.family == "ranking":
        out["order"] = choice.split(ORDER_SEP)
    elif s.family == "rating":
        out["rating"] = int(choice)
    elif s.family == "same_different":
        out["different"] = choice == "different"
    else:
        raise ContractError(f"{kind}: family {s.family!r} has no expansion")
    if out["order"] is not None:  # every option beats every one ranked below it
        out["wins"] = [(a, b) for k, a in enumerate(out["order"]) for b in out["order"][k + 1:]]
    return out
