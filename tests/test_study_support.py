"""Shared helpers for the study tests: a small real manifest of generated 96×96 PNGs, X display handling, tmpfs mounts."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percept.contracts import manifest as manifest_c

REPO = Path(__file__).resolve().parents[1]
PERCEPT = [sys.executable, "-m", "percept"]
LOSSES = ("mse", "mae", "ms_ssim")


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A 96×96 RGB image with structure at several scales, float [0,1], (H, W, 3)."""
    from scipy.ndimage import gaussian_filter, zoom

    coarse = rng.random((12, 12, 3))
    img = zoom(coarse, (8, 8, 1), order=1)
    img = 0.7 * img + 0.3 * gaussian_filter(rng.random((96, 96, 3)), sigma=(1, 1, 0))
    return np.clip((img - img.min()) / (img.max() - img.min()), 0, 1)


def _metrics(orig: np.ndarray, rec: np.ndarray) -> dict:
    import piq
    import torch
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import structural_similarity

    mse = float(np.mean((orig - rec) ** 2))
    ssim = float(structural_similarity(orig, rec, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))
    # A three-scale stand-in for MS-SSIM (the tests need a plausible metric, not the exact one).
    scales = [ssim]
    a, b = orig, rec
    for _ in range(2):
        a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, 3).mean(axis=(1, 3))
        b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2, 3).mean(axis=(1, 3))
        scales.append(float(structural_similarity(a, b, channel_axis=2, data_range=1.0, win_size=7)))
    haarpsi = float(piq.haarpsi(*(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() for a in (rec, orig)),
                                data_range=1.0))
    return {"mse": mse, "mae": float(np.mean(np.abs(orig - rec))), "psnr": float(10 * np.log10(1.0 / mse)),
            "delta_e": float(deltaE_ciede2000(rgb2lab(orig), rgb2lab(rec)).mean()), "haarpsi": min(haarpsi, 1.0),
            "ssim": ssim, "ms_ssim": float(np.prod(np.clip(scales, 1e-6, 1) ** np.array([0.0711, 0.4530, 0.4760])))}


def make_manifest(root: Path, n_images: int = 6, archs=("conv",), losses=LOSSES, seed: int = 0, spares: int = 2,
                  seeds=(0,), flat: bool = False, degenerate=()) -> Path:
    """Write originals, reconstructions (blur/noise variants per loss) and manifest.csv under root/reconstructions.

    n_images main images, then `spares` more marked use=spare (for practice); one run per arch × loss × seed;
    with `flat`, the flat-baseline rows; runs named in `degenerate` are marked so.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    recon = root / "reconstructions"
    rows = []
    for i in range(n_images + spares):
        orig = _smooth_image(rng)
        image_id = f"synthetic:test:{i:04d}"
        opath = recon / "originals" / f"{i:04d}.png"
        opath.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(orig * 255).astype(np.uint8)).save(opath)
        orig8 = np.asarray(Image.open(opath), dtype=np.float32) / 255
        for arch, (k, loss), run_seed in itertools.product(archs, enumerate(losses), seeds):
            run = f"{arch}-{loss}-s{run_seed}"
            sigma = 0.8 + 0.6 * k + 0.3 * rng.random()
            rec = np.clip(gaussian_filter(orig8, sigma=(sigma, sigma, 0)) + rng.normal(0, 0.02 * (k + 1), orig8.shape), 0, 1)
            rpath = recon / run / f"{i:04d}.png"
            rpath.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(rec * 255).astype(np.uint8)).save(rpath)
            rec8 = np.asarray(Image.open(rpath), dtype=np.float32) / 255
            rows.append(dict(image_id=image_id, split="test", label="", original_path=opath.relative_to(recon).as_posix(),
                             run=run, arch=arch, loss=loss, recon_path=rpath.relative_to(recon).as_posix(),
                             **_metrics(orig8.astype(np.float64), rec8.astype(np.float64)),
                             degenerate=int(run in degenerate), use="main" if i < n_images else "spare"))
        if flat:  # the flat baseline as `percept reconstruct` writes it: the image's mean colour
            rec8 = np.broadcast_to(np.round(orig8.reshape(-1, 3).mean(axis=0) * 255) / 255, orig8.shape).astype(np.float32)
            rpath = recon / "flat" / f"{i:04d}.png"
            rpath.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(rec8 * 255).astype(np.uint8)).save(rpath)
            rows.append(dict(image_id=image_id, split="test", label="", original_path=opath.relative_to(recon).as_posix(),
                             run="flat", arch="baseline", loss="flat", recon_path=rpath.relative_to(recon).as_posix(),
                             **_metrics(orig8.astype(np.float64), rec8.astype(np.float64)), degenerate=0,
                             use="main" if i < n_images else "spare"))
    return manifest_c.write_manifest(pd.DataFrame(rows), recon / "manifest.csv")


def can_open(display: str | None) -> bool:
    """Whether an X display can be opened (XOpenDisplay through libX11)."""
    import ctypes
    import ctypes.util

    if not display:
        return False
    name = ctypes.util.find_library("X11")
    if name is None:
        return False
    x11 = ctypes.CDLL(name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        return False
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay(handle)
    return True


def start_xvfb() -> tuple[subprocess.Popen, str] | None:
    """Start a private Xvfb (1280×800×24) when none is given; return (process, display) or None."""
    if not shutil.which("Xvfb"):
        return None
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    number = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = os.read(r, 16)
        if not chunk or chunk.endswith(b"\n"):
            number += chunk
            break
        number += chunk
    os.close(r)
    if not number.strip():
        proc.kill()
        return None
    return proc, f":{number.decode().strip()}"


def mount_tmpfs(where: Path, options: str, skip: str) -> Iterator[Path]:
    """For a fixture to `yield from`: a tmpfs mounted at `where` with `options`, or the test skipped saying `skip`.

    Only root can mount, so elsewhere the tests that need a real full or read-only file system skip.
    """
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip(skip)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)
