"""Every contract reader, fed many seeded random corruptions of a valid file, answers with one line or the data.

For each format a valid file is written by its real writer, then N corruptions are tried: byte-level
(truncation, byte flips, inserted or zeroed bytes) and structural (swapped column names, a cell or a
JSON value of the wrong type, a dropped column or key, a duplicated row, an npz array of the wrong
dtype or shape, a PNG of the wrong mode or size). Each outcome is one of
- error: an InputError/ContractError whose message is one line (the only acceptable failure),
- same: the reader returned exactly what it returns for the valid file (the corruption was harmless),
- changed: the reader returned different data without complaint (e.g. a flipped digit in a metric:
  undetectable without a checksum; counted and reported, not hidden),
- crash: any other exception, or a message of several lines. The test asserts there are none.

`python tests/test_contracts_corruption.py` prints the counts per format.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from percept.contracts import InputError

N = 50  # corruptions per format: enough to hit every kind several times, fast enough for make test
JUNK_CELLS = ["", "abc", "nan", "inf", "-inf", "-1", "1e309", "2", "0.5", "1.5", "../../../etc/passwd", "/abs/x.png",
              "x y", "é", '"', "1,2", "True", "0x10", " ", "-0", "99999999999999999999"]
JUNK_JSON = [None, "abc", -1, 1e308, [], {}, True, False, "../../outside", 0, 1.5, "", [1, 2], {"a": 1}, float("nan")]


# --------------------------------------------------------------------------------------------
# Corruptions


def byte_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncate, flip, insert or zero bytes."""
    b = bytearray(data)
    kind = rng.integers(4)
    if kind == 0 or len(b) < 2:
        return bytes(b[: int(rng.integers(0, max(1, len(b))))])
    if kind == 1:
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 2:
        i = int(rng.integers(len(b)))
        return bytes(b[:i]) + bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8)) + bytes(b[i:])
    i = int(rng.integers(len(b)))
    j = min(len(b), i + int(rng.integers(1, 64)))
    b[i:j] = bytes(j - i)
    return bytes(b)


def csv_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """Swap two column names, put junk in a cell, drop a column, duplicate or ragged rows."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    header, body = rows[0], rows[1:]
    kind = rng.integers(5)
    if kind == 0:
        i, j = rng.choice(len(header), 2, replace=False)
        header[i], header[j] = header[j], header[i]
    elif kind == 1 and body:
        for _ in range(int(rng.integers(1, 3))):
            r, c = int(rng.integers(len(body))), int(rng.integers(len(header)))
            body[r][c] = JUNK_CELLS[int(rng.integers(len(JUNK_CELLS)))]
    elif kind == 2:
        c = int(rng.integers(len(header)))
        header = header[:c] + header[c + 1:]
        body = [row[:c] + row[c + 1:] for row in body]
    elif kind == 3 and body:
        r = int(rng.integers(len(body)))
        body.insert(int(rng.integers(len(body) + 1)), list(body[r]))
    elif body:
        r = int(rng.integers(len(body)))
        body[r] = body[r] + ["extra"] if rng.random() < 0.5 else body[r][:-1]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header] + body)
    return out.getvalue().encode("utf-8")


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


def json_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """Delete a (nested) key, replace a value by one of the wrong type, or make the top level a list."""
    obj = json.loads(data)
    paths = list(_paths(obj))
    kind = rng.integers(3)
    if kind == 2 or not paths:
        return json.dumps([obj]).encode()
    path = paths[int(rng.integers(len(paths)))]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if kind == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = JUNK_JSON[int(rng.integers(len(JUNK_JSON)))]
    return json.dumps(obj).encode()  # NaN is written as NaN, which Python's json reads back


def npz_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """Drop a key, change an array's dtype or shape, shorten it, put NaN in it, or make it an object array."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(arrays)[int(rng.integers(len(arrays)))]
    a = arrays[key]
    kind = rng.integers(6)
    if kind == 0:
        del arrays[key]
    elif kind == 1:
        arrays[key] = a.astype(str) if a.dtype.kind != "U" else np.arange(a.size).reshape(a.shape)
    elif kind == 2:
        arrays[key] = a.reshape(1, -1) if a.ndim != 2 else a.ravel()
    elif kind == 3:
        arrays[key] = a[: max(0, len(a) - 1)] if a.ndim else np.asarray([a])
    elif kind == 4:
        arrays[key] = np.full(a.shape, np.nan) if a.shape else np.asarray(np.nan)
    else:
        arrays[key] = np.asarray([object()] * max(1, a.size), dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # an object array is pickled here; the readers must refuse to unpickle it
    return buf.getvalue()


def png_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """A valid image file of the wrong kind: grey, RGBA, palette, 16-bit grey, 16-bit RGB, JPEG, wrong size."""
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    kind = rng.integers(7)
    buf = io.BytesIO()
    if kind == 0:
        Image.fromarray(arr).convert("L").save(buf, format="PNG")
    elif kind == 1:
        Image.fromarray(arr).convert("RGBA").save(buf, format="PNG")
    elif kind == 2:
        Image.fromarray(arr).convert("P").save(buf, format="PNG")
    elif kind == 3:
        Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(buf, format="PNG")
    elif kind == 4:
        return png_rgb16(arr.astype(">u2") * 257)
    elif kind == 5:
        Image.fromarray(arr).save(buf, format="JPEG")
    else:
        Image.fromarray(arr[:-1]).save(buf, format="PNG")
    return buf.getvalue()


def png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), built chunk by chunk."""
    import struct

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def checkpoint_corruption(data: bytes, rng: np.random.Generator) -> bytes:
    """A loadable checkpoint that disagrees: a dropped key, another arch or size, NaN weights, a foreign object."""
    import torch

    state = torch.load(io.BytesIO(data), weights_only=True)
    kind = rng.integers(6)
    if kind == 0:
        del state[["format", "version", "config", "model_spec", "model"][int(rng.integers(5))]]
    elif kind == 1:
        state["config"]["arch"] = "conv"
    elif kind == 2:
        state["model_spec"]["code_size"] += 1
    elif kind == 3:
        name = sorted(state["model"])[int(rng.integers(len(state["model"])))]
        state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    elif kind == 4:
        state["config"]["loss"] = "vgg"
    else:
        state = [1, 2, 3]
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Valid files, written by their real writers


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A valid experiment folder holding one file of every format."""
    return make_experiment(tmp_path_factory.mktemp("exp"))


def make_experiment(exp: Path) -> Path:
    """Write manifest + PNGs, design, simulated responses, codes, pixels, a run folder and analysis outputs into exp."""
    from test_analysis_fakestudy import make_manifest

    from percept.contracts.analysis_outputs import write_summary
    from percept.contracts.codes import write_codes
    from percept.contracts.pixels import write_pixels
    from study.design import DesignConfig, build_design
    from study.observers import ObserverConfig, simulate  # noqa: F401 (ObserverConfig: the simulate API)

    manifest = make_manifest(exp, n_images=6)
    design = build_design(manifest, exp, DesignConfig(lists=2, practice=0, catch=0.2, seed=1))
    simulate(design, 1, observer="ms_ssim", seed=0)
    labels = np.repeat([0, 1], 6)
    write_codes(exp / "codes" / "fc-mse-s0.npz", np.random.default_rng(0).normal(size=(12, 4)), labels,
                [f"i{k}" for k in range(12)], np.where(np.arange(12) % 3 == 0, "test", "train"),
                run="fc-mse-s0", arch="fc", loss="mse")
    write_pixels(exp / "pixels.npz", np.zeros((12, 3, 4, 4), np.uint8), [f"i{k}" for k in range(12)])
    _write_run(exp / "models" / "fc-mse-s0")
    adir = exp / "analysis"
    adir.mkdir()
    pd.DataFrame({"arch": ["fc"], "pair": ["ms_ssim:mse"], "loss_a": ["ms_ssim"], "loss_b": ["mse"], "n": [10],
                  "wins_a": [7], "wins_b": [3], "prop_a": [0.7], "ci_low": [0.4], "ci_high": [0.9],
                  "p_binom": [0.34]}).to_csv(adir / "pairwise.csv", index=False)
    write_summary(adir, {"study": exp / "study", "manifest": manifest, "simulated": True, "n_rows": 10,
                         "warnings": ["w"], "headline": ["h"], "figures": {"preferences.png": "preferences.png"},
                         "versions": {"python": "3"}, "options": {"seed": 0}})
    return exp


def _write_run(run_dir: Path) -> None:
    """A run folder as `percept train` leaves it: config.json, metrics.csv and a checkpoint of a tiny fc model."""
    import torch

    from autoencoders.models import build_model
    from percept.contracts import run as run_c

    cfg = {"data": "photos", "arch": "fc", "loss": "mse", "seed": 0, "image_size": 8, "code_size": 2, "width": 0.01,
           "train_split": "train", "eval_split": "test", "epochs": 1}
    guard = {"metric": "mse", "model": {"mse": 0.01, "ssim": 0.8}, "flat": {"mse": 0.05, "ssim": 0.3},
             "beats_flat": True, "output_spread": 0.1, "degenerate": False, "warnings": []}
    run_c.write_run_record(run_dir, {"run": "fc-mse-s0", "status": "finished", "config": cfg, "epochs_done": 1,
                                     "guard": guard})
    row = {"epoch": 1, "loss": 0.01, "mse": 0.01, "mae": 0.05, "psnr": 20.0, "ssim": 0.8, "ms_ssim": 0.9,
           "images_per_s": 100.0, "seconds": 1.0}
    run_c.write_metrics(run_dir / "metrics.csv", [dict(row, split="train"), dict(row, split="test")])
    torch.manual_seed(0)
    model = build_model("fc", 8, 2, width=0.01)
    buf = io.BytesIO()
    torch.save({"format": run_c.CHECKPOINT_FORMAT, "version": run_c.CHECKPOINT_VERSION, "config": cfg,
                "model_spec": model.describe(), "model": model.state_dict()}, buf)
    (run_dir / "checkpoint.pt").write_bytes(buf.getvalue())


def formats(exp: Path) -> dict[str, tuple[Path, Callable[[bytes, np.random.Generator], bytes], Callable[[], object]]]:
    """format → (file to corrupt, structural corruption, reader call)."""
    from percept.contracts import analysis_outputs as ao
    from percept.contracts import run as run_c
    from percept.contracts.codes import read_codes
    from percept.contracts.design import read_design_pair
    from percept.contracts.manifest import read_manifest
    from percept.contracts.paths import check_png
    from percept.contracts.pixels import read_pixels
    from percept.contracts.responses import read_session_files

    study = exp / "study"
    response = sorted((study / "responses").glob("*.csv"))[0]
    run_dir = exp / "models" / "fc-mse-s0"
    manifest = exp / "reconstructions" / "manifest.csv"
    png = exp / "reconstructions" / read_manifest(manifest)["recon_path"].iloc[0]
    return {
        "manifest.csv": (manifest, csv_corruption, lambda: read_manifest(manifest, check_files=True)),
        "design.csv": (study / "design.csv", csv_corruption, lambda: read_design_pair(study / "design.csv", check_files=True)),
        "design.json": (study / "design.json", json_corruption, lambda: read_design_pair(study / "design.csv")),
        "responses.csv": (response, csv_corruption, lambda: read_session_files(response)),
        "session.json": (response.with_suffix(".json"), json_corruption, lambda: read_session_files(response)),
        "codes.npz": (exp / "codes" / "fc-mse-s0.npz", npz_corruption, lambda: read_codes(exp / "codes" / "fc-mse-s0.npz")),
        "pixels.npz": (exp / "pixels.npz", npz_corruption, lambda: read_pixels(exp / "pixels.npz")),
        "run config.json": (run_dir / "config.json", json_corruption, lambda: run_c.read_run_record(run_dir)),
        "metrics.csv": (run_dir / "metrics.csv", csv_corruption, lambda: run_c.read_metrics(run_dir)),
        "checkpoint.pt": (run_dir / "checkpoint.pt", checkpoint_corruption, lambda: run_c.read_run(run_dir)),
        "summary.json": (exp / "analysis" / "summary.json", json_corruption, lambda: ao.read_summary(exp)),
        "pairwise.csv": (exp / "analysis" / "pairwise.csv", csv_corruption, lambda: ao.read_table(exp / "analysis", "pairwise")),
        "image.png": (png, png_corruption, lambda: check_png(png, 24)),
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if "torch" in sys.modules and isinstance(a, sys.modules["torch"].Tensor):
        return bool((a == b).all()) if a.shape == b.shape else False
    return a == b


def outcome(read: Callable[[], object], baseline: object) -> str:
    """'error' (one-line InputError), 'same', 'changed', or 'crash: ...' for anything else."""
    try:
        got = read()
    except InputError as exc:
        msg = str(exc)
        return "error" if msg.strip() and "\n" not in msg else f"crash: message of {msg.count(chr(10)) + 1} lines: {msg[:200]!r}"
    except Exception as exc:  # noqa: BLE001 - the point is to catch whatever a reader lets escape
        return f"crash: {type(exc).__name__}: {str(exc)[:200]}"
    return "same" if _same(baseline, got) else "changed"


def run_corruptions(exp: Path, n: int = N, seed: int = 0) -> dict[str, Counter]:
    """Try n corruptions per format (half byte-level, half structural); restore each file afterwards."""
    import contextlib

    results: dict[str, Counter] = {}
    for name, (path, structural, read) in formats(exp).items():
        original = path.read_bytes()
        with contextlib.redirect_stderr(io.StringIO()):  # old-file warnings are not under test here
            baseline = read()
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        counts: Counter = Counter()
        try:
            for k in range(n):
                data = byte_corruption(original, rng) if k % 2 == 0 else structural(original, rng)
                path.write_bytes(data)
                with contextlib.redirect_stderr(io.StringIO()):
                    result = outcome(read, baseline)
                counts[result if not result.startswith("crash") else "crash"] += 1
                if result.startswith("crash"):
                    counts[f"{result} [corruption {k}]"] += 1
        finally:
            path.write_bytes(original)
        results[name] = counts
    return results


def test_every_reader_gives_one_line_or_the_data(experiment):
    results = run_corruptions(experiment)
    crashes = {name: [k for k in c if k.startswith("crash:")] for name, c in results.items()}
    assert not any(crashes.values()), crashes
    for name, counts in results.items():
        assert sum(counts[k] for k in ("error", "same", "changed")) == N, (name, counts)
        assert counts["error"] >= N // 3, (name, counts)  # most corruptions must be caught, not passed on


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        exp = make_experiment(Path(tmp) / "exp")
        total = Counter()
        seeds = [int(x) for x in sys.argv[1:]] or [0]  # more seeds: `python tests/test_contracts_corruption.py 0 1 2`
        per_format: dict[str, Counter] = {}
        for seed in seeds:
            for name, counts in run_corruptions(exp, seed=seed).items():
                per_format.setdefault(name, Counter()).update(counts)
        for name, counts in per_format.items():
            total.update({k: v for k, v in counts.items() if k in ("error", "same", "changed", "crash")})
            print(f"{name:16s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(f"{'total':16s} " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))


def test_commands_answer_corrupt_inputs_in_one_line_and_write_nothing(experiment, tmp_path, capsys):
    """Through `percept`: a corrupt manifest stops `design`, a corrupt summary stops `report`; no file is left behind."""
    from percept import cli

    exp = tmp_path / "exp"
    shutil.copytree(experiment / "reconstructions", exp / "reconstructions")
    shutil.copytree(experiment / "analysis", exp / "analysis")
    manifest, summary = exp / "reconstructions" / "manifest.csv", exp / "analysis" / "summary.json"
    cases = [(manifest, csv_corruption, ["design", "--manifest", str(manifest), "--out", str(exp)], exp / "study"),
             (summary, json_corruption, ["report", "--out", str(exp)], exp / "analysis" / "report.html")]
    tried = refused = 0
    for path, structural, argv, output in cases:
        original = path.read_bytes()
        rng = np.random.default_rng([2, zlib.crc32(path.name.encode())])
        for k in range(10):
            path.write_bytes(byte_corruption(original, rng) if k % 2 == 0 else structural(original, rng))
            capsys.readouterr()
            rc = cli.main(list(argv))
            err = capsys.readouterr().err
            tried += 1
            if rc == 2:
                refused += 1
                assert err.count("\n") == 1 and "Traceback" not in err, err
                assert not output.exists(), f"{output} written although {path.name} was refused"
            else:
                assert rc == 0, (rc, err)
                shutil.rmtree(output) if output.is_dir() else output.unlink()
        path.write_bytes(original)
    with capsys.disabled():
        print(f"\ncommands: {refused} of {tried} corrupt inputs refused in one line, the rest accepted, none crashed")
    assert refused >= tried // 2, (refused, tried)
