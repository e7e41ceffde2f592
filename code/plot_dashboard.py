"""F4 (docs/method.md §8): the per-step dashboard of one stable and one collapsing run.

Panels: reward, lag, ESS, kl_behavior, grad_norm and entropy against learner steps. The two runs
share S (the middle one of those that have both kinds); the collapsing run is the one with the
smallest collapsing η, the stable run the censored one with the largest η below it, so that they
differ as little as the grid allows. The source is the language-model runs once there are any with both kinds, else the
exact testbed; the title says which. A vertical line marks the collapse step.

    python code/plot_dashboard.py --exact-steps results/tables/exact/main/steps.parquet \
        --exact-runs results/tables/exact/main/runs.parquet --lm-steps results/tables/lm/steps.parquet \
        --lm-runs results/tables/lm/runs.parquet \
        --pdf figures/dashboard.pdf --png figures/dashboard.png
"""

import matplotlib.pyplot as plt
import pandas as pd

import figures_common as fc

PANELS = [  # (column candidates in order of preference, axis label)
    (["reward_mean", "reward"], "reward (mean over batch)"),
    (["lag_mean", "lag"], "lag s = k − v (learner steps)"),
    (["ess"], "normalised ESS"),
    (["kl_behavior"], "KL(μ ‖ π_θ) (nats/token)"),
    (["grad_norm"], "gradient norm (before clip)"),
    (["entropy"], "entropy (nats/token)"),
]


def choose_pair(runs: pd.DataFrame, s_choice) -> tuple[pd.Series | None, pd.Series | None, int | None]:
    """(stable run, collapsing run, S), or Nones if no S has both.

    S is ``s_choice`` or else the middle one of the S values that have both kinds (the extremes
    of a grid are rarely typical); the collapsing run is the one with the smallest collapsing η,
    the stable run the censored one with the largest η below it (seed: the smallest).
    """
    runs = runs.assign(censored=runs["censored"].astype(bool))
    runs = runs[runs["seed"] == runs["seed"].min()] if "seed" in runs else runs
    both = sorted(s for s, g in runs.groupby("S") if g["censored"].any() and (~g["censored"]).any())
    if s_choice is not None:
        both = [s for s in both if s == s_choice]
    if not both:
        return None, None, None
    s = both[len(both) // 2]
    at_s = runs[runs["S"] == s]
    collapsing = at_s[~at_s["censored"]].sort_values("eta").iloc[0]
    stable = at_s[at_s["censored"]].sort_values("eta")
    below = stable[stable["eta"] < collapsing["eta"]]
    stable = (below if len(below) else stable).iloc[-1]
    return stable, collapsing, int(s)


def main() -> None:
    args = fc.parse_args(__doc__, ("exact_steps", "exact_runs", "lm_steps", "lm_runs"))
    fc.setup()
    s_choice = None if args.S in ("None", "", "null") else int(args.S)
    lm_steps, lm_runs = fc.lm_tables(args.lm_steps, args.lm_runs)
    source = "language-model runs"
    for column, value in (("objective", "behavior"), ("lr_schedule", "constant"), ("schedule", "fixed")):
        if column in lm_runs and (lm_runs[column] == value).any():  # the controlled main grid only
            lm_runs = lm_runs[lm_runs[column] == value]
    pair = choose_pair(lm_runs, s_choice) if len(lm_runs) and "censored" in lm_runs else (None, None, None)
    steps = lm_steps
    if pair[0] is None:
        steps, runs = fc.exact_tables(args.exact_steps, args.exact_runs)
        source = f"exact testbed, experiment {args.experiment} (no LM runs yet)"
        pair = choose_pair(runs, s_choice) if len(runs) and "censored" in runs else (None, None, None)
    stable, collapsing, s = pair
    if stable is None:
        fc.no_data(
            args,
            "F4: run dashboard",
            "No S with both a stable and a collapsing run yet "
            f"(source tried: {source}); widen the η grid or lengthen the horizon.",
        )
        return

    fig, axes = plt.subplots(2, 3, figsize=(10.5, 5.4), sharex=True)
    colours = fc.palette(3)[:2]  # the two darker shades: both lines stay visible
    for (candidates, label), ax in zip(PANELS, axes.flat):
        column = next((c for c in candidates if c in steps.columns), None)
        for k, (run, name) in enumerate(((stable, "stable"), (collapsing, "collapsing"))):
            trace = steps[steps["run"] == run["run"]].sort_values("step")
            if column is None or trace[column].isna().all():
                continue
            ax.plot(
                trace["step"],
                trace[column],
                color=colours[k],
                ls=fc.DASHES[k],
                lw=1.3,
                label=f"{name}: η = {run['eta']:g}",
            )
            if column == "reward" and "gold_reward" in trace:
                ax.plot(
                    trace["step"],
                    trace["gold_reward"],
                    color=colours[k],
                    ls=fc.DASHES[k],
                    lw=0.8,
                    alpha=0.6,
                    marker=fc.MARKERS[k],
                    markevery=max(len(trace) // 8, 1),
                    ms=3.5,
                )
        if column is None:
            ax.text(0.5, 0.5, "not recorded by this source", ha="center", va="center", transform=ax.transAxes)
        if column == "reward":
            label = "reward: proxy (plain), gold (markers)"
        if column in ("kl_behavior", "grad_norm") and column in steps and (steps[column] > 0).all():
            ax.set_yscale("log")
        ax.axvline(collapsing["collapse_step"], color="0.3", ls=":", lw=0.9)
        ax.set_ylabel(label, fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("learner step k")
    axes.flat[0].legend(fontsize=7)
    detector = collapsing.get("detector", "?")
    fig.suptitle(
        f"F4: dashboard at S = {s} — {source}; dotted line: collapse step "
        f"{int(collapsing['collapse_step'])} ({detector} detector)",
        fontsize=9,
    )
    fc.save(fig, args)


if __name__ == "__main__":
    main()
