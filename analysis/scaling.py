"""Scale values for the losses: Bradley–Terry from triplets and Plackett–Luce from rankings (choix).

Scores are log-worths centred to mean 0 within an architecture (choix's convention), so only
differences are meaningful. 95% intervals come from a participant bootstrap: participants are
resampled with replacement and the model is refitted, which keeps each person's answers together.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.01  # a little L2 regularisation keeps scores finite when one loss always wins


def _bt_fit(items: list[str], winners: np.ndarray, losers: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    import choix

    # A wins×losses count matrix gives the same fit as the list of comparisons, much faster.
    k = len(items)
    counts = np.bincount(winners * k + losers, minlength=k * k).reshape(k, k).astype(float)
    return np.asarray(choix.ilsr_pairwise_dense(counts, alpha=alpha))


def _pl_fit(n_items: int, orders: np.ndarray, counts: np.ndarray, alpha: float = ALPHA, tol: float = 1e-8,
            max_iter: int = 100) -> np.ndarray:
    """choix's iterative Luce spectral ranking (ilsr_rankings) with each distinct order weighted by its count.

    The LSR Markov chain is a sum over rankings, so counting repeated orders once with a weight gives
    exactly choix.ilsr_rankings on the expanded list, at a cost independent of the number of trials
    (which makes the participant bootstrap cheap).
    """
    from choix.utils import exp_transform, log_transform, statdist

    params = None
    for _ in range(max_iter):
        weights = np.ones(n_items) if params is None else exp_transform(params)
        chain = alpha * np.ones((n_items, n_items))
        for order, count in zip(orders, counts):
            if count == 0:
                continue
            total = weights[order].sum()
            for i, winner in enumerate(order[:-1]):
                chain[order[i + 1:], winner] += count / total
                total -= weights[winner]
        chain -= np.diag(chain.sum(axis=1))
        new = log_transform(statdist(chain))
        if params is not None and np.abs(new - params).sum() < tol:
            return new
        params = new
    raise RuntimeError(f"Plackett–Luce fit did not converge after {max_iter} iterations")


def bradley_terry(trials: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Bradley–Terry scores of the losses per architecture (and pooled) from triplet outcomes."""
    from analysis.preferences import ALL_ARCHS

    rows = []
    if trials.empty:
        return _frame(rows)
    groups = [(a, g) for a, g in trials.groupby("arch", sort=True)]
    if len(groups) > 1:
        groups.append((ALL_ARCHS, trials))
    for arch, g in groups:
        items = sorted(set(g["loss_a"]) | set(g["loss_b"]))
        idx = {l: i for i, l in enumerate(items)}
        a = g["loss_a"].map(idx).to_numpy()
        b = g["loss_b"].map(idx).to_numpy()
        chose_a = g["chose_a"].to_numpy() == 1
        win, lose = np.where(chose_a, a, b), np.where(chose_a, b, a)

        def fit(sel: np.ndarray) -> np.ndarray:
            return _bt_fit(items, win[sel], lose[sel])

        rows += _with_bootstrap(arch, "bradley_terry", items, g["participant"].to_numpy(), fit, n_boot, seed,
                                n_obs=len(g))
    return _frame(rows)


def plackett_luce(ranks: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Plackett–Luce scores of the losses per architecture from full rankings (best first)."""
    rows = []
    if ranks.empty:
        return _frame(rows)
    for arch, g in ranks.groupby("arch", sort=True):
        items = sorted(g["loss"].unique())
        idx = {l: i for i, l in enumerate(items)}
        g = g.sort_values(["trial_key", "rank"])
        trial_rows = g.groupby("trial_key", sort=False)
        orders = [tuple(idx[l] for l in t["loss"]) for _, t in trial_rows]
        who = np.array([t["participant"].iloc[0] for _, t in trial_rows])
        distinct = sorted(set(orders))
        code = np.array([distinct.index(o) for o in orders])
        distinct_arr = [np.array(o) for o in distinct]

        def fit(sel: np.ndarray) -> np.ndarray:
            counts = np.bincount(code[sel], minlength=len(distinct)).astype(float)
            return _pl_fit(len(items), distinct_arr, counts)

        rows += _with_bootstrap(arch, "plackett_luce", items, who, fit, n_boot, seed, n_obs=len(orders))
    return _frame(rows)


def _with_bootstrap(arch, model, items, participants, fit, n_boot, seed, n_obs) -> list[dict]:
    everyone = np.ones(len(participants), dtype=bool)
    est = fit(everyone)
    people = np.unique(participants)
    members = {p: np.flatnonzero(participants == p) for p in people}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot if len(people) > 1 else 0):
        pick = rng.choice(people, size=len(people), replace=True)
        sel = np.concatenate([members[p] for p in pick])
        boots.append(fit(sel))
    boots = np.asarray(boots)
    rows = []
    for i, item in enumerate(items):
        lo, hi = (np.percentile(boots[:, i], [2.5, 97.5]) if len(boots) else (np.nan, np.nan))
        rows.append({"arch": arch, "model": model, "item": item, "score": float(est[i]), "ci_low": float(lo),
                     "ci_high": float(hi), "n_obs": int(n_obs), "n_participants": len(people), "n_boot": len(boots)})
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["arch", "model", "item", "score", "ci_low", "ci_high", "n_obs",
                                       "n_participants", "n_boot"])
