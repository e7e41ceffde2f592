"""F4 (docs/method.md §8): the per-step dashboard of one stable and one collapsing run.

Panels: reward, lag, ESS, kl_behavior, grad_norm and entropy against learner steps. The two runs
share S (``--S``, else the nearest S that has both kinds; without ``--S`` the middle such S) and,
where one has both kinds, a seed; the collapsing run is the one with the smallest collapsing η,
the stable run the censored one with the largest η below it, so that they differ as little as the
grid allows. The source is the language-model runs once any S has both kinds, else the exact
testbed; the title says which, and why it fell back. A vertical line marks the collapse step.

    python code/plot_dashboard.py --exact-steps results/tables/exact/main/steps.parquet \
        --exact-runs results/tables/exact/main/runs.parquet --lm-steps results/tables/lm/steps.parquet \
        --lm-runs results/tables/lm/runs.parquet \
        --pdf figures/dashboard.pdf --png figures/dashboard.png
"""

import matplotlib.pyplot as plt
import pandas as pd

import figures_common as fc
from stalegrpo.fits import lm

PANELS = [  # (column candidates in order of preference, axis label)
    (["reward_mean", "reward"], "reward (mean over batch)"),
    (["lag_mean", "lag"], "lag s = k − v (learner steps)"),
    (["ess"], "normalised ESS"),
    (["kl_behavior"], "KL(μ ‖ π_θ) (nats/token)"),
    (["grad_norm"], "gradient norm (before clip)"),
    (["entropy"], "entropy (nats/token)"),
]


def choose_pair(runs: pd.DataFrame, s_choice=None) -> tuple[pd.Series | None, pd.Series | None, int | None, str]:
    """(stable run, collapsing run, S, note): one stable and one collapsing run at the same S.

    S is ``s_choice`` if it has both kinds, else the S nearest to it that has (ties: the smaller),
    and without a choice the middle one of the S values that have both (the extremes of a grid are
    rarely typical). At that S the collapsing run has the smallest collapsing η and the stable run
    the largest censored η below it, so that they differ as little as the grid allows; seeds are
    matched where a seed has both kinds (the smallest such seed), else any seed is taken. The note
    says which choices were made; with no pair, all are None and the note says why.
    """
    if not len(runs) or "censored" not in runs:
        return None, None, None, "no runs"
    runs = runs.assign(censored=runs["censored"].astype(bool))
    both = sorted(s for s, g in runs.groupby("S") if g["censored"].any() and (~g["censored"]).any())
    if not both:
        collapsed = int((~runs["censored"]).sum())
        return None, None, None, (
            f"no S has both a stable and a collapsing run ({len(runs)} runs: {collapsed} collapsed, "
            f"{len(runs) - collapsed} stable)"
        )
    notes = []
    if s_choice is None:
        s = both[len(both) // 2]
    else:
        s = min(both, key=lambda v: (abs(v - s_choice), v))
        if s != s_choice:
            notes.append(f"S = {s_choice} has no stable/collapsing pair, nearest S with one")
    at_s = runs[runs["S"] == s]
    if "seed" in at_s:
        matched = [seed for seed, g in at_s.groupby("seed") if g["censored"].any() and (~g["censored"]).any()]
        if matched:
            at_s = at_s[at_s["seed"] == min(matched)]
        else:
            notes.append("no seed has both kinds here, seeds differ")
    collapsing = at_s[~at_s["censored"]].sort_values(["eta", "seed"] if "seed" in at_s else "eta").iloc[0]
    stable = at_s[at_s["censored"]].sort_values("eta", kind="stable")
    below = stable[stable["eta"] < collapsing["eta"]]
    stable = (below if len(below) else stable).iloc[-1]
    return stable, collapsing, int(s), "; ".join(notes)


def main() -> None:
    args = fc.parse_args(__doc__, ("exact_steps", "exact_runs", "lm_steps", "lm_runs"))
    fc.setup()
    s_choice = None if args.S in ("None", "", "null") else int(args.S)
    lm_steps, lm_runs = fc.lm_tables(args.lm_steps, args.lm_runs)
    lm_runs = lm.lm_claim_grid(lm_runs)  # the controlled grid of the collapse claims (F2, F3)
    source = "language-model runs" + (f", {lm.reward_label(lm_runs)}" if len(lm_runs) else "")
    stable, collapsing, s, note = choose_pair(lm_runs, s_choice)
    steps = lm_steps
    if stable is None:
        why = f"LM runs: {note}" if len(lm_runs) else "no LM runs"
        steps, runs = fc.exact_tables(args.exact_steps, args.exact_runs)
        stable, collapsing, s, note = choose_pair(runs, s_choice)
        source = f"exact testbed, experiment {args.experiment} ({why})"
    if stable is None:
        fc.no_data(
            args,
            "F4: run dashboard",
            f"No S with both a stable and a collapsing run yet (source tried: {source}; {note}); "
            "widen the η grid or lengthen the horizon.",
        )
        return
    if note:
        source += f" ({note})"

    fig, axes = plt.subplots(2, 3, figsize=(10.5, 5.4), sharex=True)
    colours = fc.palette(3)[:2]  # the two darker shades: both lines stay visible
    for (candidates, label), ax in zip(PANELS, axes.flat):
        column = next((c for c in candidates if c in steps.columns), None)
        shown = []  # the values drawn on this panel (the two runs' steps, without NaN)
        for k, (run, name) in enumerate(((stable, "stable"), (collapsing, "collapsing"))):
            trace = steps[steps["run"] == run["run"]].sort_values("step")
            if column is None or trace[column].isna().all():
                continue
            shown.append(trace[column].dropna())
            ax.plot(
                trace["step"],
                trace[column],
                color=colours[k],
                ls=fc.DASHES[k],
                lw=1.3,
                label=f"{name}: η = {run['eta']:g}",
            )
            proxy = column in ("reward", "reward_mean") and "gold_reward" in trace
            if proxy and not trace[column].equals(trace["gold_reward"]):  # a proxy reward: gold too
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
        if column in ("reward", "reward_mean") and "gold_reward" in steps and not steps[column].equals(
            steps["gold_reward"]
        ):
            label = "reward: proxy (plain), gold (markers)"
        # log scale where every value drawn is positive (evaluation rows carry NaN here)
        if column in ("kl_behavior", "grad_norm") and shown and (pd.concat(shown) > 0).all():
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
