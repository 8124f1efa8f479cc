"""Pair comparison without reference (ITU-T P.910 PC): two reconstructions of one image by a loss pair
side by side, no original; "which looks better?" (← / →). Its catch: the original vs a strongly
degraded copy, the original being the better."""
from __future__ import annotations

from study.trials.base import alternating_sides
from study.trials.catch import catch_row
from study.trials.triplet import PairedLosses


class Pair(PairedLosses):
    """No-reference preference between two reconstructions."""

    name = "pair"
    catch_kind = "pair_catch"
    prompt = "Which image looks better?  ← Left or Right →"
    instructions = ("Two images side by side: press ← Left or Right → for the one that looks better "
                    "(sharper, more natural, fewer defects).")

    def images(self, trial: dict) -> list[dict]:
        """Two images, one row, a free position between them."""
        return [{"slot": "left", "path": trial["left_path"], "row": "middle", "col": -1},
                {"slot": "right", "path": trial["right_path"], "row": "middle", "col": 1}]


class PairCatch(Pair):
    """The original against its degraded copy."""

    name = "pair_catch"
    catch_kind = None

    def catch_rows(self, images, rng, paths) -> list[dict]:
        """The original's side alternates (±1)."""
        return [catch_row(self.name, img, left, paths) for img, left in zip(images, alternating_sides(len(images), rng))]

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The original, except after a lapse a side at random."""
        key = row["answer"] if not judge.lapses() else self.keys[int(judge.rng.integers(2))]
        return key, self.choice(row, key)


KIND = Pair()
CATCH = PairCatch()
