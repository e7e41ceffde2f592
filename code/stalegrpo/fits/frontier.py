"""F3, the stability frontier (docs/method.md §8): the largest stable learning rate obeys
η* = min(a/S, b/T).

:func:`eta_star_table` reads η*(S, T′) per seed off the collapse table, truncating runs at
horizons T′ ≤ T (:func:`frontier_horizons`); :func:`eta_star_summary` takes the median over seeds
with its bound flag; :func:`fit_frontier` fits a and b in log space against the better single
branch and reports S* = a·T/b; :func:`frontier_seed_interval` bootstraps that fit over seeds.
Censored runs carry through as bounds on η*.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize

from stalegrpo.fits.verdicts import OK, TOO_FEW

EXACT, LOWER, UPPER, BOTH = "none", "lower", "upper", "both"
"""η* bound flags: exact (interpolated), lower bound (nothing collapsed), upper bound (the smallest
η collapsed), and, for a median over seeds, 'both' (the bounds leave the median undetermined)"""


def _eta_star(etas: np.ndarray, collapsed: np.ndarray) -> tuple[float, str]:
    """η* and its bound flag from one (S, seed) column of the grid, sorted by η.

    "First collapsing" is the smallest collapsing η, and η* interpolates geometrically between it
    and the largest stable η below it. Stable runs above the first collapse (stability need not be
    monotone in η with noise) are ignored: the frontier is where instability starts.
    """
    if not collapsed.any():
        return float(etas[-1]), LOWER
    first = int(np.argmax(collapsed))
    if first == 0:
        return float(etas[0]), UPPER
    return float(math.sqrt(etas[first - 1] * etas[first])), EXACT


def frontier_horizons(runs: pd.DataFrame, config: dict) -> list[int]:
    """The truncated horizons T′ F3 reads η* at: ``frontier_horizons``, else a quarter, half and
    all of the longest horizon."""
    longest = int(runs["horizon"].max())
    horizons = config.get("frontier_horizons") or [longest // 4, longest // 2, longest]
    return [int(h) for h in horizons if int(h) > 0]


def eta_star_table(runs: pd.DataFrame, horizons) -> pd.DataFrame:
    """η* per (S, T′, seed), with T′ in ``horizons`` (docs/method.md §8 F3).

    ``runs`` has columns S, eta, seed, collapse_step, censored, horizon. A run is collapsed within
    T′ iff it is not censored and collapse_step < T′; a censored run whose horizon is shorter than
    T′ says nothing about T′. An (S, seed) column is reported at T′ only if every η up to its first
    collapse is known there (a hole in the grid would move η*). Several runs at one (S, seed, η)
    (e.g. pooled variants) count as collapsed if any of them collapsed. ``bound`` is "none" for an interpolated
    η*, "lower" when no η collapsed (η* ≥ the largest η) and "upper" when the smallest η collapsed
    (η* ≤ the smallest η).
    """
    columns = ["S", "T", "seed", "eta_star", "bound"]
    needed = {"S", "eta", "seed", "collapse_step", "censored", "horizon"}
    if runs is None or len(runs) == 0 or not needed <= set(runs.columns):
        return pd.DataFrame(columns=columns)
    runs = runs[np.isfinite(runs["eta"].astype(float)) & (runs["eta"].astype(float) > 0)]

    rows = []
    for horizon in sorted({int(h) for h in horizons}):
        censored = runs["censored"].astype(bool)
        known = ~censored | (runs["horizon"] >= horizon)
        collapsed = ~censored & (runs["collapse_step"] < horizon)
        at_t = runs.assign(collapsed=collapsed, unknown=~known)
        for (s, seed), group in at_t.groupby(["S", "seed"], sort=True):
            by_eta = group.groupby("eta", sort=True)[["collapsed", "unknown"]].any()
            etas, hit = by_eta.index.to_numpy(dtype=float), by_eta["collapsed"].to_numpy()
            first = int(np.argmax(hit)) if hit.any() else len(hit)
            if (by_eta["unknown"].to_numpy() & ~hit)[:first].any():
                continue
            eta_star, bound = _eta_star(etas, hit)
            rows.append({"S": s, "T": horizon, "seed": seed, "eta_star": eta_star, "bound": bound})
    return pd.DataFrame(rows, columns=columns)


def _median_bound(values: np.ndarray, bounds: np.ndarray) -> str:
    """Whether the median over seeds is exact or only a bound, given per-seed bound flags.

    The true median lies between the median with every upper bound pushed to 0 and the median
    with every lower bound pushed to +inf; it is exact when both equal the recorded median.
    """
    median = np.median(values)
    low_end = np.median(np.where(bounds == UPPER, 0.0, values))
    high_end = np.median(np.where(bounds == LOWER, np.inf, values))
    low_ok, high_ok = np.isclose(low_end, median), np.isclose(high_end, median)
    if low_ok and high_ok:
        return EXACT
    if low_ok:
        return LOWER
    if high_ok:
        return UPPER
    return BOTH


def eta_star_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (S, T): median, min and max of η* over seeds, n_seeds, the censored fraction, and
    whether the median is exact or a bound (``bound``, see :func:`_median_bound`)."""
    columns = ["S", "T", "median", "min", "max", "n_seeds", "frac_censored", "bound"]
    if table is None or len(table) == 0:
        return pd.DataFrame(columns=columns)
    rows = []
    for (s, t), group in table.groupby(["S", "T"], sort=True):
        values, bounds = group["eta_star"].to_numpy(float), group["bound"].to_numpy(str)
        rows.append(
            {
                "S": s,
                "T": t,
                "median": float(np.median(values)),
                "min": float(values.min()),
                "max": float(values.max()),
                "n_seeds": len(group),
                "frac_censored": float(np.mean(bounds != EXACT)),
                "bound": _median_bound(values, bounds),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _frontier_log(params: np.ndarray, log_s: np.ndarray, log_t: np.ndarray) -> np.ndarray:
    """log η* = min(log a − log S, log b − log T); S = 0 (log S = −inf) leaves only the b/T branch."""
    log_a, log_b = params[..., 0:1], params[..., 1:2]
    return np.minimum(log_a - log_s, log_b - log_t)


def _frontier_loss(params, log_s, log_t, y, bound) -> np.ndarray:
    """Sum of squared log residuals, one-sided for bounded points (a Tobit-like hinge).

    A lower bound is only penalised when the model falls below it, an upper bound only when the
    model rises above it; ``params`` may carry leading grid dimensions.
    """
    r = _frontier_log(np.atleast_2d(params), log_s, log_t) - y
    r = np.where(bound == LOWER, np.minimum(r, 0.0), r)
    r = np.where(bound == UPPER, np.maximum(r, 0.0), r)
    return (r**2).sum(axis=-1)


def _fit_min_law(log_s, log_t, y, bound) -> np.ndarray:
    """Minimise the piecewise-quadratic loss: a coarse grid over (log a, log b), then Nelder-Mead
    from the best few grid points (the loss has a kink per point, so one start is not enough)."""
    a_guess = (y + log_s)[np.isfinite(log_s)]
    b_guess = y + log_t
    grid_a = np.linspace(a_guess.min() - 2, a_guess.max() + 2, 61) if len(a_guess) else np.array([0.0])
    grid_b = np.linspace(b_guess.min() - 2, b_guess.max() + 2, 61)
    grid = np.stack(np.meshgrid(grid_a, grid_b, indexing="ij"), axis=-1).reshape(-1, 2)
    losses = _frontier_loss(grid, log_s, log_t, y, bound)
    best = None
    for start in grid[np.argsort(losses)[:5]]:
        res = optimize.minimize(
            lambda p: float(_frontier_loss(p, log_s, log_t, y, bound)[0]),
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / ss_tot) if len(y) > 1 and ss_tot > 0 else float("nan")


def _pure_fits(log_s, log_t, y) -> dict:
    """One-regime comparison fits on the exact points: η* = a/S (S ≥ 1 only) and η* = b/T (all).

    Each has a closed-form log-space intercept; r2 is over that fit's own points, and
    ``r2_common`` over the S ≥ 1 points that all three fits share.
    """
    has_s = np.isfinite(log_s)
    out = {}
    if has_s.sum() >= 2:
        log_a = float((y + log_s)[has_s].mean())
        out["pure_S"] = {
            "a": math.exp(log_a),
            "r2": _r2(y[has_s], log_a - log_s[has_s]),
            "n": int(has_s.sum()),
        }
    else:
        out["pure_S"] = {"a": float("nan"), "r2": float("nan"), "n": int(has_s.sum())}
    log_b = float((y + log_t).mean())
    out["pure_T"] = {
        "b": math.exp(log_b),
        "r2": _r2(y, log_b - log_t),
        "n": len(y),
        "r2_common": _r2(y[has_s], log_b - log_t[has_s]) if has_s.sum() >= 2 else float("nan"),
    }
    return out


def fit_frontier(eta_star: pd.DataFrame) -> dict:
    """Fit η* = min(a/S, b/T) to the per-(S, T) medians of η* (docs/method.md §8 F3).

    Accepts either :func:`eta_star_summary`'s table or :func:`eta_star_table`'s per-seed table
    (summarised here). The fit is least squares in log space. Censoring: a median that is only a
    lower (upper) bound enters with a one-sided penalty, i.e. only when the fit falls below (rises
    above) it; medians bounded both ways are excluded. R² is over the exact points only. If every
    point lies in one regime, the other parameter is not identified: it is reported at the edge of
    the values consistent with the data (``a_identified``/``b_identified`` False) and S* is then a
    bound. ``points`` says which regime each point falls in ("staleness": a/S binds; "horizon").
    S* = a·T/b per horizon is the regime boundary: for S > S* the stale-rollout constraint binds.
    Comparison fits ``pure_S`` (η* = a/S) and ``pure_T`` (η* = b/T) show whether both are needed.
    """
    nan = float("nan")
    result = {
        "a": nan,
        "b": nan,
        "S_star": [],
        "r2": nan,
        "n": 0,
        "n_censored": 0,
        "n_excluded": 0,
        "points": [],
        "a_identified": False,
        "b_identified": False,
        "pure_S": {},
        "pure_T": {},
    }
    if eta_star is None or len(eta_star) == 0:
        return result | {"status": TOO_FEW, "message": "no eta* points"}
    if "eta_star" in eta_star.columns:
        eta_star = eta_star_summary(eta_star)

    pts = eta_star[np.isfinite(eta_star["median"].astype(float)) & (eta_star["median"].astype(float) > 0)]
    pts = pts[(pts["bound"] != BOTH) & (pts["S"] >= 0) & (pts["T"] > 0)]
    s, t = pts["S"].to_numpy(float), pts["T"].to_numpy(float)
    with np.errstate(divide="ignore"):
        log_s = np.log(s)  # S = 0 gives −inf: only the b/T branch
    log_t, y, bound = np.log(t), np.log(pts["median"].to_numpy(float)), pts["bound"].to_numpy(str)
    exact = bound == EXACT
    result |= {
        "n": int(exact.sum()),
        "n_censored": int((~exact).sum()),
        "n_excluded": len(eta_star) - len(pts),
    }
    if exact.sum() < 3:
        return result | {
            "status": TOO_FEW,
            "message": f"{int(exact.sum())} uncensored (S, T) medians (need >= 3)",
        }

    log_a, log_b = _fit_min_law(log_s, log_t, y, bound)
    stale = (log_a - log_s) < (log_b - log_t)
    a_identified, b_identified = bool((stale & exact).any()), bool((~stale & exact).any())
    # an unidentified branch is moved to the edge where it would start to bind on some point
    has_s = np.isfinite(log_s)
    if not b_identified and has_s.any():
        log_b = float(np.max((log_a - log_s + log_t)[has_s]))
    if not a_identified and has_s.any():
        log_a = float(np.max((log_b - log_t + log_s)[has_s]))
    pred = _frontier_log(np.array([log_a, log_b]), log_s, log_t)
    a = math.exp(log_a) if has_s.any() else nan  # with no S >= 1 point, a/S never binds
    b = math.exp(log_b)

    points = [
        {
            "S": float(si),
            "T": float(ti),
            "eta_star": float(math.exp(yi)),
            "fit": float(math.exp(pi)),
            "bound": str(bi),
            "regime": "staleness" if st else "horizon",
        }
        for si, ti, yi, pi, bi, st in zip(s, t, y, pred, bound, stale)
    ]
    common = exact & np.isfinite(log_s)
    pure = _pure_fits(log_s[exact], log_t[exact], y[exact])
    message = (
        f"min(a/S, b/T) fit to {int(exact.sum())} medians in log space; {int((~exact).sum())} bounded "
        f"medians as one-sided constraints; {result['n_excluded']} excluded"
    )
    if not (a_identified and b_identified):
        message += "; only one regime has uncensored points, so the other parameter (and S*) is a bound"
    return result | {
        "a": a,
        "b": b,
        "r2": _r2(y[exact], pred[exact]),
        "r2_common": _r2(y[common], pred[common]) if common.sum() >= 2 else nan,
        "S_star": [{"T": float(ti), "S_star": a * ti / b} for ti in np.unique(t)],
        "points": points,
        "a_identified": a_identified,
        "b_identified": b_identified,
        "pure_S": pure["pure_S"],
        "pure_T": pure["pure_T"],
        "status": OK,
        "message": message,
    }



def frontier_seed_interval(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """A bootstrap over seeds of the F3 fit (:func:`fit_frontier`) on a per-seed η* table
    (:func:`eta_star_table`): seeds are drawn with replacement, each bringing all its (S, T) cells;
    each resample's medians over its seeds are fitted again. Reports 95% intervals of
    ``r2_gain`` (the law's R² minus the better single branch's, which the verdict compares with
    0.05), of ``log10_a`` and ``log10_b``, and ``share_supported``, the share of usable resamples
    whose gain exceeds 0.05. Seeds are the unit of replication, so nothing is resampled within
    one; with fewer than 2 seeds there is no interval."""
    nan = float("nan")
    result = {"n_seeds": 0, "n_boot": 0, "bootstrap": "seeds"}
    for key in ("r2_gain", "log10_a", "log10_b"):
        result |= {f"{key}_low": nan, f"{key}_high": nan}
    result["share_supported"] = nan
    if table is None or not len(table):
        return result
    seeds = sorted(table["seed"].unique())
    result["n_seeds"] = len(seeds)
    if len(seeds) < 2:
        return result
    by_seed = {s: table[table["seed"] == s] for s in seeds}
    rng = np.random.default_rng(seed)
    draws = {"r2_gain": [], "log10_a": [], "log10_b": []}
    for _ in range(n_boot):
        picks = rng.integers(0, len(seeds), size=len(seeds))
        sample = pd.concat([by_seed[seeds[p]].assign(seed=i) for i, p in enumerate(picks)], ignore_index=True)
        fit = fit_frontier(eta_star_summary(sample))
        pure = [(fit.get(k) or {}).get("r2") for k in ("pure_S", "pure_T")]
        pure = [v for v in pure if v is not None and np.isfinite(v)]
        if fit.get("status") != OK or not np.isfinite(fit["r2"]) or not pure:
            continue
        draws["r2_gain"].append(fit["r2"] - max(pure))
        draws["log10_a"].append(np.log10(fit["a"]) if fit["a"] > 0 else nan)
        draws["log10_b"].append(np.log10(fit["b"]) if fit["b"] > 0 else nan)
    result["n_boot"] = len(draws["r2_gain"])
    if result["n_boot"] < 20:  # too few usable resamples for a 95% interval
        return result
    for key, values in draws.items():
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        if len(values):
            result[f"{key}_low"], result[f"{key}_high"] = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    result["share_supported"] = float(np.mean(np.asarray(draws["r2_gain"]) > 0.05))
    return result
