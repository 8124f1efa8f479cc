"""Absolute category rating (ACR, ITU-T P.910): one reconstruction alone, rated on the 5-point quality
scale Bad (1) … Excellent (5) with keys 1–5. Its catch: the original itself (should be rated ≥ 4) or a
strongly degraded copy (≤ 2); the original's ratings also give DMOS (hidden reference)."""
from __future__ import annotations

import numpy as np

from percept.contracts import kinds as kinds_c
from study.trials.base import TrialKind, alternating_sides, blank_row, fill

# Simulated observers: a latent quality (0 = the observer's average) is cut into 5 categories here.
CUTS = (-1.5, -0.5, 0.5, 1.5)


class Rating(TrialKind):
    """Rate one image on a 5-point scale."""

    name = "rating"
    catch_kind = "rating_catch"
    rt_median = 2.0
    plan_fields = ("pairs", "ranking_losses")
    keys = ("1", "2", "3", "4", "5")
    question = "How good is the quality of this image?  Press 1–5."
    instructions = ("One image at a time: rate its quality by pressing 1 (Bad), 2 (Poor), 3 (Fair), 4 (Good) "
                    "or 5 (Excellent).")

    @property
    def key_labels(self) -> dict[str, str]:
        """'k: label' of every scale point."""
        return {k: f"{k}: {lab}" for k, lab in zip(self.keys, self.spec.scale)}

    @property
    def prompt(self) -> str:
        """The question; the scale is shown as buttons below it."""
        return self.question.replace("Press 1–5.", "Press 1–5 or click.")

    @property
    def buttons(self) -> dict[str, str]:
        """The scale points as clickable buttons."""
        return self.key_labels

    def losses(self, plan) -> set[str]:
        """Every loss the plan names (pairs and ranking losses): each is rated alone."""
        return {lo for p in plan.pairs for lo in p} | set(plan.ranking_losses)

    def check_plan(self, plan, where: str) -> None:
        """Something to rate."""
        from percept.contracts import InputError

        if not self.losses(plan):
            raise InputError(f"--pairs/--ranking-losses{where}: {self.name} trials need at least one loss")

    def conditions(self, arch: str, plan) -> list[tuple]:
        """One condition per loss."""
        return [(self.name, arch, loss) for loss in sorted(self.losses(plan))]

    def row(self, cond: tuple, image: str, runs: dict, paths: dict) -> dict:
        """The loss's reconstruction in the left (only) slot."""
        _, arch, loss = cond
        row = blank_row()
        row.update(kind=self.name, image_id=image, arch=arch, reference_path=paths[("original", image)])
        return fill(row, "left", runs[(arch, loss)], loss, paths[(runs[(arch, loss)], image)])

    def main_rows(self, cond, images, rng, plan, runs, paths) -> list[dict]:
        """One rating per image; order comes from the list's shuffle (nothing else to balance)."""
        return [self.row(cond, img, runs, paths) for img in images]

    def practice_row(self, cond, image, rng, plan, runs, paths) -> dict:
        """As a main row."""
        return self.row(cond, image, runs, paths)

    def mirror(self, row: dict) -> dict:
        """One image has no sides: the mirrored list shows the same trial."""
        return dict(row)

    def images(self, trial: dict) -> list[dict]:
        """The image alone, in the middle."""
        return [{"slot": "left", "path": trial["left_path"], "row": "middle", "col": 0}]

    def choice(self, trial: dict, key: str) -> str:
        """The category pressed."""
        return key

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The latent quality cut into 5 categories."""
        key = str(1 + int(np.searchsorted(CUTS, judge.level(row, "left"))))
        return key, key


class RatingCatch(Rating):
    """The original (answer 5) or its degraded copy (answer 1), rated like any image."""

    name = "rating_catch"
    catch_kind = None

    def catch_rows(self, images, rng, paths) -> list[dict]:
        """Original and degraded copy alternate (±1)."""
        rows = []
        for img, original in zip(images, alternating_sides(len(images), rng)):
            run = kinds_c.ORIGINAL_RUN if original else kinds_c.DEGRADED_RUN
            row = blank_row()
            row.update(kind=self.name, image_id=img, reference_path=paths[("original", img)], answer="5" if original else "1")
            rows.append(fill(row, "left", run, run, paths[("original", img)] if original else ""))
        return rows

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The scale's end, except after a lapse a category at random."""
        key = row["answer"] if not judge.lapses() else self.keys[int(judge.rng.integers(len(self.keys)))]
        return key, key


KIND = Rating()
CATCH = RatingCatch()
