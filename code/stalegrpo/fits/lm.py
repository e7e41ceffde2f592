"""Which language-model runs are compared, and the LM part of the fits (docs/method.md §8, §10).

The LM grid mixes runs made for different claims. The selections here decide which runs each
comparison uses:

- :func:`lm_main_grid`: the controlled runs (settings :data:`CONTROLLED`) on the well-specified
  reward (proxy = gold), varying only S, η and seed;
- :func:`lm_hack_grid`: the controlled runs on a proxy reward with an exploitable bonus
  (``reward_hack``), where collapse is over-optimisation of the proxy;
- :func:`lm_claim_grid`: what F2-F4 read: the hack grid where there is one, else the main grid;
- :func:`lm_bias_grid`: what F1 reads: the main-grid runs probed at a fixed time t = k·η
  (``probe_time``) where there are any, else the whole main grid.

:func:`summarize_lm` applies :func:`stalegrpo.fits.laws.summarize_exact` to these selections,
with each run's bias taken from its §3.2 probes (:func:`lm_run_bias`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalegrpo.fits import verdicts
from stalegrpo.fits.frontier import eta_star_table, frontier_horizons, frontier_seed_interval
from stalegrpo.fits.laws import (
    _bootstrap_info,
    _counts,
    _has,
    bootstrap_indices,
    eta_ratio,
    fit_bias_slope,
    fit_bias_sq_slope,
    jsonable,
    summarize_exact,
    tc_eta_cv,
)

CONTROLLED = {"objective": "behavior", "lr_schedule": "constant", "schedule": "fixed"}
"""the settings of the LM runs that vary only S, η and seed (the F1-F4 grids)"""

WELL_SPECIFIED = "none"
"""``reward_hack`` of the well-specified reward: the proxy is the gold verifier"""


def _matching(runs: pd.DataFrame, settings: dict) -> np.ndarray:
    keep = np.ones(len(runs), dtype=bool)
    for column, value in settings.items():
        if column in runs:
            keep &= (runs[column].astype(str) == value).to_numpy()
    return keep


def _reward(runs: pd.DataFrame) -> pd.Series:
    """Each run's ``reward_hack`` (runs from before the column existed had the gold reward)."""
    if "reward_hack" not in runs:
        return pd.Series(WELL_SPECIFIED, index=runs.index)
    return runs["reward_hack"].fillna(WELL_SPECIFIED).astype(str)


def _one_per_point(runs: pd.DataFrame) -> pd.DataFrame:
    """Where one (S, η, seed) ran at several thread counts or horizons (F5's synchronous baseline
    repeats a point on two threads), the run with the fewest threads, then the longest horizon."""
    if "threads" in runs:
        order = ["threads"] + (["steps"] if "steps" in runs else [])
        runs = runs.sort_values(order, ascending=[True] + [False] * (len(order) - 1), kind="stable")
        runs = runs.drop_duplicates(["S", "eta", "seed"])
    return runs.sort_values(["S", "eta", "seed"]).reset_index(drop=True)


def lm_main_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The controlled LM runs on the well-specified reward that vary only S, η and seed; one run
    per (S, η, seed) (:func:`_one_per_point`)."""
    if runs is None or not len(runs):
        return pd.DataFrame(columns=["S", "eta", "seed"])
    main = runs[_matching(runs, CONTROLLED) & (_reward(runs) == WELL_SPECIFIED).to_numpy()]
    return _one_per_point(main)


def lm_hack_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The controlled LM runs on a proxy reward with a bonus (``reward_hack`` other than none), one
    per (S, η, seed). Several hacks in one grid would mix mechanisms: the most common one is kept."""
    if runs is None or not len(runs):
        return pd.DataFrame(columns=["S", "eta", "seed"])
    hacked = runs[_matching(runs, CONTROLLED) & (_reward(runs) != WELL_SPECIFIED).to_numpy()]
    if not len(hacked):
        return pd.DataFrame(columns=["S", "eta", "seed"])
    common = hacked["reward_hack"].astype(str).value_counts().index[0]
    return _one_per_point(hacked[hacked["reward_hack"].astype(str) == common])


def lm_claim_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the LM collapse claims (F2-F4): the hack grid if there is one, else the main grid."""
    hacked = lm_hack_grid(runs)
    return hacked if len(hacked) else lm_main_grid(runs)


def reward_label(runs: pd.DataFrame) -> str:
    """'gold reward' or 'proxy reward (<hack> hack)': the reward of a selection, for titles."""
    hacks = sorted(set(_reward(runs)) - {WELL_SPECIFIED}) if len(runs) else []
    return f"proxy reward ({', '.join(hacks)} hack)" if hacks else "gold reward"


def lm_bias_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the LM bias claim (F1): the main-grid runs with a fixed-time probe
    (``probe_time`` set) if there are any, else the main grid."""
    if runs is not None and "probe_time" in runs:
        timed = runs[_matching(runs, CONTROLLED) & (_reward(runs) == WELL_SPECIFIED).to_numpy()]
        timed = timed[timed["probe_time"].notna()]
        if len(timed):
            return _one_per_point(timed)
    return lm_main_grid(runs)


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
    runs = runs.assign(bias=np.nan, bias_sq_mean=np.nan, relative_bias=np.nan, n_probes=0)
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
        bias=runs["run"].map(bias),
        bias_sq_mean=runs["run"].map(grouped.mean()),
        n_probes=runs["run"].map(grouped.size()).fillna(0).astype(int),
    )
    if "grad_sq" in probes:
        grad = np.sqrt(probes.groupby("run")["grad_sq"].mean().clip(lower=0))
        runs["relative_bias"] = runs["run"].map(bias / grad.where(grad > 0))
        if "bias_sq_se" in probes:  # probes of several pairs: a 95% interval from their spread
            # the mean of n independent probe means has standard error √(Σ se²) / n
            se = np.sqrt((probes["bias_sq_se"] ** 2).groupby(probes["run"]).sum()) / grouped.size()
            runs["bias_sq_mean_se"] = runs["run"].map(se)
            mean = grouped.mean()
            for side, sign in (("lo", -1), ("hi", 1)):
                edge = np.sqrt((mean + sign * 1.96 * se).clip(lower=0)) / grad.where(grad > 0)
                runs[f"relative_bias_{side}"] = runs["run"].map(edge)
    return runs


def _final_accuracy(runs: pd.DataFrame) -> pd.Series:
    column = "final_eval_accuracy" if "final_eval_accuracy" in runs else "accuracy"
    return runs[column].astype(float) if column in runs else pd.Series(np.nan, index=runs.index)


def _mean(group: pd.DataFrame, column: str) -> float:
    return float(group[column].astype(float).mean()) if column in group else float("nan")


def compare_lm_groups(runs: pd.DataFrame, by: list[str]) -> list[dict]:
    """Per group of LM runs: count, collapses, median T_c (in steps and seconds), held-out gold
    accuracy at the start, at its peak and at the end (final: mean and range over seeds), the
    peak-to-final drop, the final hack rate, the share of tokens whose gradient the clip removed
    (mean over the run's steps), wall-clock and learner steps per second (the F5, objectives and
    vary-S comparisons)."""
    rows = []
    if not _has(runs, by + ["censored"]):
        return rows
    for key, group in runs.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        collapsed = ~group["censored"].astype(bool)
        accuracy = _final_accuracy(group)
        peak = group["peak_eval_accuracy"].astype(float) if "peak_eval_accuracy" in group else accuracy * np.nan
        wall = group["wall_time"].astype(float) if "wall_time" in group else pd.Series(np.nan, index=group.index)
        steps_done = group["steps_done"].astype(float) if "steps_done" in group else pd.Series(np.nan)
        collapse_wall = group.loc[collapsed, "collapse_wall_time"] if "collapse_wall_time" in group else []
        rows.append(
            dict(zip(by, key))
            | {
                "n": len(group),
                "n_collapsed": int(collapsed.sum()),
                "n_hack": int(_hack_collapse(group).sum()),
                "median_collapse_step": float(group.loc[collapsed, "collapse_step"].median())
                if collapsed.any()
                else float("nan"),
                "median_collapse_wall": float(pd.Series(collapse_wall, dtype=float).median())
                if collapsed.any()
                else float("nan"),
                "initial_accuracy": _mean(group, "initial_eval_accuracy"),
                "peak_accuracy": float(peak.mean()),
                "peak_step": _mean(group, "peak_eval_step"),
                "peak_wall": _mean(group, "peak_wall_time"),
                "final_accuracy": float(accuracy.mean()),
                "final_accuracy_min": float(accuracy.min()),
                "final_accuracy_max": float(accuracy.max()),
                "peak_to_final": float((peak - accuracy).mean()),
                "final_hack_rate": _mean(group, "final_eval_hack_rate"),
                "clip_frac": _mean(group, "clip_frac"),
                "wall_time": float(wall.mean()),
                "steps_per_s": float((steps_done / wall).mean()),
            }
        )
    return rows


def _with_reward(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.assign(reward_hack=_reward(runs))


def lm_schedule_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """F5's schedule comparison: fixed-schedule behavior runs at the (S, η, reward) points that ran
    more than one lr_schedule, at the fewest threads (like for like)."""
    if not _has(runs, ["lr_schedule", "S", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    settings = {column: CONTROLLED[column] for column in ("objective", "schedule")}
    chosen = _with_reward(runs[_matching(runs, settings)])
    chosen = chosen[chosen.groupby(["S", "eta", "reward_hack"])["lr_schedule"].transform("nunique") > 1]
    if "threads" in chosen and len(chosen):
        chosen = chosen[chosen["threads"] == chosen["threads"].min()]
    return chosen


def lm_overlap_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """F5's async-vs-sync comparison: the constant-η ``behavior`` runs at the async runs' thread
    counts, η and reward: the async runs, and of the others only the synchronous baseline, S = 0
    (so it shares the async runs' cores and step size, and no other objective or S is averaged in)."""
    if not _has(runs, ["schedule", "threads", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    runs = _with_reward(runs)
    is_async = runs["schedule"].astype(str) == "async"
    constant = (runs["lr_schedule"].astype(str) == "constant") if "lr_schedule" in runs else True
    behavior = _matching(runs, {"objective": "behavior"})
    keys = ["threads", "eta", "reward_hack"]
    shared = runs[keys].apply(tuple, axis=1).isin(set(runs.loc[is_async, keys].apply(tuple, axis=1)))
    return runs[shared & constant & behavior & (is_async | (runs["S"] == 0))]


def lm_objective_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The objectives comparison: constant-η fixed-schedule runs at the (S, η, reward) points that
    ran more than one objective, one per (objective, S, η, seed)."""
    if not _has(runs, ["objective", "S", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    settings = {column: CONTROLLED[column] for column in ("lr_schedule", "schedule")}
    chosen = _with_reward(runs[_matching(runs, settings)])
    chosen = chosen[chosen.groupby(["S", "eta", "reward_hack"])["objective"].transform("nunique") > 1]
    return chosen.drop_duplicates(["objective", "S", "eta", "seed", "reward_hack"])


def lm_vary_s_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The vary-S test (docs/method.md §10): behavior-objective async runs, on the reward and η
    that the most of them share, over S and lr_schedule."""
    if not _has(runs, ["schedule", "S", "eta"]):
        return runs.iloc[0:0] if runs is not None else pd.DataFrame()
    chosen = _with_reward(runs[(runs["schedule"].astype(str) == "async") & _matching(runs, {"objective": "behavior"})])
    if not len(chosen):
        return chosen
    (eta, reward), _ = max(chosen.groupby(["eta", "reward_hack"]), key=lambda item: len(item[1]))
    return chosen[(chosen["eta"] == eta) & (chosen["reward_hack"] == reward)]


HACK_TAKEOVER = 0.1
"""a collapse is over-optimisation of the proxy when at least this share of the run's final
held-out samples are the hack (``final_eval_hack_rate``); else another mechanism ended it. A run
stops ``grace_steps`` after its collapse, before the hack has taken over completely: in the
pilots the hack collapses ended at 0.23-0.28 and the fast instabilities at 0, from a start near
3e-4 (docs/method.md §10)"""


def _hack_collapse(runs: pd.DataFrame) -> pd.Series:
    """Per run: collapsed and the hack took over (False for stable runs and other collapses)."""
    if "final_eval_hack_rate" not in runs:
        return pd.Series(False, index=runs.index)
    rate = runs["final_eval_hack_rate"].astype(float)
    return ~runs["censored"].astype(bool) & (rate >= HACK_TAKEOVER)


def tc_over_optimisation(runs: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """F2 on a hack grid: the CV of T_c·η across η over the S = 0 runs whose collapse was the hack
    taking over (:func:`_hack_collapse`; a fast instability at large η is another mechanism and
    another law), with a bootstrap CI, and the exponent b of T_c ∝ η^b over the same runs
    (:func:`stalegrpo.fits.laws.fit_bias_slope` on log-log; the T·η law is b = −1). Stable runs
    are censored and excluded, as in :func:`tc_eta_cv`.

    Both CIs are hierarchical over seeds when the collapses come from several
    (:func:`stalegrpo.fits.laws.bootstrap_indices`): seeds with replacement, then, for the
    exponent, runs within each drawn seed, and, for the CV, runs within each of its (seed, η)
    cells, since the η are the design (a resample that holds fewer than 2 η is skipped). From one
    seed, runs are resampled within each η (``cv_bootstrap`` says which)."""
    sync = runs[runs["S"] == 0]
    chosen = sync[_hack_collapse(sync) | sync["censored"].astype(bool)]
    result = tc_eta_cv(chosen["eta"], chosen["collapse_step"], chosen["censored"])
    collapsed = chosen[~chosen["censored"].astype(bool)]
    result["regime"] = f"S == 0, hack collapses (final hack rate >= {HACK_TAKEOVER})"
    result["n_other_mechanism"] = int((~sync["censored"].astype(bool) & ~_hack_collapse(sync)).sum())
    seeds = collapsed["seed"] if "seed" in collapsed else None
    result["cv_bootstrap"] = _bootstrap_info(seeds)
    tc_eta = collapsed["collapse_step"].to_numpy(float) * collapsed["eta"].to_numpy(float)
    cvs = []
    if result["cv_bootstrap"]["bootstrap"] == "seeds":
        eta = collapsed["eta"].to_numpy(float)
        draw = bootstrap_indices(seeds, strata=eta, seed=seed)
        for _ in range(n_boot if collapsed["eta"].nunique() >= 2 else 0):
            idx = draw()
            means = pd.Series(tc_eta[idx]).groupby(eta[idx]).mean().to_numpy()
            if len(means) >= 2:
                cvs.append(means.std(ddof=1) / means.mean())
    else:
        rng = np.random.default_rng(seed)
        groups = [g["collapse_step"].to_numpy(float) * eta for eta, g in collapsed.groupby("eta")]
        for _ in range(n_boot if len(groups) >= 2 else 0):
            means = np.array([rng.choice(g, size=len(g)).mean() for g in groups])
            cvs.append(means.std(ddof=1) / means.mean())
    result["cv_ci_low"], result["cv_ci_high"] = (
        (float(v) for v in np.percentile(cvs, [2.5, 97.5])) if cvs else (float("nan"), float("nan"))
    )
    result["exponent"] = fit_bias_slope(
        collapsed["eta"], collapsed["collapse_step"], n_boot=n_boot, seed=seed, clusters=seeds
    )
    return result


def _steps_of(steps: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    return steps[steps["run"].isin(runs["run"])] if _has(steps, ["run"]) and "run" in runs else steps


def _setting(runs: pd.DataFrame, column: str):
    """The one value of ``column`` over ``runs`` (None if absent, a sorted list if several)."""
    if column not in runs or not len(runs):
        return None
    values = sorted({v for v in runs[column].dropna().tolist()}, key=str)
    return values[0] if len(values) == 1 else (values or None)


def summarize_lm(steps: pd.DataFrame, runs: pd.DataFrame, config: dict | None = None, per_seed: bool = True) -> dict:
    """The LM part of fits.json.

    Top level, as :func:`summarize_exact` gives for an exact grid: ``tc_eta`` (F2), ``eta_star``,
    ``eta_star_summary`` and ``frontier`` (F3 at truncated horizons) from :func:`lm_claim_grid`;
    ``bias_slope`` and ``relative_bias`` (F1) from the probes of :func:`lm_bias_grid`, their CIs
    bootstrapped over seeds and then runs within each; ``verdicts`` (F1's bound and first-order
    law, F2, F3: :func:`stalegrpo.fits.verdicts.lm_verdicts`). Also
    ``claim_grid`` and ``bias_grid`` (what each selection holds), per-(S, η) collapse ``cells`` of the
    claim grid, ``well_specified`` (the main grid's own fits, when the claim grid is the hack
    grid), and the comparisons: ``schedules`` (per lr_schedule at each point that ran more than
    one), ``overlap`` (async vs fixed per thread count), ``objectives`` and ``vary_s``; with
    ``per_seed``, the three claims' fits on each seed's runs alone (:func:`per_seed_fits`).
    """
    config = dict(config or {})
    if runs is None or not len(runs):
        return {"counts": {"n_runs": 0}}
    if "collapse_step" not in runs:  # no run collapsed: the aggregated column was all null
        runs = runs.assign(collapse_step=np.nan)
    main, claims = lm_main_grid(runs), lm_claim_grid(runs)
    hacked = len(claims) and _setting(claims, "reward_hack") not in (None, WELL_SPECIFIED)
    # F2-F4 from the claim grid; its probes (if any) are not the bias measurement
    summary = summarize_exact(_steps_of(steps, claims), claims.assign(bias=np.nan), config)

    bias_grid = lm_bias_grid(runs)
    probed = lm_run_bias(_steps_of(steps, bias_grid), bias_grid)
    n_boot, seed = int(config.get("n_boot", 1000)), int(config.get("seed", 0))
    timed = _setting(bias_grid, "probe_time")
    # the runs of laws.bias_points: S >= 1 and S·η within the fit range; each run's seed clusters
    # the bootstrap (seeds, then runs within each)
    drift_max = config.get("small_drift_max", np.inf)
    in_range = probed[(probed["S"] >= 1) & (probed["S"] * probed["eta"] <= drift_max)]
    clusters = in_range["seed"] if "seed" in in_range else None
    summary["bias_slope"] = fit_bias_slope(
        in_range["S"] * in_range["eta"], in_range["bias"], n_boot=n_boot, seed=seed, clusters=clusters
    ) | {
        "source": f"probe at t = k·η = {timed}" if timed is not None else "mean of the runs' periodic probes",
        "small_drift_max": config.get("small_drift_max"),
    }
    # the same runs' mean bias² readings, ≤ 0 included (laws.fit_bias_sq_slope)
    in_range = in_range.dropna(subset=["bias_sq_mean"])
    se = in_range["bias_sq_mean_se"] if "bias_sq_mean_se" in in_range else None
    summary["bias_sq_slope"] = fit_bias_sq_slope(
        in_range["S"] * in_range["eta"], in_range["bias_sq_mean"], se, n_boot=n_boot, seed=seed,
        clusters=in_range["seed"] if "seed" in in_range else None,
    )
    relative = probed.loc[probed["S"] >= 1, "relative_bias"].dropna()
    summary["relative_bias"] = {
        "median": float(relative.median()) if len(relative) else float("nan"),
        "min": float(relative.min()) if len(relative) else float("nan"),
        "max": float(relative.max()) if len(relative) else float("nan"),
        "n": len(relative),
    }
    columns = ["S", "eta", "seed", "bias", "bias_sq_mean", "bias_sq_mean_se", "relative_bias", "relative_bias_lo",
               "relative_bias_hi", "n_probes"]
    summary["bias_runs"] = jsonable(probed[[c for c in columns if c in probed]].to_dict("records"))
    summary["bias_grid"] = {
        "n": len(bias_grid),
        "probe_time": timed,
        "probe_pairs": _setting(bias_grid, "probe_pairs"),
        "probe_prompts": _setting(bias_grid, "probe_prompts") or _setting(bias_grid, "batch_prompts"),
        "probe_estimator": _setting(bias_grid, "probe_estimator"),
    }
    summary["claim_grid"] = {
        "n": len(claims),
        "reward_hack": _setting(claims, "reward_hack") or WELL_SPECIFIED,
        "hack_bonus": _setting(claims, "hack_bonus") if hacked else None,
        "n_seed_at_S0": int(claims.loc[claims["S"] == 0, "seed"].nunique()) if "seed" in claims else 0,
    }
    summary["cells"] = jsonable(compare_lm_groups(claims, ["S", "eta"]))
    summary["mechanisms"] = {
        "n_collapsed": int((~claims["censored"].astype(bool)).sum()) if len(claims) else 0,
        "n_hack": int(_hack_collapse(claims).sum()) if hacked else 0,
    }
    if hacked and "final_eval_hack_rate" in claims:
        # the final hack rates on either side of HACK_TAKEOVER: any threshold between the two
        # sorts this grid's collapses the same way (the threshold was chosen after a grid was seen)
        rate = claims["final_eval_hack_rate"].astype(float)
        collapsed, hack = ~claims["censored"].astype(bool), _hack_collapse(claims)
        summary["mechanisms"]["hack_rate_min"] = float(rate[hack].min()) if hack.any() else float("nan")
        other = collapsed & ~hack
        summary["mechanisms"]["other_rate_max"] = float(rate[other].max()) if other.any() else float("nan")
    if len(claims) and {"seed", "horizon"} <= set(claims.columns):
        # F3's interval: the frontier fit bootstrapped over seeds (frontier.frontier_seed_interval)
        table = eta_star_table(claims, frontier_horizons(claims, config))
        summary["frontier"]["seed_interval"] = frontier_seed_interval(table, n_boot, seed)
    if hacked:
        summary["tc_eta_all"] = summary["tc_eta"]  # every S = 0 collapse, whatever its mechanism
        summary["tc_eta"] = tc_over_optimisation(claims, n_boot, seed)
    if hacked and len(main):
        well = summarize_exact(_steps_of(steps, main), main.assign(bias=np.nan), config)
        summary["well_specified"] = {key: well[key] for key in ("tc_eta", "frontier", "eta_star_summary", "counts")}
        summary["well_specified"]["cells"] = jsonable(compare_lm_groups(main, ["S", "eta"]))

    summary["schedules"] = jsonable(
        compare_lm_groups(lm_schedule_runs(runs), ["reward_hack", "S", "eta", "lr_schedule"])
    )
    overlap = lm_overlap_runs(runs)
    summary["overlap"] = jsonable(compare_lm_groups(overlap, ["schedule", "S", "eta", "threads"]))
    summary["objectives"] = jsonable(compare_lm_groups(lm_objective_runs(runs), ["reward_hack", "S", "eta", "objective"]))
    summary["vary_s"] = jsonable(compare_lm_groups(lm_vary_s_runs(runs), ["lr_schedule", "S"]))
    summary["counts"] = _counts(steps, runs) | {"n_main": len(main), "n_claims": len(claims)}
    summary["seeds"] = seed_counts(summary, claims, bias_grid)
    # each claim's verdict, or why the data cannot carry one (stalegrpo.fits.verdicts)
    summary["verdicts"] = verdicts.lm_verdicts(jsonable(summary), eta_ratio(claims))
    if per_seed:
        summary["per_seed"] = per_seed_fits(steps, claims, bias_grid, config)
    return jsonable(summary)


def _trimmed(fit: dict) -> dict:
    """What a verdict reads from a fit (:mod:`stalegrpo.fits.report`)."""
    keys = ("status", "slope", "ci_low", "ci_high", "r2", "n", "n_x", "x_min", "x_max", "points")
    keep = {k: fit.get(k) for k in keys if k in fit}
    return keep | {k: {"r2": (fit.get(k) or {}).get("r2")} for k in ("pure_S", "pure_T") if k in fit}


def per_seed_fits(steps: pd.DataFrame, claims: pd.DataFrame, bias_grid: pd.DataFrame, config: dict) -> list[dict]:
    """Each claim's fit on one seed's runs alone: the exponent of T_c ∝ η^b and the frontier from
    that seed's runs of the claim grid, the bias slope on the squares from its runs of the bias
    grid, and ``verdicts``: each claim's verdict on that seed alone, under the same minimums as the
    pooled one (so one seed's F2, one run per η, is an illustration). Whether a verdict holds seed
    by seed says whether the seeds behind it are enough."""
    rows = []
    seeds = set()
    for runs in (claims, bias_grid):
        seeds |= set(runs["seed"].dropna()) if "seed" in runs else set()
    for seed in sorted(seeds):
        row = {"seed": int(seed), "verdicts": {}}
        own = claims[claims["seed"] == seed]
        if len(own):
            fits = summarize_lm(_steps_of(steps, own), own, config, per_seed=False)
            row["tc_exponent"] = _trimmed(fits["tc_eta"].get("exponent") or {})
            row["frontier"] = _trimmed(fits["frontier"])
            row["verdicts"] |= {key: fits["verdicts"][key] for key in ("tc", "frontier")}
        own = bias_grid[bias_grid["seed"] == seed]
        if len(own):
            fits = summarize_lm(_steps_of(steps, own), own, config, per_seed=False)
            row["bias_sq_slope"] = _trimmed(fits["bias_sq_slope"])
            row["verdicts"] |= {key: fits["verdicts"][key] for key in ("bias_bound", "bias_first_order")}
        rows.append(row)
    return rows


def _range(counts) -> dict:
    counts = [int(c) for c in counts]
    return {"min": min(counts), "max": max(counts)} if counts else {"min": None, "max": None}


def seed_counts(summary: dict, claims: pd.DataFrame, bias_grid: pd.DataFrame) -> dict:
    """How many seeds stand behind each LM comparison (min and max over its units): F2 per η at
    S = 0, F3 per (S, T) cell, F1 per (S, η), and per row of the objectives, vary-S and schedules
    comparisons (their run counts, one run per seed)."""

    def per(runs: pd.DataFrame, keys: list[str]) -> list[int]:
        return runs.groupby(keys)["seed"].nunique().tolist() if _has(runs, keys + ["seed"]) and len(runs) else []

    sync = claims[claims["S"] == 0] if "S" in claims else claims
    return {
        "tc_eta": _range(per(sync, ["eta"])),
        "frontier": _range(r["n_seeds"] for r in summary.get("eta_star_summary") or [] if r.get("n_seeds")),
        "bias": _range(per(bias_grid, ["S", "eta"])),
        **{name: _range(r["n"] for r in summary.get(name) or []) for name in ("objectives", "vary_s", "schedules")},
    }
