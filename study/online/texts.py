"""The study's participant-facing texts (consent, instructions, debrief): one file format, checked at startup.

A text file (`percept serve --consent FILE`, `--instructions FILE`, `--debrief FILE`) is UTF-8 plain text:
paragraphs separated by blank lines (the lines of one paragraph are joined by a space, as the browser would);
an optional first line `# Title` sets the screen's title. The client shows every paragraph as text
(textContent), never as HTML, so markup in the file appears literally.

Without a file the built-in text below is used; it is written in the same format so its sha256 is what a
file holding exactly that text would have. The sha256 of the bytes of each text goes into every session's
record, so a paper can say which consent version each participant agreed to.
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from percept.contracts import InputError

MAX_BYTES = 20_000  # an ethics-approved consent runs to a page or two; far more is a wrong file
MAX_PARAGRAPHS = 50
MAX_TITLE = 200  # characters: a heading, not a paragraph
NAMES = ("consent", "instructions", "debrief")
TEMPLATE_MARK = "TEMPLATE:"  # the first word of the note in docs/examples/consent.txt that says what to replace

DEFAULT_CONSENT = """\
You will compare images and answer with the keyboard or the mouse; it takes about the time stated on the platform.

We record your answers, response times, your browser and screen size. Your platform ID is stored only as a keyed hash; nothing else identifies you.

Taking part is voluntary; you may stop at any time by closing this page.

Do you agree to take part?
"""

# The part of the instructions screen before the trial kinds' own instructions (which come from study/trials).
DEFAULT_INSTRUCTIONS = """\
# Instructions

In each trial you see an original image and copies of it made by different computer models.

There are no right or wrong answers; go by your first impression.
"""

# Shown above the completion code (or before the redirect / MTurk's POST), and above a refusal's reason.
DEFAULT_DEBRIEF = """\
# Thank you

Thank you! You have finished and all your answers are saved.
"""

DEFAULTS = {"consent": DEFAULT_CONSENT, "instructions": DEFAULT_INSTRUCTIONS, "debrief": DEFAULT_DEBRIEF}


@dataclass(frozen=True)
class Text:
    """One participant-facing text: its title (None: the screen's own), paragraphs, sha256 and where it came from."""

    name: str
    title: str | None
    paragraphs: tuple[str, ...]
    sha256: str
    source: str  # the file's name, or "default"

    def client(self) -> dict:
        """What GET /api/study sends: title and paragraphs as plain strings, and the hash the client sends back."""
        return {"title": self.title, "paragraphs": list(self.paragraphs), "sha256": self.sha256}

    def record(self) -> dict:
        """What a session's record keeps: the hash of the text shown and its source."""
        return {"sha256": self.sha256, "source": self.source}

    @property
    def is_default(self) -> bool:
        """Whether this is the built-in text (no file given)."""
        return self.source == "default"


def _bad_char(line: str) -> str | None:
    """The first control character of a line (tabs allowed: they render as a space), named, or None."""
    for ch in line:
        if ch != "\t" and unicodedata.category(ch) == "Cc":
            return f"U+{ord(ch):04X}"
    return None


def parse(name: str, data: bytes, where: str) -> Text:
    """A text from its file's bytes; anything unusable raises InputError naming `where` (and the line)."""
    if len(data) > MAX_BYTES:
        raise InputError(f"{where}: more than the {MAX_BYTES} bytes a {name} text may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{where}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark some Windows editors write
    lines = text.replace("\r\n", "\n").split("\n")
    for k, line in enumerate(lines, 1):
        bad = _bad_char(line)
        if bad is not None:
            raise InputError(f"{where}: line {k}: control character {bad}; only text, line breaks and tabs are allowed")
    title = None
    first = 0
    if lines and lines[0].startswith("#"):
        title = lines[0][1:].strip()
        if not lines[0].startswith("# ") or not title:
            raise InputError(f"{where}: line 1: a title line is '# Title' (a '#', a space, then the title)")
        if len(title) > MAX_TITLE:
            raise InputError(f"{where}: line 1: the title has {len(title)} characters, more than {MAX_TITLE}")
        first = 1
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines[first:] + [""]:
        if line.strip():
            current.append(" ".join(line.split()))
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if not paragraphs:
        raise InputError(f"{where}: no text: write the {name} as paragraphs separated by blank lines")
    for k, paragraph in enumerate(paragraphs, 1):
        if paragraph.startswith(TEMPLATE_MARK):  # docs/examples/consent.txt served as it is: placeholders to participants
            raise InputError(f"{where}: paragraph {k} is the template's '{TEMPLATE_MARK}' note: fill in the [BRACKETED] "
                             f"placeholders with your approved wording and delete that paragraph")
    if len(paragraphs) > MAX_PARAGRAPHS:
        raise InputError(f"{where}: {len(paragraphs)} paragraphs, more than the {MAX_PARAGRAPHS} a {name} text may have")
    return Text(name, title, tuple(paragraphs), hashlib.sha256(data).hexdigest(), where)


def load(name: str, path: str | Path | None) -> Text:
    """The text `name` from its file, or the built-in one when `path` is None; a bad file is one line."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown text {name!r}")
    if path is None:
        return parse(name, DEFAULTS[name].encode("utf-8"), "default")
    flag = f"--{name} {path}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # a wrong, huge file is not read whole
    except FileNotFoundError:
        raise InputError(f"{flag}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{flag}: is a folder, not a text file") from None
    except OSError as exc:
        raise InputError(f"{flag}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    text = parse(name, data, flag)
    # The file name only: an absolute path would put the researcher's folders into every exported record.
    return Text(text.name, text.title, text.paragraphs, text.sha256, Path(path).name)


def load_all(consent: str | Path | None = None, instructions: str | Path | None = None,
             debrief: str | Path | None = None) -> dict[str, Text]:
    """Every participant-facing text, each from its file or the built-in default, checked now."""
    return {"consent": load("consent", consent), "instructions": load("instructions", instructions),
            "debrief": load("debrief", debrief)}
