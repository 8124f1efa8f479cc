"""Ranking (Snell et al. 2017): the original on top, three reconstructions of one architecture below;
press 1, 2, 3 (left, middle, right) for the best, then the second best; the last is implied.
Lists showing rankings get the triplet catch trial (`catch`)."""
from __future__ import annotations

import itertools

import numpy as np

from percept.contracts import InputError
from percept.contracts import design as design_c
from study import responses as log
from study.trials.base import TrialKind, blank_row, fill


class Ranking(TrialKind):
    """Order three reconstructions best to worst."""

    name = "ranking"
    catch_kind = "catch"
    rt_median = 3.5
    plan_fields = ("ranking_losses",)
    keys = log.RANKING_KEYS
    undo_key = "backspace"
    n_presses = 2
    prompt = ("Rank the three lower images by how close they are to the top one:\n"
              "press 1, 2, 3 (left, middle, right) from best to worst.  Backspace undoes.")
    instructions = ("Original on top, three copies below: press 1, 2, 3 (left, middle, right) for the best copy, "
                    "then the second best; the last is implied. Backspace undoes a press.")

    def losses(self, plan) -> set[str]:
        """The plan's three ranking losses."""
        return set(plan.ranking_losses)

    def check_plan(self, plan, where: str) -> None:
        """Exactly three different losses."""
        if len(set(plan.ranking_losses)) != 3:
            raise InputError(f"--ranking-losses{where}: {','.join(plan.ranking_losses)!r} must name three different losses")

    def conditions(self, arch: str, plan) -> list[tuple]:
        """One condition per architecture."""
        return [(self.name, arch, None)]

    def row(self, arch: str, image: str, screen_losses: tuple[str, ...], runs: dict, paths: dict) -> dict:
        """Losses at screen positions left, middle, right."""
        row = blank_row()
        row.update(kind=self.name, image_id=image, arch=arch, reference_path=paths[("original", image)])
        for slot, loss in zip(design_c.RANKING_SCREEN_ORDER, screen_losses):
            fill(row, slot, runs[(arch, loss)], loss, paths[(runs[(arch, loss)], image)])
        return row

    def main_rows(self, cond, images, rng, plan, runs, paths) -> list[dict]:
        """The six orders of the losses over the positions cycled in shuffled order: each loss at each position equally often."""
        perms = list(itertools.permutations(plan.ranking_losses))
        perms = [perms[i] for i in rng.permutation(len(perms))]
        return [self.row(cond[1], img, perms[k % len(perms)], runs, paths) for k, img in enumerate(images)]

    def practice_row(self, cond, image, rng, plan, runs, paths) -> dict:
        """An order at random."""
        perms = list(itertools.permutations(plan.ranking_losses))
        return self.row(cond[1], image, perms[int(rng.integers(len(perms)))], runs, paths)

    def images(self, trial: dict) -> list[dict]:
        """Reference on top, the three positions below."""
        return [{"slot": "reference", "path": trial["reference_path"], "row": "top", "col": 0}] + [
            {"slot": slot, "path": trial[f"{slot}_path"], "row": "bottom", "col": col}
            for slot, col in zip(design_c.RANKING_SCREEN_ORDER, (-1, 0, 1))]

    def label(self, slot_or_key: str, pressed: list[str]) -> str:
        """'[k]' under position k, with its rank once pressed."""
        k = str(design_c.RANKING_SCREEN_ORDER.index(slot_or_key) + 1)
        return f"[{k}]  rank {pressed.index(k) + 1}" if k in pressed else f"[{k}]"

    def highlight(self, slot: str, pressed: list[str]) -> bool:
        """Ranked positions are highlighted."""
        return str(design_c.RANKING_SCREEN_ORDER.index(slot) + 1) in pressed

    def press(self, trial: dict, pressed: list[str], key: str) -> tuple[str, str] | None:
        """Two different positions best-first; Backspace undoes the last."""
        if key == self.undo_key and pressed:
            pressed.pop()
        elif key in self.keys and key not in pressed:
            pressed.append(key)
            if len(pressed) == 2:
                return log.ranking_choice(trial, pressed)
        return None

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """Positions ordered by utility."""
        order = np.argsort(-judge.utilities(row, self.spec.slots), kind="stable")
        return log.ranking_choice(row, [str(k + 1) for k in order[:2]])


KIND = Ranking()
