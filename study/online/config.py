"""Settings of `percept serve` and `percept export-online`; every default carries its reason."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from percept.contracts import InputError
from percept.contracts.kinds import CATCH_THRESHOLD  # the analysis's default exclusion rule: one number for both
from study.online.security import MTURK_ORIGINS, origin_of


@dataclass(frozen=True)
class ServeConfig:
    """How the study is served: address, database, assignment, crowd platform and limits."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on (loopback by default; put a TLS reverse proxy in front for the internet)"})
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port, printed at start)"})
    database: str | None = field(default=None, metadata={
        "help": "SQLAlchemy URL, e.g. postgresql://user@host/db; none: study/online/study.sqlite beside the design"})
    policy: str = field(default="balanced", metadata={
        "choices": ("balanced", "active"),
        "help": "balanced: the design's lists in turn; active: main pairwise trials chosen by study.online.active"})
    abandon_after: float = field(default=1800.0, metadata={
        "help": "seconds without a request after which an unfinished session frees its list place"})
    completion_code: str | None = field(default=None, metadata={
        "help": "code shown/redirected on completion (Prolific's); none: a code per session (HMAC, checkable later)"})
    redirect_url: str | None = field(default=None, metadata={
        "help": "where a finished participant is sent; '{code}' in it is replaced by the code"})
    platform: str = field(default="any", metadata={
        "choices": ("any", "prolific", "mturk"),
        "help": "crowd platform whose URL parameters the client must pass (any: none required)"})
    mturk_origin: tuple[str, ...] = field(default=MTURK_ORIGINS, metadata={
        "repeat": True,
        "help": "origin (scheme://host[:port]) that may frame the study and receive its MTurk ExternalQuestion POST "
                "when --platform is mturk or any; repeat the flag for each (default: MTurk and its sandbox)"})
    catch_threshold: float = field(default=CATCH_THRESHOLD, metadata={
        "help": "share of catch trials answered right needed for the completion code (the analysis's default)"})
    title: str = field(default="Image comparison study", metadata={"help": "title shown by the client"})
    consent: Path | None = field(default=None, metadata={
        "help": "the ethics board's consent text: UTF-8, paragraphs separated by blank lines, optional first line "
                "'# Title' (see docs/examples/consent.txt); none: the default text, which no board approved"})
    instructions: Path | None = field(default=None, metadata={
        "help": "text of the instructions screen before the trial kinds' own instructions (same format as --consent)"})
    debrief: Path | None = field(default=None, metadata={
        "help": "debrief shown on the completion screen above the code (same format as --consent)"})
    scale: int = field(default=1, metadata={
        "help": "CSS pixels per image pixel (the lab's --scale); the browser shows each image pixel as "
                "round(scale × devicePixelRatio) device pixels, lowered only if the window is too small"})
    min_width: int = field(default=1024, metadata={"help": "smallest browser viewport width in CSS pixels"})
    min_height: int = field(default=700, metadata={"help": "smallest browser viewport height in CSS pixels"})
    rate_limit: int = field(default=600, metadata={
        "help": "requests per minute allowed per session token (a person answers about one trial a second)"})
    ip_rate_limit: int = field(default=120, metadata={
        "help": "requests per minute allowed per IP address for requests without a token"})
    active_objective: str = field(default="eig", metadata={
        "choices": ("eig", "variance"),
        "help": "active policy: expected information gain (ASAP) or summed posterior variance of the pair differences"})
    batch: int = field(default=8, metadata={"help": "active policy: main trials chosen per request"})
    seed: int = field(default=0, metadata={"help": "seeds the active policy"})

    def validate(self) -> None:
        """Refuse settings that cannot work, in one line."""
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port: {self.port} is not a TCP port (0..65535)")
        if not self.abandon_after > 0:
            raise InputError(f"--abandon-after: {self.abandon_after} must be a number of seconds > 0")
        if not 0.0 <= self.catch_threshold <= 1.0:
            raise InputError(f"--catch-threshold: {self.catch_threshold} must be a share in [0, 1]")
        for name in ("rate_limit", "ip_rate_limit", "batch", "scale", "min_width", "min_height"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: {getattr(self, name)} must be at least 1")
        if self.completion_code is not None and not (0 < len(self.completion_code) <= 64 and self.completion_code.isalnum()):
            raise InputError(f"--completion-code: {self.completion_code!r} must be 1-64 letters and digits")
        if not self.mturk_origin:
            raise InputError("--mturk-origin: give at least one origin (scheme://host[:port])")
        for origin in self.mturk_origin:
            if origin_of(origin) is None:
                raise InputError(f"--mturk-origin: {origin!r} is not an origin: http(s)://host[:port], no path, "
                                 f"user, query or fragment (e.g. https://www.mturk.com)")
        if self.redirect_url is not None and not self.redirect_url.startswith(("https://", "http://")):
            raise InputError(f"--redirect-url: {self.redirect_url!r} must be an http(s) URL")

    @property
    def frame_origins(self) -> tuple[str, ...]:
        """Origins that may frame the study's pages: MTurk's when the platform allows MTurk, else none."""
        if self.platform not in ("mturk", "any"):
            return ()
        return tuple(dict.fromkeys(origin_of(o) for o in self.mturk_origin))


@dataclass(frozen=True)
class ExportConfig:
    """Where `percept export-online` reads from."""

    database: str | None = field(default=None, metadata={
        "help": "SQLAlchemy URL the study was served from; none: study/online/study.sqlite beside the design"})
