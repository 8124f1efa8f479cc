"""Study design `study/design.csv` (+ `design.json`): one row per trial, in presentation order per list.

Triplet and catch trials fill the slots `left` and `right` (the original is in the centre);
ranking trials fill `left`, `right` and `third`; on screen the `left` image is at the left,
`right` at the right and `third` in the middle (RANKING_SCREEN_ORDER; keys 1, 2, 3 name the
positions left, middle, right). Paths are relative to the design file's folder.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from percept.contracts import kinds as kinds_c
from percept.contracts.tables import ContractError, atomic_write_csv, atomic_write_json, read_csv_checked, read_json

SLOTS = ("left", "right", "third")
# Ranking trials: the slot shown at screen positions 1 (left), 2 (middle), 3 (right).
RANKING_SCREEN_ORDER = ("left", "third", "right")
BLOCKS = ("practice", "main")
KINDS = tuple(kinds_c.KINDS)  # every kind of percept/contracts/kinds.py
# Catch trials show the original itself in one slot and a strongly degraded copy in the other.
CATCH_RUNS = ("original", "degraded")

COLUMNS = (
    "list_id",  # participant list (int, 0-based)
    "trial",  # index within the list, 0-based, presentation order
    "block",  # practice | main
    "kind",  # a kind of percept/contracts/kinds.py (triplet | ranking | catch | pair | rating | ...)
    "image_id",  # manifest image_id
    "arch",  # architecture whose reconstructions are compared ("" for catch)
    "pair",  # "lossA:lossB" as given to --pairs for triplets; "" otherwise
    "reference_path",  # the original, shown centre (triplet/catch) or top (ranking)
    "left_run", "left_loss", "left_path",
    "right_run", "right_loss", "right_path",
    "third_run", "third_loss", "third_path",  # ranking only; "" otherwise
    "answer",  # catch trials: the known answer (slot of the original, rating end 1|5, same|different); "" otherwise
)
SLOT_COLUMNS = tuple(f"{s}_{f}" for s in SLOTS for f in ("run", "loss", "path"))


def write_design(df: pd.DataFrame, path: str | Path, meta: dict) -> Path:
    """Write design.csv atomically and design.json beside it (seed, counterbalancing, manifest hash)."""
    path = Path(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: design to write lacks column(s) {', '.join(missing)}")
    extra = [c for c in df.columns if c not in COLUMNS]
    atomic_write_csv(df[list(COLUMNS) + extra], path)
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def read_design(path: str | Path, *, check_files: bool = False) -> pd.DataFrame:
    """Read and validate design.csv; with check_files, refuse missing or unreadable images naming them."""
    path = Path(path)
    df = read_csv_checked(
        path,
        COLUMNS,
        integer=("list_id", "trial"),
        nonempty=("image_id", "reference_path", "left_run", "left_path"),
        allowed={"block": set(BLOCKS), "kind": set(KINDS), "answer": {""} | set(kinds_c.ANSWERS)},
        what="study design",
    )
    if df.empty:
        raise ContractError(f"{path}: study design has no trials")
    # Each kind fills its own slots (ranking needs a third image, a rating only the left one).
    for i, row in enumerate(df.itertuples(index=False)):
        spec = kinds_c.spec(row.kind, f"{path}: row {i + 2}, column 'kind'")
        for slot in spec.slots:
            for field in ("run", "path"):
                if getattr(row, f"{slot}_{field}") == "":
                    raise ContractError(f"{path}: row {i + 2}, column '{slot}_{field}': {row.kind} trial needs a {slot} image")
        if spec.catch_of is not None and row.answer not in spec.answers:
            raise ContractError(f"{path}: row {i + 2}, column 'answer': {row.kind} trial needs its known answer "
                                f"({' or '.join(spec.answers)})")
    dup = df.duplicated(["list_id", "trial"])
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ContractError(f"{path}: row {i + 2}: trial {df['trial'].iloc[i]} appears twice in list {df['list_id'].iloc[i]}")
    if check_files:
        check_images(df, path)
    return df


def image_paths(df: pd.DataFrame) -> list[str]:
    """Every distinct image path the design shows, in first-use order."""
    cols = ["reference_path", "left_path", "right_path", "third_path"]
    seen: dict[str, None] = {}
    for p in df[cols].to_numpy().ravel():
        if p:
            seen.setdefault(p, None)
    return list(seen)


def check_images(df: pd.DataFrame, path: str | Path) -> None:
    """Raise naming every missing or unreadable image of the design (checked before any window opens)."""
    from PIL import Image, UnidentifiedImageError

    base = Path(path).resolve().parent
    bad = []
    for rel in image_paths(df):
        p = base / rel
        try:
            with Image.open(p) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError):
            bad.append(str(p))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ContractError(f"{path}: {len(bad)} image(s) missing or unreadable: {shown}")


def read_design_meta(path: str | Path) -> dict:
    """Read design.json beside design.csv."""
    return read_json(Path(path).with_suffix(".json"), "design record not found (it is written with design.csv)")
