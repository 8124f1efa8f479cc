"""`percept export-online`: the online sessions as response contract files, `mode=online`.

Each session with at least one answer becomes `study/responses/<participant hash>-<session>.csv` (the
lab's columns plus mode, client_time, server_time; `wallclock` is the server's time) and its `.json`
record (mode, dpr, integer scale, viewport, screen, user agent, platform, and `texts`: the sha256 and source of
the consent, instructions and debrief served when the session began; null for sessions older than schema v2). Exporting again rewrites a
file only when its old rows are all still there (a session that went on); any other difference is
refused: participants' responses are never replaced or deleted.
"""
from __future__ import annotations

import json
from pathlib import Path

from percept.contracts import InputError
from percept.contracts import responses as responses_c
from percept.contracts.tables import atomic_write
from study import responses as log
from study.online import security
from study.online.assign import ServedDesign
from study.online.store import Store, engine_url, iso, online_dir


def export_online(design_path: str | Path, database: str | None = None) -> tuple[list[Path], int]:
    """Write every answered session's files; return (CSV paths written or already current, sessions without answers)."""
    from percept.contracts.manifest import file_hash
    from percept.contracts.staging import stage_lock

    design_path = Path(design_path)
    design = ServedDesign.load(design_path)
    folder = online_dir(design_path)
    if database is None and not (folder / "study.sqlite").is_file():
        raise InputError(f"{folder / 'study.sqlite'}: no online database here; serve the study first (or give --database)")
    if not (folder / "secret.key").is_file():
        raise InputError(f"{folder / 'secret.key'}: the study key is missing; the sessions cannot be checked without it")
    security.load_key(folder)  # refuses a key readable by others
    study_dir = design_path.resolve().parent
    responses_dir = study_dir / "responses"
    store = Store(engine_url(database, folder), design)
    written, empty = [], 0
    try:
        with stage_lock(study_dir, "percept export-online", shared=True):  # no design/simulate swaps the folder meanwhile
            sha = file_hash(design_path)
            for sess in store.sessions():
                answers = store.answered(sess["session"])
                if not answers:
                    empty += 1
                    continue
                positions = store.positions(sess["session"])
                csv_path = responses_c.response_path(responses_dir, sess["participant"], sess["session"])
                _write_csv(csv_path, _rows(sess, positions, answers, design))
                responses_c.write_session(responses_c.session_path(csv_path), _record(sess, answers, design_path, sha))
                written.append(csv_path)
    finally:
        store.close()
    return written, empty


def _rows(sess: dict, positions: list[dict], answers: dict[int, dict], design: ServedDesign) -> list[dict]:
    """Response rows (contract columns + online ones) of the answered positions, in position order."""
    rows = []
    for p in positions:
        a = answers.get(p["position"])
        if a is None:
            continue
        trial = design.rows[(p["list_id"], p["trial"])]
        row = log.response_row(trial, sess["participant"], sess["session"], key=a["key"], choice=a["choice"],
                               rt=a["rt"], onset=a["onset"], wallclock=a["server_time"], simulated=False)
        row.update(mode="online", client_time=a["client_time"], server_time=a["server_time"])
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Write atomically; refuse when an existing file holds a row the new one lacks."""
    text = log.rows_text(rows, responses_c.ONLINE_COLUMNS)
    if path.is_file():
        old = path.read_text()
        if old == text:
            return
        old_lines, new_lines = old.splitlines(), set(text.splitlines())
        lost = [k for k, line in enumerate(old_lines) if line not in new_lines]
        if lost:
            raise InputError(f"{path}: line {lost[0] + 1} is not in the database's answers of this session; "
                             f"refusing to replace a response file (move it away if it belongs to something else)")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def _record(sess: dict, answers: dict[int, dict], design_path: Path, sha: str) -> dict:
    """The session record: the lab's keys plus the browser's check."""
    from study.design import versions

    check = json.loads(sess["screen_check"]) if sess["screen_check"] else {}
    client = json.loads(sess["client"]) if sess["client"] else {}
    last = max(a["server_time"] for a in answers.values())
    return {
        "participant": sess["participant"], "session": sess["session"], "list_id": sess["list_id"],
        "design": "../" + design_path.name, "design_sha256": sha, "simulated": False, "observer": None,
        "started": iso(sess["created"]), "ended": last, "completed": sess["completed_at"] is not None,
        "n_trials": sess["n_trials"], "n_answered": len(answers), "versions": versions(), "window": None,
        "mode": "online", "policy": sess["policy"], "released": sess["released_at"] is not None,
        "dpr": check.get("dpr", client.get("dpr")), "scale": check.get("scale"),
        "viewport": [check.get("viewport_w", client.get("viewport_w")), check.get("viewport_h", client.get("viewport_h"))],
        "screen": [check.get("screen_w", client.get("screen_w")), check.get("screen_h", client.get("screen_h"))],
        "fullscreen": check.get("fullscreen"), "checks": len(check.get("history", [])),
        "user_agent": client.get("user_agent", ""),
        "platform": {"name": sess["platform"], **json.loads(sess["platform_ids"])},
        "texts": json.loads(sess["texts"]) if sess.get("texts") else None,
    }
