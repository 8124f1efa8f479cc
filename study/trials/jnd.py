"""Same/different (BAPPS-style JND): the original and one reconstruction shown in turn, for a set
time each (ms, in design.json's `timing`), then "same or different?" (S / D). Slot `left` is shown
first, `right` second; which one is the original is balanced. Its catch: the original against a
strongly degraded copy (different) or against itself (same)."""
from __future__ import annotations

from percept.contracts import kinds as kinds_c
from study.trials.base import alternating_sides, blank_row, fill
from study.trials.rating import Rating

# BAPPS showed each image for 1 s with a 250 ms gap.
DEFAULT_TIMING = {"first_ms": 1000, "gap_ms": 250, "second_ms": 1000}


class Jnd(Rating):
    """Is the reconstruction distinguishable from the original?"""

    name = "jnd"
    catch_kind = "jnd_catch"
    rt_median = 1.2
    keys = ("s", "d")
    prompt = "Were the two images the same or different?  S = same, D = different"
    instructions = ("Two images are flashed one after the other in the middle of the screen. Then press "
                    "S if they looked the same or D if they looked different.")

    @property
    def key_labels(self) -> dict[str, str]:
        """S / D."""
        return {"s": "S: same", "d": "D: different"}

    @property
    def buttons(self) -> dict[str, str]:
        """Keys only."""
        return {}

    def row(self, cond: tuple, image: str, runs: dict, paths: dict, original_first: bool = True) -> dict:
        """The original in one slot, the loss's reconstruction in the other."""
        _, arch, loss = cond
        run = runs[(arch, loss)]
        row = blank_row()
        row.update(kind=self.name, image_id=image, arch=arch, reference_path=paths[("original", image)])
        orig = (kinds_c.ORIGINAL_RUN, kinds_c.ORIGINAL_RUN, paths[("original", image)])
        recon = (run, loss, paths[(run, image)])
        for slot, what in zip(("left", "right"), (orig, recon) if original_first else (recon, orig)):
            fill(row, slot, *what)
        return row

    def main_rows(self, cond, images, rng, plan, runs, paths) -> list[dict]:
        """The original first on half the trials (±1), in shuffled order."""
        return [self.row(cond, img, runs, paths, first) for img, first in zip(images, alternating_sides(len(images), rng))]

    def practice_row(self, cond, image, rng, plan, runs, paths) -> dict:
        """Order at random."""
        return self.row(cond, image, runs, paths, bool(rng.integers(2)))

    def mirror(self, row: dict) -> dict:
        """The other presentation order."""
        from study.trials.base import swap_sides

        return swap_sides(row)

    def images(self, trial: dict) -> list[dict]:
        """Nothing stays on screen while answering; see `sequence`."""
        return []

    def sequence(self, trial: dict, timing: dict) -> list[dict]:
        """First image, blank gap, second image."""
        t = {**DEFAULT_TIMING, **timing.get("jnd", {})}
        return [{"images": [{"slot": "left", "path": trial["left_path"], "row": "middle", "col": 0}], "ms": t["first_ms"]},
                {"images": [], "ms": t["gap_ms"]},
                {"images": [{"slot": "right", "path": trial["right_path"], "row": "middle", "col": 0}], "ms": t["second_ms"]}]

    def choice(self, trial: dict, key: str) -> str:
        """same | different."""
        return "same" if key == "s" else "different"

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """'different' when the reconstruction's latent quality is below the observer's average."""
        slot = "right" if row["left_run"] == kinds_c.ORIGINAL_RUN else "left"
        key = "d" if judge.level(row, slot) < 0 else "s"
        return key, self.choice(row, key)


class JndCatch(Jnd):
    """The original against its degraded copy (different) or itself (same)."""

    name = "jnd_catch"
    catch_kind = None

    def catch_rows(self, images, rng, paths) -> list[dict]:
        """Different and same alternate (±1); the original is shown first on every other trial."""
        rows = []
        for k, (img, different) in enumerate(zip(images, alternating_sides(len(images), rng))):
            other = kinds_c.DEGRADED_RUN if different else kinds_c.ORIGINAL_RUN
            row = blank_row()
            row.update(kind=self.name, image_id=img, reference_path=paths[("original", img)],
                       answer="different" if different else "same")
            first, second = (kinds_c.ORIGINAL_RUN, other) if k % 2 == 0 else (other, kinds_c.ORIGINAL_RUN)
            for slot, run in (("left", first), ("right", second)):
                fill(row, slot, run, run, paths[("original", img)] if run == kinds_c.ORIGINAL_RUN else "")
            rows.append(row)
        return rows

    def observe(self, row: dict, judge) -> tuple[str, str]:
        """The known answer, except after a lapse at random."""
        key = ("d" if row["answer"] == "different" else "s") if not judge.lapses() else self.keys[int(judge.rng.integers(2))]
        return key, self.choice(row, key)


KIND = Jnd()
CATCH = JndCatch()
