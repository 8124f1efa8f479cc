"""Active choice of the next pairwise trials for one participant: expected information gain about the loss scale.

In the spirit of ASAP (Mikhailiuk et al. 2020): keep a Gaussian posterior over the scale values of the losses
and show the comparisons whose outcome is expected to tell most about them.

Working model (Thurstone case V with guessing, on the population scale):
- a group is one (kind, arch): triplets and no-reference pairs ask different questions, and every architecture
  has its own losses, so each group has its own scores s_g,l (one per loss shown in that group);
- a judgment of pool row r (group g, losses A:B as in the design's `pair`, image m) prefers A with probability
  λ/2 + (1 − λ)·Φ(s_g,A − s_g,B), λ the lapse rate (a random answer);
- image and participant effects are nuisance: judgments of one (pair, image) share an effect of variance
  sd_image², a participant's judgments of one pair share one of variance sd_participant². In the
  linearised (Laplace) model, n judgments sharing an effect of variance c carry n·w / (1 + n·w·c) of
  information about the pair's difference (w the Fisher information of one judgment), so a further judgment
  of a much-judged image, or of a pair this participant already judged often, is worth less.

Each call (nothing is carried between calls, so the choice depends only on seed and inputs):
1. counts wins per pair and judgments per (pair, image) from `answered` (all sessions);
2. fits the scores by MAP (Fisher scoring on the pooled counts, prior N(0, prior_sd²) per score) and builds the
   posterior covariance Σ from the discounted information above (a Laplace approximation);
3. picks n rows greedily: the expected information gain of one judgment on pair x with effective information
   Δ is ½·log(1 + Δ·xᵀΣx) (the mutual information of outcome and scores in the linearised model); after each
   pick Σ gets the rank-one update of having observed it (outcome-free in this model, so no refit per item)
   and the counts grow, which is what spreads a batch over pairs and images. In a linear-Gaussian model the
   log-det gain of a set is monotone submodular, so greedy picks come within (1 − 1/e) of the best batch of
   that size (Krause & Guestrin); the count discounts are an approximation on top. ASAP builds a batch from a
   minimum spanning tree instead; the greedy update needs no tree. ASAP's gain is the exact expectation under
   the probit likelihood; here it is the linearised one (the same to first order, and vectorised over pairs).

`objective="variance"` replaces the gain by the drop in the summed posterior variance of the design's pair
differences (A-optimality; what a "CI width on each loss effect" target asks for) with the same batch update.

Rules: a pool index in `seen` is never returned; a comparison (kind, arch, pair, image) the participant has
already had in either side arrangement is given only when no fresh one is left (so the call can always return
min(n, pool − seen) indices, as the server expects). Within a comparison the side arrangement shown less often
so far is taken. Ties go to a seeded order of the comparisons.

Hand-written rather than choix: choix fits Bradley–Terry point estimates without a posterior and without
lapses or random-effect discounts; the few lines of Fisher scoring here give the MAP and its curvature, which
is what the gain needs.
"""
from __future__ import annotations

import numpy as np

from percept.contracts import InputError
from percept.contracts import kinds as kinds_c

OBJECTIVES = ("eig", "variance")
FALLBACK = 1e6  # score penalty of a comparison this participant already had: used only when nothing fresh is left


class ActivePolicy:
    """Chooses pool rows (main-block pairwise design rows) that maximise the expected information about the loss scale."""

    def __init__(self, pool: list[dict], seed: int, *, sd_image: float = 0.5, sd_participant: float = 0.5,
                 lapse: float = 0.04, prior_sd: float = 1.0, objective: str = "eig") -> None:
        """Index the pool into groups (kind, arch), pairs and comparisons (pair, image); refuse rows that are not pairwise."""
        if objective not in OBJECTIVES:
            raise InputError(f"active policy: objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        for name, val, low in (("sd_image", sd_image, 0.0), ("sd_participant", sd_participant, 0.0), ("prior_sd", prior_sd, 1e-9)):
            if not (np.isfinite(val) and val >= low):
                raise InputError(f"active policy: {name} must be a finite number ≥ {low:g}, got {val}")
        if not 0.0 <= lapse < 1.0:
            raise InputError(f"active policy: lapse must be in [0, 1), got {lapse}")
        if not pool:
            raise InputError(f"active policy: the pool is empty; it needs main trials of a pairwise kind "
                             f"({', '.join(kinds_c.of_family('pairwise'))})")
        self.objective = objective
        self.c_image, self.c_part = sd_image ** 2, sd_participant ** 2
        self.lapse, self.prior_prec = float(lapse), 1.0 / prior_sd ** 2
        self._index(pool)
        rng = np.random.default_rng(seed)
        # A seeded order of comparisons breaks ties (argmax takes the first maximum), and one of rows within each.
        self.cell_rank = rng.permutation(self.n_cells)
        self.row_rank = rng.permutation(len(pool))

    # --- indexing -----------------------------------------------------------------------------
    def _index(self, pool: list[dict]) -> None:
        kinds = set(kinds_c.of_family("pairwise"))
        groups: dict[tuple, int] = {}
        params: dict[tuple, int] = {}  # (group, loss) -> score index
        pairs: dict[tuple, int] = {}  # (group, loss_a, loss_b) -> pair index
        cells: dict[tuple, int] = {}  # (pair, image) -> comparison index
        self.lookup: dict[tuple, tuple[int, bool]] = {}  # (kind, arch, image, left_loss, right_loss) -> (cell, A left)
        row_cell, row_left, pair_ab = [], [], []
        for i, row in enumerate(pool):
            kind = row.get("kind")
            if kind not in kinds:
                raise InputError(f"active policy: pool row {i}, column 'kind': {kind!r} is not a pairwise kind "
                                 f"({', '.join(sorted(kinds))}); the pool holds main-block pairwise rows only")
            try:
                arch, image, ll, rl = row["arch"], row["image_id"], row["left_loss"], row["right_loss"]
                pair = row.get("pair") or ":".join(sorted((ll, rl)))
            except KeyError as exc:
                raise InputError(f"active policy: pool row {i} lacks column {exc.args[0]!r}") from None
            a, _, b = pair.partition(":")
            if {a, b} != {ll, rl} or a == b:
                raise InputError(f"active policy: pool row {i}: shown losses {ll!r}, {rl!r} do not match pair {pair!r}")
            g = groups.setdefault((kind, arch), len(groups))
            for loss in (a, b):
                params.setdefault((g, loss), len(params))
            p = pairs.setdefault((g, a, b), len(pairs))
            if p == len(pair_ab):
                pair_ab.append((params[(g, a)], params[(g, b)]))
            c = cells.setdefault((p, image), len(cells))
            a_left = ll == a
            self.lookup[(kind, arch, image, ll, rl)] = (c, a_left)
            row_cell.append(c)
            row_left.append(a_left)
        self.n_params, self.n_pairs, self.n_cells = len(params), len(pairs), len(cells)
        group_of = {g: key for key, g in groups.items()}
        self.param_names = [(*group_of[g], loss) for (g, loss) in params]  # (kind, arch, loss) per score
        self.pool_size = len(pool)
        self.row_cell = np.asarray(row_cell)
        self.row_left = np.asarray(row_left)
        self.cell_pair = np.zeros(self.n_cells, dtype=int)
        for (p, _), c in cells.items():
            self.cell_pair[c] = p
        # X: one row per pair, +1 at loss A's score and −1 at loss B's (the pair's difference s_A − s_B).
        self.X = np.zeros((self.n_pairs, self.n_params))
        for p, (ia, ib) in enumerate(pair_ab):
            self.X[p, ia], self.X[p, ib] = 1.0, -1.0
        self.cell_rows = [[] for _ in range(self.n_cells)]
        for i, c in enumerate(row_cell):
            self.cell_rows[c].append(i)

    # --- model --------------------------------------------------------------------------------
    def _prob(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(A preferred) and its derivative for score differences d (probit with lapses)."""
        from scipy.special import ndtr

        return self.lapse / 2 + (1 - self.lapse) * ndtr(d), (1 - self.lapse) * np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi)

    def fit(self, wins: np.ndarray, n: np.ndarray, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """MAP scores and the Fisher information per judgment of each pair, from pooled wins of A out of n per pair."""
        mu = np.zeros(self.n_params)
        for _ in range(iters):
            d = self.X @ mu
            p, dp = self._prob(d)
            p = np.clip(p, 1e-12, 1 - 1e-12)
            w = dp ** 2 / (p * (1 - p))
            grad = self.X.T @ ((wins - n * p) / (p * (1 - p)) * dp) - self.prior_prec * mu
            info = (self.X.T * (n * w)) @ self.X + self.prior_prec * np.eye(self.n_params)
            step = np.linalg.solve(info, grad)
            mu += step
            if np.max(np.abs(step)) < 1e-8:
                break
        p, dp = self._prob(self.X @ mu)
        return mu, dp ** 2 / (np.clip(p * (1 - p), 1e-12, None))

    def counts(self, answered: list[tuple[dict, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Wins of A and judgments per pair, judgments and A-on-the-left judgments per comparison, from (row, choice)."""
        cell_n = np.zeros(self.n_cells)
        cell_left = np.zeros(self.n_cells)
        cell_win = np.zeros(self.n_cells)
        for j, item in enumerate(answered):
            try:
                row, choice = item
                key = (row["kind"], row["arch"], row["image_id"], row["left_loss"], row["right_loss"])
                left_run, right_run = row["left_run"], row["right_run"]
            except (KeyError, TypeError, ValueError):
                raise InputError(f"active policy: answered item {j} is not (design row, chosen run)") from None
            hit = self.lookup.get(key)
            if hit is None:
                raise InputError(f"active policy: answered item {j}: {key[0]} {key[1]} image {key[2]!r} "
                                 f"{key[3]}:{key[4]} is not a comparison of the pool")
            if choice not in (left_run, right_run):
                raise InputError(f"active policy: answered item {j}: choice {choice!r} was not shown "
                                 f"({left_run!r} or {right_run!r})")
            c, a_left = hit
            cell_n[c] += 1
            cell_left[c] += a_left
            cell_win[c] += (choice == left_run) == a_left
        wins = np.bincount(self.cell_pair, weights=cell_win, minlength=self.n_pairs)
        n = np.bincount(self.cell_pair, weights=cell_n, minlength=self.n_pairs)
        return wins, n, cell_n, cell_left

    def posterior(self, answered: list[tuple[dict, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(scores, covariance, Fisher information per judgment of each pair, judgments and A-left judgments per comparison)."""
        wins, n, cell_n, cell_left = self.counts(answered)
        mu, w = self.fit(wins, n)
        wc = w[self.cell_pair]
        # judgments sharing an image effect: n·w / (1 + n·w·c) of information about the pair's difference
        info_pair = np.bincount(self.cell_pair, weights=cell_n * wc / (1.0 + cell_n * wc * self.c_image),
                                minlength=self.n_pairs)
        prec = (self.X.T * info_pair) @ self.X + self.prior_prec * np.eye(self.n_params)
        return mu, np.linalg.inv(prec), w, cell_n, cell_left

    def scores(self, answered: list[tuple[dict, str]]) -> dict[tuple[str, str, str], tuple[float, float]]:
        """{(kind, arch, loss): (posterior mean, posterior SD)} of the working model's scale values."""
        mu, cov, *_ = self.posterior(answered)
        return {name: (float(m), float(np.sqrt(cov[i, i]))) for i, (name, m) in enumerate(zip(self.param_names, mu))}

    # --- choice -------------------------------------------------------------------------------
    def choose(self, answered: list[tuple[dict, str]], seen: set[int], n: int) -> list[int]:
        """n pool indices (fewer only when the pool runs out) for one participant, by greedy expected information gain."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"active policy: n must be a whole number ≥ 0, got {n!r}")
        seen = set(seen)
        bad = [i for i in seen if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.pool_size]
        if bad:
            raise InputError(f"active policy: seen index {bad[0]!r} is not a pool index (0..{self.pool_size - 1})")
        _, cov, w, cell_n, cell_left = self.posterior(answered)
        used = np.zeros(self.pool_size, dtype=bool)
        used[list(seen)] = True
        left = np.bincount(self.row_cell[~used], minlength=self.n_cells)  # rows still available per comparison
        had = np.bincount(self.row_cell[used], minlength=self.n_cells) > 0  # comparisons this participant had
        n_pp = np.bincount(self.cell_pair[had], minlength=self.n_pairs).astype(float)  # their comparisons per pair
        picks: list[int] = []
        for _ in range(min(int(n), int(left.sum()))):
            gain, delta = self._gains(cov, w[self.cell_pair], cell_n, n_pp[self.cell_pair])
            c = self._best(np.where(left > 0, gain - FALLBACK * had, -np.inf))
            row = self._row_of(c, used, cell_left[c] * 2 <= cell_n[c])
            picks.append(row)
            used[row], left[c], had[c] = True, left[c] - 1, True
            # the rank-one update of having observed comparison c (outcome-free in the linearised model)
            x = self.X[self.cell_pair[c]]
            sx = cov @ x
            cov = cov - np.outer(sx, sx) * (delta[c] / (1.0 + delta[c] * (x @ sx)))
            cell_n[c] += 1
            cell_left[c] += self.row_left[row]
            n_pp[self.cell_pair[c]] += 1
        return picks

    def _gains(self, cov: np.ndarray, wc: np.ndarray, cell_n: np.ndarray, n_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(gain, effective information Δ) of one more judgment of each comparison."""
        a_img, a_part = wc * self.c_image, wc * self.c_part
        # the increment of n·w / (1 + n·w·c) from n to n + 1, for the image and for this participant's effect
        delta = (wc / ((1 + cell_n * a_img) * (1 + (cell_n + 1) * a_img))
                 / ((1 + n_part * a_part) * (1 + (n_part + 1) * a_part)))
        sxx = self.X @ cov @ self.X.T  # covariances of the pairs' differences
        v = np.diag(sxx)[self.cell_pair]
        if self.objective == "eig":
            return 0.5 * np.log1p(delta * v), delta
        if self.objective == "variance":
            return delta * np.sum(sxx ** 2, axis=0)[self.cell_pair] / (1 + delta * v), delta
        raise InputError(f"active policy: objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")

    def _best(self, score: np.ndarray) -> int:
        """The comparison with the highest score; ties to the seeded order."""
        best = np.flatnonzero(score == score.max())
        return int(best[np.argmin(self.cell_rank[best])])

    def _row_of(self, c: int, used: np.ndarray, want_left: bool) -> int:
        """An available row of comparison c, with A on the left when `want_left` (and such a row is free)."""
        free = [r for r in self.cell_rows[c] if not used[r]]
        side = [r for r in free if bool(self.row_left[r]) == want_left] or free
        return min(side, key=lambda r: self.row_rank[r])
