"""The online study's web server: a FastAPI app over the Store, served by uvicorn (`percept serve`).

JSON API (all under /api; the session token in header X-Session-Token; bodies ≤ 16 KiB else 413;
429 past the rate limit; 503 + Retry-After while the database is busy; every refusal is {"detail": one line}):
  GET  /api/study                          → title, n_lists, min_width, min_height, platform, timing, scale,
       texts: {consent, instructions, debrief: {title (null: the screen's own), paragraphs: [str]}} (shown as text)
  POST /api/sessions                       → session, token, list_id, n_trials, next_trial, completed
       (idempotent on the participant: the same one gets the same session and token back)
  GET  /api/sessions/{sid}/trials?from=N   → trials from N that are fixed so far, n_trials
  POST /api/sessions/{sid}/check           → the browser's dpr / integer scale / viewport / screen / fullscreen
  PUT  /api/sessions/{sid}/answers/{trial} → trial, choice (computed here from the keys), next_trial;
       the same payload again 200, a different one 409; keys the kind refuses 422
  POST /api/sessions/{sid}/complete        → code, redirect once every trial is stored and the catch rule holds;
       else 409 {"missing"} or 403 {"reason"}; optional body {"turk_submit_to": MTurk's turkSubmitTo}: an MTurk
       session whose turkSubmitTo is an allowed --mturk-origin also gets mturk_submit (<origin>/mturk/externalSubmit)
Pages: / (static/index.html), /static/... (the client), /vendor/jspsych/... (study/online/node_modules/jspsych),
/stimuli/<id>.png (only images the design names, under opaque ids).
"""

import secrets
import sys
import threading
from datetime import datetime
from pathlib import Path

from percept.contracts import InputError
from percept.contracts import kinds as kinds_c
from percept.contracts import responses as responses_c
from study.online import security, texts
from study.online.assign import PolicyError, ServedDesign, load_policy
from study.online.config import ServeConfig
from study.online.store import StaleTexts, Store, engine_url, online_dir

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = HERE / "node_modules"
SESSION_ID = r"^[0-9a-f]{16}$"
PROLIFIC = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
MTURK = ("workerId", "assignmentId", "hitId")


class App:
    """What the routes share: config, design, key, store, stimulus ids."""

    def __init__(self, cfg: ServeConfig, design_path: str | Path, *, policy_factory=None):
        import pandas as pd

        from percept.contracts.design import image_paths

        cfg.validate()
        self.cfg = cfg
        # Checked before the database is touched: a wrong text file stops the server at once, in one line.
        self.texts = texts.load_all(cfg.consent, cfg.instructions, cfg.debrief)
        self.text_records = {name: t.record() for name, t in self.texts.items()}
        self.design = ServedDesign.load(design_path)
        folder = online_dir(design_path)
        self.key = security.load_key(folder)
        factory = policy_factory if policy_factory is not None else load_policy(cfg.policy, cfg.active_objective)
        if cfg.policy == "active" and factory is None:
            raise InputError("--policy active: no policy class")
        policy_obj = None
        if cfg.policy == "active":
            self.design.skeleton(0, "active")  # refuses a design without pairwise main trials
            policy_obj = _Serialized(factory(self.design.pool, cfg.seed))
        elif policy_factory is not None:
            raise InputError(f"--policy {cfg.policy}: a policy class was given but the policy is not active")
        self.store = Store(engine_url(cfg.database, folder), self.design, policy=cfg.policy,
                           abandon_after=cfg.abandon_after, policy_obj=policy_obj, batch=cfg.batch)
        base = self.design.path.resolve().parent
        rels = image_paths(pd.DataFrame(list(self.design.rows.values())))
        self.stimulus_url = {rel: f"/stimuli/{security.stimulus_id(self.key, rel)}.png" for rel in rels}
        self.stimulus_file = {security.stimulus_id(self.key, rel): base / rel for rel in rels}
        self.timing = self.design.meta.get("timing", {}) if isinstance(self.design.meta.get("timing", {}), dict) else {}


class _Serialized:
    """One policy call at a time (a policy may keep state between calls)."""

    def __init__(self, policy):
        self.policy = policy
        self.lock = threading.Lock()

    def choose(self, answered, seen, n):
        """The wrapped policy's choice, under a lock."""
        with self.lock:
            try:
                return self.policy.choose(answered, seen, n)
            except Exception as exc:  # whatever a policy raises, the request fails cleanly and the session is kept
                raise PolicyError(f"active policy failed: {type(exc).__name__}: {exc}"[:300]) from exc


def _one_line(exc) -> str:
    """A validation error as one line: where and what."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts)[:300] or "invalid request"


def create_app(cfg: ServeConfig, design_path: str | Path, *, policy_factory=None):
    """The FastAPI application serving one design (`policy_factory(pool, seed)` overrides the active policy class)."""
    from fastapi import FastAPI, Header, HTTPException, Path as PathParam, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field

    state = App(cfg, design_path, policy_factory=policy_factory)
    store, key, design = state.store, state.key, state.design

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=512)

    class Client(Strict):
        user_agent: str = Field(default="", max_length=512)
        screen_w: int | None = Field(default=None, ge=0, le=100_000)
        screen_h: int | None = Field(default=None, ge=0, le=100_000)
        viewport_w: int | None = Field(default=None, ge=0, le=100_000)
        viewport_h: int | None = Field(default=None, ge=0, le=100_000)
        dpr: float | None = Field(default=None, gt=0, le=16)

    class Start(Strict):
        participant: str | None = Field(default=None, pattern=security.RAW_ID.pattern)
        platform: dict[str, str] = Field(default_factory=dict, max_length=3)
        client: Client = Field(default_factory=Client)
        # The consent's sha256 from the GET /api/study the page showed (absent: an API client, not checked)
        consent_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    class Check(Strict):
        dpr: float = Field(gt=0, le=16)
        scale: int = Field(ge=1, le=16)
        viewport_w: int = Field(ge=0, le=100_000)
        viewport_h: int = Field(ge=0, le=100_000)
        screen_w: int = Field(ge=0, le=100_000)
        screen_h: int = Field(ge=0, le=100_000)
        fullscreen: bool

    class Complete(Strict):
        # MTurk's turkSubmitTo, sent with the completion (not at the start) so nothing about it is stored: the
        # server checks it at the one moment it matters, and a reload still has it in its URL. Any text up to
        # the limit is taken and checked below, so a strange value costs the participant nothing but the POST.
        turk_submit_to: str | None = Field(default=None, max_length=2048)

    class Answer(Strict):
        keys: list[str] = Field(min_length=1, max_length=16)
        rt: float = Field(ge=0, le=responses_c.MAX_RT)
        onset: float = Field(ge=0, le=responses_c.MAX_ONSET)
        client_time: str = Field(max_length=40)

    app = FastAPI(title="percept online study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.percept = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    from sqlalchemy.exc import OperationalError

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError):
        # A database busy past its timeout or briefly unreachable: nothing was stored, so a retry is safe.
        print(f"serve: database: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}", file=sys.stderr, flush=True)
        return JSONResponse({"detail": "the database is busy; nothing was stored; try again"}, status_code=503,
                            headers={"retry-after": "2"})

    def session_of(sid: str, token: str | None) -> dict:
        if not security.token_ok(key, sid, token):
            raise HTTPException(401, "missing or wrong session token")
        row = store.session(sid)
        if row is None:
            raise HTTPException(404, f"no session {sid} in this study")
        return row

    Sid = PathParam(pattern=SESSION_ID, max_length=16)
    Token = Header(default=None, alias=security.TOKEN_HEADER, max_length=128)

    @app.get("/api/study")
    def study() -> dict:
        return {"title": cfg.title, "n_lists": design.n_lists, "min_width": cfg.min_width,
                "min_height": cfg.min_height, "platform": cfg.platform, "timing": state.timing,
                "scale": cfg.scale, "texts": {name: t.client() for name, t in state.texts.items()}}

    @app.post("/api/sessions")
    def start(body: Start) -> JSONResponse:
        platform, raw, ids = _platform(body.platform, body.participant, cfg.platform)
        participant = security.participant_hash(key, platform, raw)
        hashed = {k: (v if k in ("STUDY_ID", "hitId") else security.keyed(key, f"{platform}:{k}:{v}")[:16])
                  for k, v in ids.items() if k not in ("PROLIFIC_PID", "workerId")}
        # The texts' hashes are recorded when the session begins (just after the consent was agreed to); a
        # returning participant's session keeps the ones it began with.
        # A page loaded before the server was restarted with an amended consent showed the old one: no new session
        # may record a consent its participant did not see (a returning participant keeps the one they agreed to).
        stale = None
        if body.consent_sha256 is not None and body.consent_sha256 != state.texts["consent"].sha256:
            stale = "the consent text changed since this page was loaded; reload the page to read the current one"
        try:
            row, created = store.start(secrets.token_hex(8), participant, platform, hashed, body.client.model_dump(),
                                       texts=state.text_records, refuse_new=stale)
        except StaleTexts as exc:
            raise HTTPException(409, str(exc)) from None
        sid = row["session"]
        return JSONResponse({"session": sid, "token": security.session_token(key, sid), "list_id": row["list_id"],
                             "n_trials": row["n_trials"], "next_trial": store.next_trial(sid),
                             "completed": row["completed_at"] is not None}, status_code=201 if created else 200)

    @app.get("/api/sessions/{sid}/trials")
    def trials(sid: str = Sid, start: int = Query(default=0, alias="from", ge=0, le=100_000), token: str | None = Token) -> dict:
        row = session_of(sid, token)
        try:
            fixed = store.fixed_from(sid, start)
        except PolicyError as exc:  # the session is untouched; the client retries
            print(f"serve: {exc}", file=sys.stderr, flush=True)
            raise HTTPException(500, "the trial chooser failed; nothing was changed; try again") from None
        first = _first_of_kind(store.positions(sid), design)
        return {"trials": [_trial(state, r, r["position"] in first) for r in fixed], "n_trials": row["n_trials"]}

    @app.post("/api/sessions/{sid}/check")
    def check(body: Check, sid: str = Sid, token: str | None = Token) -> dict:
        session_of(sid, token)
        store.record_check(sid, {**body.model_dump(), "at": datetime.now().astimezone().isoformat(timespec="seconds")})
        return {"ok": True}

    @app.put("/api/sessions/{sid}/answers/{trial}")
    def answer(body: Answer, sid: str = Sid, trial: int = PathParam(ge=0, le=100_000), token: str | None = Token):
        session_of(sid, token)
        if not responses_c.is_iso_time(body.client_time):
            raise HTTPException(422, f"client_time {body.client_time[:40]!r} is not an ISO 8601 time with a UTC offset")
        slot = store.slot(sid, trial)
        if slot is None:
            raise HTTPException(404, f"trial {trial} is not a trial of this session (yet)")
        row = design.rows[(slot["list_id"], slot["trial"])]
        key_text, choice = _choice(row, body.keys)
        out = store.answer(sid, trial, body.model_dump(), key_text, choice)
        return JSONResponse(out.body, status_code=out.status)

    @app.post("/api/sessions/{sid}/complete")
    def complete(body: Complete | None = None, sid: str = Sid, token: str | None = Token):
        row = session_of(sid, token)
        positions = store.positions(sid)
        done = store.answered(sid)
        missing = [p["position"] for p in positions if p["position"] not in done]
        if missing:
            return JSONResponse({"missing": missing[:1000], "detail": f"{len(missing)} trial(s) not stored yet"},
                                status_code=409)
        why = catch_failure(positions, done, design, cfg.catch_threshold)
        if why is not None:
            return JSONResponse({"reason": why, "detail": why}, status_code=403)
        store.release(sid)
        code = cfg.completion_code or security.completion_code(key, row["session"])
        redirect = cfg.redirect_url.replace("{code}", code) if cfg.redirect_url else None
        out = {"code": code, "redirect": redirect}
        submit = _mturk_submit(body.turk_submit_to if body else None, row, cfg)
        if submit is not None:
            out["mturk_submit"] = submit
        return out

    @app.get("/stimuli/{name}.png")
    def stimulus(name: str = PathParam(pattern=r"^[0-9a-f]{24}$")):
        path = state.stimulus_file.get(name)
        if path is None:
            raise HTTPException(404, "no such stimulus")
        return FileResponse(path, media_type="image/png", headers={"cache-control": "private, max-age=3600"})

    @app.get("/")
    def index():
        page = STATIC / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the browser client is not installed (study/online/static/index.html)")
        return FileResponse(page, media_type="text/html", headers={"cache-control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    # jsPsych only: nothing else npm installed (its package files, other modules) is served
    app.mount("/vendor/jspsych", StaticFiles(directory=VENDOR / "jspsych", check_dir=False), name="vendor")
    return security.Guard(app, key=key, rate_limit=cfg.rate_limit, ip_rate_limit=cfg.ip_rate_limit,
                          frame_origins=cfg.frame_origins)


def _mturk_submit(turk_submit_to: str | None, row: dict, cfg: ServeConfig) -> str | None:
    """Where a granted MTurk session's browser POSTs its assignment, or None (then it shows its code)."""
    if turk_submit_to is None:
        return None
    if row["platform"] != "mturk" or not cfg.frame_origins:
        print(f"serve: session {row['session']}: turkSubmitTo ignored (not an MTurk session of an MTurk study)",
              file=sys.stderr, flush=True)
        return None
    submit = security.mturk_submit_url(turk_submit_to, cfg.frame_origins)
    if submit is None:  # never post anywhere else: the participant is shown the code instead
        print(f"serve: session {row['session']}: turkSubmitTo {turk_submit_to[:100]!r} is not an allowed "
              f"--mturk-origin ({', '.join(cfg.frame_origins)}); the code is shown instead", file=sys.stderr, flush=True)
    return submit


def _platform(params: dict[str, str], participant: str | None, required: str) -> tuple[str, str, dict]:
    """(platform, raw participant ID, its parameters) from the start request; a hostile or partial set is one line."""
    from fastapi import HTTPException

    for k, v in params.items():
        if not security.RAW_ID.fullmatch(v):
            raise HTTPException(422, f"platform.{k[:32]}: {v[:40]!r} is not an ID (1-64 letters, digits, '-', '_')")
    names = set(params)
    if names == set(PROLIFIC):
        platform, raw = "prolific", params["PROLIFIC_PID"]
    elif names == set(MTURK):
        if params["assignmentId"] == "ASSIGNMENT_ID_NOT_AVAILABLE":
            raise HTTPException(422, "MTurk preview: accept the HIT first")
        platform, raw = "mturk", params["workerId"]
    elif not names:
        platform, raw = "direct", participant if participant is not None else secrets.token_hex(12)
    else:
        shown = [k[:32] for k in sorted(names)]
        raise HTTPException(422, f"platform: {shown} are neither Prolific's {list(PROLIFIC)} nor MTurk's {list(MTURK)}")
    if participant is not None and names:
        raise HTTPException(422, "give either participant or the platform's parameters, not both")
    if required != "any" and platform != required:
        raise HTTPException(422, f"this study runs on {required}: open it from the platform's link")
    return platform, raw, dict(params)


CLICK = "click:"  # prefix of a key answered by clicking its on-screen button (study/experiment.py writes the same)


def _choice(row: dict, keys: list[str]) -> tuple[str, str]:
    """(key, choice) from the presses, through the kind's own `press`; keys it refuses are one line (422)."""
    from fastapi import HTTPException

    from study import trials as kinds

    kind = kinds.get(row["kind"])
    allowed = set(kind.keys) | ({kind.undo_key} if kind.undo_key else set())
    pressed: list[str] = []
    result = None
    clicked = False
    for k, key in enumerate(keys):
        # A click on an on-screen button counts as its key and is saved as "click:<key>", as the lab saves it.
        if key.startswith(CLICK) and key[len(CLICK):] in kind.buttons:
            key, clicked = key[len(CLICK):], True
        if key not in allowed:
            raise HTTPException(422, f"keys[{k}]: {key[:32]!r} is not a key of a {row['kind']} trial "
                                     f"({', '.join(sorted(allowed))})")
        if result is not None:
            raise HTTPException(422, f"keys[{k}]: pressed after the answer was complete")
        result = kind.press(row, pressed, key)
    if result is None:
        raise HTTPException(422, f"keys {keys[:16]} do not complete a {row['kind']} answer")
    return (f"{CLICK}{result[0]}" if clicked else result[0]), result[1]


def _first_of_kind(positions: list[dict], design: ServedDesign) -> set[int]:
    """Positions where a kind is shown for the first time (they carry its instructions)."""
    first: dict[str, int] = {}
    for p in positions:
        if not p["pending"]:
            first.setdefault(design.rows[(p["list_id"], p["trial"])]["kind"], p["position"])
    return set(first.values())


def _trial(state: App, pos: dict, first: bool) -> dict:
    """One trial for the client: the kind's screen with image paths replaced by opaque URLs."""
    from study import trials as kinds

    row = state.design.rows[(pos["list_id"], pos["trial"])]
    kind = kinds.get(row["kind"])
    screen = kind.screen(row, state.timing)
    for image in screen["images"]:
        image["path"] = state.stimulus_url[image["path"]]
    for frame in screen["sequence"]:
        for image in frame["images"]:
            image["path"] = state.stimulus_url[image["path"]]
    if first:
        screen["instructions"] = kind.instructions
    return {"trial": pos["position"], "block": row["block"], "kind": row["kind"], "screen": screen}


def catch_failure(positions: list[dict], done: dict[int, dict], design: ServedDesign, threshold: float) -> str | None:
    """Why the catch rule fails (share right below `threshold`, as the analysis excludes), or None when it holds."""
    right = []
    for p in positions:
        row = design.rows[(p["list_id"], p["trial"])]
        if row["kind"] in kinds_c.CATCH_KINDS:
            shown = {slot: row[f"{slot}_run"] for slot in kinds_c.spec(row["kind"]).slots}
            right.append(kinds_c.catch_correct(row["kind"], row["answer"], done[p["position"]]["choice"], shown))
    if right and sum(right) / len(right) < threshold:
        return f"catch trials: {sum(right)} of {len(right)} right, below the study's {threshold:g}"
    return None


def serve(cfg: ServeConfig, design_path: str | Path) -> None:
    """Run the server until Ctrl-C, holding the study folder's shared lock (no design or simulate swaps it meanwhile)."""
    import uvicorn

    from percept.contracts.staging import stage_lock

    design_path = Path(design_path)
    study_dir = design_path.resolve().parent
    with stage_lock(study_dir, "percept serve", shared=True):
        app = create_app(cfg, design_path)
        store = app.app.state.percept.store
        if app.app.state.percept.texts["consent"].is_default:
            print("serve: warning: no --consent file: participants see the built-in consent text, which is not an "
                  "ethics-approved text (see docs/examples/consent.txt)", file=sys.stderr, flush=True)
        where = store.engine.url.render_as_string(hide_password=True)
        print(f"serve: {design_path} ({app.app.state.percept.design.n_lists} list(s), policy {cfg.policy}) "
              f"database {where} (schema v{store.version})", flush=True)
        try:
            uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False,
                        timeout_graceful_shutdown=5)
        finally:
            store.close()


class Background:
    """uvicorn serving an app on loopback in a thread (tests, benchmarks): `with Background(app) as url: ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
