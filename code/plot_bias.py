"""F1 (docs/method.md §8): staleness bias of the surrogate gradient against S·η, log-log, by S.

The points are exactly those that stalegrpo.fits.laws fitted (one per run with S ≥ 1), the line is the
fitted power law with its bootstrap 95% CI on the slope, and a dotted guide shows slope 1 (the
claim: bias = O(S·η) at small S·η). Left: the exact testbed (closed-form bias). Right, when there
are language-model runs: the §3.2 probe of the LM bias grid (stalegrpo.fits.lm.lm_bias_grid; per
run, the root of the mean unbiased bias² over its probes at lag S before collapse; η is Adam's
step size).

    python code/plot_bias.py --exact-steps results/tables/exact/main/steps.parquet \
        --exact-runs results/tables/exact/main/runs.parquet --exact-fits results/fits/exact/main.json \
        --lm-steps results/tables/lm/steps.parquet --lm-runs results/tables/lm/runs.parquet \
        --lm-fits results/fits/lm.json --pdf figures/bias.pdf --png figures/bias.png
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

import figures_common as fc
from stalegrpo.fits import laws, lm, verdicts


def bias_frame(steps: pd.DataFrame, runs: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, str]:
    """The (S·η, bias, S) points that stalegrpo.fits.laws fitted, one per run with S ≥ 1."""
    parts, source = [], "no runs"
    for s_value, group in runs[runs["S"] >= 1].groupby("S") if len(runs) else []:
        x, y, source = laws.bias_points(steps, group, options)  # the very points the fit used
        parts.append(pd.DataFrame({"S·η": x, "bias": y, "S": str(int(s_value))}))
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["S·η", "bias", "S"])
    usable = (points["S·η"] > 0) & (points["bias"] > 0) & np.isfinite(points["bias"].astype(float))
    return points[usable], source


def draw(ax, points: pd.DataFrame, fit: dict, ylabel: str, title: str) -> None:
    """Scatter by S, the fitted power law with its CI, and a slope-1 guide through the fit's middle."""
    s_values = sorted(points["S"].unique(), key=int)
    sns.scatterplot(
        data=points,
        x="S·η",
        y="bias",
        hue="S",
        style="S",
        hue_order=s_values,
        style_order=s_values,
        palette=fc.palette(len(s_values)),
        markers=fc.MARKERS[: len(s_values)],
        s=42,
        edgecolor="black",
        linewidth=0.4,
        ax=ax,
    )
    ax.set(xscale="log", yscale="log", xlabel="S·η (max lag × learning rate)", ylabel=ylabel)
    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow decade would crowd minor labels
    grid = np.geomspace(points["S·η"].min(), points["S·η"].max(), 50)
    if fc.fit_ok(fit, "slope", "intercept", "ci_low", "ci_high"):
        ax.plot(
            grid,
            np.exp(fit["intercept"]) * grid ** fit["slope"],
            color="black",
            lw=1.4,
            label=f"fit: slope {fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}] (95% CI)",
        )
        anchor = np.exp(fit["intercept"]) * np.sqrt(grid[0] * grid[-1]) ** fit["slope"]
        ax.plot(grid, anchor * grid / np.sqrt(grid[0] * grid[-1]), color="0.4", ls=":", lw=1.2, label="slope 1 (claim)")
    else:
        note = f"no fit: {fit.get('message', fit.get('status', 'missing'))}"
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=8)
    ax.legend(title="S", fontsize=7, title_fontsize=8, loc="lower right", ncols=2)
    ax.set_title(title, fontsize=8)


def _squares_note(fit: dict) -> str:
    """The fit on the bias² readings themselves (readings ≤ 0 included), which the LM verdicts rest
    on, with its two verdicts (the bound, the first-order law), for the LM panel's title."""
    squares = fit.get("bias_sq_slope") or {}
    if squares.get("status") != "ok":
        return ""
    return (
        f"\nfit on bias² itself, all {squares['n']} runs ({squares['n_nonpositive']} ≤ 0): "
        + verdicts.title_note(fit, "bias_sq_slope", sep="\n")
    )


def main() -> None:
    args = fc.parse_args(__doc__, ("exact_steps", "exact_runs", "exact_fits", "lm_steps", "lm_runs", "lm_fits"))
    fc.setup()
    steps, runs = fc.exact_tables(args.exact_steps, args.exact_runs)
    summary = fc.read_fits(args.exact_fits)
    points, source = bias_frame(steps, runs, summary.get("options", {}))
    if not len(points):
        fc.no_data(
            args,
            "F1: staleness bias",
            f"No bias measurements in experiment '{args.experiment}' yet ({source}); run the exact testbed.",
        )
        return
    lm_steps, lm_runs = fc.lm_tables(args.lm_steps, args.lm_runs)
    lm_fit = fc.read_fits(args.lm_fits)
    lm_points = pd.DataFrame()
    if len(lm_runs):
        bias_grid = lm.lm_bias_grid(lm_runs)
        lm_points, _ = bias_frame(lm_steps, lm.lm_run_bias(lm_steps, bias_grid), lm_fit.get("options", {}))

    fig, axes = plt.subplots(1, 2 if len(lm_points) else 1, figsize=(10.4 if len(lm_points) else 5.2, 3.9), squeeze=False)
    draw(
        axes[0, 0],
        points,
        summary.get("bias_slope", {}),
        "bias ‖E g(θ; μ_stale) − E g(θ; π_θ)‖",
        f"exact testbed, {args.experiment} ({source})\nlog-log fit: "
        + verdicts.title_note(summary, "bias_slope", sep="\n"),
    )
    if len(lm_points):
        # the log-log line uses the runs with bias² > 0 only; the fit on the squares uses them all
        n = lm_fit.get("bias_slope", {}).get("n", len(lm_points))
        total = (lm_fit.get("bias_sq_slope") or {}).get("n", n)
        draw(
            axes[0, 1],
            lm_points,
            lm_fit.get("bias_slope", {}),
            "probe bias (root of mean unbiased bias²)",
            f"language model, §3.2 probe (η = Adam step size)\nlog-log line: the {n} of {total} runs with "
            "bias² > 0" + _squares_note(lm_fit),
        )
    fig.suptitle("F1: surrogate-gradient bias vs S·η", fontsize=9)
    fc.save(fig, args)


if __name__ == "__main__":
    main()
