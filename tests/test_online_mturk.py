"""MTurk ExternalQuestion support of the online server, through real HTTP (uvicorn on loopback, httpx):
- the pages may be framed by exactly the --mturk-origin origins when the platform allows MTurk (CSP
  frame-ancestors and form-action, no X-Frame-Options: DENY), and by nobody on Prolific;
- turkSubmitTo is parsed strictly: only an allowed origin earns `mturk_submit`, and only once completion is
  granted (never with a 409 or 403); an unlisted one leaves the answer as before and logs one line.
The browser side (a parent page on another loopback origin framing the study, the POST) is in
tests/test_online_browser.py."""
from __future__ import annotations

import random

import httpx
import pytest

from study import cli as study_cli
from study.online import security
from test_online_server import database_url, design_path, exp, exp_template, rows_of, served, start, take_part  # noqa: F401

LOOPBACK = "http://127.0.0.1:5555"  # a parent origin the tests allow; nothing needs to listen there
WORKER = {"workerId": "A1B2C3D4E5", "assignmentId": "ASG1", "hitId": "HIT1"}


def _complete(c: httpx.Client, s: dict, turk_submit_to: str | None) -> httpx.Response:
    body = None if turk_submit_to is None else {"turk_submit_to": turk_submit_to}
    return c.post(f"/api/sessions/{s['session']}/complete", headers={security.TOKEN_HEADER: s["token"]}, json=body)


@pytest.mark.parametrize("text, origin", [
    ("https://www.mturk.com", "https://www.mturk.com"),
    ("https://www.mturk.com/", "https://www.mturk.com"),
    ("HTTPS://WWW.MTURK.COM:443/", "https://www.mturk.com"),
    ("http://127.0.0.1:5555", "http://127.0.0.1:5555"),
    ("https://www.mturk.com.evil.com", "https://www.mturk.com.evil.com"),  # an origin, but not an allowed one
    ("https://www.mturk.com@evil.com", None),
    ("https://user:pw@www.mturk.com", None),
    ("https://www.mturk.com\\@evil.com", None),
    ("https://evil.com/https://www.mturk.com", None),
    ("https://www.mturk.com/mturk/externalSubmit", None),
    ("https://www.mturk.com?x=1", None),
    ("https://www.mturk.com#x", None),
    ("https://www.mturk.com?", None),
    ("https://www.mturk%2ecom", None),
    (" https://www.mturk.com", None),
    ("https://www.mturk.com:99999", None),
    ("https://www..mturk.com", None),
    ("javascript://www.mturk.com", None),
    ("//www.mturk.com", None),
    ("www.mturk.com", None),
    ("", None),
])
def test_turk_submit_to_is_parsed_strictly(text, origin):
    assert security.origin_of(text, trailing_slash=True) == origin
    allowed = security.mturk_submit_url(text, security.MTURK_ORIGINS)
    want = f"{origin}/mturk/externalSubmit" if origin in security.MTURK_ORIGINS else None
    assert allowed == want


def test_mturk_origin_flag_is_repeatable_and_checked_in_one_line(exp, capsys):
    from percept.commands import resolve

    serve = next(c for c in study_cli.COMMANDS if c.name == "serve")
    got = resolve(serve, ["--design", "x", "--mturk-origin", LOOPBACK, "--mturk-origin", "https://www.mturk.com"])
    assert got["mturk_origin"] == (LOOPBACK, "https://www.mturk.com")
    for bad in ("https://www.mturk.com/", "https://x@www.mturk.com", "ftp://www.mturk.com", "www.mturk.com"):
        assert study_cli.main(["serve", "--design", str(design_path(exp)), "--mturk-origin", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--mturk-origin" in err and "is not an origin" in err, err


@pytest.mark.parametrize("platform, origins, framing", [
    ("mturk", (LOOPBACK,), LOOPBACK),
    ("any", None, "https://www.mturk.com https://workersandbox.mturk.com"),
    ("prolific", (LOOPBACK,), None),
])
def test_pages_may_be_framed_by_the_mturk_origins_only_where_mturk_is_allowed(exp, database_url, platform, origins, framing):
    bg, app = served(exp, database_url, platform=platform, **({"mturk_origin": origins} if origins else {}))
    with bg as url, httpx.Client(base_url=url) as c:
        before = dict(httpx.Headers(security.HEADERS))  # every header as it is without MTurk
        for path in ("/", "/static/index.html"):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            if framing is None:
                assert csp == security.CSP and r.headers["x-frame-options"] == "DENY"
            else:
                assert csp.endswith(f"; form-action 'self' {framing}; frame-ancestors {framing}")
                assert csp.startswith(security.CSP_BASE + ";") and "frame-ancestors 'none'" not in csp
                assert "x-frame-options" not in r.headers  # it cannot name origins, and DENY would forbid MTurk
            for name, value in before.items():  # everything else as it was
                if name not in ("content-security-policy", "x-frame-options"):
                    assert r.headers[name] == value, name
        # Not pages: the API, scripts and refusals keep frame-ancestors 'none' and DENY.
        for path in ("/api/study", "/static/app.js", "/stimuli/" + "0" * 24 + ".png"):
            r = c.get(path)
            assert r.headers["content-security-policy"] == security.CSP and r.headers["x-frame-options"] == "DENY", path


def test_mturk_submit_only_for_an_allowed_origin_once_completion_is_granted(exp, database_url, capsys):
    bg, app = served(exp, database_url, platform="mturk", mturk_origin=(LOOPBACK, "https://www.mturk.com"))
    rows = rows_of(exp)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, platform=WORKER)
        take_part(c, s, rows, random.Random(1), stop_after=2)
        r = _complete(c, s, LOOPBACK)
        assert r.status_code == 409 and "mturk_submit" not in r.json()  # not every trial stored: no POST target
        take_part(c, start(c, platform=WORKER), rows, random.Random(1))
        capsys.readouterr()
        r = _complete(c, s, LOOPBACK)
        assert r.status_code == 200 and r.json()["mturk_submit"] == f"{LOOPBACK}/mturk/externalSubmit"
        assert r.json()["code"] == security.completion_code(security.load_key(design_path(exp).parent / "online"), s["session"])
        assert _complete(c, s, "https://www.mturk.com/").json()["mturk_submit"] == "https://www.mturk.com/mturk/externalSubmit"
        assert capsys.readouterr().err == ""
        # Unlisted, look-alike or tricky: the answer is as without MTurk (the code is shown), and one line is logged each.
        tricks = ("https://workersandbox.mturk.com", "https://www.mturk.com.evil.com", "https://www.mturk.com@evil.com",
                  "http://127.0.0.1:5556", "https://127.0.0.1:5555", "https://evil.com/https://www.mturk.com", "x" * 2048)
        for trick in tricks:
            r = _complete(c, s, trick)
            assert r.status_code == 200 and set(r.json()) == {"code", "redirect"}, trick
        logged = capsys.readouterr().err.splitlines()
        assert len(logged) == len(tricks) and all("is not an allowed --mturk-origin" in line for line in logged)
        assert "x" * 101 not in logged[-1]  # the logged value is cut short
        assert _complete(c, s, "x" * 2049).status_code == 422  # over the limit (the client never sends that)
        assert set(_complete(c, s, None).json()) == {"code", "redirect"}  # without turkSubmitTo, as before

        lazy = start(c, platform={**WORKER, "workerId": "LAZY1", "assignmentId": "ASG2"})
        take_part(c, lazy, rows, random.Random(2), catch_right=False)
        r = _complete(c, lazy, LOOPBACK)
        assert r.status_code == 403 and "mturk_submit" not in r.json()  # the catch rule failed: no POST target


def test_turk_submit_to_of_a_direct_session_is_ignored(exp, database_url, capsys):
    bg, app = served(exp, database_url, platform="any")
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "direct01")
        take_part(c, s, rows_of(exp), random.Random(3))
        r = _complete(c, s, "https://www.mturk.com")
        assert r.status_code == 200 and set(r.json()) == {"code", "redirect"}
        assert "not an MTurk session" in capsys.readouterr().err
        m = start(c, platform=WORKER)
        take_part(c, m, rows_of(exp), random.Random(3))
        assert _complete(c, m, "https://workersandbox.mturk.com").json()["mturk_submit"] == \
            "https://workersandbox.mturk.com/mturk/externalSubmit"
