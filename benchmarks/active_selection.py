"""Active pair selection against the balanced design: judgments to the same CI width, and CI coverage; run it with
`PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/active_selection.py`.

Known truth (Thurstone case V, as study/observers.py's metric observers): participant p judging image m of
architecture g sees option l with utility s_g,l + v_g,m,l + u_p,g,l + e, v ~ N(0, sd_image²),
u ~ N(0, sd_participant²), e ~ N(0, ½) (a difference has noise SD 1); A is chosen when its utility is larger,
except with probability `lapse` the answer is a coin flip. Averaged over people and images,
P(A) = λ/2 + (1 − λ)·Φ(d_pop) with d_pop = (s_A − s_B) / √(1 + 2·sd_image² + 2·sd_participant²): the loss
effects estimated (and covered) are these population-averaged differences, one per (arch, pair) of the design.

Designs: the study's scheme (study/design.py) rebuilt without files: conditions (arch, pair), base list
k = (image + condition) mod K (a Latin square: each list shows every image once), each base list also mirrored
(sides swapped), sides alternating within each list and condition, order shuffled. The balanced policy gives
participant k list k mod L. The active policies (study/online/active.py, objective "eig" = ASAP-style expected
information gain, "variance" = summed variance of the pair differences) fill each participant's main block from
the pool of all lists' rows, `--batch` trials per request, participants arriving `--concurrent` at a time
(their requests interleave, so a batch sees only what was answered before it).

Estimator (a stated equivalent of the analysis's `cluster_logit`, preferences.py): per architecture one GLM of
chose_A on the Bradley–Terry/Thurstone design (+1 for loss A, −1 for loss B, the first loss as reference) with
the lapse-probit link P = λ/2 + (1 − λ)·Φ(η) (λ known, as catch trials would estimate it), two-way
cluster-robust (participant, image) covariance and t intervals on min(clusters) − 1 df, exactly the analysis's
recipe with the logit intercept replaced by the scale model. The probit-with-lapses link is used because under
the truth above it is exactly the population-averaged model, so coverage measures the designs, not a link
mismatch (with a logit, the pooled scale of several pairs is not exactly additive after averaging over the
random effects, and its pseudo-true value would shift with the allocation).

"Judgments to the same CI width": the mean 95% CI width over the loss effects, averaged over replications, at
each checkpoint; the target is the balanced design's width at the full budget; a policy's judgments are read
off its curve by log–log interpolation (extrapolated with width ∝ N^−½ when it does not reach the target, marked
"≥"). Coverage: share of all loss effects' 95% CIs holding the truth at the full budget; bias: mean of
(estimate − truth)·sign(truth), i.e. > 0 when effects come out larger than they are, with its Monte Carlo SE.
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np

POLICIES = ("balanced", "eig", "variance")


@dataclass(frozen=True)
class Scenario:
    """Truth and design of one simulated study."""

    scores: dict[str, dict[str, float]]  # arch -> loss -> subject-level Thurstone score
    pairs: tuple[tuple[str, str], ...]  # the design's loss pairs (every arch)
    images: int
    sd_image: float = 0.3
    sd_participant: float = 0.3
    lapse: float = 0.04
    note: str = ""


SCENARIOS = {
    # The study's default pairs (study/design.py DEFAULT_PAIRS) on two architectures, effects like Snell et al.'s.
    "default": Scenario({"fc": {"mse": 0.0, "mae": 0.1, "ms_ssim": 0.6}, "conv": {"mse": 0.0, "mae": 0.3, "ms_ssim": 1.2}},
                        (("mse", "ms_ssim"), ("mae", "ms_ssim"), ("mse", "mae")), images=30,
                        note="3 losses, DEFAULT_PAIRS, 2 archs"),
    # ASAP's setting: many conditions over a wide quality range, every pair in the design.
    "wide": Scenario({"fc": {"l0": 0.0, "l1": 0.4, "l2": 0.8, "l3": 1.4, "l4": 2.0, "l5": 2.6}},
                     tuple((f"l{i}", f"l{j}") for i in range(6) for j in range(i + 1, 6)), images=30,
                     note="6 losses, all 15 pairs, 1 arch"),
    # ASAP's regime: the same six losses over a range where most pairs are nearly unanimous.
    "asap": Scenario({"fc": {f"l{i}": 1.2 * i for i in range(6)}},
                     tuple((f"l{i}", f"l{j}") for i in range(6) for j in range(i + 1, 6)), images=30,
                     note="6 losses 1.2 apart (range 6), all 15 pairs, 1 arch"),
}


def oracle_ratio(sc: Scenario) -> float:
    """Judgments the best fixed allocation over (arch, pair) needs for the balanced mean CI width, as a share of balanced.

    Fisher information of the lapse-probit at the true population effects, no random effects (they add variance no
    allocation over pairs removes): an upper bound on what choosing pairs can save in this scenario.
    """
    from scipy.optimize import minimize
    from scipy.special import ndtr

    k = np.sqrt(1 + 2 * sc.sd_image ** 2 + 2 * sc.sd_participant ** 2)
    conds = [(g, a, b) for g in sc.scores for a, b in sc.pairs]

    def info(d: float) -> float:
        p = sc.lapse / 2 + (1 - sc.lapse) * ndtr(d)
        return ((1 - sc.lapse) * np.exp(-d * d / 2) / np.sqrt(2 * np.pi)) ** 2 / (p * (1 - p))

    def mean_width(n: np.ndarray) -> float:
        widths = []
        for g, s in sc.scores.items():
            losses = sorted(s)
            idx = {l: i for i, l in enumerate(losses)}
            lap = np.zeros((len(losses), len(losses)))
            for (gg, a, b), m in zip(conds, n):
                if gg == g:
                    x = np.zeros(len(losses))
                    x[idx[a]], x[idx[b]] = 1.0, -1.0
                    lap += m * info((s[a] - s[b]) / k) * np.outer(x, x)
            cov = np.pad(np.linalg.inv(lap[1:, 1:] + 1e-12 * np.eye(len(losses) - 1)), ((1, 0), (1, 0)))
            widths += [np.sqrt(cov[idx[a], idx[a]] + cov[idx[b], idx[b]] - 2 * cov[idx[a], idx[b]]) for a, b in sc.pairs]
        return float(np.mean(widths))

    best = minimize(lambda z: np.log(mean_width(np.exp(z) / np.exp(z).sum())), np.zeros(len(conds)), method="L-BFGS-B")
    n = np.exp(best.x) / np.exp(best.x).sum()
    return (mean_width(n) / mean_width(np.full(len(conds), 1 / len(conds)))) ** 2


def make_lists(sc: Scenario, rng: np.random.Generator) -> list[list[dict]]:
    """The balanced lists (Latin square over conditions, mirrored), as design rows of kind triplet."""
    conds = [(arch, a, b) for arch in sc.scores for a, b in sc.pairs]
    k_base = len(conds)
    lists = []
    for k in range(k_base):
        items = [(m, c) for m in range(sc.images) for c in range(len(conds)) if (m + c) % k_base == k]
        rows = []
        for c in sorted({c for _, c in items}):
            mine = [m for m, cc in items if cc == c]
            sides = [(i % 2 == 0) for i in range(len(mine))]
            rng.shuffle(sides)
            arch, a, b = conds[c]
            rows += [_row(arch, a, b, f"img{m:03d}", left_a) for m, left_a in zip(mine, sides)]
        order = rng.permutation(len(rows))
        base = [rows[i] for i in order]
        for mirrored in (False, True):
            lst = [_row(r["arch"], *r["pair"].split(":"), r["image_id"], (r["left_loss"] == r["pair"].split(":")[0]) != mirrored)
                   for r in base]
            lid = len(lists)
            for t, r in enumerate(lst):
                r.update(list_id=lid, trial=t)
            lists.append(lst)
    return lists


def _row(arch: str, a: str, b: str, image: str, a_left: bool) -> dict:
    left, right = (a, b) if a_left else (b, a)
    return {"kind": "triplet", "block": "main", "arch": arch, "pair": f"{a}:{b}", "image_id": image,
            "left_loss": left, "left_run": f"{arch}-{left}-s0", "right_loss": right, "right_run": f"{arch}-{right}-s0"}


class Truth:
    """Random effects of one replication and the simulated answers."""

    def __init__(self, sc: Scenario, rng: np.random.Generator) -> None:
        """Draw the image effects; participants' effects are drawn as they arrive."""
        self.sc, self.rng = sc, rng
        self.v = {(g, f"img{m:03d}", l): rng.normal(0, sc.sd_image) for g in sc.scores for m in range(sc.images)
                  for l in sc.scores[g]}
        self.u: dict[tuple, float] = {}

    def answer(self, p: int, row: dict) -> str:
        """The chosen run of participant p on a design row."""
        g, m = row["arch"], row["image_id"]
        if self.rng.random() < self.sc.lapse:
            return row["left_run"] if self.rng.random() < 0.5 else row["right_run"]
        util = []
        for side in ("left", "right"):
            loss = row[f"{side}_loss"]
            u = self.u.setdefault((p, g, loss), self.rng.normal(0, self.sc.sd_participant))
            util.append(self.sc.scores[g][loss] + self.v[(g, m, loss)] + u + self.rng.normal(0, np.sqrt(0.5)))
        return row["left_run"] if util[0] > util[1] else row["right_run"]

    def effects(self) -> dict[tuple[str, str], float]:
        """Population-averaged probit difference per (arch, pair)."""
        k = np.sqrt(1 + 2 * self.sc.sd_image ** 2 + 2 * self.sc.sd_participant ** 2)
        return {(g, f"{a}:{b}"): (s[a] - s[b]) / k for g, s in self.sc.scores.items() for a, b in self.sc.pairs}


def run_study(sc: Scenario, policy: str, n_participants: int, rng: np.random.Generator, *, batch: int,
              concurrent: int, seed: int) -> tuple[list[tuple[int, dict, str]], "Truth"]:
    """(participant, row, choice) of one simulated study under a policy, in answer order, and its truth."""
    from study.online.active import ActivePolicy

    lists = make_lists(sc, np.random.default_rng([seed, 1]))
    truth = Truth(sc, rng)
    out: list[tuple[int, dict, str]] = []
    if policy == "balanced":
        for p in range(n_participants):
            out += [(p, r, truth.answer(p, r)) for r in lists[p % len(lists)]]
        return out, truth
    pool = [r for lst in lists for r in lst]
    act = ActivePolicy(pool, seed, sd_image=sc.sd_image * np.sqrt(2), sd_participant=sc.sd_participant * np.sqrt(2),
                       lapse=sc.lapse, objective=policy)
    per = len(lists[0])
    answered: list[tuple[dict, str]] = []
    for first in range(0, n_participants, concurrent):
        wave = list(range(first, min(first + concurrent, n_participants)))
        seen = {p: set() for p in wave}
        while any(len(seen[p]) < per for p in wave):
            for p in wave:
                picks = act.choose(answered, seen[p], min(batch, per - len(seen[p]))) if len(seen[p]) < per else []
                for i in picks:
                    seen[p].add(i)
                    choice = truth.answer(p, pool[i])
                    answered.append((pool[i], choice))
                    out.append((p, pool[i], choice))
    return out, truth


def lapse_probit(lapse: float):
    """statsmodels link P = λ/2 + (1 − λ)·Φ(η) (a Probit subclass, so the Binomial family accepts it)."""
    from scipy.stats import norm
    from statsmodels.genmod.families import links

    class LapseProbit(links.Probit):
        def __call__(self, p):
            return norm.ppf(np.clip((np.asarray(p) - lapse / 2) / (1 - lapse), 1e-10, 1 - 1e-10))

        def inverse(self, z):
            return lapse / 2 + (1 - lapse) * norm.cdf(z)

        def deriv(self, p):
            return 1 / ((1 - lapse) * norm.pdf(self(p)))

        def inverse_deriv(self, z):
            return (1 - lapse) * norm.pdf(z)

        def deriv2(self, p):
            z = self(p)
            return z / ((1 - lapse) ** 2 * norm.pdf(z) ** 2)

        def inverse_deriv2(self, z):
            return -(1 - lapse) * z * norm.pdf(z)

    return LapseProbit()


def fit_effects(data: list[tuple[int, dict, str]], sc: Scenario) -> dict:
    """(estimate, CI low, CI high) per (arch, pair) from the cluster-robust lapse-probit scale GLM (+ "fallbacks")."""
    import statsmodels.api as sm

    out = {}
    for g, scores in sc.scores.items():
        losses = sorted(scores)
        col = {l: i - 1 for i, l in enumerate(losses)}  # the first loss is the reference (score 0)
        rows = [(p, r, c) for p, r, c in data if r["arch"] == g]
        X = np.zeros((len(rows), len(losses) - 1))
        y = np.zeros(len(rows))
        groups = np.zeros((len(rows), 2), dtype=int)
        images = {}
        for i, (p, r, c) in enumerate(rows):
            a, b = r["pair"].split(":")
            if col[a] >= 0:
                X[i, col[a]] += 1
            if col[b] >= 0:
                X[i, col[b]] -= 1
            chosen = r["left_loss"] if c == r["left_run"] else r["right_loss"]
            y[i] = chosen == a
            groups[i] = p, images.setdefault(r["image_id"], len(images))
        R = np.zeros((len(sc.pairs), len(losses) - 1))
        for k, (a, b) in enumerate(sc.pairs):
            if col[a] >= 0:
                R[k, col[a]] += 1
            if col[b] >= 0:
                R[k, col[b]] -= 1
        model = sm.GLM(y, X, family=sm.families.Binomial(link=lapse_probit(sc.lapse)))
        tt = _cluster_t(model, R, groups)
        if tt is None:
            # as preferences.fit_cluster_logit: a two-way variance that is not positive falls back to the larger
            # one-way one (Cameron, Gelbach & Miller 2011)
            one_way = [t for t in (_cluster_t(model, R, groups[:, j]) for j in (0, 1)) if t is not None]
            tt = max(one_way, key=lambda t: float(np.mean(np.asarray(t.sd))))
            out["fallbacks"] = out.get("fallbacks", 0) + 1
        ci = np.asarray(tt.conf_int())
        for k, (a, b) in enumerate(sc.pairs):
            out[(g, f"{a}:{b}")] = (float(np.asarray(tt.effect)[k]), float(ci[k, 0]), float(ci[k, 1]))
    return out


def _cluster_t(model, R: np.ndarray, groups: np.ndarray):
    """t test of the contrasts R under cluster-robust covariance; None when a variance is not positive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-canonical link, and sqrt of a negative two-way variance: checked below
        res = model.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
        tt = res.t_test(R)
    sd = np.asarray(tt.sd, dtype=float).ravel()
    return tt if np.all(np.isfinite(sd)) and np.all(sd > 0) else None


def replicate(sc: Scenario, policy: str, rep: int, checkpoints: list[int], args) -> list[dict]:
    """One simulated study: CI widths, coverage and errors of every loss effect at each checkpoint (participants)."""
    rng = np.random.default_rng([args.seed, rep, 7])  # the same truth draws' seed for every policy
    data, truth = run_study(sc, policy, max(checkpoints), rng, batch=args.batch, concurrent=args.concurrent,
                            seed=args.seed + rep)
    eff = truth.effects()
    rows = []
    for n_p in checkpoints:
        fit = fit_effects([d for d in data if d[0] < n_p], sc)
        fallbacks = fit.pop("fallbacks", 0)
        for key, (est, lo, hi) in fit.items():
            rows.append({"policy": policy, "rep": rep, "participants": n_p,
                         "judgments": sum(1 for d in data if d[0] < n_p), "effect": key, "width": hi - lo,
                         "covered": lo <= eff[key] <= hi, "error": (est - eff[key]) * np.sign(eff[key]), "one_way": fallbacks > 0})
    return rows


def needed(judgments: np.ndarray, width: np.ndarray, target: float) -> tuple[float, bool]:
    """Judgments at which a mean-width curve reaches `target` (log–log interpolation; extrapolated past the end)."""
    lj, lw, lt = np.log(judgments), np.log(width), np.log(target)
    for i in range(1, len(lj)):
        if lw[i] <= lt:
            f = (lt - lw[i - 1]) / (lw[i] - lw[i - 1])
            return float(np.exp(lj[i - 1] + f * (lj[i] - lj[i - 1]))), True
    return float(judgments[-1] * (width[-1] / target) ** 2), False


def timing(args) -> str:
    """Milliseconds per choose() call on a pool of a few thousand rows with many answers."""
    from study.online.active import ActivePolicy

    sc = Scenario(SCENARIOS["wide"].scores, SCENARIOS["wide"].pairs, images=100)
    lists = make_lists(sc, np.random.default_rng(0))
    pool = [r for lst in lists for r in lst]
    rng = np.random.default_rng(1)
    answered = [(pool[i], pool[i]["left_run"] if rng.random() < 0.5 else pool[i]["right_run"])
                for i in rng.integers(0, len(pool), args.timing_answers)]
    pol = ActivePolicy(pool, 0)
    seen = set(int(i) for i in rng.choice(len(pool), 20, replace=False))
    pol.choose(answered, seen, args.batch)  # warm-up: the first call imports scipy.special
    t0 = time.perf_counter()
    calls = 20
    for _ in range(calls):
        pol.choose(answered, seen, args.batch)
    ms = (time.perf_counter() - t0) / calls * 1000
    return (f"choose(n={args.batch}) on a pool of {len(pool)} rows ({pol.n_cells} comparisons, {pol.n_pairs} pairs) "
            f"with {len(answered)} answers: {ms:.1f} ms per call (mean of {calls})")


def report(df, name: str, sc: Scenario, a) -> None:
    """Print one scenario's table: judgments to the balanced width, coverage and bias, with bootstrap 95% intervals."""
    reps = np.arange(a.reps)
    # per policy, replication and checkpoint: the mean CI width over the loss effects
    width = {pol: g.groupby(["rep", "participants"])["width"].mean().unstack().to_numpy()
             for pol, g in df.groupby("policy")}
    judgments = df[df["policy"] == "balanced"].groupby("participants")["judgments"].mean().to_numpy()
    final = df[df["participants"] == df["participants"].max()]
    cov = {pol: g.groupby("rep")["covered"].mean().to_numpy() for pol, g in final.groupby("policy")}
    bias = {pol: g.groupby("rep")["error"].mean().to_numpy() for pol, g in final.groupby("policy")}

    def ratios(sel: np.ndarray) -> dict[str, tuple[float, bool]]:
        target = width["balanced"][sel].mean(axis=0)[-1]
        return {pol: needed(judgments, width[pol][sel].mean(axis=0), target) for pol in POLICIES}

    point = ratios(reps)
    rng = np.random.default_rng(a.seed)
    draws = [rng.choice(reps, len(reps)) for _ in range(a.boot)]  # replications resampled, policies kept paired
    boot = [ratios(d) for d in draws]
    n_bal = judgments[-1]
    print(f"\nscenario {name} ({sc.note}; {sc.images} images, sd_image {sc.sd_image}, sd_participant "
          f"{sc.sd_participant}, lapse {sc.lapse}); {a.reps} replications, {a.participants} participants × "
          f"{int(n_bal / a.participants)} trials; target: balanced mean CI width {width['balanced'].mean(axis=0)[-1]:.3f} "
          f"at {n_bal:.0f} judgments; [bootstrap 95% over replications]")
    print(f"best fixed allocation over pairs (Fisher information, no random effects): {oracle_ratio(sc) - 1:+.0%} "
          f"judgments vs balanced")
    print("| policy | judgments to target | vs balanced | coverage at full budget | bias away from 0 | mean width at full |")
    print("|---|--:|--:|--:|--:|--:|")
    for pol in POLICIES:
        n_need, reached = point[pol]
        lo, hi = np.percentile([b[pol][0] / n_bal - 1 for b in boot], [2.5, 97.5])
        c_lo, c_hi = np.percentile([cov[pol][d].mean() for d in draws], [2.5, 97.5])
        b_lo, b_hi = np.percentile([bias[pol][d].mean() for d in draws], [2.5, 97.5])
        print(f"| {pol} | {'' if reached else '≥ '}{n_need:.0f} | {n_need / n_bal - 1:+.0%} [{lo:+.0%}, {hi:+.0%}] | "
              f"{cov[pol].mean():.3f} [{c_lo:.3f}, {c_hi:.3f}] | {bias[pol].mean():+.3f} [{b_lo:+.3f}, {b_hi:+.3f}] | "
              f"{width[pol][:, -1].mean():.3f} |")
    print("\nmean CI width by judgments (" + ", ".join(f"{int(j)}" for j in judgments) + "):")
    for pol in POLICIES:
        print(f"  {pol:<9} " + " ".join(f"{w:.3f}" for w in width[pol].mean(axis=0)))
    print(f"two-way cluster variance not positive, one-way used: {final['one_way'].mean():.1%} of final fits; "
          f"all checkpoints {df['one_way'].mean():.1%}")
    per = final.groupby(["policy", "effect"]).agg(width=("width", "mean"), cov=("covered", "mean"),
                                                   bias=("error", "mean")).unstack("policy")
    print("per effect at the full budget (mean CI width / coverage / bias away from 0):")
    for eff, r in per.iterrows():
        cells = "  ".join(f"{pol}: {r[('width', pol)]:.3f}/{r[('cov', pol)]:.2f}/{r[('bias', pol)]:+.3f}" for pol in POLICIES)
        print(f"  {eff[0] + ' ' + eff[1]:<22} {cells}")


def main(argv: list[str] | None = None) -> int:
    """Print, per scenario, judgments to the balanced design's CI width, coverage and bias of every policy."""
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="default,wide,asap", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    p.add_argument("--reps", type=int, default=40, help="replications per policy and scenario")
    p.add_argument("--participants", type=int, default=60, help="participants at the full budget")
    p.add_argument("--checkpoints", type=int, default=6, help="evenly spaced fits up to the full budget")
    p.add_argument("--batch", type=int, default=8, help="trials chosen per request (the server's default)")
    p.add_argument("--concurrent", type=int, default=5, help="participants answering at the same time")
    p.add_argument("--timing-answers", type=int, default=10000)
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the replications")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    unknown = [n for n in a.scenarios.split(",") if n not in SCENARIOS]
    if unknown:
        p.error(f"--scenarios: {unknown[0]!r} is not one of {', '.join(SCENARIOS)}")
    import pandas as pd

    t_start = time.perf_counter()
    step = max(1, a.participants // a.checkpoints)
    checkpoints = list(range(step, a.participants + 1, step))
    if checkpoints[-1] != a.participants:
        checkpoints.append(a.participants)
    with threadpool_limits(limits=1):
        print(timing(a))
        for name in a.scenarios.split(","):
            sc = SCENARIOS[name]
            rows = [r for pol in POLICIES for rep in range(a.reps) for r in replicate(sc, pol, rep, checkpoints, a)]
            report(pd.DataFrame(rows), name, sc, a)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
