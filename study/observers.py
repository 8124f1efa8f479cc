"""Scripted observers: response files in exactly the real format, marked simulated, for dry runs and power.

Two generative models (the exact definitions; every random draw is seeded).

Metric observers (`observer` = haarpsi | delta_e | mse | mae | psnr | ssim | ms_ssim), Thurstone case V:
    each option r (a run) on image i seen by participant p has utility
        U = s_p · sign · m(i, r) / scale + v(i, r) + c_p · [r is at the screen's far left] + e,
        e ~ N(0, noise² / 2)  (so a difference of two options has noise SD `noise`),
    where m is the manifest's per-image metric of that run, sign = +1 if higher is better
    (haarpsi, psnr, ssim, ms_ssim) else −1 (delta_e, mse, mae), scale = the root-mean-square of
    the metric's differences between the runs shown together on the design's triplet and ranking
    trials (so differences are in standard units), s_p = exp(N(0, participant_sd²)) the observer's sensitivity, v(i, r) ~
    N(0, image_sd²) an image effect shared by all observers, c_p ~ N(0, side_sd²) a side bias.
    Triplets choose the larger U; rankings order by U. psnr is clipped at 100 dB.

Preference observers (`observer` = preference), known truth on the logit scale:
    for participant p and image i, the log-worth of the `target` loss is
        w = β + b_p + u_i,  b_p ~ N(0, participant_sd²),  u_i ~ N(0, image_sd²)
    (u_i shared by all participants, pairs and architectures), every other loss has worth 0, and
    each option's utility is its worth plus independent standard Gumbel noise. Hence on a triplet
    involving the target, P(target chosen | p, i) = logistic(β + b_p + u_i) exactly; triplets
    without the target are fair coins; rankings follow Plackett–Luce with these worths, whose
    pairwise marginals are the same logistic. β = `logit`, or log(prob / (1 − prob)) from `prob`.
    `noise` is not used (the logistic scale is fixed at 1). The draws b_p and u_i are written into
    each session record under "truth".

The default observer is HaarPSI (piq), a full-reference metric no model is trained on, so agreement
between its judgments and a training loss is not built in. Each session record names the metric
(`observer_metric`) and the runs shown that were trained on it (`observer_trained_on`: empty for
haarpsi and delta_e; e.g. every MS-SSIM and mix run for an ms_ssim observer, every MSE run for psnr).

`random` observers choose uniformly at random. Every observer answers catch trials correctly,
except with probability `lapse` it answers at random. Response times are lognormal (median: the
kind's `rt_median`, 1.5 s for triplet/catch/pair, 3.5 s for ranking, log-SD 0.4) with 0.5 s between trials.

Kinds with one option (rating, rating_ref, jnd) use the option's level L = its utility relative to
the observer's average: metric observers L = s_p · sign · (m(i, r) − m̄) / scale + v(i, r) + c_p + e
(m̄ the mean metric over the images and runs the design shows; c_p acts as a rating offset);
preference observers L = w + g − β/2 − γ (g standard Gumbel, γ Euler's constant, so the target and
the other losses sit symmetrically around 0); random observers L ~ U(−2.5, 2.5). Ratings cut L at
−1.5, −0.5, 0.5, 1.5 into 1..5; jnd answers "different" when L < 0 (a worse-than-average
reconstruction is told apart). Each kind's module (study/trials/) turns utilities into its answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from percept.contracts import ContractError, InputError
from percept.contracts import design as design_c
from percept.contracts import manifest as manifest_c
from percept.contracts import responses as responses_c
from study import responses as log
from percept.contracts import kinds as kinds_c
from study import trials
from study.design import load_design, versions

METRIC_OBSERVERS = ("haarpsi", "delta_e", "ms_ssim", "ssim", "psnr", "mse", "mae")
OBSERVERS = METRIC_OBSERVERS + ("preference", "random")
PSNR_CAP = 100.0  # dB; a perfect reconstruction has infinite PSNR
ITI = 0.5  # s between a response and the next onset


@dataclass(frozen=True)
class ObserverConfig:
    """Parameters of the simulated observers (see the module docstring for the model)."""

    observer: str = "haarpsi"  # a metric no model is trained on: agreement with a loss is not built in
    noise: float = 0.5  # metric observers: SD of the utility difference, in metric-difference units
    participant_sd: float = 0.2  # metric: log-SD of sensitivity; preference: SD of b_p (logit)
    image_sd: float = 0.3  # metric: SD of v(i, r); preference: SD of u_i (logit)
    side_sd: float = 0.1  # metric: SD of the side bias c_p
    lapse: float = 0.02  # catch trials: probability of a random answer
    target: str = "ms_ssim"  # preference: the loss preferred
    logit: float | None = None  # preference: β on the logit scale
    prob: float | None = None  # preference: β given as a probability instead

    def beta(self) -> float:
        """β of the preference model from `logit` or `prob`."""
        if self.logit is not None and self.prob is not None:
            raise InputError("give either --logit or --prob for the preference observer, not both")
        if self.prob is not None:
            if not 0.0 < self.prob < 1.0:
                raise InputError(f"--prob: {self.prob} must be strictly between 0 and 1")
            return math.log(self.prob / (1.0 - self.prob))
        if self.logit is None:
            raise InputError("the preference observer needs --logit or --prob (the true preference for --target)")
        return float(self.logit)

    def describe(self) -> str:
        """A one-line description stored as the session record's `observer`."""
        if self.observer == "random":
            return "random"
        if self.observer == "preference":
            return (f"preference target={self.target} logit={self.beta():.4g} participant_sd={self.participant_sd:g} "
                    f"image_sd={self.image_sd:g} lapse={self.lapse:g}")
        return (f"{self.observer} noise={self.noise:g} participant_sd={self.participant_sd:g} "
                f"image_sd={self.image_sd:g} side_sd={self.side_sd:g} lapse={self.lapse:g}")

    def validate(self) -> None:
        """Raise InputError naming a bad parameter."""
        if self.observer not in OBSERVERS:
            raise InputError(f"--observer: {self.observer!r} is not one of {', '.join(OBSERVERS)}")
        for name in ("noise", "participant_sd", "image_sd", "side_sd"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise InputError(f"--{name.replace('_', '-')}: {value} must be a finite number ≥ 0")
        if not 0.0 <= self.lapse <= 1.0:
            raise InputError(f"--lapse: {self.lapse} must be in [0, 1]")
        if self.observer == "preference":
            self.beta()


def _manifest_for(design_path: Path, meta: dict) -> pd.DataFrame:
    rel = meta.get("manifest")
    if not rel:
        raise ContractError(f"{design_path.with_suffix('.json')}: no 'manifest' key; rebuild the design with `percept design`")
    path = design_path.resolve().parent / rel
    manifest = manifest_c.read_manifest(path)
    want = meta.get("manifest_sha256")
    if want and manifest_c.file_hash(path) != want:
        raise ContractError(f"{path}: manifest changed since the design was made (sha256 differs from design.json)")
    return manifest


def _metric_table(manifest: pd.DataFrame, metric: str) -> dict[tuple[str, str], float]:
    if manifest[metric].isna().all():
        raise InputError(f"--observer {metric}: the design's manifest has no {metric} column (it predates it); "
                         "re-export with `percept reconstruct` and rebuild the design")
    values = manifest[metric].to_numpy(dtype=float)
    if metric == "psnr":
        values = np.minimum(values, PSNR_CAP)
    sign = 1.0 if manifest_c.HIGHER_IS_BETTER[metric] else -1.0
    return {(i, r): sign * v for i, r, v in zip(manifest["image_id"], manifest["run"], values)}


def _recon_runs(row, slots=design_c.SLOTS) -> list[str]:
    """The reconstructions a row shows (not the original itself), in slot order."""
    return [row[f"{slot}_run"] for slot in slots if row[f"{slot}_run"] and row[f"{slot}_run"] != kinds_c.ORIGINAL_RUN]


def metric_scale(design: pd.DataFrame, table: dict[tuple[str, str], float]) -> float:
    """RMS of the metric differences between runs shown together; for one-option kinds, between runs of one image and arch."""
    diffs = []
    shown = design[~design["kind"].isin(kinds_c.CATCH_KINDS)]
    for _, row in shown.iterrows():
        vals = [table[(row["image_id"], r)] for r in _recon_runs(row, trials.get(row["kind"]).spec.slots)]
        diffs += [a - b for k, a in enumerate(vals) for b in vals[k + 1:]]
    if not diffs:  # ratings and jnd only: what a two-option trial of the same runs would compare
        groups: dict[tuple[str, str], set[str]] = {}
        for _, row in shown.iterrows():
            groups.setdefault((row["image_id"], row["arch"]), set()).update(_recon_runs(row))
        for (image, _), runs in groups.items():
            vals = [table[(image, r)] for r in sorted(runs)]
            diffs += [a - b for k, a in enumerate(vals) for b in vals[k + 1:]]
    rms = float(np.sqrt(np.mean(np.square(diffs)))) if diffs else 0.0
    return rms


class Judge:
    """One simulated participant's judgments (the models of the module docstring), consumed by each kind's `observe`."""

    def __init__(self, cfg: ObserverConfig, rng: np.random.Generator, *, b_p: float, side: float, sens: float, beta: float,
                 table: dict, scale: float, centre: float, u_image: dict, v_image_run: dict):
        self.cfg, self.rng, self.b_p, self.side, self.sens, self.beta = cfg, rng, b_p, side, sens, beta
        self.table, self.scale, self.centre, self.u_image, self.v_image_run = table, scale, centre, u_image, v_image_run

    def _worth(self, row, loss: str) -> float:
        return self.beta + self.b_p + self.u_image[row["image_id"]] if loss == self.cfg.target else 0.0

    def utilities(self, row, slots: tuple[str, ...]) -> np.ndarray:
        """Utilities of the runs in `slots` (screen order), noise included."""
        runs = [row[f"{s}_run"] for s in slots]
        if self.cfg.observer == "random":
            return self.rng.random(len(runs))
        if self.cfg.observer == "preference":
            worth = np.array([self._worth(row, row[f"{s}_loss"]) for s in slots])
            return worth + self.rng.gumbel(0.0, 1.0, len(worth))
        util = np.array([self.sens * self.table[(row["image_id"], r)] / self.scale + self.v_image_run[(row["image_id"], r)]
                         for r in runs])
        util[0] += self.side
        return util + self.rng.normal(0.0, self.cfg.noise / math.sqrt(2.0), len(util))

    def level(self, row, slot: str) -> float:
        """One run's utility relative to the observer's average (0)."""
        if self.cfg.observer == "random":
            return float(self.rng.uniform(-2.5, 2.5))
        if self.cfg.observer == "preference":
            return self._worth(row, row[f"{slot}_loss"]) + float(self.rng.gumbel()) - self.beta / 2 - np.euler_gamma
        key = (row["image_id"], row[f"{slot}_run"])
        return (self.sens * (self.table[key] - self.centre) / self.scale + self.v_image_run[key] + self.side
                + float(self.rng.normal(0.0, self.cfg.noise / math.sqrt(2.0))))

    def lapses(self) -> bool:
        """Whether this catch trial is answered at random."""
        return bool(self.rng.random() < self.cfg.lapse)


def trained_on_observer(design: pd.DataFrame, observer: str) -> list[str]:
    """Runs shown by the design (not catch) whose training loss optimised the observer's metric; [] for non-metric observers."""
    if observer not in METRIC_OBSERVERS:
        return []
    shown = design[~design["kind"].isin(kinds_c.CATCH_KINDS)]
    runs = {(row[f"{slot}_run"], row[f"{slot}_loss"]) for _, row in shown.iterrows() for slot in design_c.SLOTS
            if row[f"{slot}_run"] and row[f"{slot}_run"] != kinds_c.ORIGINAL_RUN}
    return sorted(run for run, loss in runs if manifest_c.trained_on(loss, observer))


def simulate(design_path: str | Path, participants: int, observer: str = "haarpsi", noise: float = 0.5,
             seed: int = 0, **options) -> list[Path]:
    """Write simulated participants' responses; all files appear together or none do (see `_simulate`)."""
    from percept.contracts.staging import staged_dir

    design_path = Path(design_path)
    study = design_path.parent if design_path.parent.name else design_path.resolve().parent
    with staged_dir(study, keep=True) as staging:
        paths = _simulate(staging / design_path.name, participants, observer, noise, seed, **options)
    return [study / "responses" / p.name for p in paths]


def _simulate(design_path: str | Path, participants: int, observer: str = "haarpsi", noise: float = 0.5,
              seed: int = 0, *, config: ObserverConfig | None = None, first: int = 1,
              start: datetime | None = None) -> list[Path]:
    """Write one response file + session record per simulated participant; return the CSV paths.

    Participants are named sim01, sim02, … (from `first`); participant k (0-based) does list
    k mod K. `config` overrides `observer`/`noise` with every parameter of the model. An existing
    file of the same name is replaced only if its record says it was simulated.
    """
    design_path = Path(design_path)
    cfg = config or ObserverConfig(observer=observer, noise=noise)
    cfg.validate()
    if participants < 1:
        raise InputError(f"--participants: {participants} must be at least 1")
    design, meta = load_design(design_path, check_files=False)
    manifest = _manifest_for(design_path, meta)
    lists = sorted(design["list_id"].unique())
    for kind in design["kind"].unique():
        trials.get(kind)  # an unknown kind is refused before anything is written
    shown = design[~design["kind"].isin(kinds_c.CATCH_KINDS)]
    shown_runs = [(r["image_id"], run) for _, r in shown.iterrows() for run in _recon_runs(r)]
    table, scale, centre = {}, 1.0, 0.0
    if cfg.observer in METRIC_OBSERVERS:
        table = _metric_table(manifest, cfg.observer)
        missing = [key for key in shown_runs if key not in table]
        if missing:
            raise ContractError(f"{design_path}: image {missing[0][0]!r} run {missing[0][1]!r} is not in the design's manifest")
        unscored = [key for key in sorted(set(shown_runs)) if not math.isfinite(table[key])]
        if unscored:
            raise InputError(f"--observer {cfg.observer}: the manifest has no {cfg.observer} value for image "
                             f"{unscored[0][0]!r} run {unscored[0][1]!r}")
        scale = metric_scale(design, table)
        if scale == 0:
            raise InputError(f"--observer {cfg.observer}: the metric is identical for every run shown; it cannot tell them apart")
        centre = float(np.mean([table[key] for key in sorted(set(shown_runs))]))
    built_in = trained_on_observer(design, cfg.observer)
    beta = cfg.beta() if cfg.observer == "preference" else 0.0
    if cfg.observer == "preference" and cfg.target not in set(shown["left_loss"]) | set(shown["right_loss"]):
        raise InputError(f"--target: loss {cfg.target!r} is never shown in {design_path}")

    # Image-level effects, drawn in a fixed order so they do not depend on the number of participants.
    image_ids = sorted(design["image_id"].unique())
    pairs = sorted(set(shown_runs))
    img_rng = np.random.default_rng([seed, 1])
    u_image = dict(zip(image_ids, img_rng.normal(0.0, cfg.image_sd, len(image_ids))))
    v_image_run = dict(zip(pairs, img_rng.normal(0.0, cfg.image_sd, len(pairs))))

    responses_dir = design_path.parent / "responses"
    width = max(2, len(str(first + participants - 1)))
    started = start or datetime.now(timezone.utc).astimezone()
    out = []
    for k in range(participants):
        number = first - 1 + k
        pid = f"sim{number + 1:0{width}d}"
        csv_path = responses_c.response_path(responses_dir, pid, "1")
        _refuse_human(csv_path)
        list_id = int(lists[number % len(lists)])
        list_trials = design[design["list_id"] == list_id].sort_values("trial")
        p_rng = np.random.default_rng([seed, 2, number])
        b_p = float(p_rng.normal(0.0, cfg.participant_sd))
        side = float(p_rng.normal(0.0, cfg.side_sd))
        sens = math.exp(b_p) if cfg.observer in METRIC_OBSERVERS else 1.0
        t = 2.0  # instructions before the first trial
        rows = []
        judge = Judge(cfg, p_rng, b_p=b_p, side=side, sens=sens, beta=beta, table=table, scale=scale, centre=centre,
                      u_image=u_image, v_image_run=v_image_run)
        for _, row in list_trials.iterrows():
            kind = trials.get(row["kind"])
            key, choice = kind.observe(row, judge)
            rt = float(p_rng.lognormal(math.log(kind.rt_median), 0.4))
            rows.append(log.response_row(row, pid, "1", key=key, choice=choice, rt=rt, onset=t,
                                         wallclock=(started + timedelta(seconds=t + rt)).isoformat(timespec="milliseconds"),
                                         simulated=True))
            t += rt + ITI
        log.write_rows(csv_path, rows)
        record = {
            "participant": pid, "session": "1", "list_id": list_id, "design": "../" + design_path.name,
            "design_sha256": manifest_c.file_hash(design_path), "simulated": True, "observer": cfg.describe(),
            "observer_params": {**{k2: v for k2, v in cfg.__dict__.items()}, "scale": scale, "seed": seed},
            # Which metric judged, and which shown runs were trained on it: agreement with those is built in.
            "observer_metric": cfg.observer if cfg.observer in METRIC_OBSERVERS else None,
            "observer_trained_on": built_in,
            "started": started.isoformat(timespec="milliseconds"),
            "ended": (started + timedelta(seconds=t)).isoformat(timespec="milliseconds"),
            "completed": True, "n_trials": len(list_trials), "n_answered": len(rows), "versions": versions(),
            "window": None, "pilot": False,
        }
        if cfg.observer == "preference":
            record["truth"] = {"beta": beta, "target": cfg.target, "participant_effect": b_p,
                               "image_effects": {i: float(u_image[i]) for i in image_ids}}
        log.write_record(log.record_path(csv_path), record)
        out.append(csv_path)
    return out


def _refuse_human(csv_path: Path) -> None:
    """Refuse to replace a response file that is not marked simulated."""
    rec_path = log.record_path(csv_path)
    if not csv_path.exists() and not rec_path.exists():
        return
    rec = log.existing_record(rec_path) if rec_path.exists() else None
    if rec is None or rec.get("simulated") is not True:
        raise InputError(f"{csv_path}: exists and is not marked simulated; refusing to overwrite it (move it or use other ids)")
