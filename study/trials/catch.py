"""Catch trial of the triplet (and ranking) task: the original in the centre, the original itself on
one side and a strongly degraded copy on the other; the correct answer is the original's side."""
from __future__ import annotations

import numpy as np

from percept.contracts import kinds as kinds_c
from study.trials.base import alternating_sides, blank_row, fill
from study.trials.triplet import Triplet


def catch_row(kind: str, image: str, original_first: bool, paths: dict) -> dict:
    """A two-slot catch row: the original in one slot, the degraded copy (path filled in later) in the other."""
    row = blank_row()
    row.update(kind=kind, image_id=image, reference_path=paths[("original", image)],
               answer="left" if original_first else "right")
    slots = ("left", "right") if original_first else ("right", "left")
    for slot, run in zip(slots, (kinds_c.ORIGINAL_RUN, kinds_c.DEGRADED_RUN)):
        fill(row, slot, run, run, paths.get((run, image), ""))
    return row


class Catch(Triplet):
    """Looks and answers like a triplet; its answer is known."""

    name = "catch"
    catch_kind = None

    def catch_rows(self, images, rng, paths) -> list[dict]:
        """The original's side alternates (±1)."""
        return [catch_row(self.name, img, left, paths) for img, left in zip(images, alternating_sides(len(images), rng))]

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The original, except after a lapse a side at random."""
        if judge.lapses():
            util = judge.rng.random(2)
        else:
            util = [1.0, 0.0] if row["answer"] == "left" else [0.0, 1.0]
        key = self.keys[int(np.argmax(util))]
        return key, self.choice(row, key)


KIND = Catch()
