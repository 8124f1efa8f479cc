"""Coverage of the nominal 95% intervals of the preference estimators; run `python benchmarks/coverage.py`.

Simulates studies from the crossed random-intercept logit of analysis/power.py (every participant
judges every image once, sides alternating) and counts how often each estimator's 95% interval
holds its own truth: the subject-specific log-odds for statsmodels' variational-Bayes mixed model,
the population-averaged log-odds for the two-way cluster-robust logit (the main test).
"""
from __future__ import annotations

import argparse
import warnings


def main(argv: list[str] | None = None) -> int:
    """Print the coverage of both estimators over --sims simulated studies."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from analysis import preferences as pr
    from analysis.power import PowerSetting, marginal_proportion, simulate_trials

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=100)
    p.add_argument("--participants", type=int, default=20)
    p.add_argument("--images", type=int, default=30)
    p.add_argument("--prob", type=float, default=0.6, help="subject-specific P(chose A) at u = v = 0")
    p.add_argument("--sd-participant", type=float, default=0.5)
    p.add_argument("--sd-image", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=1000)
    a = p.parse_args(argv)
    beta = float(np.log(a.prob / (1 - a.prob)))
    pa = marginal_proportion(beta, float(np.hypot(a.sd_participant, a.sd_image)))
    truth_pa = float(np.log(pa / (1 - pa)))
    vb = cl = 0
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VB convergence chatter; the counts are what matters here
        for s in range(a.sims):
            t = simulate_trials(a.participants, a.images, PowerSetting(beta, a.sd_participant, a.sd_image),
                                np.random.default_rng(a.seed + s))
            f, c = pr.fit_bayes_mixed(t), pr.fit_cluster_logit(t)
            vb += f.ci_low < beta < f.ci_high
            cl += c.ci_low < truth_pa < c.ci_high
    print(f"sims={a.sims} participants={a.participants} images={a.images} beta={beta:.3f} "
          f"sd=({a.sd_participant}, {a.sd_image})")
    print(f"bayes_mixed_vb 95% interval coverage: {vb / a.sims:.2f}")
    print(f"cluster_logit  95% interval coverage: {cl / a.sims:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
