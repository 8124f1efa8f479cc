"""A small generator of contract-format study folders with known truth, used by the analysis tests.

It writes reconstructions/manifest.csv (+ tiny PNGs), study/design.csv + design.json and
study/responses/*.csv + .json exactly as the percept contracts define them, without importing
the `study` or `autoencoders` packages.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from percept.contracts.design import read_design, write_design
from percept.contracts.manifest import file_hash, read_manifest, write_manifest
from percept.contracts.responses import COLUMNS as RESPONSE_COLUMNS, read_responses
from percept.contracts.tables import atomic_write_csv

QUALITY = {"mse": 0.0, "mae": 0.1, "ms_ssim": 0.6}  # latent quality per loss (log-worth scale)


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((24, 24, 3), value, dtype=np.uint8)
    arr[::4] = 255 - value  # stripes, so images differ visibly
    Image.fromarray(arr).save(path)


def make_manifest(exp: Path, n_images: int, archs=("fc", "conv"), losses=("mse", "mae", "ms_ssim"), seed: int = 0,
                  labels: bool = True, pngs: bool = True) -> Path:
    """Write a manifest whose metrics favour each loss's latent QUALITY with per-image noise."""
    rng = np.random.default_rng(seed)
    rows = []
    rec = exp / "reconstructions"
    for i in range(n_images):
        iid = f"photos:test:img:{i:04d}"
        orig = f"originals/{i:04d}.png"
        if pngs:
            _png(rec / orig, 40 + 5 * i % 200)
        for arch, loss in itertools.product(archs, losses):
            run = f"{arch}-{loss}-s0"
            q = QUALITY.get(loss, 0.0) + rng.normal(0, 0.3)
            mse = float(np.exp(-3 - q + rng.normal(0, 0.5)))
            recon = f"{run}/{i:04d}.png"
            if pngs:
                _png(rec / recon, 60 + 7 * i % 180)
            rows.append({
                "image_id": iid, "split": "test", "label": str(i % 3) if labels else "", "original_path": orig,
                "run": run, "arch": arch, "loss": loss, "recon_path": recon,
                "mse": mse, "mae": float(np.sqrt(mse) * 0.8 + rng.normal(0, 0.005)), "psnr": float(-10 * np.log10(mse)),
                "ssim": float(min(1.0, 1 - mse * 5 + rng.normal(0, 0.01))), "ms_ssim": float(np.clip(0.5 + 0.3 * q, 0, 1)),
            })
    return write_manifest(pd.DataFrame(rows), rec / "manifest.csv")


def make_design(exp: Path, manifest_path: Path, *, pairs=(("ms_ssim", "mse"),), ranking: bool = False,
                triplets: bool = True, catch: int = 4, practice: int = 1, repeats: int = 1, seed: int = 0) -> Path:
    """One list holding every image × arch × pair triplet (sides counterbalanced) [+ rankings, catch, practice]."""
    rng = np.random.default_rng(seed)
    man = read_manifest(manifest_path)
    rel = lambda p: f"../reconstructions/{p}"  # noqa: E731 - paths relative to the study folder
    rows = []
    images = list(dict.fromkeys(man["image_id"]))
    archs = list(dict.fromkeys(man["arch"]))

    def slot(prefix: str, r) -> dict:
        return {f"{prefix}_run": r.run, f"{prefix}_loss": r.loss, f"{prefix}_path": rel(r.recon_path)}

    def empty(prefix: str) -> dict:
        return {f"{prefix}_run": "", f"{prefix}_loss": "", f"{prefix}_path": ""}

    by = {(r.image_id, r.arch, r.loss): r for r in man.itertuples()}
    for k in range(practice):
        r = by[(images[0], archs[0], pairs[0][0])]
        o = by[(images[0], archs[0], pairs[0][1])]
        rows.append({"block": "practice", "kind": "triplet", "image_id": images[0], "arch": archs[0],
                     "pair": f"{pairs[0][0]}:{pairs[0][1]}", "reference_path": rel(r.original_path),
                     **slot("left", r), **slot("right", o), **empty("third"), "answer": ""})
    for rep in range(repeats):
        for i_img, img in enumerate(images):
            for arch in archs:
                if triplets:
                    for i_pair, (a, b) in enumerate(pairs):
                        ra, rb = by[(img, arch, a)], by[(img, arch, b)]
                        left_a = (i_img + i_pair + rep) % 2 == 0
                        left, right = (ra, rb) if left_a else (rb, ra)
                        rows.append({"block": "main", "kind": "triplet", "image_id": img, "arch": arch,
                                     "pair": f"{a}:{b}", "reference_path": rel(ra.original_path),
                                     **slot("left", left), **slot("right", right), **empty("third"), "answer": ""})
                if ranking:
                    losses = [l for l in dict.fromkeys(man["loss"])]
                    rs = [by[(img, arch, l)] for l in rng.permutation(losses)]
                    rows.append({"block": "main", "kind": "ranking", "image_id": img, "arch": arch, "pair": "",
                                 "reference_path": rel(rs[0].original_path), **slot("left", rs[0]),
                                 **slot("right", rs[1]), **slot("third", rs[2]), "answer": ""})
    for k in range(catch):
        r = by[(images[k % len(images)], archs[0], pairs[0][0])]
        orig = {"run": "original", "loss": "original", "path": rel(r.original_path)}
        deg = {"run": "degraded", "loss": "degraded", "path": rel(r.recon_path)}
        left, right = (orig, deg) if k % 2 == 0 else (deg, orig)
        rows.append({"block": "main", "kind": "catch", "image_id": r.image_id, "arch": "", "pair": "",
                     "reference_path": rel(r.original_path), **{f"left_{f}": v for f, v in left.items()},
                     **{f"right_{f}": v for f, v in right.items()}, **empty("third"),
                     "answer": "left" if k % 2 == 0 else "right"})
    df = pd.DataFrame(rows)
    order = np.concatenate([np.arange(practice), practice + rng.permutation(len(df) - practice)])
    df = df.iloc[order].reset_index(drop=True)
    df.insert(0, "trial", np.arange(len(df)))
    df.insert(0, "list_id", 0)
    study = exp / "study"
    meta = {"seed": seed, "manifest": "../reconstructions/manifest.csv", "manifest_sha256": file_hash(manifest_path)}
    return write_design(df, study / "design.csv", meta)


def simulate(design_path: Path, manifest_path: Path, *, n_participants: int = 10, effect: float = 0.0,
             sd_participant: float = 0.0, sd_image: float = 0.0, side_bias: float = 0.0, metric: str | None = None,
             catch_accuracy: float = 1.0, rank_noise: float = 1.0, simulated: int = 1, seed: int = 0,
             bad: dict | None = None) -> list[Path]:
    """Answer the design for each participant. Triplets: logit P(A) = effect + u_p + v_image + side_bias·[A left],
    or, with `metric`, choose the option the manifest metric prefers. Rankings: Plackett–Luce on QUALITY.
    `bad` maps participant index -> 'side' | 'fast' | 'catch' to make a participant that must be excluded."""
    from percept.contracts.manifest import HIGHER_IS_BETTER

    rng = np.random.default_rng(seed)
    design = read_design(design_path)
    man = read_manifest(manifest_path).set_index(["image_id", "run"])
    images = sorted(design["image_id"].unique())
    v = dict(zip(images, rng.normal(0, sd_image, len(images))))
    out = []
    resp_dir = design_path.parent / "responses"
    resp_dir.mkdir(parents=True, exist_ok=True)
    bad = bad or {}
    for p in range(n_participants):
        pid = f"P{p:02d}"
        u = rng.normal(0, sd_participant)
        mode = bad.get(p, "")
        rows = []
        for r in design.itertuples():
            if r.kind == "triplet":
                a, b = r.pair.split(":")
                a_left = r.left_loss == a
                if metric:
                    ma, mb = (man.loc[(r.image_id, run), metric] for run in
                              ((r.left_run, r.right_run) if a_left else (r.right_run, r.left_run)))
                    pa = 1.0 if (ma > mb) == HIGHER_IS_BETTER[metric] else 0.0
                else:
                    pa = 1 / (1 + np.exp(-(effect + u + v[r.image_id] + side_bias * (1 if a_left else -1))))
                chose_a = rng.random() < pa
                choice = (r.left_run if a_left else r.right_run) if chose_a else (r.right_run if a_left else r.left_run)
                if mode == "side":
                    choice = r.left_run
                key = "left" if choice == r.left_run else "right"
            elif r.kind == "catch":
                correct = rng.random() < (0.3 if mode == "catch" else catch_accuracy)
                choice = getattr(r, f"{r.answer}_run") if correct else getattr(r, f"{'right' if r.answer == 'left' else 'left'}_run")
                if mode == "side":
                    choice = r.left_run
                key = "left" if choice == r.left_run else "right"
            else:
                runs = [r.left_run, r.right_run, r.third_run]
                losses = [r.left_loss, r.right_loss, r.third_loss]
                util = np.array([QUALITY[l] for l in losses]) / rank_noise + rng.gumbel(size=3)
                order = np.argsort(-util)
                choice = ">".join(runs[i] for i in order)
                key = ",".join(str(i + 1) for i in order)
            rt = 0.05 if mode == "fast" else float(rng.uniform(0.6, 2.5))
            rows.append({"participant": pid, "session": "1", "list_id": r.list_id, "trial": r.trial, "block": r.block,
                         "kind": r.kind, "image_id": r.image_id, "arch": r.arch, "left_run": r.left_run,
                         "left_loss": r.left_loss, "right_run": r.right_run, "right_loss": r.right_loss,
                         "third_run": r.third_run, "third_loss": r.third_loss, "key": key, "choice": choice,
                         "rt": rt, "onset": 1.0 + r.trial, "wallclock": "2026-11-23T22:00:00+00:00",
                         "simulated": simulated})
        path = resp_dir / f"{pid}-1.csv"
        atomic_write_csv(pd.DataFrame(rows, columns=RESPONSE_COLUMNS), path)
        path.with_suffix(".json").write_text(json.dumps({
            "participant": pid, "session": "1", "list_id": 0, "simulated": bool(simulated), "completed": True,
            "observer": (f"{metric} noise=0" if metric else "test-generator") if simulated else "", "n_trials": len(rows), "n_answered": len(rows)}))
        out.append(path)
    return out


def make_study(exp: Path, *, n_images: int = 12, archs=("fc", "conv"), pairs=(("ms_ssim", "mse"),), ranking=False,
               triplets=True, catch=4, repeats=1, seed=0, **sim) -> Path:
    """Manifest + design + responses under `exp`; returns the study folder."""
    man = make_manifest(exp, n_images, archs=archs, seed=seed)
    design = make_design(exp, man, pairs=pairs, ranking=ranking, triplets=triplets, catch=catch, repeats=repeats,
                         seed=seed)
    simulate(design, man, seed=seed, **sim)
    return design.parent


def test_generator_writes_valid_contract_files(tmp_path):
    study = make_study(tmp_path, n_images=4, ranking=True, n_participants=2)
    design = read_design(study / "design.csv", check_files=True)
    assert set(design["kind"]) == {"triplet", "ranking", "catch"}
    files = sorted((study / "responses").glob("*.csv"))
    assert len(files) == 2
    df = read_responses(files[0])
    assert len(df) == len(design) and set(df["simulated"]) == {1}


@pytest.mark.parametrize("mode", ["side", "fast", "catch"])
def test_generator_bad_participants_behave_badly(tmp_path, mode):
    study = make_study(tmp_path, n_images=6, n_participants=1, catch=10, bad={0: mode})
    df = read_responses(study / "responses" / "P00-1.csv")
    main = df[df["block"] == "main"]
    if mode == "side":
        assert (main["choice"] == main["left_run"]).all()
    elif mode == "fast":
        assert (main["rt"] < 0.2).all()
    else:
        assert (main.loc[main["kind"] == "catch", "choice"] == "original").mean() < 0.8
