"""The study's own consent, instructions and debrief texts (`percept serve --consent/--instructions/--debrief`):
- a file's title and paragraphs reach the client through GET /api/study as plain strings (markup kept literally);
- every bad file (missing, a folder, not UTF-8, empty, too big, too many paragraphs, a control character, a bad
  title line) stops `percept serve` with one line naming the file (and line) and exit 2, by flag and TOML key;
- without --consent the server warns, in one line, that the built-in text is not ethics-approved;
- each session keeps the sha256 of the texts it was shown, across a change of the consent between two runs
  on one database, and `percept export-online` writes them into its record; a schema-v1 database migrates.
The browser side (the hostile line shown literally, the debrief on the completion screen) is in
tests/test_online_browser.py."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from percept.contracts import InputError
from study import cli as study_cli
from study.online import schema, texts
from test_online_server import (database_url, design_path, exp, exp_template, rows_of, served, start,  # noqa: F401
                                take_part)
from test_study_support import REPO

HOSTILE = '<script>window.pwned=1</script> and <img src=x onerror="window.pwned=1"> stay text'
CONSENT = f"""# Consent to take part: [STUDY TITLE]

This study is run by [NAME] at [INSTITUTION]
(approval [APPROVAL NUMBER]).

{HOSTILE}

Payment: [AMOUNT]. Duration: about [MINUTES] minutes.
"""


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def test_text_files_reach_the_client_as_plain_strings(exp, database_url, tmp_path):
    consent = tmp_path / "consent.txt"
    consent.write_text(CONSENT, encoding="utf-8")
    debrief = tmp_path / "debrief.txt"
    debrief.write_bytes("\ufeffThanks from [LAB].\r\nQuestions: [EMAIL]\r\n\r\n\r\n"
                        "The study compared image models.\r\n".encode())
    bg, app = served(exp, database_url, consent=consent, debrief=debrief)
    with bg as url, httpx.Client(base_url=url) as c:
        got = c.get("/api/study").json()["texts"]
    app.app.state.percept.store.close()
    assert got["consent"] == {"title": "Consent to take part: [STUDY TITLE]", "paragraphs": [
        "This study is run by [NAME] at [INSTITUTION] (approval [APPROVAL NUMBER]).",  # a paragraph's lines joined
        HOSTILE, "Payment: [AMOUNT]. Duration: about [MINUTES] minutes."], "sha256": _sha(consent.read_bytes())}
    # A byte-order mark and Windows line ends are read as an editor shows them; no title line: the screen's own.
    assert got["debrief"] == {"title": None, "paragraphs": ["Thanks from [LAB]. Questions: [EMAIL]",
                                                            "The study compared image models."],
                               "sha256": _sha(debrief.read_bytes())}
    default = texts.parse("instructions", texts.DEFAULT_INSTRUCTIONS.encode(), "default")
    assert got["instructions"] == {"title": "Instructions", "paragraphs": list(default.paragraphs),
                                   "sha256": _sha(texts.DEFAULT_INSTRUCTIONS)}
    assert default.paragraphs[0].startswith("In each trial")


def test_the_example_consent_in_the_docs_is_a_valid_template_refused_until_filled_in(tmp_path):
    example = REPO / "docs" / "examples" / "consent.txt"
    assert "[INSTITUTION]" in example.read_text() and "[APPROVAL NUMBER]" in example.read_text()
    with pytest.raises(InputError, match=r"paragraph 1 is the template's 'TEMPLATE:' note: fill in") as info:
        texts.load("consent", example)
    assert "\n" not in str(info.value)
    filled = tmp_path / "consent.txt"  # the researcher's copy: the note deleted (placeholders left, for the test)
    filled.write_text("\n\n".join(p for p in example.read_text().split("\n\n") if not p.startswith("TEMPLATE:")))
    text = texts.load("consent", filled)
    assert text.title and len(text.paragraphs) >= 5 and text.source == "consent.txt"


BAD = {
    "missing": (None, "no such file"),
    "folder": ("<dir>", "is a folder"),
    "latin-1": (b"Consent\n\nDie Teilnahme ist freiwillig, Geb\xfchr: keine.\n", "line 3: not UTF-8"),
    "empty": (b"", "no text"),
    "blank": (b"\n  \n\t\n", "no text"),
    "title only": (b"# Consent\n\n", "no text"),
    "bad title": (b"#Consent\n\nText.\n", "line 1: a title line is '# Title'"),
    "control": (b"Fine.\n\nAlso fine.\nBut \x1b[31mred\n", "line 4: control character U+001B"),
    "nul": (b"Text\x00.\n", "line 1: control character U+0000"),
    "too big": (b"word " * 5000, "more than the 20000 bytes"),
    "too many": (b"p.\n\n" * 51, "51 paragraphs, more than the 50"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("flag", ["consent", "debrief"])
def test_a_bad_text_file_is_one_line_and_exit_2(exp, tmp_path, capsys, case, flag):
    content, message = BAD[case]
    path = tmp_path / f"{flag}.txt"
    if content == "<dir>":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert study_cli.main(["serve", "--design", str(design_path(exp)), "--port", "0", f"--{flag}", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--{flag} {path}: " in err and message in err, err
    assert not (design_path(exp).parent / "online" / "study.sqlite").exists()  # refused before any database


def test_a_bad_file_from_the_toml_key_and_in_a_process_is_one_line(exp, tmp_path):
    bad = tmp_path / "instructions.txt"
    bad.write_bytes(b"# Instructions\n\nLook \x07 closely.\n")
    config = tmp_path / "serve.toml"
    config.write_text(f'[serve]\ninstructions = "{bad}"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "percept", "serve", "--design", str(design_path(exp)), "--port", "0",
                        "--config", str(config)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and f"--instructions {bad}: line 3: control character U+0007" in r.stderr


def _serve_until_running(args: list[str]) -> str:
    """`percept serve` as a process until it listens; everything it wrote to stderr up to then."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "percept", "serve", "--port", "0", *args], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"running on http://127\.0\.0\.1:\d+", line):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any("running on" in line for line in lines), "".join(lines)
    return "".join(lines)


def test_serve_warns_in_one_line_about_the_default_consent(exp, tmp_path):
    err = _serve_until_running(["--design", str(design_path(exp))])
    warnings = [line for line in err.splitlines() if "consent" in line]
    assert warnings == ["serve: warning: no --consent file: participants see the built-in consent text, which is not "
                        "an ethics-approved text (see docs/examples/consent.txt)"]
    consent = tmp_path / "consent.txt"
    consent.write_text(CONSENT)
    assert "consent" not in _serve_until_running(["--design", str(design_path(exp)), "--consent", str(consent)])


def _records(exp: Path, database: str) -> dict[str, dict]:
    """`percept export-online`, then the session records by session id."""
    assert study_cli.main(["export-online", "--design", str(design_path(exp)), "--database", database]) == 0
    out = {}
    for f in (exp / "study" / "responses").glob("*.json"):
        rec = json.loads(f.read_text())
        out[rec["session"]] = rec
    return out


def test_each_session_keeps_the_hashes_of_the_texts_it_was_shown(exp, database_url, tmp_path):
    rows = rows_of(exp)
    v1, v2 = tmp_path / "consent-v1.txt", tmp_path / "consent-v2.txt"
    v1.write_text(CONSENT)
    v2.write_text(CONSENT.replace("[AMOUNT]", "£3"))
    bg, app = served(exp, database_url, consent=v1)
    with bg as url, httpx.Client(base_url=url) as c:
        alice = start(c, "alice")
        take_part(c, alice, rows, random.Random(1), stop_after=2)
    app.app.state.percept.store.close()
    # The ethics board amends the consent; the same database goes on with the new text.
    bg, app = served(exp, database_url, consent=v2)
    with bg as url, httpx.Client(base_url=url) as c:
        bob = start(c, "bob")
        take_part(c, bob, rows, random.Random(2), stop_after=2)
        # a page loaded before the restart showed v1: a new participant from it is refused in one line, stores nothing
        v1_sha = _sha(v1.read_bytes())
        stale = c.post("/api/sessions", json={"participant": "carol", "consent_sha256": v1_sha})
        assert stale.status_code == 409 and "consent text changed since this page was loaded" in stale.json()["detail"]
        assert c.get("/api/study").json()["texts"]["consent"]["sha256"] == _sha(v2.read_bytes())
        # alice returns from such a page: her session, agreed under v1, keeps v1
        again = c.post("/api/sessions", json={"participant": "alice", "consent_sha256": v1_sha})
        assert again.status_code == 200
        again = again.json()
        assert again["session"] == alice["session"]
        take_part(c, again, rows, random.Random(3), stop_after=1)
    app.app.state.percept.store.close()
    records = _records(exp, database_url)
    defaults = {name: _sha(texts.DEFAULTS[name]) for name in texts.NAMES}
    assert records[alice["session"]]["texts"] == {
        "consent": {"sha256": _sha(v1.read_bytes()), "source": "consent-v1.txt"},
        "instructions": {"sha256": defaults["instructions"], "source": "default"},
        "debrief": {"sha256": defaults["debrief"], "source": "default"}}
    assert records[bob["session"]]["texts"]["consent"] == {"sha256": _sha(v2.read_bytes()), "source": "consent-v2.txt"}
    assert len(records) == 2  # carol's refused start left no session
    assert _sha(v1.read_bytes()) != _sha(v2.read_bytes())


def test_a_schema_v1_database_migrates_and_its_sessions_have_no_recorded_texts(exp, database_url):
    """A database made by schema v1 (its real migration) with a session and an answer: served again, it gains
    sessions.texts; the old session exports texts null, a new one its hashes."""
    import sqlalchemy as sa

    from study.online.assign import ServedDesign
    from study.online.server import _choice
    from study.online.store import make_engine
    from test_online_server import keys_for

    url = database_url
    engine = make_engine(url)
    assert schema.migrate(engine, upto=1) == 1
    assert "texts" not in {c["name"] for c in sa.inspect(engine).get_columns("sessions")}
    design = ServedDesign.load(design_path(exp))
    _, t1 = schema.tables(1)
    plan = design.skeleton(0, "balanced")
    row = design.rows[(plan[0][0], plan[0][1])]
    key, choice = _choice(row, keys_for(row, random.Random(0)))
    with engine.begin() as conn:  # what a v1 server wrote for one participant with one answer
        conn.execute(sa.insert(t1["studies"]).values(study=design.study, design=str(design.path), n_lists=design.n_lists,
                                                     created=1.0e9))
        conn.execute(sa.insert(t1["sessions"]).values(
            session="00000000000000aa", study=design.study, participant="oldparticipant01", platform="direct",
            platform_ids="{}", list_id=0, policy="balanced", n_trials=len(plan), client="{}", screen_check=None,
            created=1.0e9, last_seen=1.0e9, completed_at=None, released_at=None))
        conn.execute(sa.insert(t1["session_trials"]), [
            {"session": "00000000000000aa", "position": k, "list_id": lid, "trial": trial, "pending": pending}
            for k, (lid, trial, pending) in enumerate(plan)])
        conn.execute(sa.insert(t1["answers"]).values(
            session="00000000000000aa", position=0, keys="[]", key=key, choice=choice, rt=1.0, onset=2.0,
            client_time="2026-11-29T12:00:00+00:00", server_time="2026-11-29T12:00:01.000+00:00", digest="0" * 64))
    engine.dispose()
    bg, app = served(exp, url)  # migrates to the current version
    assert app.app.state.percept.store.version == schema.VERSION == 2
    with bg as base, httpx.Client(base_url=base) as c:
        new = start(c, "newparticipant")
        take_part(c, new, rows_of(exp), random.Random(4), stop_after=1)
    app.app.state.percept.store.close()
    records = _records(exp, url)
    assert records["00000000000000aa"]["texts"] is None
    assert records[new["session"]]["texts"]["consent"] == {"sha256": _sha(texts.DEFAULT_CONSENT), "source": "default"}
