"""F3 (docs/method.md §8): the stability frontier η*(S) at several horizons T, with the fit
η* = min(a/S, b/T) and the regime boundaries S* = a·T/b.

η* per (S, T, seed) comes from stalegrpo.fits.frontier (the largest stable η, interpolated geometrically
to the first collapsing one; shorter horizons by truncating the runs). Markers are the median
over seeds, bars the range; a hollow marker is only a bound (no η collapsed: η* ≥ the largest η;
the smallest η collapsed: η* ≤ the smallest η). Lines are the fit, vertical dotted lines S*.
Left: the exact testbed; right, when there are language-model runs: the LM collapse grid
(stalegrpo.fits.lm.lm_claim_grid).

    python code/plot_frontier.py --exact-runs results/tables/exact/main/runs.parquet \
        --exact-fits results/fits/exact/main.json --lm-runs results/tables/lm/runs.parquet \
        --lm-fits results/fits/lm.json \
        --pdf figures/frontier.pdf --png figures/frontier.png
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import figures_common as fc
from stalegrpo.fits.frontier import EXACT


def draw(ax, table: pd.DataFrame, frontier: dict, title: str) -> None:
    """η*(S) per horizon (median, range, bounds hollow), the fitted min(a/S, b/T) and S*."""
    fitted = fc.fit_ok(frontier, "a", "b")
    horizons = sorted(table["T"].unique())
    colours = fc.palette(len(horizons))
    s_floor = 0.5  # S = 0 drawn here on the log axis
    for k, horizon in enumerate(horizons):
        sub = table[table["T"] == horizon].sort_values("S")
        x = sub["S"].clip(lower=s_floor).to_numpy(float)
        marker = fc.MARKERS[k % len(fc.MARKERS)]
        ax.errorbar(
            x,
            sub["median"],
            yerr=[sub["median"] - sub["min"], sub["max"] - sub["median"]],
            ls="none",
            capsize=2,
            elinewidth=0.8,
            color=colours[k],
            marker=marker,
        )
        exact = (sub["bound"] == EXACT).to_numpy()
        ax.scatter(
            x[exact],
            sub["median"][exact],
            s=36,
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
            label=f"T = {horizon}",
            marker=marker,
            color=colours[k],
        )
        ax.scatter(
            x[~exact],
            sub["median"][~exact],
            s=36,
            facecolors="white",
            edgecolors=colours[k],
            linewidths=1.0,
            zorder=3,
            marker=marker,
        )
        if fitted:
            s_grid = np.geomspace(s_floor, max(table["S"].max(), 1) * 1.5, 200)
            model = np.minimum(frontier["a"] / s_grid, frontier["b"] / horizon)
            ax.plot(s_grid, model, color=colours[k], ls=fc.DASHES[k % len(fc.DASHES)], lw=1.2)
            s_star = frontier["a"] * horizon / frontier["b"]
            if s_floor < s_star < s_grid[-1]:
                ax.axvline(s_star, color=colours[k], ls=(0, (1, 4)), lw=1.0)
                ax.annotate(
                    f"S*(T={horizon})",
                    (s_star, 1.0),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=6,
                    color=colours[k],
                )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="max lag S (learner steps; S = 0 drawn at 0.5)",
        ylabel="largest stable learning rate η*",
    )
    fc.lag_axis(ax, table["S"])
    if fitted:
        r2 = frontier["r2"] if fc.fit_ok(frontier, "r2") else float("nan")
        note = (
            f"fit η* = min(a/S, b/T): a = {frontier['a']:.3g}, b = {frontier['b']:.3g}, "
            f"R² = {r2:.2f}; sparse dots: S* = aT/b"
        )
    else:
        note = f"no frontier fit: {frontier.get('message', frontier.get('status', 'missing'))}"
    ax.set_title(title + "\n" + note, fontsize=7)
    ax.legend(title="horizon (hollow: bound only)", fontsize=7, title_fontsize=7)


def main() -> None:
    args = fc.parse_args(__doc__, ("exact_runs", "exact_fits", "lm_runs", "lm_fits"))
    fc.setup()
    summary = fc.read_fits(args.exact_fits)
    table = pd.DataFrame(summary.get("eta_star_summary") or [])
    if not len(table):
        fc.no_data(
            args,
            "F3: stability frontier",
            f"No η* estimates for experiment '{args.experiment}' yet "
            "(no exact-testbed runs with collapse data).",
        )
        return
    panels = [(table, summary.get("frontier", {}), f"exact testbed, experiment {args.experiment}")]
    lm = fc.read_fits(args.lm_fits)
    lm_table = pd.DataFrame(lm.get("eta_star_summary") or [])
    if len(lm_table):
        reward = (lm.get("claim_grid") or {}).get("reward_hack", "none")
        label = "gold reward" if reward == "none" else f"proxy reward ({reward} hack)"
        panels.append((lm_table, lm.get("frontier", {}), f"language model, {label}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, (panel_table, frontier, title) in zip(axes[0], panels):
        draw(ax, panel_table, frontier, title)
    fig.suptitle("F3: stability frontier η*(S, T)", fontsize=9)
    fc.save(fig, args)


if __name__ == "__main__":
    main()
