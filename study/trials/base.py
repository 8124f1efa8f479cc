"""The interface every trial kind implements, and helpers the kinds share.

A kind is one object (a `TrialKind` subclass instance named `KIND`, and for kinds with their own
catch trials a second one named `CATCH`) in one module of this package. It says, for its trials:
- design: the conditions of an architecture's plan, the rows of those conditions for a list's
  images with sides/positions/order balanced, practice rows, the mirrored row, catch rows;
- screen: a JSON description (`screen`) of images in a grid, prompt, keys and timing that any
  front end can render (the PsychoPy `Session` draws exactly this), and the instructions text;
- input: how key presses become (key, choice) (`press`);
- observer: how a simulated observer answers (`observe`), given a `Judge` (study/observers.py).
The data side (slots, family, allowed answers) is its `percept.contracts.kinds` spec.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from percept.contracts import InputError
from percept.contracts import design as design_c
from percept.contracts import kinds as kinds_c

# Grid rows of the screen description; the front end maps them to pixels.
ROWS = ("top", "middle", "bottom")


class Judge(Protocol):
    """What a simulated observer offers a kind (implemented in study/observers.py)."""

    rng: np.random.Generator

    def utilities(self, row: dict, slots: tuple[str, ...]) -> np.ndarray:
        """Utilities of the runs in `slots` (screen order), noise included; higher is better."""

    def level(self, row: dict, slot: str) -> float:
        """One run's utility relative to the observer's average of the runs shown (0 = average)."""

    def lapses(self) -> bool:
        """Whether this catch trial is answered at random."""


def blank_row() -> dict:
    """A design row with every column empty."""
    return {c: "" for c in design_c.COLUMNS}


def fill(row: dict, slot: str, run: str, loss: str, path: str) -> dict:
    """Put one run into a slot of a design row."""
    row.update({f"{slot}_run": run, f"{slot}_loss": loss, f"{slot}_path": path})
    return row


def alternating_sides(n: int, rng: np.random.Generator) -> list[bool]:
    """n booleans, half True (±1), in random order: True puts the first option on the left (or first)."""
    sides = [(k % 2 == 0) for k in range(n)]
    if n % 2 and rng.random() < 0.5:
        sides = [not s for s in sides]
    return [sides[i] for i in rng.permutation(n)]


def swap_sides(row: dict) -> dict:
    """The same trial with left and right swapped (a catch answer naming a slot follows it)."""
    out = dict(row)
    for field in ("run", "loss", "path"):
        out[f"left_{field}"], out[f"right_{field}"] = row[f"right_{field}"], row[f"left_{field}"]
    if row["answer"] in ("left", "right"):
        out["answer"] = "right" if row["answer"] == "left" else "left"
    return out


class TrialKind:
    """Base of every kind; subclasses override what differs."""

    name = ""
    catch_kind: str | None = None  # the catch kind mixed into lists that show this kind
    rt_median = 1.5  # s: simulated observers' median response time
    plan_fields: tuple[str, ...] = ()  # which of an ArchPlan's `pairs` / `ranking_losses` the kind uses
    keys: tuple[str, ...] = ()  # key names that answer the trial
    key_labels: dict[str, str] = {}  # what each key means, shown on screen
    prompt = ""
    instructions = ""

    @property
    def spec(self) -> kinds_c.KindSpec:
        """The kind's data contract."""
        return kinds_c.spec(self.name)

    # --- design -------------------------------------------------------------------------------
    def losses(self, plan) -> set[str]:
        """Losses of an architecture plan that this kind shows."""
        return set()

    def check_plan(self, plan, where: str) -> None:
        """Refuse a plan this kind cannot make trials from."""

    def conditions(self, arch: str, plan) -> list[tuple]:
        """The kind's conditions (kind, arch, parameter) for one architecture."""
        raise NotImplementedError(self.name)

    def main_rows(self, cond: tuple, images: list[str], rng: np.random.Generator, plan, runs: dict, paths: dict) -> list[dict]:
        """Main-block rows of one condition for a list's images, balanced over sides/positions/order."""
        raise NotImplementedError(self.name)

    def practice_row(self, cond: tuple, image: str, rng: np.random.Generator, plan, runs: dict, paths: dict) -> dict:
        """One practice row of a condition (sides at random)."""
        raise NotImplementedError(self.name)

    def catch_rows(self, images: list[str], rng: np.random.Generator, paths: dict) -> list[dict]:
        """Catch rows, one per image given, known answers balanced (catch kinds only)."""
        raise InputError(f"{self.name} is not a catch kind")

    def mirror(self, row: dict) -> dict:
        """The row as shown in the mirrored list (left/right swapped by default)."""
        return swap_sides(row)

    def parameter(self, cond: tuple) -> str:
        """The design's `pair` cell for a condition ('' unless the kind compares a loss pair)."""
        return ""

    # --- screen -------------------------------------------------------------------------------
    def images(self, trial: dict) -> list[dict]:
        """[{slot, path, row, col}] of what is drawn: col −1/0/1 in image steps, row one of ROWS."""
        raise NotImplementedError(self.name)

    def sequence(self, trial: dict, timing: dict) -> list[dict]:
        """Frames shown in turn before the response screen: [{images, ms}]; [] when all is shown at once."""
        return []

    def screen(self, trial: dict, timing: dict | None = None) -> dict:
        """A JSON description of one trial that any front end can render."""
        return {"kind": self.name, "images": self.images(trial), "sequence": self.sequence(trial, timing or {}),
                "keys": list(self.keys), "key_labels": dict(self.key_labels), "undo": self.undo_key,
                "n_presses": self.n_presses, "prompt": self.prompt, "scale": list(self.spec.scale),
                "buttons": [{"key": k, "label": lab} for k, lab in self.buttons.items()]}

    @property
    def buttons(self) -> dict[str, str]:
        """{key: label} of on-screen buttons a click on which counts as pressing the key; {} for keys only."""
        return {}

    undo_key: str | None = None
    n_presses = 1  # presses that complete an answer

    def label(self, slot_or_key: str, pressed: list[str]) -> str:
        """Text under an image or key while answering."""
        return self.key_labels.get(slot_or_key, "")

    def highlight(self, slot: str, pressed: list[str]) -> bool:
        """Whether the label under a slot is highlighted (already chosen)."""
        return False

    # --- input --------------------------------------------------------------------------------
    def press(self, trial: dict, pressed: list[str], key: str) -> tuple[str, str] | None:
        """Take one key: update `pressed` and return (key, choice) once the answer is complete."""
        if key in self.keys:
            return key, self.choice(trial, key)
        return None

    def choice(self, trial: dict, key: str) -> str:
        """The saved choice of a one-key answer."""
        raise NotImplementedError(self.name)

    def expand(self, row: dict) -> dict:
        """What statistics consume from an answered row: pairwise wins, order, rating or different."""
        return kinds_c.expand(self.name, row["choice"], {slot: row[f"{slot}_run"] for slot in self.spec.slots})

    # --- simulated observer -------------------------------------------------------------------
    def observe(self, row: dict, judge: Judge) -> tuple[str, str]:
        """(key, choice) of a simulated observer."""
        raise NotImplementedError(self.name)
