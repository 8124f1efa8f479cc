"""The headline: a family of tests declared from the design, Holm-adjusted, with the main test's intervals.

The family is fixed by design.csv before any response is read: one two-way cluster-robust logit
(the main test, preferences.fit_cluster_logit) per (architecture, pair) of main-block triplets,
and one Friedman test per architecture with main-block rankings. Comparisons that show a run the
manifest marks degenerate are left out of the family (and of every preference analysis), which
is also decided before the data. Pooled "all architectures" rows are secondary and outside it.
Holm's step-down adjustment (statsmodels `multipletests`) controls the family-wise error rate;
a declared test without data counts as p = 1.

Headline intervals are those of the main test: the logit's 95% CI for the log-odds of choosing
loss A at balanced sides, mapped to a population-averaged probability by the logistic function.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from percept.contracts.manifest import FLAT_LOSS

FAMILY_COLUMNS = ["test", "arch", "pair", "estimate", "prob_a", "ci_low", "ci_high", "p", "p_holm", "reject", "n",
                  "note"]


def shown_runs(df: pd.DataFrame) -> pd.Series:
    """Per row of a design or response table, the set of runs shown (left, right and third)."""
    return df.apply(lambda r: {r["left_run"], r["right_run"]} | ({r["third_run"]} if r.get("third_run", "") else set()),
                    axis=1)


def drop_degenerate(df: pd.DataFrame, degenerate: set[str]) -> tuple[pd.DataFrame, int]:
    """Rows of a design or response table that show no degenerate run, and how many were dropped."""
    if not degenerate or df.empty:
        return df, 0
    keep = ~shown_runs(df).apply(lambda runs: bool(runs & degenerate))
    return df[keep].reset_index(drop=True), int((~keep).sum())


def declared_family(design: pd.DataFrame, degenerate: set[str] = frozenset()) -> pd.DataFrame:
    """The headline tests the design declares: (test, arch, pair) rows, degenerate comparisons left out."""
    main = design[design["block"] == "main"]
    main, _ = drop_degenerate(main, set(degenerate))
    trip = main[main["kind"] == "triplet"][["arch", "pair"]].drop_duplicates().sort_values(["arch", "pair"])
    rank = main[main["kind"] == "ranking"][["arch"]].drop_duplicates().sort_values("arch")
    rows = [{"test": "triplet cluster_logit", "arch": r.arch, "pair": r.pair} for r in trip.itertuples()]
    rows += [{"test": "ranking friedman", "arch": r.arch, "pair": ""} for r in rank.itertuples()]
    return pd.DataFrame(rows, columns=["test", "arch", "pair"])


def family_table(family: pd.DataFrame, models: pd.DataFrame, friedman: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Each declared test with its estimate, the main test's CI (probability scale), p and Holm-adjusted p."""
    from statsmodels.stats.multitest import multipletests

    main = models[models["estimator"] == "cluster_logit"].set_index(["arch", "pair"]) if len(models) else None
    fried = friedman.set_index("arch") if len(friedman) else None
    rows = []
    for f in family.itertuples(index=False):
        row = {"test": f.test, "arch": f.arch, "pair": f.pair, "estimate": np.nan, "prob_a": np.nan, "ci_low": np.nan,
               "ci_high": np.nan, "p": np.nan, "n": 0, "note": ""}
        if f.test == "triplet cluster_logit":
            if main is not None and (f.arch, f.pair) in main.index:
                m = main.loc[(f.arch, f.pair)]
                row.update(estimate=m["estimate"], prob_a=_expit(m["estimate"]), ci_low=_expit(m["ci_low"]),
                           ci_high=_expit(m["ci_high"]), p=m["p"], n=int(m["n"]), note=m["note"] or "")
            else:
                row["note"] = "no data for this declared test"
        elif f.test == "ranking friedman":
            if fried is not None and f.arch in fried.index:
                r = fried.loc[f.arch]
                row.update(estimate=r.get("kendall_w", np.nan), p=r["p"], n=int(r.get("n_blocks", 0)))
            else:
                row["note"] = "no data for this declared test"
        else:
            raise ValueError(f"unknown family test {f.test!r}")
        rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in FAMILY_COLUMNS if c not in ("p_holm", "reject")])
    if out.empty:
        return pd.DataFrame(columns=FAMILY_COLUMNS)
    # a declared test that could not be run rejects nothing, but keeps its place in the family
    p = out["p"].astype(float).fillna(1.0).to_numpy()
    reject, p_holm, _, _ = multipletests(p, alpha=alpha, method="holm")
    out["p_holm"], out["reject"] = p_holm, reject
    return out[FAMILY_COLUMNS]


def headline_lines(family: pd.DataFrame, dist: pd.DataFrame, simulated: bool) -> list[str]:
    """Plain sentences for the declared tests: main-test CI, p and Holm p (family size stated)."""
    tag = " [simulated observers]" if simulated else ""
    m = len(family)
    lines = []
    for r in family.itertuples(index=False):
        holm = f"Holm p={r.p_holm:.3g} over the {m} declared tests"
        if r.test == "triplet cluster_logit":
            if np.isnan(r.prob_a):
                lines.append(f"{r.arch} {r.pair}: no estimate ({r.note or 'no data'}); {holm}{tag}")
                continue
            a, b = r.pair.split(":", 1)
            win, lose, prob, low, high = ((a, b, r.prob_a, r.ci_low, r.ci_high) if r.prob_a >= 0.5 else
                                          (b, a, 1 - r.prob_a, 1 - r.ci_high, 1 - r.ci_low))
            lines.append(f"{r.arch}: {prob:.0%} chose {win} over {lose} (cluster-robust logit, 95% CI {low:.0%}–{high:.0%}, "
                         f"n={r.n}; p={r.p:.3g}, {holm}){tag}")
        else:
            means = dist[dist["arch"] == r.arch].drop_duplicates("loss").sort_values("mean_rank") if len(dist) else dist
            order = " < ".join(f"{x.loss} ({x.mean_rank:.2f})" for x in means.itertuples()) or "no rankings"
            lines.append(f"{r.arch} rankings: mean rank {order}; Friedman p={r.p:.3g}, Kendall's W={r.estimate:.2f}, "
                         f"{holm}{tag}")
    return lines


def observer_info(sessions: list[dict], manifest: pd.DataFrame | None) -> dict:
    """Which scripted observer(s) answered, and whether agreement with a training loss is built in.

    Reads the session records defensively: `observer` (a description whose first word names the
    observer), `observer_params.observer`, and `observer_trained_on` (losses, or a bool) when the
    study package wrote it; otherwise the link is inferred from the manifest's training losses.
    """
    from analysis.premise import OWN_METRICS

    losses = set() if manifest is None else set(manifest["loss"]) - {FLAT_LOSS}
    found: dict[str, dict] = {}
    for rec in sessions:
        if not rec.get("simulated"):
            continue
        params = rec.get("observer_params") if isinstance(rec.get("observer_params"), dict) else {}
        text = str(rec.get("observer") or "")
        name = str(params.get("observer") or (text.split()[0] if text.split() else "unknown"))
        given = rec.get("observer_trained_on")
        if isinstance(given, (list, tuple)):
            trained = sorted(str(x) for x in given)
        elif isinstance(given, str) and given:
            trained = [given]
        elif isinstance(given, bool):
            trained = sorted(l for l in losses if name in OWN_METRICS.get(l, ())) if given else []
        else:
            # not recorded: a metric observer is built into every loss trained on that metric
            trained = sorted(l for l in losses if name in OWN_METRICS.get(l, ()))
        info = found.setdefault(name, {"observer": name, "description": text, "trained_on": trained,
                                       "source": "session record" if given is not None else "inferred from the manifest",
                                       "sessions": 0})
        info["sessions"] += 1
    return {"observers": list(found.values()),
            "built_in": sorted({l for o in found.values() for l in o["trained_on"]})}


def _expit(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x))) if np.isfinite(x) else float("nan")
