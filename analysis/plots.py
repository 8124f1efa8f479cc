"""Figures as PNG files; each function takes the tidy tables the analysis wrote and returns the path.

matplotlib's object API (Figure + Agg canvas) is used directly, so no GUI backend or pyplot
global state is touched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLOURS = {"mse": "#4c72b0", "mae": "#55a868", "ms_ssim": "#c44e52", "ssim": "#dd8452", "psnr": "#8172b3"}
DPI = 110


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _err(y, low, high) -> np.ndarray:
    """Error-bar lengths (2, N) from interval ends; rounding can put an end a hair inside y, so clip at 0."""
    y = np.asarray(y, dtype=float)
    err = np.vstack([y - np.asarray(low, dtype=float), np.asarray(high, dtype=float) - y])
    return np.clip(np.nan_to_num(err), 0.0, None)


def _colour(name: str, i: int = 0) -> str:
    return COLOURS.get(name, f"C{i % 10}")


def preference_bars(pairwise: pd.DataFrame, path: Path) -> Path | None:
    """Proportion preferring loss A per (arch, pair) with Wilson 95% CIs and the 50% line."""
    if pairwise.empty:
        return None
    labels = [f"{r.arch}\n{r.loss_a} vs {r.loss_b}" for r in pairwise.itertuples()]
    y = pairwise["prop_a"].to_numpy()
    err = _err(y, pairwise["ci_low"], pairwise["ci_high"])
    fig = _figure(max(4.5, 1.1 * len(labels) + 1.5), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    ax.bar(x, y, color=[_colour(a, i) for i, a in enumerate(pairwise["loss_a"])], alpha=0.85)
    ax.errorbar(x, y, yerr=err, fmt="none", ecolor="black", capsize=4)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    for xi, r in zip(x, pairwise.itertuples()):
        ax.text(xi, 0.02, f"n={r.n}", ha="center", va="bottom", fontsize=8, color="white")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("proportion choosing loss A")
    ax.set_title("Triplets: preference for loss A (Wilson 95% CI)")
    return _save(fig, path)


def per_image_histogram(per_image: pd.DataFrame, path: Path) -> Path | None:
    """Histogram of the per-image proportion preferring loss A, one panel per (arch, pair)."""
    if per_image.empty:
        return None
    groups = list(per_image.groupby(["arch", "pair"], sort=True))
    cols = min(3, len(groups))
    rows = int(np.ceil(len(groups) / cols))
    fig = _figure(3.4 * cols, 2.6 * rows)
    bins = np.linspace(0, 1, 11)
    for i, ((arch, pair), g) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        a = pair.split(":")[0]
        ax.hist(g["prop_a"], bins=bins, color=_colour(a, i), edgecolor="white")
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        sig = int((g["p_holm"] < 0.05).sum())
        ax.set_title(f"{arch}: {pair.replace(':', ' vs ')}\n{len(g)} images, {sig} Holm-significant", fontsize=9)
        ax.set_xlabel(f"proportion preferring {a}", fontsize=8)
        ax.set_ylabel("images", fontsize=8)
    return _save(fig, path)


def rank_distribution_plot(dist: pd.DataFrame, path: Path) -> Path | None:
    """Stacked bars of how often each loss was ranked 1st, 2nd, 3rd, per architecture (paper Fig. 2b)."""
    if dist.empty:
        return None
    archs = sorted(dist["arch"].unique())
    fig = _figure(3.3 * len(archs) + 0.5, 3.2)
    ranks = sorted(dist["rank"].unique())
    shades = ["#1b7837", "#a6dba0", "#d9d9d9", "#c2a5cf", "#762a83"]
    for i, arch in enumerate(archs):
        ax = fig.add_subplot(1, len(archs), i + 1)
        d = dist[dist["arch"] == arch].pivot(index="loss", columns="rank", values="proportion").reindex(columns=ranks)
        bottom = np.zeros(len(d))
        for j, rk in enumerate(ranks):
            ax.bar(d.index, d[rk], bottom=bottom, color=shades[j % len(shades)], label=f"rank {rk}")
            bottom += d[rk].to_numpy()
        ax.set_title(f"{arch}", fontsize=10)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelsize=8)
        if i == 0:
            ax.set_ylabel("proportion of trials")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle("Rankings: distribution of ranks per loss (1 = best)", fontsize=10)
    return _save(fig, path)


def scale_plot(scale: pd.DataFrame, path: Path) -> Path | None:
    """Scale values (log-worth, mean 0) with participant-bootstrap 95% CIs, one panel per model."""
    if scale.empty:
        return None
    models = list(dict.fromkeys(scale["model"]))
    fig = _figure(4.2 * len(models), 3.2)
    for i, model in enumerate(models):
        ax = fig.add_subplot(1, len(models), i + 1)
        s = scale[scale["model"] == model]
        archs = list(dict.fromkeys(s["arch"]))
        items = sorted(s["item"].unique())
        width = 0.8 / len(archs)
        for j, arch in enumerate(archs):
            a = s[s["arch"] == arch].set_index("item").reindex(items)
            x = np.arange(len(items)) + (j - (len(archs) - 1) / 2) * width
            err = _err(a["score"], a["ci_low"], a["ci_high"])
            ax.errorbar(x, a["score"], yerr=err, fmt="o", capsize=3, label=arch, color=f"C{j}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(items)), items, fontsize=8)
        ax.set_ylabel("log-worth (mean 0)")
        ax.set_title(model.replace("_", "–").title().replace("–", "–"), fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)


def agreement_plot(agreement: pd.DataFrame, path: Path) -> Path | None:
    """2AFC agreement of each metric with people (bars per architecture), with the human ceiling, per source."""
    if agreement.empty:
        return None
    sources = list(dict.fromkeys(agreement["source"]))
    fig = _figure(4.4 * len(sources) + 1.2, 3.4)
    for i, source in enumerate(sources):
        ax = fig.add_subplot(1, len(sources), i + 1)
        g = agreement[agreement["source"] == source]
        metrics = list(dict.fromkeys(g["metric"]))
        archs = list(dict.fromkeys(g["arch"]))
        width = 0.8 / len(archs)
        for j, arch in enumerate(archs):
            a = g[g["arch"] == arch].set_index("metric").reindex(metrics)
            x = np.arange(len(metrics)) + (j - (len(archs) - 1) / 2) * width
            y = a["agreement"].to_numpy()
            ax.bar(x, y, width=width * 0.95, color=f"C{j}", label=arch)
            ax.errorbar(x, y, yerr=_err(y, a["ci_low"], a["ci_high"]), fmt="none", ecolor="black",
                        capsize=2, lw=0.8)
        pooled = g[g["arch"] == "all"] if (g["arch"] == "all").any() else g
        # the unbiased ceiling (two different people agree) when any unit has ≥ 2 judgments; else BAPPS's biased one
        unbiased = pooled["human_pairwise"].iloc[0]
        if np.isfinite(unbiased):
            ax.axhline(unbiased, color="black", ls="--", lw=1, label="human ceiling, unbiased (pooled)")
        else:
            ax.axhline(pooled["human_ceiling"].iloc[0], color="black", ls=":", lw=1,
                       label="human ceiling, BAPPS (biased up)")
        ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
        ax.set_xticks(np.arange(len(metrics)), metrics, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{source} judgments", fontsize=10)
        ax.set_ylabel("2AFC agreement with people")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return _save(fig, path)


def classification_plot(table: pd.DataFrame, path: Path) -> Path | None:
    """Test accuracy per run with 95% CIs (clustered by source photograph when images share one), baselines, chance."""
    codes = table[table["kind"] == "codes"]
    if codes.empty:
        return None
    fig = _figure(max(4.5, 0.55 * len(codes) + 2.5), 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(codes))
    y = codes["accuracy"].to_numpy()
    ax.bar(x, y, color=[_colour(l, i) for i, l in enumerate(codes["loss"])])
    ax.errorbar(x, y, yerr=_err(y, codes["ci_low"], codes["ci_high"]), fmt="none", ecolor="black", capsize=3)
    styles = {"pixels": ("black", "-", "raw pixels"), "chance_majority": ("grey", "--", "majority class"),
              "chance_uniform": ("grey", ":", "1/K")}
    for kind, (colour, ls, label) in styles.items():
        row = table[table["kind"] == kind]
        if len(row) and np.isfinite(row["accuracy"].iloc[0]):
            ax.axhline(row["accuracy"].iloc[0], color=colour, ls=ls, lw=1.2, label=label)
    ax.set_xticks(x, codes["run"], fontsize=7, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Linear classification of codes (95% CI: {codes['ci_method'].iloc[0]})" if "ci_method" in codes
                 else "Linear classification of codes (95% CI)", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def power_plot(power: pd.DataFrame, path: Path) -> Path | None:
    """Power against participants, one line per number of images, with Monte Carlo 95% CIs."""
    if power.empty:
        return None
    fig = _figure(4.8, 3.4)
    ax = fig.add_subplot()
    # real-design power has one line per (arch, pair); the hypothetical design one per number of images
    by_pair = "pair" in power.columns and power["pair"].notna().all()
    keys = ["arch", "pair"] if by_pair else ["images"]
    for i, (key, g) in enumerate(power.groupby(keys)):
        g = g.sort_values("participants")
        label = f"{key[0]} {key[1]} ({g['images'].iloc[0]} images)" if by_pair else f"{key[0]} images"
        ax.errorbar(g["participants"], g["power"], yerr=_err(g["power"], g["ci_low"], g["ci_high"]),
                    marker="o", capsize=3, label=label, color=f"C{i}")
    ax.axhline(0.8, color="grey", ls="--", lw=1)
    ax.set_xlabel("participants")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Power of the {power['test'].iloc[0]} test (α = {power['alpha'].iloc[0]:g})", fontsize=10)
    return _save(fig, path)


def example_grid(examples: list[dict], path: Path) -> Path | None:
    """Rows of (left, original, right) images with what people chose; each example holds arrays and captions."""
    if not examples:
        return None
    fig = _figure(6.6, 2.0 * len(examples) + 0.3)
    for r, ex in enumerate(examples):
        for c, (key, title) in enumerate((("left", ex["left_title"]), ("original", "original"),
                                          ("right", ex["right_title"]))):
            ax = fig.add_subplot(len(examples), 3, 3 * r + c + 1)
            ax.imshow(ex[key], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            if c == 1:
                ax.set_xlabel(ex["caption"], fontsize=8)
    return _save(fig, path)
