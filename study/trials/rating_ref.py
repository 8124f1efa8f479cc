"""Degradation category rating (DCR / DSIS, ITU-R BT.500, ITU-T P.910): the original (left)
and one reconstruction (right) side by side, rated on the 5-point impairment scale Very annoying (1)
… Imperceptible (5) with keys 1–5. Its catch: the original against itself (5) or its degraded copy (1)."""
from __future__ import annotations

from study.trials.rating import Rating, RatingCatch


class RatingRef(Rating):
    """Rate the impairment of a reconstruction against the original."""

    name = "rating_ref"
    catch_kind = "rating_ref_catch"
    question = "How annoying is the right image's difference from the original (left)?  Press 1–5."
    instructions = ("The original on the left, a copy on the right: rate how much the copy is impaired, "
                    "1 (Very annoying), 2 (Annoying), 3 (Slightly annoying), 4 (Perceptible but not annoying), "
                    "5 (Imperceptible).")

    def images(self, trial: dict) -> list[dict]:
        """Original at the left, the reconstruction at the right, one row."""
        return [{"slot": "reference", "path": trial["reference_path"], "row": "middle", "col": -1},
                {"slot": "left", "path": trial["left_path"], "row": "middle", "col": 1}]


class RatingRefCatch(RatingRef, RatingCatch):
    """The original against itself or its degraded copy."""

    name = "rating_ref_catch"
    catch_kind = None
    catch_rows = RatingCatch.catch_rows
    observe = RatingCatch.observe


KIND = RatingRef()
CATCH = RatingRefCatch()
