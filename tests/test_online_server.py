"""The online study's server through real HTTP: uvicorn on loopback in a thread, httpx as the browser.

Every test gets a fresh database from the `database_url` fixture (a SQLite file here; a fresh database of
a throw-away PostgreSQL cluster in test_online_postgres.py, which runs these same tests).
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from percept.contracts import design as design_c
from percept.contracts import responses as responses_c
from study import cli as study_cli
from study.online import security
from study.online.config import ServeConfig
from study.online.server import Background, create_app
from test_study_support import REPO, make_manifest

NOW = "2026-11-29T12:00:00+00:00"


@pytest.fixture(scope="module")
def exp_template(tmp_path_factory):
    """A tiny experiment: 4 images, triplet (mse:ms_ssim) + ranking, catch trials, 2 lists (a list and its mirror)."""
    root = tmp_path_factory.mktemp("online")
    make_manifest(root, n_images=4)
    assert study_cli.main(["design", "--out", str(root), "--lists", "1", "--practice", "1", "--catch", "0.2",
                           "--kinds", "triplet,ranking", "--pairs", "mse:ms_ssim", "--seed", "3"]) == 0
    return root


@pytest.fixture
def exp(exp_template, tmp_path):
    """A private copy of the experiment (its study/online/ and responses/ start empty)."""
    dest = tmp_path / "exp"
    shutil.copytree(exp_template, dest)
    return dest


@pytest.fixture
def database_url(tmp_path):
    """A fresh database per test: here a SQLite file."""
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def design_path(exp: Path) -> Path:
    return exp / "study" / "design.csv"


def served(exp: Path, database_url: str, policy_factory=None, **cfg):
    """(Background server, app) for the experiment with these settings."""
    app = create_app(ServeConfig(database=database_url, **cfg), design_path(exp), policy_factory=policy_factory)
    return Background(app), app


def start(client: httpx.Client, participant: str | None = None, platform: dict | None = None) -> dict:
    r = client.post("/api/sessions", json={"participant": participant, "platform": platform or {},
                                           "client": {"user_agent": "test", "dpr": 1.0, "viewport_w": 1280, "viewport_h": 800}})
    assert r.status_code in (200, 201), r.text
    return r.json()


def rows_of(exp: Path) -> dict[tuple[int, int], dict]:
    df = design_c.read_design(design_path(exp))
    return {(int(r["list_id"]), int(r["trial"])): r for r in df.to_dict("records")}


def keys_for(row: dict, rng: random.Random, prefer: str = "ms_ssim", catch_right: bool = True) -> list[str]:
    """A plausible participant: catch trials right, triplets mostly for `prefer`, rankings at random."""
    if row["kind"] == "catch":
        right = row["answer"]
        return [right if catch_right else ("left" if right == "right" else "right")]
    if row["kind"] == "triplet":
        good = "left" if row["left_loss"] == prefer else "right"
        return [good if rng.random() < 0.8 else ("left" if good == "right" else "right")]
    if row["kind"] == "ranking":
        return rng.sample(["1", "2", "3"], 2)
    raise AssertionError(row["kind"])


def put(client: httpx.Client, s: dict, trial: int, keys: list[str], rt: float = 1.2, onset: float | None = None):
    return client.put(f"/api/sessions/{s['session']}/answers/{trial}", headers={security.TOKEN_HEADER: s["token"]},
                      json={"keys": keys, "rt": rt, "onset": 5.0 + 3 * trial if onset is None else onset, "client_time": NOW})


def trials(client: httpx.Client, s: dict, start_at: int = 0) -> dict:
    r = client.get(f"/api/sessions/{s['session']}/trials", params={"from": start_at},
                   headers={security.TOKEN_HEADER: s["token"]})
    assert r.status_code == 200, r.text
    return r.json()


def take_part(client: httpx.Client, s: dict, rows: dict, rng: random.Random, catch_right: bool = True,
              stop_after: int | None = None) -> None:
    """Answer the session's trials from its next one, as the design says (balanced policy: position = trial)."""
    got = trials(client, s, s["next_trial"] or 0)["trials"]
    for t in got[:stop_after]:
        r = put(client, s, t["trial"], keys_for(rows[(s["list_id"], t["trial"])], rng, catch_right=catch_right))
        assert r.status_code == 200, r.text


def test_study_headers_and_trial_screens(exp, database_url):
    bg, app = served(exp, database_url)
    with bg as url, httpx.Client(base_url=url) as c:
        info = c.get("/api/study").json()
        assert info["n_lists"] == 2 and info["min_width"] == 1024 and "jnd" in info["timing"]
        r = c.get("/api/study")
        assert "default-src 'self'" in r.headers["content-security-policy"] and "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        s = start(c, "alice")
        got = trials(c, s)
        assert got["n_trials"] == len(got["trials"]) == s["n_trials"]
        assert [t["trial"] for t in got["trials"]] == list(range(s["n_trials"]))
        rows = rows_of(exp)
        first = {}
        for t in got["trials"]:
            row = rows[(s["list_id"], t["trial"])]
            assert (t["kind"], t["block"]) == (row["kind"], row["block"])
            first.setdefault(t["kind"], t["trial"])
            assert ("instructions" in t["screen"]) == (first[t["kind"]] == t["trial"])
            for img in t["screen"]["images"]:  # opaque URLs: no run, loss or file name leaks to the page
                assert img["path"].startswith("/stimuli/") and "mse" not in img["path"] and "conv" not in img["path"]
        img = got["trials"][0]["screen"]["images"][1]
        png = c.get(img["path"])
        want = (design_path(exp).parent / rows[(s["list_id"], 0)]["left_path"]).read_bytes()
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content == want
        assert c.get("/stimuli/" + "0" * 24 + ".png").status_code == 404
        assert c.get("/stimuli/..%2f..%2fdesign.csv.png").status_code in (404, 422)
        assert c.get("/static/../design.csv").status_code == 404


def test_session_start_is_idempotent_and_resumes(exp, database_url):
    bg, app = served(exp, database_url)
    rows, rng = rows_of(exp), random.Random(0)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "bob")
        assert s["next_trial"] == 0 and not s["completed"]
        take_part(c, s, rows, rng, stop_after=3)
        again = start(c, "bob")  # a reload: same session, same token, next unanswered trial
        assert (again["session"], again["token"], again["list_id"], again["next_trial"]) == (s["session"], s["token"], s["list_id"], 3)
        assert trials(c, again, 3)["trials"][0]["trial"] == 3
        other = start(c, "carol")
        assert other["session"] != s["session"] and other["list_id"] != s["list_id"]  # balanced: the other list
        store = app.app.state.percept.store
        assert len(store.sessions()) == 2


def test_answers_are_stored_once(exp, database_url):
    bg, app = served(exp, database_url)
    rows = rows_of(exp)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "dave")
        row = rows[(s["list_id"], 0)]
        keys = keys_for(row, random.Random(1))
        first = put(c, s, 0, keys)
        assert first.status_code == 200 and first.json()["choice"] == row[f"{keys[0]}_run"]
        assert first.json()["next_trial"] == 1
        same = put(c, s, 0, keys)  # a retried request
        assert same.status_code == 200 and same.json() == first.json()
        other = "left" if keys[0] == "right" else "right"
        clash = put(c, s, 0, [other])
        assert clash.status_code == 409 and "kept" in clash.json()["detail"]
        assert put(c, s, 0, keys, rt=2.5).status_code == 409  # any difference is a different answer
        stored = app.app.state.percept.store.answered(s["session"])
        assert list(stored) == [0] and stored[0]["choice"] == row[f"{keys[0]}_run"]


def test_choice_is_computed_from_keys_by_the_kind(exp, database_url):
    bg, app = served(exp, database_url)
    rows = rows_of(exp)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "erin")
        ranking = next(t for t in range(s["n_trials"]) if rows[(s["list_id"], t)]["kind"] == "ranking")
        triplet = next(t for t in range(s["n_trials"]) if rows[(s["list_id"], t)]["kind"] == "triplet")
        row = rows[(s["list_id"], ranking)]
        for keys, why in ((["left"], "is not a key"), (["1", "1"], "do not complete"), (["1"], "do not complete"),
                          (["1", "2", "3"], "after the answer")):
            r = put(c, s, ranking, keys)
            assert r.status_code == 422 and why in r.json()["detail"], (keys, r.text)
        r = put(c, s, ranking, ["3", "backspace", "2", "1"])  # undo counts as the kind says
        order = [row[f"{design_c.RANKING_SCREEN_ORDER[int(k) - 1]}_run"] for k in ("2", "1", "3")]
        assert r.status_code == 200 and r.json()["choice"] == responses_c.ORDER_SEP.join(order)
        r = c.put(f"/api/sessions/{s['session']}/answers/{triplet}", headers={security.TOKEN_HEADER: s["token"]},
                  json={"keys": ["left"], "rt": 1.0, "onset": 3.0, "client_time": NOW, "choice": "conv-mse-s0"})
        assert r.status_code == 422 and "choice" in r.json()["detail"]  # a client's choice is never taken


HOSTILE = ["../../etc/passwd", "a b", "<script>alert(1)</script>", "x" * 65, "", "é", "a;DROP TABLE sessions", "a\nb", "%2e%2e"]


def test_hostile_input_is_refused_in_one_line(exp, database_url):
    bg, app = served(exp, database_url)
    with bg as url, httpx.Client(base_url=url) as c:
        for bad in HOSTILE:
            for body in ({"participant": bad}, {"platform": {"PROLIFIC_PID": bad, "STUDY_ID": "s", "SESSION_ID": "x"}}):
                r = c.post("/api/sessions", json=body)
                assert r.status_code == 422, (bad, r.text)
                assert isinstance(r.json()["detail"], str) and "\n" not in r.json()["detail"]
        assert c.post("/api/sessions", json={"platform": {"PROLIFIC_PID": "a"}}).status_code == 422  # partial set
        assert c.post("/api/sessions", json={"participant": "p", "extra": 1}).status_code == 422
        assert c.post("/api/sessions", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        assert c.post("/api/sessions", json={"platform": {"workerId": "W1", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE",
                                                          "hitId": "H"}}).status_code == 422  # MTurk preview
        s = start(c, "frank")
        tok = {security.TOKEN_HEADER: s["token"]}
        for sid in ("../" + s["session"], s["session"] + "0", "SELECT", "0" * 16):
            r = c.get(f"/api/sessions/{sid}/trials", headers=tok)
            assert r.status_code in (401, 404, 422), (sid, r.status_code)
        assert c.get(f"/api/sessions/{s['session']}/trials").status_code == 401
        assert c.get(f"/api/sessions/{s['session']}/trials", headers={security.TOKEN_HEADER: "0" * 64}).status_code == 401
        assert put(c, s, 10_000, ["left"]).status_code == 404
        assert c.put(f"/api/sessions/{s['session']}/answers/-1", headers=tok,
                     json={"keys": ["left"], "rt": 1, "onset": 1, "client_time": NOW}).status_code == 422
        for body in ({"keys": ["left"], "rt": float("nan"), "onset": 1, "client_time": NOW},
                     {"keys": ["left"], "rt": -1, "onset": 1, "client_time": NOW},
                     {"keys": ["left"], "rt": 1, "onset": 1, "client_time": "yesterday"},
                     {"keys": ["left"], "rt": 1, "onset": 1, "client_time": "2026-11-29T12:00:00"},  # no offset
                     {"keys": [], "rt": 1, "onset": 1, "client_time": NOW}):
            raw = json.dumps(body).encode()  # NaN as the JSON literal a hostile client could send
            r = c.put(f"/api/sessions/{s['session']}/answers/0", headers={**tok, "content-type": "application/json"}, content=raw)
            assert r.status_code == 422, (body, r.text)
        big = {"keys": ["left"], "rt": 1, "onset": 1, "client_time": NOW, "pad": "x" * 20_000}
        assert c.put(f"/api/sessions/{s['session']}/answers/0", headers=tok, json=big).status_code == 413

        def chunks():
            for _ in range(20):
                yield b"x" * 1024

        r = c.post("/api/sessions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413  # a chunked body without a length is bounded too
        assert app.app.state.percept.store.answered(s["session"]) == {}


def test_rate_limit(exp, database_url):
    bg, app = served(exp, database_url, ip_rate_limit=5, rate_limit=8)
    with bg as url, httpx.Client(base_url=url) as c:
        codes = [c.get("/api/study").status_code for _ in range(7)]
        assert codes[:4] == [200] * 4 and codes[-1] == 429
        # a session's token has its own budget
    bg, app = served(exp, database_url, ip_rate_limit=100, rate_limit=3)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "gina")
        codes = [c.get(f"/api/sessions/{s['session']}/trials", headers={security.TOKEN_HEADER: s["token"]}).status_code
                 for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]
        # made-up tokens do not buy fresh budgets: they count against the address
    bg, app = served(exp, database_url, ip_rate_limit=4, rate_limit=100)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "hugo")
        codes = [c.get(f"/api/sessions/{s['session']}/trials", headers={security.TOKEN_HEADER: f"{k:064x}"}).status_code
                 for k in range(5)]
        assert codes[:3] == [401] * 3 and codes[-1] == 429
        assert c.get(f"/api/sessions/{s['session']}/trials", headers={security.TOKEN_HEADER: s["token"]}).status_code == 200


def test_platform_ids_are_stored_only_as_keyed_hashes(exp, database_url):
    bg, app = served(exp, database_url)
    prolific = {"PROLIFIC_PID": "5f8a0d9c3b1e2a0012345678", "STUDY_ID": "study42", "SESSION_ID": "sess9876543210"}
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, platform=prolific)
        assert start(c, platform=prolific)["session"] == s["session"]
        m = start(c, platform={"workerId": "A1B2C3D4E5", "assignmentId": "ASG1", "hitId": "HIT1"})
        assert m["session"] != s["session"]
        assert start(c, "5f8a0d9c3b1e2a0012345678")["session"] not in (s["session"], m["session"])  # platforms differ
        key = security.load_key(design_path(exp).parent / "online")
        rows = {r["session"]: r for r in app.app.state.percept.store.sessions()}
        assert rows[s["session"]]["participant"] == security.participant_hash(key, "prolific", prolific["PROLIFIC_PID"])
        dump = json.dumps(list(rows.values()), default=str)
        for raw in ("5f8a0d9c3b1e2a0012345678", "sess9876543210", "A1B2C3D4E5", "ASG1"):
            assert raw not in dump
    folder = design_path(exp).parent / "online"
    assert (folder / "secret.key").stat().st_mode & 0o777 == 0o600
    if database_url.startswith("sqlite"):
        assert b"5f8a0d9c3b1e2a0012345678" not in Path(database_url[len("sqlite:///"):]).read_bytes()


def test_completion_code_only_after_every_trial_and_the_catch_rule(exp, database_url):
    bg, app = served(exp, database_url, completion_code="C0DE42", redirect_url="https://app.prolific.com/submissions/complete?cc={code}")
    rows = rows_of(exp)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "hank")
        tok = {security.TOKEN_HEADER: s["token"]}
        take_part(c, s, rows, random.Random(2), stop_after=2)
        r = c.post(f"/api/sessions/{s['session']}/complete", headers=tok)
        assert r.status_code == 409 and r.json()["missing"] == list(range(2, s["n_trials"]))
        take_part(c, start(c, "hank"), rows, random.Random(2))
        r = c.post(f"/api/sessions/{s['session']}/complete", headers=tok)
        assert r.status_code == 200 and r.json() == {"code": "C0DE42", "redirect": "https://app.prolific.com/submissions/complete?cc=C0DE42"}
        assert start(c, "hank")["completed"] is True
        lazy = start(c, "ivan")
        take_part(c, lazy, rows, random.Random(3), catch_right=False)
        r = c.post(f"/api/sessions/{lazy['session']}/complete", headers={security.TOKEN_HEADER: lazy["token"]})
        assert r.status_code == 403 and "catch trials: 0 of" in r.json()["reason"]
        assert c.post(f"/api/sessions/{lazy['session']}/complete").status_code == 401


def test_balanced_lists_and_abandoned_places(exp, database_url):
    bg, app = served(exp, database_url, abandon_after=1.0)
    with bg as url, httpx.Client(base_url=url) as c:
        a, b, d = start(c, "p-a"), start(c, "p-b"), start(c, "p-c")
        assert [a["list_id"], b["list_id"], d["list_id"]] == [0, 1, 0]
        time.sleep(1.3)
        trials(c, b)  # b is still there; a and c left
        assert start(c, "p-d")["list_id"] == 0  # without freeing places list 1 (1 taken against 2) would be next
        assert start(c, "p-a")["list_id"] == 0  # a returning participant keeps their list


def test_active_policy_hook_fills_main_trials_in_batches(exp, database_url):
    calls = []

    class FewestAnswers:
        """Choose the pool rows answered least so far (a tiny stand-in for study.online.active.ActivePolicy)."""

        def __init__(self, pool, seed):
            self.pool, self.seed = pool, seed

        def choose(self, answered, seen, n):
            calls.append((len(answered), set(seen), n))
            counts = {i: 0 for i in range(len(self.pool))}
            index = {(r["list_id"], r["trial"]): i for i, r in enumerate(self.pool)}
            for row, choice in answered:
                assert choice in (row["left_run"], row["right_run"])
                counts[index[(row["list_id"], row["trial"])]] += 1
            free = sorted((i for i in counts if i not in seen), key=lambda i: (counts[i], i))
            return free[:n]

    bg, app = served(exp, database_url, policy="active", batch=2, policy_factory=FewestAnswers)
    state = app.app.state.percept
    pool = state.design.pool
    assert pool and {r["kind"] for r in pool} == {"triplet"} and {r["block"] for r in pool} == {"main"}
    assert len({r["list_id"] for r in pool}) == 2  # every list's main triplets
    rows, rng = rows_of(exp), random.Random(4)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "act1")
        plan = state.store.positions(s["session"])
        shown_before = trials(c, s)["trials"]
        first_open = min(p["position"] for p in plan if p["pending"])
        assert [t["trial"] for t in shown_before][:first_open] == list(range(first_open))
        assert len(shown_before) <= first_open + 2  # nothing past the first open slot's batch is fixed yet
        for t in range(s["n_trials"]):
            got = trials(c, s, t)["trials"]
            assert got and got[0]["trial"] == t
            pos = state.store.slot(s["session"], t)
            row = rows[(pos["list_id"], pos["trial"])]
            assert got[0]["kind"] == row["kind"]
            assert put(c, s, t, keys_for(row, rng)).status_code == 200
        n_open = sum(p["pending"] for p in plan)
        assert [n for _, _, n in calls] == [2] * (n_open // 2) + [n_open % 2] * (n_open % 2 > 0)  # batches of two
        final = state.store.positions(s["session"])
        assert not any(p["pending"] for p in final)
        chosen = [(p["list_id"], p["trial"]) for p, p0 in zip(final, plan) if p0["pending"]]
        assert len(set(chosen)) == len(chosen) and all(k in state.design.pool_index for k in chosen)
        # practice and catch trials stay the participant's list's own
        assert all((p["list_id"], p["trial"]) == (p0["list_id"], p0["trial"]) for p, p0 in zip(final, plan) if not p0["pending"])
        s2 = start(c, "act2")
        trials(c, s2, min(p["position"] for p in state.store.positions(s2["session"]) if p["pending"]))
        assert calls[-1][0] == len(chosen)  # the second participant's choice saw the first one's answers
        r = c.post(f"/api/sessions/{s['session']}/complete", headers={security.TOKEN_HEADER: s["token"]})
        assert r.status_code == 200 and len(r.json()["code"]) == 10 and r.json()["redirect"] is None
    state.store.close()
    # rows of several lists in one session still make a valid response file, with each row's own (list, trial)
    from study.online.export import export_online

    paths, empty = export_online(design_path(exp), database_url)
    assert len(paths) == 1 and empty == 1
    df, rec = responses_c.read_session_files(paths[0])
    assert rec["policy"] == "active" and len(df) == s["n_trials"]
    assert {(int(r.list_id), int(r.trial)) for r in df.itertuples()} == {(p["list_id"], p["trial"]) for p in final}


def test_serve_answer_export_analyze(exp, database_url, capsys):
    """The whole path: serve → participants answer over HTTP → percept export-online → percept analyze."""
    from percept import cli

    bg, app = served(exp, database_url)
    rows = rows_of(exp)
    with bg as url, httpx.Client(base_url=url) as c:
        sessions = []
        for k in range(6):
            s = start(c, f"person{k}")
            c.post(f"/api/sessions/{s['session']}/check", headers={security.TOKEN_HEADER: s["token"]},
                   json={"dpr": 1.25, "scale": 2, "viewport_w": 1280, "viewport_h": 800, "screen_w": 1600,
                         "screen_h": 1000, "fullscreen": True}).raise_for_status()
            take_part(c, s, rows, random.Random(k), stop_after=None if k < 5 else 4)
            sessions.append(s)
    app.app.state.percept.store.close()
    assert cli.main(["export-online", "--design", str(design_path(exp)), "--database", database_url]) == 0
    assert "6 session(s) with answers" in capsys.readouterr().out
    files = sorted((exp / "study" / "responses").glob("*.csv"))
    assert len(files) == 6
    for f in files:
        df, rec = responses_c.read_session_files(f)
        assert set(df["mode"]) == {"online"} and rec["mode"] == "online" and rec["scale"] == 2 and rec["dpr"] == 1.25
        assert rec["viewport"] == [1280, 800] and rec["screen"] == [1600, 1000]
        assert all(responses_c.is_iso_time(t) for t in df["server_time"]) and set(df["client_time"]) == {NOW}
        assert rec["completed"] is (len(df) == rec["n_trials"])
    before = {f.name: f.read_bytes() for f in files}
    assert cli.main(["export-online", "--design", str(design_path(exp)), "--database", database_url]) == 0
    assert {f.name: f.read_bytes() for f in files} == before  # exporting again changes nothing
    victim = files[0]
    victim.write_text(victim.read_text().replace("1.2,", "9.9,", 1))
    assert cli.main(["export-online", "--design", str(design_path(exp)), "--database", database_url]) == 2
    assert "refusing to replace a response file" in capsys.readouterr().err
    victim.write_bytes(before[victim.name])
    if not database_url.startswith("sqlite"):
        return  # the files are the same whichever database they came from: analysed once, in the SQLite run
    assert cli.main(["analyze", "--study", str(exp / "study"), "--boot", "0", "--no-bayes"]) == 0
    summary = json.loads((exp / "analysis" / "summary.json").read_text())
    assert sorted(summary["response_files"]) == [f.name for f in files] and summary["n_simulated_rows"] == 0
    assert summary["participants"] == {"excluded": [], "included": 6, "total": 6}
    answered = pd.concat([responses_c.read_responses(f) for f in files])
    main_triplets = answered[(answered["block"] == "main") & (answered["kind"] == "triplet")]
    pairwise = pd.read_csv(exp / "analysis" / "pairwise.csv", keep_default_na=False)
    row = pairwise[pairwise["pair"] == "mse:ms_ssim"].iloc[0]
    assert row["n"] == len(main_triplets) and row["n_participants"] == 6
    assert row["wins_b"] > row["wins_a"]  # the participants above mostly chose the MS-SSIM side


def test_lab_files_without_mode_read_as_lab(tmp_path):
    row = {c: "" for c in responses_c.COLUMNS}
    row.update(participant="p1", session="1", list_id="0", trial="0", block="main", kind="triplet", image_id="i",
               arch="conv", left_run="conv-mse-s0", right_run="conv-ms_ssim-s0", key="left", choice="conv-mse-s0",
               rt="1.0", onset="2.0", wallclock=NOW, simulated="0")
    old = tmp_path / "p1-1.csv"
    pd.DataFrame([row], columns=list(responses_c.COLUMNS)).to_csv(old, index=False)
    assert list(responses_c.read_responses(old)["mode"]) == ["lab"]
    online = tmp_path / "p2-1.csv"
    pd.DataFrame([{**row, "participant": "p2", "mode": "online", "client_time": NOW, "server_time": ""}]).to_csv(online, index=False)
    with pytest.raises(responses_c.ContractError, match="column 'server_time'"):
        responses_c.read_responses(online)
    pd.DataFrame([{**row, "participant": "p2", "mode": "web"}]).to_csv(online, index=False)
    with pytest.raises(responses_c.ContractError, match="column 'mode': 'web'"):
        responses_c.read_responses(online)

    from study import responses as log

    new = tmp_path / "p3-1.csv"
    with log.ResponseLog(new) as out:  # the lab writer: mode=lab in new files
        out.append({**row, "participant": "p3"})
    assert new.read_text().splitlines()[0] == ",".join(responses_c.LAB_COLUMNS)
    assert list(responses_c.read_responses(new)["mode"]) == ["lab"]
    with log.ResponseLog(old) as out:  # a file begun before `mode` is resumed in its own columns
        out.append({**row, "trial": "1"})
    assert old.read_text().splitlines()[0] == ",".join(responses_c.COLUMNS)
    assert list(log.read_answered(old)["mode"]) == ["lab", "lab"]


def test_concurrent_participants_small_load(exp, database_url):
    """12 participants at once, some leaving midway, every request retried once: one row per trial, lists balanced."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("online_load", REPO / "benchmarks" / "online_load.py")
    load = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = load  # its dataclasses look their module up
    spec.loader.exec_module(load)
    bg, app = served(exp, database_url, ip_rate_limit=100_000, abandon_after=0.5)
    with bg as url:
        result = load.run_load(url, design_path(exp), participants=12, abandon=0.3, retry=0.3, reload=0.1,
                               abandon_after=0.5, seed=1)
    load.check_database(result, database_url, design_path(exp))
    assert result.errors == [] and result.abandoned > 0 and result.retries > 0 and result.reloads > 0
    assert result.duplicates == 0 and result.gaps == 0 and result.conflicts == 0
    assert result.finished == 12 and sum(result.per_list.values()) == 12
    assert max(result.per_list.values()) - min(result.per_list.values()) <= 1
    assert result.answers > 0 and result.p95_ms > 0


def test_schema_version_and_a_newer_database_refused(exp, database_url):
    import sqlalchemy as sa

    from percept.contracts import InputError
    from study.online import schema
    from study.online.store import make_engine

    bg, app = served(exp, database_url)
    store = app.app.state.percept.store
    assert store.version == schema.VERSION
    with store.write() as conn:
        _, t = schema.tables()
        assert conn.execute(sa.select(t["schema_version"].c.version)).scalars().all() == list(range(1, schema.VERSION + 1))
        conn.execute(sa.insert(t["schema_version"]).values(version=schema.VERSION + 1, applied=0.0, note="from the future"))
    if database_url.startswith("sqlite"):  # durability settings of every pooled connection
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    store.close()
    with pytest.raises(InputError, match="newer than this percept"):
        schema.migrate(make_engine(database_url))


def test_percept_serve_process_holds_the_study_and_export_errors_are_one_line(exp, capsys):
    """`percept serve` as a process: it answers on loopback, `percept design` is refused meanwhile, bad flags are one line."""
    import os
    import re
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert study_cli.main(["serve", "--design", str(design_path(exp)), "--database", "mysql://x@y/z"]) == 2
    assert "is not a sqlite:/// or postgresql:// URL" in capsys.readouterr().err
    assert study_cli.main(["export-online", "--design", str(design_path(exp))]) == 2
    assert "no online database here" in capsys.readouterr().err
    proc = subprocess.Popen([sys.executable, "-m", "percept", "serve", "--design", str(design_path(exp)), "--port", "0"],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "percept serve printed no address"
        assert httpx.get(url + "/api/study").json()["n_lists"] == 2
        r = subprocess.run([sys.executable, "-m", "percept", "design", "--out", str(exp), "--overwrite"], cwd=REPO, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 2 and "percept serve" in r.stderr  # the running server's study is not swapped
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (design_path(exp).parent / "online" / "study.sqlite").is_file()
    assert study_cli.main(["export-online", "--design", str(design_path(exp)), "--database",
                           "postgresql://nobody:hunter2@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:1/x" in err and "hunter2" not in err  # no password in messages


def test_concurrent_starts_and_answers_race_safely(exp, database_url):
    """The same start or answer sent at once from many connections: one session, one row; new ones in balance."""
    from concurrent.futures import ThreadPoolExecutor

    bg, app = served(exp, database_url, ip_rate_limit=10_000)
    rows = rows_of(exp)
    with bg as url:
        def start_one(name):
            with httpx.Client(base_url=url) as c:
                return start(c, name)

        with ThreadPoolExecutor(12) as pool:
            same = list(pool.map(start_one, ["twin"] * 12))
            assert len({s["session"] for s in same}) == 1 and len({s["token"] for s in same}) == 1
            fresh = list(pool.map(start_one, [f"crowd{k}" for k in range(19)]))
            counts = pd.Series([s["list_id"] for s in same[:1] + fresh]).value_counts()
            assert sorted(counts) == [10, 10]  # 20 sessions, every one placed on the emptier list
            s = same[0]
            row = rows[(s["list_id"], 0)]

            def put_one(keys):
                with httpx.Client(base_url=url) as c:
                    r = put(c, s, 0, keys, rt=1.5, onset=2.0)
                    return r.status_code, r.json()

            got = list(pool.map(put_one, [["left"]] * 6 + [["right"]] * 6))
    codes = [code for code, _ in got]
    winner = {code_body[1]["choice"] for code_body in got if code_body[0] == 200}
    assert len(winner) == 1 and set(codes) <= {200, 409}  # every request of the stored answer 200, the other 409
    stored = app.app.state.percept.store.answered(s["session"])
    assert list(stored) == [0] and stored[0]["choice"] in (row["left_run"], row["right_run"])
    side = "left" if stored[0]["choice"] == row["left_run"] else "right"
    assert codes == [200 if keys == [side] else 409 for keys in [["left"]] * 6 + [["right"]] * 6]


def test_a_misbehaving_policy_leaves_the_session_intact(exp, database_url):
    """A policy answering with repeats or seen rows is refused (500) and the open slots stay open."""

    class Repeats:
        def __init__(self, pool, seed):
            self.pool = pool

        mode = "repeat"

        def choose(self, answered, seen, n):
            if self.mode == "raise":
                raise ValueError("a policy's own bug")
            return [0] * n

    bg, app = served(exp, database_url, policy="active", batch=2, policy_factory=Repeats)
    store = app.app.state.percept.store
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "kim")
        before = store.positions(s["session"])
        first_open = min(p["position"] for p in before if p["pending"])
        r = c.get(f"/api/sessions/{s['session']}/trials", params={"from": first_open},
                  headers={security.TOKEN_HEADER: s["token"]})
        assert r.status_code == 500
        assert store.positions(s["session"]) == before
        assert put(c, s, first_open, ["left"]).status_code == 404  # an open slot cannot be answered
        Repeats.mode = "raise"  # a policy raising is the same clean refusal
        r = c.get(f"/api/sessions/{s['session']}/trials", params={"from": first_open},
                  headers={security.TOKEN_HEADER: s["token"]})
        assert r.status_code == 500 and "nothing was changed" in r.json()["detail"]


def test_a_database_busy_past_its_timeout_is_503_and_stores_nothing(exp, tmp_path, monkeypatch):
    """Another process holding SQLite's write lock: the answer is refused with 503 (retry later), not stored twice."""
    import sqlite3

    from study.online import store as store_m

    monkeypatch.setattr(store_m, "BUSY_TIMEOUT_S", 0.3)
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    bg, app = served(exp, url)
    rows = rows_of(exp)
    with bg as base, httpx.Client(base_url=base) as c:
        s = start(c, "lena")
        keys = keys_for(rows[(s["list_id"], 0)], random.Random(0))
        other = sqlite3.connect(tmp_path / "busy.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a writer that does not let go
        try:
            r = put(c, s, 0, keys)
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert put(c, s, 0, keys).status_code == 200  # the client's retry goes through, once
        assert list(app.app.state.percept.store.answered(s["session"])) == [0]


def test_two_designs_share_a_database_without_mixing(exp, exp_template, tmp_path, database_url):
    """Sessions are keyed by the design's hash: another design's sessions neither fill its lists nor get exported."""
    from study.online.export import export_online

    other = tmp_path / "other"
    shutil.copytree(exp_template, other)
    assert study_cli.main(["design", "--out", str(other), "--lists", "1", "--practice", "1", "--catch", "0.2",
                           "--kinds", "triplet,ranking", "--pairs", "mse:ms_ssim", "--seed", "9", "--overwrite"]) == 0
    bg, app = served(exp, database_url)
    with bg as url, httpx.Client(base_url=url) as c:
        firsts = [start(c, name) for name in ("x1", "x2", "x3")]
        take_part(c, firsts[0], rows_of(exp), random.Random(5), stop_after=2)
    app.app.state.percept.store.close()
    bg, app_b = served(other, database_url)
    with bg as url, httpx.Client(base_url=url) as c:
        s = start(c, "x1")
        assert s["list_id"] == 0 and s["session"] != firsts[0]["session"]  # list 1 if design A's places counted
    assert len(app_b.app.state.percept.store.sessions()) == 1
    app_b.app.state.percept.store.close()
    paths, empty = export_online(design_path(other), database_url)
    assert paths == [] and empty == 1  # design A's answered session is not design B's


def test_a_click_is_saved_as_the_lab_saves_it_and_the_study_gives_its_scale(tmp_path, database_url):
    """A rating answered by clicking button 4 stores key "click:4" (study/experiment.py's spelling) and the
    choice of pressing 4; a click on a key that is no button is refused; /api/study passes --scale on."""
    make_manifest(tmp_path, n_images=4)
    assert study_cli.main(["design", "--out", str(tmp_path), "--lists", "1", "--practice", "0", "--catch", "0",
                           "--kinds", "rating", "--seed", "1"]) == 0
    bg, app = served(tmp_path, database_url, scale=3)
    with bg as url, httpx.Client(base_url=url) as c:
        assert c.get("/api/study").json()["scale"] == 3
        s = start(c, "rita")
        r = put(c, s, 0, ["click:backspace"])
        assert r.status_code == 422 and "is not a key" in r.json()["detail"]
        r = put(c, s, 0, ["click:4"])
        assert r.status_code == 200 and r.json()["choice"] == "4", r.text
        r = put(c, s, 1, ["4"])
        assert r.status_code == 200 and r.json()["choice"] == "4", r.text
    keys = {p: a["key"] for p, a in app.app.state.percept.store.answered(s["session"]).items()}
    assert keys == {0: "click:4", 1: "4"}


def test_serve_passes_the_active_objective_to_the_policy(exp, database_url):
    """`--active-objective variance` reaches ActivePolicy; a name outside the choices is one line."""
    from study.online.assign import load_policy

    pool = [r for r in rows_of(exp).values() if r["kind"] == "triplet" and r["block"] == "main"]
    assert load_policy("active", "variance")(pool, 0).objective == "variance"
    assert load_policy("active")(pool, 0).objective == "eig"
    assert subprocess.run([sys.executable, "-m", "study", "serve", "--design", str(design_path(exp)),
                           "--active-objective", "best"], capture_output=True, text=True).returncode == 2
