"""F5 (docs/method.md §8): learning-rate schedules and baselines, from the language-model runs.

Top row: fixed vs ESS-aware vs staleness-aware η (docs/method.md §6) at the (S, η) point that ran all
of them (stalegrpo.fits.lm.lm_schedule_runs), against learner steps and against wall-clock. Bottom
row: asynchronous runs against the synchronous baseline (S = 0) on the same cores and η
(stalegrpo.fits.lm.lm_overlap_runs). Lines are the mean over seeds with a 95% bootstrap band of the
held-out accuracy (periodic evals, sampled at temperature 1). The exact testbed has no wall-clock, so
without LM runs the figure says so.

    python code/plot_schedules.py --lm-steps results/tables/lm/steps.parquet --lm-runs results/tables/lm/runs.parquet \
        --pdf figures/schedules.pdf --png figures/schedules.png
"""

import re

import matplotlib.pyplot as plt
import seaborn as sns

import figures_common as fc
from stalegrpo.fits import lm


def natural(text: str) -> list:
    """A sort key that orders the numbers inside labels by value."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def label_runs(steps, runs, label):
    """The steps of ``runs`` with a legend label per run (``label`` maps a run row to text)."""
    labels = {row["run"]: label(row) for _, row in runs.iterrows()}
    chosen = steps[steps["run"].isin(labels)]
    return chosen.assign(series=chosen["run"].map(labels))


def main() -> None:
    args = fc.parse_args(__doc__, ("lm_steps", "lm_runs"))
    fc.setup()
    steps, runs = fc.lm_tables(args.lm_steps, args.lm_runs)
    if not len(runs) or not {"lr_schedule", "schedule", "S"} <= set(runs.columns) or not len(steps):
        fc.no_data(
            args,
            "F5: schedules and baselines",
            "No language-model runs yet: this figure needs the "
            "LM grid (lm.enabled: true in the workflow config). The exact testbed has no wall-clock "
            "or actor/learner overlap, so it cannot stand in here.",
        )
        return
    metric = "eval_accuracy" if "eval_accuracy" in steps else "accuracy"
    data = steps.dropna(subset=[metric])
    panels = []
    sched = lm.lm_schedule_runs(runs)
    if len(sched):
        s, eta = int(sched["S"].max()), sched.loc[sched["S"] == sched["S"].max(), "eta"].iloc[0]
        sched = sched[(sched["S"] == s) & (sched["eta"] == eta)]
        panels.append((label_runs(data, sched, lambda r: r["lr_schedule"]), f"η schedules at S = {s}, η_0 = {eta:g}", "lr schedule"))
    overlap = lm.lm_overlap_runs(runs)
    if len(overlap):
        threads = int(overlap["threads"].max())
        overlap = overlap[overlap["threads"] == threads]
        frame = label_runs(data, overlap, lambda r: f"{r['schedule']}, S = {int(r['S'])}")
        panels.append((frame, f"async vs sync, constant η = {overlap['eta'].iloc[0]:g}, {threads} threads each", "schedule"))
    if not panels:
        fc.no_data(args, "F5: schedules and baselines", "The LM grid has no schedule or async/sync comparison.")
        return

    fig, axes = plt.subplots(len(panels), 2, figsize=(10.0, 3.3 * len(panels)), squeeze=False)
    for (frame, title, legend), row in zip(panels, axes):
        levels = sorted(frame["series"].unique(), key=natural)  # "S = 4" before "S = 16"
        for ax, x in zip(row, ("step", "wall_time")):
            sns.lineplot(
                data=frame,
                x=x,
                y=metric,
                hue="series",
                style="series",
                hue_order=levels,
                style_order=levels,
                palette=fc.palette(len(levels)),
                markers=fc.MARKERS[: len(levels)],
                errorbar=("ci", 95),
                n_boot=200,
                ax=ax,
            )
            ax.set(
                xlabel="learner step k" if x == "step" else "wall-clock time (s)",
                ylabel="held-out accuracy (temperature 1)" if metric == "eval_accuracy" else metric,
                title=title,
            )
            ax.legend(fontsize=7, title=legend, title_fontsize=7)
    per_line = sorted({int(n) for frame, _, _ in panels for n in frame.groupby("series")["run"].nunique()})
    runs_per_line = str(per_line[0]) if len(per_line) == 1 else f"{per_line[0]}-{per_line[-1]}"
    fig.suptitle(
        f"F5: schedules and baselines — language-model runs ({runs_per_line} run(s) per line; "
        "with more than one, the mean and its 95% CI)",
        fontsize=9,
    )
    fc.save(fig, args)


if __name__ == "__main__":
    main()
