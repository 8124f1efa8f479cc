"""Study design `study/design.csv` (+ `design.json`): one row per trial, in presentation order per list.

Triplet and catch trials fill the slots `left` and `right` (the original is in the centre);
ranking trials fill `left`, `right` and `third`; on screen the `left` image is at the left,
`right` at the right and `third` in the middle (RANKING_SCREEN_ORDER; keys 1, 2, 3 name the
positions left, middle, right). Paths are relative to the design file's folder.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import numpy as np

from percept.contracts import kinds as kinds_c
from percept.contracts.paths import check_name, check_png, inside
from percept.contracts.run import SPECIAL_RUNS, run_from_name
from percept.contracts.tables import ContractError, atomic_write_csv, atomic_write_json, read_csv_checked, read_json

SLOTS = ("left", "right", "third")
# Ranking trials: the slot shown at screen positions 1 (left), 2 (middle), 3 (right).
RANKING_SCREEN_ORDER = ("left", "third", "right")
BLOCKS = ("practice", "main")
KINDS = tuple(kinds_c.KINDS)  # every kind of percept/contracts/kinds.py
# Catch trials show the original itself in one slot and a strongly degraded copy in the other.
CATCH_RUNS = ("original", "degraded")
BASELINE_ARCH = SPECIAL_RUNS["flat"][0]  # INTERFACES item 1: the flat baseline is analysed, never shown

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
    # Refuse order or path faults before anything is written (a refused design leaves no file behind).
    _check_order_and_paths(df.fillna("").astype({"list_id": "int64", "trial": "int64"}).reset_index(drop=True), path)
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
    _check_order_and_paths(df, path)
    if check_files:
        check_images(df, path)
    return df


def _check_order_and_paths(df: pd.DataFrame, path: Path) -> None:
    """Trials 0..n-1 in each list with practice before main; safe run names; paths inside the experiment folder."""
    for list_id, g in df.groupby("list_id", sort=True):
        if list_id < 0:
            raise ContractError(f"{path}: row {int(g.index[0]) + 2}, column 'list_id': {list_id} is negative")
        trials = np.sort(g["trial"].to_numpy())
        if not np.array_equal(trials, np.arange(len(g))):
            gap = int(next(t for t, want in zip(list(trials) + [-1], range(len(g) + 1)) if t != want))
            raise ContractError(f"{path}: list {list_id}: trial indices are not 0..{len(g) - 1} without gaps (at {gap})")
        blocks = g.sort_values("trial")["block"].to_numpy()
        if "practice" in blocks[np.argmax(blocks == "main"):] and (blocks == "main").any():
            i = int(g.sort_values("trial").index[np.flatnonzero(blocks == "practice")[-1]])
            raise ContractError(f"{path}: row {i + 2}, column 'block': a practice trial after the main block began in list {list_id}")
    for col in ("left_run", "right_run", "third_run"):
        for i, run in enumerate(df[col]):
            if run:
                check_name(run, f"row {i + 2}, column '{col}': run", path)
    _check_slots(df, path)
    base = path.resolve().parent
    root = base.parent  # runs/<exp>/study/design.csv → runs/<exp>
    for col in ("reference_path", "left_path", "right_path", "third_path"):
        for i, rel in enumerate(df[col]):
            if rel:
                inside(root, base, rel, f"{path}: row {i + 2}, column '{col}'")


def _check_slots(df: pd.DataFrame, path: Path) -> None:
    """Each slot's run is of the row's arch and the slot's loss; the `catch` kind shows original and degraded; pairs match.

    Slots holding the original itself or a catch trial's degraded copy (kinds_c.ORIGINAL_RUN, DEGRADED_RUN) are no
    reconstructions; the other catch kinds' answers are checked against their KindSpec by read_design.
    """
    special = {kinds_c.ORIGINAL_RUN, kinds_c.DEGRADED_RUN}
    for i, row in enumerate(df.itertuples(index=False)):
        spec = kinds_c.spec(row.kind, f"{path}: row {i + 2}, column 'kind'")
        if row.kind == "catch":
            shown = {row.left_run: "left", row.right_run: "right"}
            if set(shown) != set(CATCH_RUNS) or shown["original"] != row.answer:
                raise ContractError(f"{path}: row {i + 2}: a catch trial shows {row.left_run!r} and {row.right_run!r} "
                                    f"with answer {row.answer!r}; it needs {' and '.join(CATCH_RUNS)}, answer = original's slot")
            continue
        if row.arch == BASELINE_ARCH:
            raise ContractError(f"{path}: row {i + 2}, column 'arch': the {BASELINE_ARCH!r} (flat) runs are never shown to people")
        for slot in spec.slots:
            run, loss = getattr(row, f"{slot}_run"), getattr(row, f"{slot}_loss")
            if run in special or (spec.catch_of is not None and not run):
                continue
            if run_from_name(run, path) != (row.arch, loss):
                raise ContractError(f"{path}: row {i + 2}, column '{slot}_run': run {run!r} is not of arch {row.arch!r} "
                                    f"and loss {loss!r}")
        if row.kind == "triplet" and sorted(row.pair.split(":")) != sorted([row.left_loss, row.right_loss]):
            raise ContractError(f"{path}: row {i + 2}, column 'pair': {row.pair!r} is not the pair of losses shown "
                                f"({row.left_loss}, {row.right_loss})")


def image_paths(df: pd.DataFrame) -> list[str]:
    """Every distinct image path the design shows, in first-use order."""
    cols = ["reference_path", "left_path", "right_path", "third_path"]
    seen: dict[str, None] = {}
    for p in df[cols].to_numpy().ravel():
        if p:
            seen.setdefault(p, None)
    return list(seen)


def check_images(df: pd.DataFrame, path: str | Path) -> None:
    """Raise naming every missing or unreadable image of the design, or one that is not an 8-bit RGB PNG of one size.

    Checked before any window opens; every image must have the size of the first reference image.
    """
    base = Path(path).resolve().parent
    bad, size = [], None
    for rel in image_paths(df):
        p = base / rel
        try:
            got = check_png(p, size)
        except ContractError as exc:
            bad.append(str(exc))
            continue
        size = size or got
    if bad:
        shown = "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ContractError(f"{path}: {len(bad)} image(s) missing or unreadable: {shown}")


def read_design_meta(path: str | Path) -> dict:
    """Read design.json beside design.csv (a JSON object; the manifest it names stays inside the experiment)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    meta = read_json(meta_path, "design record not found (it is written with design.csv)")
    if not isinstance(meta, dict):
        raise ContractError(f"{meta_path}: design record must be a JSON object, got {type(meta).__name__}")
    if meta.get("manifest") is not None:
        inside(path.resolve().parent.parent, path.resolve().parent, meta["manifest"], f"{meta_path}: key 'manifest'")
    return meta


def read_design_pair(path: str | Path, *, check_files: bool = False) -> tuple[pd.DataFrame, dict]:
    """design.csv and design.json, read and checked against each other."""
    df = read_design(path, check_files=check_files)
    meta = read_design_meta(path)
    check_against_meta(df, meta, path)
    return df, meta


def check_against_meta(df: pd.DataFrame, meta: dict, path: str | Path) -> None:
    """Refuse a design.csv that disagrees with its design.json: lists, trials per list, kinds, practice trials."""
    meta_path = Path(path).with_suffix(".json")

    def need(key: str, kind: type):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ContractError(f"{meta_path}: key '{key}' must be {kind.__name__}, got {value!r}")
        return value

    # `n_lists` counts the mirrored lists too (list 2k+1 mirrors base list 2k); older records have only `lists`.
    lists = need("n_lists", int) if meta.get("n_lists") is not None else need("lists", int)
    found = sorted(int(k) for k in df["list_id"].unique())
    if lists is not None and found != list(range(lists)):
        raise ContractError(f"{path}: list_id values {found} do not match design.json's {lists} list(s) (0..{lists - 1})")
    per_list = need("trials_per_list", list)
    if per_list is not None:
        counts = [int((df["list_id"] == k).sum()) for k in found]
        if [int(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in per_list] != counts:
            raise ContractError(f"{path}: trials per list {counts} differ from design.json's trials_per_list {per_list}")
    kinds = need("kinds", list)
    if kinds is not None and not all(isinstance(k, str) for k in kinds):
        raise ContractError(f"{meta_path}: key 'kinds' must be a list of kind names, got {kinds!r}"[:300])
    if kinds is not None:
        extra = sorted(set(df["kind"]) - set(kinds) - set(kinds_c.CATCH_KINDS))
        if extra:
            raise ContractError(f"{path}: trial kind(s) {', '.join(extra)} are not in design.json's kinds {kinds}")
    runs = need("runs", dict)
    if runs is not None:  # "arch/loss" → the run shown for it
        for i, row in enumerate(df.itertuples(index=False)):
            for slot in SLOTS if row.kind == "ranking" else SLOTS[:2] if row.kind == "triplet" else ():
                run, loss = getattr(row, f"{slot}_run"), getattr(row, f"{slot}_loss")
                if runs.get(f"{row.arch}/{loss}") != run:
                    raise ContractError(f"{path}: row {i + 2}, column '{slot}_run': {run!r} but design.json's runs give "
                                        f"{runs.get(f'{row.arch}/{loss}')!r} for {row.arch}/{loss}")
    images = need("images", list)
    if images is not None:
        main = df[(df["block"] == "main") & (df["kind"] != "catch")]
        extra = sorted(set(main["image_id"]) - set(map(str, images)))
        if extra:
            raise ContractError(f"{path}: main-block image(s) {', '.join(extra[:3])} are not in design.json's images")
    practice = need("practice", int)
    if practice is not None:
        for k in found:
            n = int(((df["list_id"] == k) & (df["block"] == "practice")).sum())
            if n != practice:
                raise ContractError(f"{path}: list {k} has {n} practice trial(s), design.json says {practice}")
