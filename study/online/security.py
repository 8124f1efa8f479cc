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
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


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

    def __init__(self, app, *, key: bytes, rate_limit: int, ip_rate_limit: int, max_body: int = MAX_BODY):
        self.app = app
        self.key = key
        self.rate_limit = rate_limit
        self.ip_rate_limit = ip_rate_limit
        self.max_body = max_body
        self.limiter = RateLimiter()

    async def __call__(self, scope, receive, send) -> None:
        """Check limits, then pass the request on with headers added to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in names]
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
