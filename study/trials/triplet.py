"""Triplet (Snell et al. 2017): the original in the centre, two reconstructions of one architecture
by a loss pair at its sides; "which side is closer to the original?" (← / →)."""
from __future__ import annotations

import numpy as np

from study.trials.base import TrialKind, alternating_sides, blank_row, fill


class TwoSided(TrialKind):
    """A two-alternative choice between the `left` and `right` images (← / →)."""

    keys = ("left", "right")
    key_labels = {"left": "←", "right": "→"}

    def choice(self, trial: dict, key: str) -> str:
        """The run on the side pressed."""
        return trial[f"{key}_run"]

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The side with the larger utility."""
        key = self.keys[int(np.argmax(judge.utilities(row, self.spec.slots)))]
        return key, self.choice(row, key)


class PairedLosses(TwoSided):
    """Main kinds comparing a loss pair's two reconstructions of one image (triplet, pair)."""

    plan_fields = ("pairs",)

    def losses(self, plan) -> set[str]:
        """Every loss named in the plan's pairs."""
        return {lo for p in plan.pairs for lo in p}

    def check_plan(self, plan, where: str) -> None:
        """At least one pair."""
        from percept.contracts import InputError

        if not plan.pairs:
            raise InputError(f"--pairs{where}: {self.name} trials need at least one loss pair")

    def conditions(self, arch: str, plan) -> list[tuple]:
        """One condition per loss pair."""
        return [(self.name, arch, p) for p in plan.pairs]

    def parameter(self, cond: tuple) -> str:
        """'lossA:lossB' as given to --pairs."""
        return f"{cond[2][0]}:{cond[2][1]}"

    def row(self, cond: tuple, image: str, left_loss: str, runs: dict, paths: dict) -> dict:
        """The row with `left_loss` on the left and the pair's other loss on the right."""
        _, arch, pair = cond
        right_loss = pair[1] if left_loss == pair[0] else pair[0]
        row = blank_row()
        row.update(kind=self.name, image_id=image, arch=arch, pair=self.parameter(cond),
                   reference_path=paths[("original", image)])
        for slot, loss in (("left", left_loss), ("right", right_loss)):
            fill(row, slot, runs[(arch, loss)], loss, paths[(runs[(arch, loss)], image)])
        return row

    def main_rows(self, cond, images, rng, plan, runs, paths) -> list[dict]:
        """Each loss of the pair on the left as often as on the right (±1), in shuffled order."""
        pair = cond[2]
        return [self.row(cond, img, pair[0] if first_left else pair[1], runs, paths)
                for img, first_left in zip(images, alternating_sides(len(images), rng))]

    def practice_row(self, cond, image, rng, plan, runs, paths) -> dict:
        """Sides at random."""
        return self.row(cond, image, cond[2][int(rng.integers(2))], runs, paths)


class Triplet(PairedLosses):
    """The paper's triplet."""

    name = "triplet"
    catch_kind = "catch"
    prompt = "Which side is closer to the image in the middle?  ← Left or Right →"
    instructions = ("Three in a row: the original is in the middle. Press ← Left or Right → for the side "
                    "that looks closer to the original.")

    def images(self, trial: dict) -> list[dict]:
        """Reference in the middle, the two reconstructions at its sides, one row."""
        return [{"slot": "reference", "path": trial["reference_path"], "row": "middle", "col": 0},
                {"slot": "left", "path": trial["left_path"], "row": "middle", "col": -1},
                {"slot": "right", "path": trial["right_path"], "row": "middle", "col": 1}]


KIND = Triplet()
