"""Names, relative paths and images that pass between stages, checked the same way by every reader.

- Run, participant and session names use a safe character set, so they can never name a path.
- A path written into a file is relative and stays inside the experiment folder `runs/<exp>`.
- A stimulus image is an 8-bit RGB PNG (colour type 2, bit depth 8) of the stated size: no
  16-bit, grey, palette or alpha PNG, and no JPEG bytes behind a `.png` name.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from percept.contracts.tables import ContractError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_name(value: object, what: str, where: str | Path | None = None) -> str:
    """Accept a run/participant/session name of letters, digits, '-' and '_' (≤ 100, not starting with - or _)."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        prefix = f"{where}: " if where is not None else ""
        raise ContractError(f"{prefix}{what} {value!r} is not a safe name: use 1-100 letters, digits, '-' and '_'")
    return value


def inside(root: str | Path, base: str | Path, relative: object, where: str) -> Path:
    """`base/relative` after checking that `relative` is a relative path that stays inside `root`.

    The check is lexical (no symlinks followed), so it gives the same answer before the file exists.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise ContractError(f"{where}: path {relative!r} is empty or not text")
    if os.path.isabs(relative) or relative.startswith("~") or "\\" in relative or "\x00" in relative:
        raise ContractError(f"{where}: path {relative!r} must be relative (with '/'), not absolute")
    root_n = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(os.path.abspath(base), relative))
    if os.path.commonpath([root_n, full]) != root_n:
        raise ContractError(f"{where}: path {relative!r} leads outside the experiment folder {root_n}")
    return Path(full)


def relative_to(root: str | Path, path: str | Path, where: str) -> str:
    """`path` written relative to `root` with '/', refusing a path outside `root`."""
    root_n = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([root_n, full]) != root_n:
        raise ContractError(f"{where}: {full} is outside the experiment folder {root_n}")
    return Path(os.path.relpath(full, root_n)).as_posix()


def png_header(path: str | Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk; refuse anything that is not a PNG."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except FileNotFoundError:
        raise ContractError(f"{path}: image file not found") from None
    except OSError as exc:
        raise ContractError(f"{path}: image file unreadable ({exc.strerror or exc})") from None
    if not head.startswith(PNG_SIGNATURE):
        kind = "JPEG" if head.startswith(b"\xff\xd8") else "not PNG"
        raise ContractError(f"{path}: {kind} bytes under an image name; images must be lossless PNG files")
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise ContractError(f"{path}: PNG file is truncated or has no IHDR header")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def check_png(path: str | Path, size: int | tuple[int, int] | None = None) -> tuple[int, int]:
    """Refuse an image that is not an intact 8-bit RGB PNG of `size` (int = square side, (w, h), or None = any); return (w, h)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    width, height, depth, colour = png_header(path)
    if colour != 2:
        raise ContractError(f"{path}: PNG is {COLOUR_TYPES.get(colour, f'colour type {colour}')}, not 8-bit RGB")
    if depth != 8:
        raise ContractError(f"{path}: PNG has {depth} bits per channel, not 8")
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if (width, height) != want:
            raise ContractError(f"{path}: image is {width}×{height} pixels, expected {want[0]}×{want[1]}")
    try:
        with Image.open(path) as im:
            im.verify()  # every chunk's CRC and the end marker: Pillow's decoder alone checks neither
        with Image.open(path) as im:
            im.load()  # decode every pixel: a corrupt stream fails here, not in front of a participant
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ContractError(f"{path}: PNG data is corrupt ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return width, height
