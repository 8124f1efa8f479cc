"""Keys and limits of the online study: the HMAC key file, participant hashes, session tokens, stimulus ids,
security headers, the request body limit and a per-token / per-IP rate limit.

The key lives in `study/online/secret.key` (0600), never in the database: a copy of the database alone
cannot link a hash back to a Prolific or MTurk ID, and tokens cannot be forged from it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from percept.contracts import InputError

KEY_BYTES = 32
HASH_CHARS = 16  # the response contract's participant IDs: hex fits its pattern
TOKEN_HEADER = "X-Session-Token"
MAX_BODY = 16 * 1024  # bytes: the largest answer is a few hundred bytes
RAW_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what a participant or platform ID may look like

# No inline script or style, nothing from other origins; images may be drawn to canvases as blobs.
CSP_BASE = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
            "font-src 'self'; object-src 'none'; base-uri 'none'")
CSP = CSP_BASE + "; form-action 'self'; frame-ancestors 'none'"
# MTurk shows an ExternalQuestion page in an iframe on these origins and takes the answers by a form POST there.
MTURK_ORIGINS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
MTURK_SUBMIT_PATH = "/mturk/externalSubmit"
# A host name or IPv4 address and an optional port, nothing else: no userinfo ('@'), no '\\', no percent escapes.
_NETLOC = re.compile(r"^([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::([0-9]{1,5}))?$")
_DEFAULT_PORT = {"http": 80, "https": 443}
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


def origin_of(text: str, *, trailing_slash: bool = False) -> str | None:
    """The normalised origin (scheme://host[:port], lower case, default port dropped) `text` is, else None.

    Strict on purpose: it decides where a participant's browser POSTs their assignment, so anything but a bare
    http(s) origin (a path, query, fragment, userinfo, backslash, escape or odd host) is not an origin;
    `trailing_slash` also takes 'scheme://host/' (how a URL parameter may carry it).
    """
    from urllib.parse import urlsplit

    if not isinstance(text, str) or len(text) > 300 or text != text.strip() or any(ord(c) < 33 or ord(c) > 126 for c in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT or parts.query or parts.fragment or "?" in text or "#" in text:
        return None
    if parts.path not in (("", "/") if trailing_slash else ("",)):
        return None
    found = _NETLOC.fullmatch(parts.netloc.lower())
    if found is None or ".." in found.group(1):
        return None
    host, port = found.group(1), found.group(2)
    if port is not None:
        if not 0 < int(port) < 65536:
            return None
        if int(port) == _DEFAULT_PORT[scheme]:
            port = None
    return f"{scheme}://{host}" + (f":{int(port)}" if port is not None else "")


def mturk_submit_url(turk_submit_to: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    """Where an MTurk ExternalQuestion posts its answers, when `turk_submit_to` is one of the allowed origins; else None."""
    origin = origin_of(turk_submit_to, trailing_slash=True)
    if origin is None or origin not in {origin_of(a) for a in allowed}:
        return None
    return origin + MTURK_SUBMIT_PATH


def page_csp(frame_origins: tuple[str, ...] | list[str] = ()) -> str:
    """The pages' CSP: framed by nobody, or (MTurk) by exactly these origins, which may also receive its form."""
    if not frame_origins:
        return CSP
    listed = " ".join(frame_origins)
    return f"{CSP_BASE}; form-action 'self' {listed}; frame-ancestors {listed}"


def load_key(folder: str | Path) -> bytes:
    """The study's HMAC key from `folder/secret.key`, made (0600, atomically) on first use."""
    folder = Path(folder)
    path = folder / "secret.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".secret.key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(KEY_BYTES).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    mode = path.stat().st_mode & 0o077
    if mode:
        raise InputError(f"{path}: the study key is readable by others (mode {oct(path.stat().st_mode & 0o777)}); "
                         f"chmod 600 it")
    text = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise InputError(f"{path}: not a study key (64 hex digits); restore it from a backup, never replace it "
                         f"(participants' hashes and tokens depend on it)")
    return bytes.fromhex(text)


def keyed(key: bytes, message: str) -> str:
    """HMAC-SHA256 of a message, hex."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def participant_hash(key: bytes, platform: str, raw_id: str) -> str:
    """The stored participant ID: the first 16 hex of HMAC(key, platform + ':' + raw ID)."""
    return keyed(key, f"{platform}:{raw_id}")[:HASH_CHARS]


def session_token(key: bytes, session: str) -> str:
    """The session's token, HMAC(key, 'token:' + session): handed out again on an idempotent start, never stored."""
    return keyed(key, f"token:{session}")


def token_ok(key: bytes, session: str, token: str | None) -> bool:
    """Whether a request's token is the session's (constant-time)."""
    return token is not None and hmac.compare_digest(session_token(key, session), token)


def stimulus_id(key: bytes, rel_path: str) -> str:
    """An opaque name for a design image: its URL must not say which loss made it."""
    return keyed(key, f"stimulus:{rel_path}")[:24]


def completion_code(key: bytes, session: str) -> str:
    """A per-session completion code (checkable later against the key)."""
    return keyed(key, f"code:{session}")[:10].upper()


class RateLimiter:
    """Sliding one-minute windows of request times per client key; thread-safe."""

    def __init__(self, window: float = 60.0):
        self.window = window
        self.seen: dict[str, deque] = {}
        self.lock = threading.Lock()

    def allow(self, who: str, limit: int) -> bool:
        """Count one request of `who`; False when it already made `limit` in the window."""
        now = time.monotonic()
        with self.lock:
            times = self.seen.setdefault(who, deque())
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= limit:
                return False
            times.append(now)
            if len(self.seen) > 100_000:  # forget idle clients so memory stays bounded
                for k in [k for k, v in self.seen.items() if not v or now - v[-1] > self.window]:
                    del self.seen[k]
            return True


class Guard:
    """ASGI middleware: security headers on every response, the body limit (413) and the rate limit (429).

    The rate limit counts /api requests per session (those carrying the session's valid token) or else per
    client address; behind a reverse proxy every client has the proxy's address, so raise --ip-rate-limit there.
    """

    def __init__(self, app, *, key: bytes, rate_limit: int, ip_rate_limit: int, max_body: int = MAX_BODY,
                 frame_origins: tuple[str, ...] = ()):
        self.app = app
        self.key = key
        self.rate_limit = rate_limit
        self.ip_rate_limit = ip_rate_limit
        self.max_body = max_body
        self.limiter = RateLimiter()
        # HTML pages only may be framed by these origins (MTurk's ExternalQuestion iframe); X-Frame-Options
        # cannot name origins, so those pages go without it (CSP frame-ancestors governs every current browser).
        self.page_headers = None
        if frame_origins:
            self.page_headers = tuple((k, page_csp(frame_origins).encode()) if k == b"content-security-policy" else (k, v)
                                      for k, v in HEADERS if k != b"x-frame-options")

    async def __call__(self, scope, receive, send) -> None:
        """Check limits, then pass the request on with headers added to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower(): v for k, v in message.get("headers", [])}
                html = names.get(b"content-type", b"").lower().startswith(b"text/html")
                chosen = self.page_headers if html and self.page_headers is not None else HEADERS
                extra = [(k, v) for k, v in chosen if k not in names]
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["path"].startswith("/api/"):
            token = headers.get(TOKEN_HEADER.lower())
            parts = scope["path"].split("/")  # /api/sessions/<sid>/...
            sid = parts[3] if len(parts) > 3 and parts[2] == "sessions" else ""
            client = (scope.get("client") or ("?", 0))[0]
            # Only a session's real token earns its own budget: made-up tokens share their address's.
            if token and sid and token_ok(self.key, sid, token):
                who, limit = f"s:{sid}", self.rate_limit
            else:
                who, limit = f"ip:{client}", self.ip_rate_limit
            if not self.limiter.allow(who, limit):
                await _plain(send_with_headers, 429, "too many requests; wait a minute", (b"retry-after", b"60"))
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _plain(send_with_headers, 413, f"request body over {self.max_body} bytes")
            return
        # Read the body here (it is small or refused) so a chunked body without a length is bounded too.
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _plain(send_with_headers, 413, f"request body over {self.max_body} bytes")
                return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


async def _plain(send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})
