"""Which language-model runs are compared, and the LM part of the fits (docs/method.md §8).

The LM grid mixes runs that vary only S, η and seed (the controlled grid of F1-F4, settings
:data:`CONTROLLED`) with runs made for F5's comparisons (learning-rate schedules; async against
the synchronous baseline). The selections here decide which runs each comparison uses;
:func:`summarize_lm` applies :func:`stalegrpo.fits.laws.summarize_exact` to the controlled grid,
with each run's bias taken from its §3.2 probes (:func:`lm_run_bias`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalegrpo.fits.laws import _counts, _has, jsonable, summarize_exact

CONTROLLED = {"objective": "behavior", "lr_schedule": "constant", "schedule": "fixed"}
"""the settings of the LM runs that vary only S, η and seed (the F1-F4 grid)"""


def lm_main_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The LM runs that vary only S, η and seed: :data:`CONTROLLED` settings. Where one point ran
    at several thread counts (F5's synchronous baseline repeats a point on two threads), the run
    with the fewest threads is kept, so that every (S, η, seed) counts once."""
    if runs is None or not len(runs):
        return pd.DataFrame(columns=["S", "eta", "seed"])
    keep = np.ones(len(runs), dtype=bool)
    for column, value in CONTROLLED.items():
        if column in runs:
            keep &= (runs[column].astype(str) == value).to_numpy()
    main = runs[keep]
    if "threads" in main:
        main = main.sort_values("threads", kind="stable").drop_duplicates(["S", "eta", "seed"])
    return main.sort_values(["S", "eta", "seed"]).reset_index(drop=True)


def lm_run_bias(steps: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus ``bias``, ``relative_bias`` and ``n_probes``: per run, the §3.2
    probe's bias at full lag, absolute and relative to the norm of the expected gradient.

    One probe is too noisy to use alone (its unbiased bias² estimate is often negative), so the
    run's value is the square root of the positive part of the mean bias² over its probes taken at
    lag S and before the collapse step (after it, the batch is a collapsed policy's); the relative
    value divides it by the root of the mean of the probes' ‖E g‖² estimates. Probes of several
    pairs (``probe_pairs``) also give ``relative_bias_lo``/``_hi``: the 95% normal interval of the
    mean bias² from the pairs' spread, through the same square root and the same ‖E g‖² (whose own
    uncertainty it leaves out); NaN with one pair.
    """
    runs = runs.assign(bias=np.nan, relative_bias=np.nan, n_probes=0)
    if not _has(steps, ["run", "step", "bias_sq", "probe_lag"]) or not _has(runs, ["run", "S"]):
        return runs
    columns = ["run", "step", "bias_sq", "probe_lag"] + [c for c in ("grad_sq", "bias_sq_se") if c in steps]
    probes = steps.dropna(subset=["bias_sq"])[columns]
    columns = ["run", "S"] + (["collapse_step"] if "collapse_step" in runs else [])
    probes = probes.merge(runs[columns], on="run")
    if "collapse_step" not in probes:
        probes["collapse_step"] = np.nan
    before = ~(probes["step"] >= probes["collapse_step"].astype(float))  # NaN: censored, keep all
    probes = probes[(probes["probe_lag"] == probes["S"]) & before]
    grouped = probes.groupby("run")["bias_sq"]
    bias = np.sqrt(grouped.mean().clip(lower=0))
    runs = runs.assign(
        bias=runs["run"].map(bias), n_probes=runs["run"].map(grouped.size()).fillna(0).astype(int)
    )
    if "grad_sq" in probes:
        grad = np.sqrt(probes.groupby("run")["grad_sq"].mean().clip(lower=0))
        runs["relative_bias"] = runs["run"].map(bias / grad.where(grad > 0))
        if "bias_sq_se" in probes:  # probes of several pairs: a 95% interval from their spread
            # the mean of n independent probe means has standard error √(Σ se²) / n
            se = np.sqrt((probes["bias_sq_se"] ** 2).groupby(probes["run"]).sum()) / grouped.size()
            mean = grouped.mean()
            for side, sign in (("lo", -1), ("hi", 1)):
                edge = np.sqrt((mean + sign * 1.96 * se).clip(lower=0)) / grad.where(grad > 0)
                runs[f"relative_bias_{side}"] = runs["run"].map(edge)
    return runs


def _final_accuracy(runs: pd.DataFrame) -> pd.Series:
    column = "final_eval_accuracy" if "final_eval_accuracy" in runs else "accuracy"
    return runs[column].astype(float) if column in runs else pd.Series(np.nan, index=runs.index)


def compare_lm_groups(runs: pd.DataFrame, by: list[str]) -> list[dict]:
    """Per group of LM runs: count, collapses, median T_c, final held-out accuracy (mean and range
    over seeds), wall-clock and learner steps per second (the F5 comparisons)."""
    rows = []
    if not _has(runs, by + ["censored"]):
        return rows
    for key, group in runs.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        collapsed = ~group["censored"].astype(bool)
        accuracy = _final_accuracy(group)
        wall = group["wall_time"].astype(float) if "wall_time" in group else pd.Series(np.nan, index=group.index)
        steps_done = group["steps_done"].astype(float) if "steps_done" in group else pd.Series(np.nan)
        rows.append(
            dict(zip(by, key))
            | {
                "n": len(group),
                "n_collapsed": int(collapsed.sum()),
                "median_collapse_step": float(group.loc[collapsed, "collapse_step"].median())
                if collapsed.any()
                else float("nan"),
                "initial_accuracy": float(group["initial_eval_accuracy"].mean())
                if "initial_eval_accuracy" in group
                else float("nan"),
                "final_accuracy": float(accuracy.mean()),
                "final_accuracy_min": float(accuracy.min()),
                "final_accuracy_max": float(accuracy.max()),
                "wall_time": float(wall.mean()),
                "steps_per_s": float((steps_done / wall).mean()),
            }
        )
    return rows


def lm_schedule_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """F5's schedule comparison: fixed-schedule behavior runs at the (S, η) points that ran more
    than one lr_schedule, at the fewest threads (like for like)."""
    if not _has(runs, ["lr_schedule", "S", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    keep = np.ones(len(runs), dtype=bool)
    for column in ("objective", "schedule"):
        if column in runs:
            keep &= (runs[column].astype(str) == CONTROLLED[column]).to_numpy()
    chosen = runs[keep]
    chosen = chosen[chosen.groupby(["S", "eta"])["lr_schedule"].transform("nunique") > 1]
    if "threads" in chosen and len(chosen):
        chosen = chosen[chosen["threads"] == chosen["threads"].min()]
    return chosen


def lm_overlap_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """F5's async-vs-sync comparison: the async runs and every constant-η run at their thread
    counts and η (so a synchronous baseline shares the async run's cores and step size)."""
    if not _has(runs, ["schedule", "threads", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    overlap = runs[runs["schedule"].astype(str) == "async"]
    constant = (runs["lr_schedule"].astype(str) == "constant") if "lr_schedule" in runs else True
    return runs[runs["threads"].isin(set(overlap["threads"])) & runs["eta"].isin(set(overlap["eta"])) & constant]


def summarize_lm(steps: pd.DataFrame, runs: pd.DataFrame, config: dict | None = None) -> dict:
    """The LM part of fits.json: :func:`summarize_exact` on the controlled grid (F1 from the bias
    probe, F2, F3 at truncated horizons), per-(S, η) collapse cells, and the F5 comparisons:
    ``schedules`` (per lr_schedule, at each S·η point that ran more than one) and ``overlap``
    (async vs fixed runs per thread count)."""
    config = dict(config or {})
    if runs is None or not len(runs):
        return {"counts": {"n_runs": 0}}
    if "collapse_step" not in runs:  # no run collapsed: the aggregated column was all null
        runs = runs.assign(collapse_step=np.nan)
    main = lm_main_grid(runs)
    main_steps = steps[steps["run"].isin(main["run"])] if _has(steps, ["run"]) else steps
    probed = lm_run_bias(main_steps, main)
    summary = summarize_exact(main_steps, probed, config)
    relative = probed.loc[probed["S"] >= 1, "relative_bias"].dropna()
    summary["relative_bias"] = {
        "median": float(relative.median()) if len(relative) else float("nan"),
        "min": float(relative.min()) if len(relative) else float("nan"),
        "max": float(relative.max()) if len(relative) else float("nan"),
        "n": len(relative),
    }
    summary["cells"] = jsonable(compare_lm_groups(main, ["S", "eta"]))

    summary["schedules"] = jsonable(compare_lm_groups(lm_schedule_runs(runs), ["S", "eta", "lr_schedule"]))
    overlap = lm_overlap_runs(runs)
    summary["overlap"] = jsonable(compare_lm_groups(overlap, ["schedule", "S", "eta", "threads"]))
    summary["counts"] = _counts(steps, runs) | {"n_main": len(main)}
    return jsonable(summary)
