"""F5 (SCIENCE.md §8): learning-rate schedules and baselines, from the language-model runs.

Top row: fixed vs ESS-aware vs staleness-aware η (SCIENCE.md §6) at the largest S that has all
of them, against learner steps and against wall-clock. Bottom row: asynchronous runs (S > 0)
against the synchronous baseline (S = 0) with the constant schedule. Lines are the mean over
seeds with a 95% bootstrap band; the metric is the held-out accuracy (periodic evals) where
recorded, else the batch accuracy or reward. The exact testbed has no wall-clock, so without LM runs the figure says so.

    python code/plot_schedules.py --steps results/tables/steps.parquet --runs results/tables/runs.parquet \
        --pdf figures/schedules.pdf --png figures/schedules.png
"""

import matplotlib.pyplot as plt
import seaborn as sns

import figures_common as fc


def main() -> None:
    args = fc.parse_args(__doc__, ("steps", "runs"))
    fc.setup()
    steps, runs = fc.lm_tables(args.steps, args.runs)
    needed = {"lr_schedule", "schedule", "S"}
    if not len(runs) or not needed <= set(runs.columns) or not len(steps):
        fc.no_data(
            args,
            "F5: schedules and baselines",
            "No language-model runs yet: this figure needs the "
            "LM grid (lm.enabled: true in the workflow config). The exact testbed has no wall-clock "
            "or actor/learner overlap, so it cannot stand in here.",
        )
        return
    metric = next(c for c in ("eval_accuracy", "accuracy", "reward_mean") if c in steps.columns)
    time_axis = "wall_time" if "wall_time" in steps.columns else None
    data = steps.dropna(subset=[metric])

    # top: schedules at the largest S where every lr_schedule ran
    counts = runs.groupby("S")["lr_schedule"].nunique()
    s_sched = int(counts[counts == counts.max()].index.max())
    top = data[(data["S"] == s_sched)]
    if "schedule" in top:
        top = top[top["schedule"] == top["schedule"].mode().iloc[0]]
    bottom = data[data["lr_schedule"] == "constant"].assign(
        baseline=lambda d: d["schedule"] + ", S = " + d["S"].astype(str)
    )

    fig, axes = plt.subplots(2, 2 if time_axis else 1, figsize=(10.0, 6.4), squeeze=False)
    for row, (frame, hue, title) in enumerate(
        (
            (
                top,
                "lr_schedule",
                f"η schedules at S = {s_sched}"
                + ("" if counts.max() > 1 else " (one schedule in this grid)"),
            ),
            (bottom, "baseline", "async vs sync (constant η)"),
        )
    ):
        levels = sorted(frame[hue].unique())
        for col, x in enumerate(["step", time_axis][: axes.shape[1]]):
            ax = axes[row, col]
            sns.lineplot(
                data=frame,
                x=x,
                y=metric,
                hue=hue,
                style=hue,
                hue_order=levels,
                style_order=levels,
                palette=fc.palette(len(levels)),
                markers=fc.MARKERS[: len(levels)],
                markevery=0.1,
                errorbar=("ci", 95),
                n_boot=200,
                ax=ax,
            )
            ax.set(
                xlabel="learner step k" if x == "step" else "wall-clock time (s)",
                ylabel=metric.replace("_", " "),
                title=title,
            )
            ax.legend(fontsize=7, title=hue.replace("_", " "), title_fontsize=7)
    fig.suptitle("F5: schedules and baselines — language-model runs (mean over seeds, 95% CI)", fontsize=9)
    fc.save(fig, args)


if __name__ == "__main__":
    main()
