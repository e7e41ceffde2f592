"""Fits of the staleness × learning-rate scaling laws (docs/method.md §8, on data from §3, §4, §9).

Three claims are tested, each by one fit:

- **F1 bias**: the per-step surrogate-gradient bias grows as O(S·η). ``fit_bias_slope`` regresses
  log bias on log(S·η) by ordinary least squares. The claim is read twice (see
  :mod:`stalegrpo.fits.verdicts`): as a bound (slope ≥ 1 at small S·η; contradicted only by a
  CI entirely below 1) and as a first-order law (slope = 1). The 95% CI is a percentile
  bootstrap over points, or, given each point's seed (``clusters``), a hierarchical bootstrap:
  seeds with replacement, then runs within each drawn seed (:func:`bootstrap_indices`).
- **F2 collapse**: in the horizon-limited regime T_c·η is constant across η (continuous time
  t = k·η, docs/method.md §9). ``tc_eta_cv`` reports the coefficient of variation of T_c·η across η.
- **F3 stability frontier**: the largest stable learning rate obeys η* = min(a/S, b/T), fitted
  in :mod:`stalegrpo.fits.frontier` (η* per seed from the collapse table, the min-law fit, its
  bootstrap over seeds).

Censoring (docs/method.md §4: a run that never collapses is right-censored at its horizon) is
carried through every fit, and a fit with too few points returns ``status="too_few_points"``
with NaN numbers instead of raising. ``summarize_exact`` runs all fits for one exact-testbed grid
and returns a JSON-serialisable dict; :mod:`stalegrpo.fits.report` turns it into LaTeX macros.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize

from stalegrpo.fits import verdicts
from stalegrpo.fits.frontier import eta_star_summary, eta_star_table, fit_frontier, frontier_horizons
from stalegrpo.fits.verdicts import MIN_SEEDS_FOR_SEED_VARIANCE, OK, SLOPE_RANGE, TOO_FEW



# ---------------------------------------------------------------------------------------------
# F1: bias slope
# ---------------------------------------------------------------------------------------------


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R² of y on x."""
    xm, ym = x.mean(), y.mean()
    slope = ((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum()
    intercept = ym - slope * xm
    ss_tot = ((y - ym) ** 2).sum()
    ss_res = ((y - intercept - slope * x) ** 2).sum()
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return float(slope), float(intercept), float(r2)




def bootstrap_indices(clusters, strata=None, seed: int = 0):
    """A function that draws one hierarchical bootstrap resample, as an index array.

    ``clusters`` labels each point with its seed. A resample draws as many seeds as there are,
    with replacement, then, for each seed drawn, as many of that seed's points as it has, with
    replacement; with ``strata`` (e.g. η), the points are drawn within each (seed, stratum) cell
    instead, so that a fixed design level is never lost. Resampling at both stages counts the
    within-seed variance twice when seeds do not differ, so the interval is then somewhat wider
    than one over points (about 1.3× in tests/test_fits.py); when seeds differ it carries their
    spread, which a bootstrap over points does not.
    """
    def codes(values) -> np.ndarray:
        return pd.factorize(pd.Series(np.asarray(values).ravel()).astype(str))[0]

    rng = np.random.default_rng(seed)
    labels = codes(clusters)
    cells = codes(strata) if strata is not None else labels * 0
    members = [
        [np.flatnonzero((labels == c) & (cells == k)) for k in np.unique(cells[labels == c])]
        for c in range(labels.max() + 1 if len(labels) else 0)
    ]

    def draw() -> np.ndarray:
        parts = []
        for pick in rng.integers(0, len(members), size=len(members)):
            parts += [cell[rng.integers(0, len(cell), size=len(cell))] for cell in members[pick]]
        return np.concatenate(parts) if parts else np.array([], dtype=int)

    return draw


def _bootstrap_info(clusters) -> dict:
    """``bootstrap`` ("points" or "seeds"), ``n_seeds`` and ``seed_variance`` of a fit's CI."""
    if clusters is None:
        return {"bootstrap": "points", "n_seeds": None, "seed_variance": False}
    n_seeds = int(pd.Series(np.asarray(clusters).ravel()).astype(str).nunique())
    return {
        "bootstrap": "seeds" if n_seeds > 1 else "points",
        "n_seeds": n_seeds,
        "seed_variance": n_seeds >= MIN_SEEDS_FOR_SEED_VARIANCE,
    }


def _bootstrap_slopes(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, clusters=None) -> np.ndarray:
    """OLS slopes of n_boot resamples of the points (vectorised), or of hierarchical resamples
    when ``clusters`` (each point's seed) holds more than one seed; degenerate resamples dropped."""
    if clusters is not None and len(np.unique(np.asarray(clusters).astype(str))) > 1:
        draw, slopes = bootstrap_indices(clusters, seed=seed), []
        for _ in range(n_boot):
            idx = draw()
            if len(np.unique(x[idx])) >= 2:
                slopes.append(_ols(x[idx], y[idx])[0])
        return np.array(slopes)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    xb, yb = x[idx], y[idx]
    xc = xb - xb.mean(axis=1, keepdims=True)
    yc = yb - yb.mean(axis=1, keepdims=True)
    var = (xc**2).sum(axis=1)
    keep = var > 1e-12 * max(1.0, float((x**2).mean()))  # a resample of one repeated x has no slope
    return (xc * yc).sum(axis=1)[keep] / var[keep]


def _x_range(x: np.ndarray) -> dict:
    """The range and number of distinct values of a fit's x (S·η for F1): what a verdict covers."""
    if not len(x):
        return {"x_min": float("nan"), "x_max": float("nan"), "n_x": 0}
    return {"x_min": float(x.min()), "x_max": float(x.max()), "n_x": int(len(np.unique(x)))}


def fit_bias_slope(x, y, n_boot: int = 1000, seed: int = 0, clusters=None) -> dict:
    """Fit log y = intercept + slope · log x, with x = S·η and y = the bias (docs/method.md §8 F1).

    Points with a non-positive or non-finite x or y are dropped (the bias probe reports the square
    root of a positive part, so an exact zero carries no slope information). ``ci_low``/``ci_high``
    are the 2.5/97.5 percentiles of the slope over ``n_boot`` bootstrap resamples of the points,
    or, with ``clusters`` (each point's seed), of hierarchical resamples (:func:`bootstrap_indices`;
    ``bootstrap``, ``n_seeds`` and ``seed_variance`` say which). ``x_min``, ``x_max`` and ``n_x``
    describe the usable x. Fewer than 3 usable points, or fewer than 2 distinct x, gives
    ``status="too_few_points"``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[usable]), np.log(y[usable])
    clusters = None if clusters is None else np.asarray(clusters).ravel()[usable]
    n, dropped = int(usable.sum()), int((~usable).sum())
    nan = float("nan")
    result = {
        "slope": nan,
        "intercept": nan,
        "ci_low": nan,
        "ci_high": nan,
        "r2": nan,
        "n": n,
        "n_dropped": dropped,
    } | _x_range(x[usable]) | _bootstrap_info(clusters)
    if n < 3 or len(np.unique(lx)) < 2:
        return result | {
            "status": TOO_FEW,
            "message": f"{n} usable points (need >= 3 with >= 2 distinct S*eta)",
        }

    slope, intercept, r2 = _ols(lx, ly)
    boots = _bootstrap_slopes(lx, ly, n_boot, seed, clusters)
    if len(boots) > 0:
        result["ci_low"], result["ci_high"] = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    message = f"OLS of log bias on log(S*eta) over {n} points"
    if dropped:
        message += f"; {dropped} non-positive/non-finite points dropped"
    return result | {"slope": slope, "intercept": intercept, "r2": r2, "status": OK, "message": message}




def _fit_squares(lx: np.ndarray, y: np.ndarray, w: np.ndarray, start: tuple[float, float]) -> np.ndarray:
    """(slope, log c) minimising Σ w (y − c·x^(2·slope))², x = exp(lx). The readings are scaled to
    unit RMS first (bias² may be 1e-8), so that the solver's tolerances mean the same at any scale."""
    scale = float(np.sqrt(np.mean(y**2))) or 1.0
    y = y / scale

    def residuals(params):
        return np.sqrt(w) * (y - np.exp(params[1] + 2 * params[0] * lx))

    bounds = ([SLOPE_RANGE[0], -300.0], [SLOPE_RANGE[1], 300.0])
    start = (float(np.clip(start[0], *SLOPE_RANGE)), float(start[1]) - math.log(scale))
    fit = optimize.least_squares(residuals, start, bounds=bounds, ftol=1e-12, xtol=1e-12, gtol=1e-12).x
    return np.array([fit[0], fit[1] + math.log(scale)])


def fit_bias_sq_slope(x, bias_sq, se=None, n_boot: int = 1000, seed: int = 0, clusters=None) -> dict:
    """Fit bias² = c·x^(2·slope), x = S·η, on the unbiased bias² readings themselves.

    The log-log fit of :func:`fit_bias_slope` must drop readings ≤ 0, which at small drift are
    most of them (a small bias² under noise). This fit keeps every reading: weighted least
    squares with weights 1/se² (the readings' standard errors, when all are given and positive;
    else equal weights), the slope bounded to :data:`SLOPE_RANGE`. ``ci_low``/``ci_high`` are the
    2.5/97.5 percentiles of the slope over ``n_boot`` bootstrap resamples of the points (with
    ``clusters``, each reading's seed, hierarchical resamples: :func:`bootstrap_indices`); a slope
    or bound that sits on the edge of :data:`SLOPE_RANGE` means the data do not constrain it.
    ``x_min``, ``x_max`` and ``n_x`` describe the S·η of the readings.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(bias_sq, dtype=np.float64).ravel()
    se = np.full_like(x, np.nan) if se is None else np.asarray(se, dtype=np.float64).ravel()
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y, se = x[usable], y[usable], se[usable]
    clusters = None if clusters is None else np.asarray(clusters).ravel()[usable]
    n, nan = len(x), float("nan")
    result = {"slope": nan, "log_c": nan, "ci_low": nan, "ci_high": nan, "n": n,
              "n_nonpositive": int((y <= 0).sum()), "weighted": False}
    result |= _x_range(x) | _bootstrap_info(clusters)
    if n < 3 or len(np.unique(x)) < 2:
        return result | {"status": TOO_FEW, "message": f"{n} usable readings (need >= 3 with >= 2 distinct S*eta)"}
    weighted = bool(np.isfinite(se).all() and (se > 0).all())
    w = 1.0 / se**2 if weighted else np.ones_like(y)
    w = w / w.mean()
    lx = np.log(x)
    positive = y > 0  # a start from the log-log line through the positive readings, if it exists
    if positive.sum() >= 2 and len(np.unique(lx[positive])) >= 2:
        slope0, intercept0, _ = _ols(lx[positive], np.log(y[positive]))
        start = (slope0 / 2, intercept0)
    else:
        start = (1.0, float(np.log(max(np.abs(y).mean(), 1e-300)) - 2 * lx.mean()))
    slope, log_c = _fit_squares(lx, y, w, start)
    rng = np.random.default_rng(seed)
    if result["bootstrap"] == "seeds":
        draw = bootstrap_indices(clusters, seed=seed)
    else:
        def draw():
            return rng.integers(0, n, size=n)
    boots = []
    for _ in range(n_boot):
        idx = draw()
        if len(np.unique(lx[idx])) < 2:
            continue
        boots.append(_fit_squares(lx[idx], y[idx], w[idx], (slope, log_c))[0])
    if boots:
        result["ci_low"], result["ci_high"] = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    message = (
        f"{'weighted ' if weighted else ''}least squares of bias² on c·(S*eta)^(2·slope) over {n} readings "
        f"({result['n_nonpositive']} of them <= 0, kept)"
    )
    return result | {"slope": float(slope), "log_c": float(log_c), "weighted": weighted, "status": OK, "message": message}


# ---------------------------------------------------------------------------------------------
# F2: T_c·η in the horizon-limited regime
# ---------------------------------------------------------------------------------------------


def tc_eta_cv(eta, collapse_step, censored) -> dict:
    """Coefficient of variation of T_c·η across η, over uncensored runs (docs/method.md §8 F2).

    T_c·η is first averaged over the seeds at each η (``per_eta``), so that η values with more
    collapsed seeds do not weigh more; the CV is then std/mean of those per-η means with ddof = 1
    (the sample std, which needs >= 2 distinct η). Censored runs are excluded, since their T_c is
    only a lower bound; they are counted in ``n_censored`` and named in the message. A large share
    of censored runs biases the CV (the surviving runs are the early collapsers).
    """
    eta = np.asarray(eta, dtype=np.float64).ravel()
    step = np.asarray(collapse_step, dtype=np.float64).ravel()
    censored = np.asarray(censored, dtype=bool).ravel()
    usable = ~censored & np.isfinite(eta) & np.isfinite(step) & (eta > 0)
    n_censored = int(censored.sum())

    frame = pd.DataFrame({"eta": eta[usable], "tc_eta": step[usable] * eta[usable]})
    per_eta = frame.groupby("eta", sort=True)["tc_eta"].agg(tc_eta="mean", n="size").reset_index()
    per_eta_records = [
        {"eta": float(r.eta), "tc_eta": float(r.tc_eta), "n": int(r.n)}
        for r in per_eta.itertuples(index=False)
    ]
    censor_note = f"; {n_censored} censored runs excluded" if n_censored else ""
    nan = float("nan")
    result = {
        "cv": nan,
        "mean": nan,
        "std": nan,
        "n": int(usable.sum()),
        "n_eta": len(per_eta),
        "n_censored": n_censored,
        "per_eta": per_eta_records,
        "ddof": 1,
    }
    if len(per_eta) < 2:
        return result | {
            "status": TOO_FEW,
            "message": f"{len(per_eta)} distinct eta with a collapse (need >= 2)" + censor_note,
        }

    means = per_eta["tc_eta"].to_numpy()
    mean, std = float(means.mean()), float(means.std(ddof=1))
    cv = std / mean if mean > 0 else float("nan")
    message = f"CV over {len(per_eta)} eta values ({result['n']} collapsed runs)" + censor_note
    return result | {"cv": cv, "mean": mean, "std": std, "status": OK, "message": message}


# ---------------------------------------------------------------------------------------------
# One exact-testbed grid: all fits as one JSON-serialisable dict
# ---------------------------------------------------------------------------------------------


def jsonable(obj):
    """Plain Python types for json.dumps: numpy scalars unwrapped, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _has(frame, columns) -> bool:
    return frame is not None and len(frame) > 0 and set(columns) <= set(frame.columns)


def bias_points(steps: pd.DataFrame, runs: pd.DataFrame, config: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """(x = S·η, y = bias) per run with S ≥ 1 and S·η ≤ small_drift_max.

    The run's ``bias`` if the runs table has it (the exact testbed's reading at t0 = ``bias_time``,
    the LM probe's per-run value of :func:`stalegrpo.fits.lm.lm_run_bias`); otherwise the mean of
    the per-step ``bias`` over steps
    S ≤ step < S + bias_window (the first steps at which the lag has reached S, before the run has
    drifted far from its start).
    """
    empty = np.array([]), np.array([])
    if not _has(runs, ["S", "eta"]):
        return *empty, "no runs"
    runs = runs[(runs["S"] >= 1) & (runs["S"] * runs["eta"] <= config.get("small_drift_max", math.inf))]
    if "bias" in runs.columns:
        return (runs["S"] * runs["eta"]).to_numpy(float), runs["bias"].to_numpy(float), "run bias"
    if not _has(steps, ["run", "step", "bias"]) or "run" not in runs.columns:
        return *empty, "no bias column"
    window = int(config.get("bias_window", 20))
    merged = steps[["run", "step", "bias"]].merge(runs[["run", "S", "eta"]], on="run")
    in_window = merged[(merged["step"] >= merged["S"]) & (merged["step"] < merged["S"] + window)]
    per_run = in_window.groupby("run").agg(S=("S", "first"), eta=("eta", "first"), bias=("bias", "mean"))
    return (
        (per_run["S"] * per_run["eta"]).to_numpy(float),
        per_run["bias"].to_numpy(float),
        f"mean bias over steps S..S+{window}",
    )


def eta_ratio(runs: pd.DataFrame) -> float | None:
    """The largest ratio of consecutive η at one S (how finely the grid resolves η*)."""
    ratios = []
    if not _has(runs, ["S", "eta"]):
        return None
    for _, group in runs.groupby("S"):
        etas = sorted(group["eta"].astype(float).unique())
        ratios += [b / a for a, b in zip(etas, etas[1:])]
    return max(ratios, default=None)


def _horizon_regime(runs: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, str]:
    """Runs in the horizon-limited regime: S·η ≤ horizon_regime_max_tau if configured, else the
    synchronous runs (S = 0), where no staleness constraint can bind."""
    tau_max = config.get("horizon_regime_max_tau")
    if tau_max is None:
        return runs[runs["S"] == 0], "S == 0"
    return runs[runs["S"] * runs["eta"] <= tau_max], f"S*eta <= {tau_max}"


def _counts(steps: pd.DataFrame, runs: pd.DataFrame) -> dict:
    counts = {"n_runs": 0 if runs is None else len(runs), "n_steps": 0 if steps is None else len(steps)}
    if _has(runs, ["censored"]):
        counts |= {
            "n_censored": int(runs["censored"].astype(bool).sum()),
            "n_collapsed": int((~runs["censored"].astype(bool)).sum()),
        }
    for column in ("S", "eta", "seed"):
        if _has(runs, [column]):
            counts[f"n_{column}"] = int(runs[column].nunique())
    return counts


def summarize_exact(steps: pd.DataFrame, runs: pd.DataFrame, config: dict | None = None) -> dict:
    """All fits for one exact-testbed grid (docs/method.md §8, §9), as a JSON-serialisable dict.

    Keys: ``bias_slope`` (F1), ``tc_eta`` (F2, over the horizon-limited runs), ``eta_star`` (per
    seed records) and ``eta_star_summary`` (per (S, T)), ``frontier`` (F3, at horizons
    ``frontier_horizons`` or T/4, T/2, T with T the longest horizon), ``verdicts`` (F1's two,
    :func:`stalegrpo.fits.verdicts.bias_verdicts`), ``counts``, ``warnings``.
    If the tables hold several (objective, eps, optimizer) variants, the top-level fits pool them
    (with a warning) and ``by_variant`` holds one summary per variant.
    """
    config = dict(config or {})
    warnings = []
    x, y, bias_source = bias_points(steps, runs, config)
    bias_slope = fit_bias_slope(x, y, n_boot=int(config.get("n_boot", 1000)), seed=int(config.get("seed", 0)))
    bias_slope["source"] = bias_source

    run_columns = ["S", "eta", "collapse_step", "censored"]
    if _has(runs, run_columns):
        regime, regime_rule = _horizon_regime(runs, config)
        tc_eta = tc_eta_cv(regime["eta"], regime["collapse_step"], regime["censored"])
        tc_eta["regime"] = regime_rule
    else:
        tc_eta = tc_eta_cv([], [], []) | {"regime": "no runs"}

    horizons = frontier_horizons(runs, config) if _has(runs, run_columns + ["seed", "horizon"]) else []
    table = eta_star_table(runs, horizons)
    summary_table = eta_star_summary(table)
    frontier = fit_frontier(summary_table)

    variants = [c for c in ("objective", "eps", "optimizer") if _has(runs, [c])]
    by_variant = {}
    if variants and len(runs.groupby(variants)) > 1:
        warnings.append(f"{len(runs.groupby(variants))} variants of {variants} pooled at top level")
        for key, sub_runs in runs.groupby(variants):
            key = key if isinstance(key, tuple) else (key,)
            name = ",".join(f"{c}={v}" for c, v in zip(variants, key))
            linked = _has(steps, ["run"]) and "run" in sub_runs.columns
            sub_steps = steps[steps["run"].isin(sub_runs["run"])] if linked else steps
            by_variant[name] = summarize_exact(sub_steps, sub_runs.drop(columns=variants), config)


    summary = {
        "bias_slope": bias_slope,
        "verdicts": verdicts.bias_verdicts(bias_slope, verdicts.FULL_TEST["exact"]),
        "tc_eta": tc_eta,
        "eta_star": table,
        "eta_star_summary": summary_table,
        "frontier": frontier,
        "horizons": horizons,
        "counts": _counts(steps, runs),
        "warnings": warnings,
    }
    if by_variant:
        summary["by_variant"] = by_variant
    return jsonable(summary)
