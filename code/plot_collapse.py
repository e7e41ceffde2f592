"""F2 (docs/method.md §8): collapse time T_c over (S, η), and T_c·η against S.

Left: heat map of the median T_c over seeds (censored runs counted at the horizon); a cell where
every seed was censored (no detector fired within the horizon) is hatched, a partly censored
cell is marked "*". Right: T_c·η against S, one line per η; hollow markers are censored runs plotted at
horizon·η (a lower bound). The claim: T_c·η is flat across η where the horizon limits (drift
T·η governs) and falls with S where the stale constraint binds. Top: the exact testbed; bottom,
when there are language-model runs: the same on the LM collapse grid (stalegrpo.fits.lm.lm_claim_grid).

    python code/plot_collapse.py --exact-runs results/tables/exact/main/runs.parquet \
        --exact-fits results/fits/exact/main.json --lm-runs results/tables/lm/runs.parquet \
        --lm-fits results/fits/lm.json \
        --pdf figures/collapse.pdf --png figures/collapse.png
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import figures_common as fc
from stalegrpo.fits import lm


def cell_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (S, η): median T_c over seeds (censored runs at their horizon) and censored counts."""
    runs = runs.assign(censored=runs["censored"].astype(bool))
    runs = runs.assign(t_c=np.where(runs["censored"], runs["horizon"], runs["collapse_step"]).astype(float))
    return (
        runs.groupby(["S", "eta"])
        .agg(
            t_c=("t_c", "median"),
            n=("t_c", "size"),
            n_censored=("censored", "sum"),
            horizon=("horizon", "max"),
        )
        .reset_index()
    )


def draw_heatmap(fig, ax, runs: pd.DataFrame) -> None:
    """Median T_c per (S, η) cell; hatched where every seed was censored, * where some were."""
    cells = cell_table(runs)
    s_values, etas = sorted(cells["S"].unique()), sorted(cells["eta"].unique())
    grid = cells.pivot(index="S", columns="eta", values="t_c").reindex(index=s_values, columns=etas)
    cens = cells.pivot(index="S", columns="eta", values="n_censored").reindex(index=s_values, columns=etas)
    count = cells.pivot(index="S", columns="eta", values="n").reindex(index=s_values, columns=etas)
    image = ax.imshow(np.log10(grid.to_numpy(float)), cmap="Greys_r", aspect="auto", origin="lower")
    for i, s in enumerate(s_values):
        for j, eta in enumerate(etas):
            value, n_c, n = grid.loc[s, eta], cens.loc[s, eta], count.loc[s, eta]
            if np.isnan(value):
                continue
            if n_c == n:  # the hatch says it: no collapse within the horizon
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.5", lw=0))
                continue
            shade = image.norm(np.log10(value))
            ax.text(
                j,
                i,
                f"{value:.0f}" + ("*" if n_c else ""),
                ha="center",
                va="center",
                fontsize=6 if len(etas) > 8 else 7,
                color="black" if shade > 0.55 else "white",
            )
    ax.set_xticks(range(len(etas)), [f"{e:g}" for e in etas], rotation=45)
    ax.set_yticks(range(len(s_values)), [str(s) for s in s_values])
    ax.set(xlabel="learning rate η (per step)", ylabel="max lag S (learner steps)")
    ax.grid(False)
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("log10 median T_c (learner steps)")
    horizons = sorted({int(h) for h in cells["horizon"].dropna()})
    within = f"T = {horizons[0]}" if len(horizons) == 1 else f"the run's horizon (T = {', '.join(map(str, horizons))})"
    ax.set_title(
        f"median T_c over seeds; hatched: no collapse within {within} (censored);\n"
        "* some seeds censored; blank: not run",
        fontsize=7,
    )


def draw_tc_eta(ax, runs: pd.DataFrame, summary: dict) -> None:
    """T_c·η against S, one line per η (median over seeds); hollow markers are censored runs."""
    etas, s_values = sorted(runs["eta"].unique()), sorted(runs["S"].unique())
    per_run = runs.assign(censored=runs["censored"].astype(bool))
    per_run = per_run.assign(t_c=np.where(per_run["censored"], per_run["horizon"], per_run["collapse_step"]))
    per_run = per_run.assign(tc_eta=per_run["t_c"] * per_run["eta"], S_plot=per_run["S"].clip(lower=0.5))
    colours = fc.palette(len(etas))
    for k, eta in enumerate(etas):
        sub = per_run[per_run["eta"] == eta]
        med = sub.groupby("S_plot")["tc_eta"].median()
        style = {"color": colours[k], "marker": fc.MARKERS[k % len(fc.MARKERS)], "ls": fc.DASHES[k % len(fc.DASHES)]}
        ax.plot(med.index, med.to_numpy(), label=f"{eta:g}", ms=5, mec="black", mew=0.4, **style)
        hollow = sub[sub["censored"]]
        ax.scatter(
            hollow["S_plot"],
            hollow["tc_eta"],
            marker=style["marker"],
            facecolors="white",
            edgecolors=colours[k],
            s=30,
            zorder=3,
            linewidths=1.0,
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="max lag S (learner steps; S = 0 drawn at 0.5)",
        ylabel="T_c·η (collapse time × learning rate)",
    )
    fc.lag_axis(ax, s_values)
    # outside the axes, so that no point is hidden behind it
    ax.legend(title="η (hollow: censored)", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if fc.fit_ok(summary, "cv"):
        note = f"CV of T_c·η across η ({summary.get('regime')}): {summary['cv']:.2f}"
    else:
        note = f"T_c·η CV: {summary.get('message', 'no fit')}"
    ax.set_title(note, fontsize=8)


def main() -> None:
    args = fc.parse_args(__doc__, ("exact_runs", "exact_fits", "lm_runs", "lm_fits"))
    fc.setup()
    _, runs = fc.exact_tables(None, args.exact_runs)
    needed = {"S", "eta", "collapse_step", "censored"}
    if not len(runs) or not needed <= set(runs.columns):
        fc.no_data(args, "F2: collapse time", f"No exact-testbed runs in experiment '{args.experiment}' yet.")
        return
    if "horizon" not in runs:
        raise SystemExit("runs table has no horizon column (make_fits/aggregate should provide it)")
    _, lm_runs = fc.lm_tables(None, args.lm_runs)
    lm_runs = lm.lm_claim_grid(lm_runs) if len(lm_runs) else lm_runs
    rows = [(runs, fc.read_fits(args.exact_fits), f"exact testbed, experiment {args.experiment}")]
    if len(lm_runs) and needed <= set(lm_runs.columns):
        rows.append((lm_runs, fc.read_fits(args.lm_fits), f"language model, {lm.reward_label(lm_runs)}"))

    fig, axes = plt.subplots(len(rows), 2, figsize=(11.5, 4.3 * len(rows)), width_ratios=[1.25, 1.0], squeeze=False)
    for (row_runs, summary, label), (ax_map, ax_line) in zip(rows, axes):
        draw_heatmap(fig, ax_map, row_runs)
        draw_tc_eta(ax_line, row_runs, summary.get("tc_eta", {}))
        ax_map.set_ylabel(f"{label}\nmax lag S (learner steps)")
    fig.suptitle("F2: collapse time over (S, η) — " + "; ".join(label for _, _, label in rows), fontsize=10)
    fc.save(fig, args)


if __name__ == "__main__":
    main()
