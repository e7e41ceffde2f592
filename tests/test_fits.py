"""Fits on synthetic data with known answers (docs/method.md §8)."""

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stalegrpo.fits import frontier, laws, lm, report, report_lm, verdicts

# --- F1: bias slope ---------------------------------------------------------------------------


def test_bias_slope_one_is_covered_by_its_ci():
    rng = np.random.default_rng(0)
    x = np.logspace(-3, -1, 40)
    y = 0.7 * x * np.exp(rng.normal(0, 0.2, x.size))
    fit = laws.fit_bias_slope(x, y, n_boot=500)
    assert fit["status"] == "ok" and fit["n"] == 40
    assert fit["ci_low"] <= fit["slope"] <= fit["ci_high"]
    assert fit["ci_low"] <= 1.0 <= fit["ci_high"]
    assert fit["ci_high"] - fit["ci_low"] < 0.3  # the CI is informative, not vacuous
    assert fit["r2"] > 0.9


def test_bias_slope_two_is_recovered_and_bad_points_dropped():
    x = np.logspace(-2, 0, 20)
    y = 3.0 * x**2
    fit = laws.fit_bias_slope(np.r_[x, 0.0, 1.0, np.nan], np.r_[y, 1.0, -1.0, 1.0], n_boot=200)
    assert fit["slope"] == pytest.approx(2.0, abs=1e-9)
    assert math.exp(fit["intercept"]) == pytest.approx(3.0)
    assert fit["n"] == 20 and fit["n_dropped"] == 3


@pytest.mark.parametrize("x, y", [([], []), ([0.1, 0.2], [1, 2]), ([0.1, 0.1, 0.1], [1, 2, 3])])
def test_bias_slope_too_few_points(x, y):
    fit = laws.fit_bias_slope(x, y)
    assert fit["status"] == "too_few_points"
    assert math.isnan(fit["slope"]) and math.isnan(fit["ci_low"])


# --- F2: T_c·η --------------------------------------------------------------------------------


def test_tc_eta_cv_small_for_inverse_law_and_large_for_constant():
    eta = np.repeat([0.01, 0.03, 0.1, 0.3], 3)
    censored = np.zeros(eta.size, dtype=bool)
    inverse = laws.tc_eta_cv(eta, np.round(5.0 / eta), censored)
    assert inverse["status"] == "ok" and inverse["cv"] < 0.01
    assert inverse["mean"] == pytest.approx(5.0, rel=0.01)
    assert [p["eta"] for p in inverse["per_eta"]] == [0.01, 0.03, 0.1, 0.3]
    constant = laws.tc_eta_cv(eta, np.full(eta.size, 50), censored)
    assert constant["cv"] > 0.8


def test_tc_eta_cv_excludes_and_counts_censored():
    eta = np.array([0.1, 0.2, 0.4, 0.4])
    step = np.array([100, 50, 25, 999])  # the last run never collapsed: T_c = horizon is a bound
    fit = laws.tc_eta_cv(eta, step, [False, False, False, True])
    assert fit["cv"] == pytest.approx(0.0, abs=1e-12)
    assert fit["n"] == 3 and fit["n_censored"] == 1 and "censored" in fit["message"]
    too_few = laws.tc_eta_cv(eta, step, [False, True, True, True])
    assert too_few["status"] == "too_few_points" and too_few["cv"] != too_few["cv"]


# --- F3: η* table ------------------------------------------------------------------------------


def _runs(rows, horizon=100):
    """rows: (S, seed, eta, collapse_step or None for censored)."""
    return pd.DataFrame(
        [
            {
                "S": s,
                "seed": seed,
                "eta": eta,
                "collapse_step": horizon if c is None else c,
                "censored": c is None,
                "horizon": horizon,
            }
            for s, seed, eta, c in rows
        ]
    )


def test_eta_star_geometric_interpolation_and_censoring_both_ways():
    runs = _runs(
        [
            (1, 0, 0.01, None),
            (1, 0, 0.04, None),
            (1, 0, 0.16, 30),  # between 0.04 and 0.16
            (2, 0, 0.01, None),
            (2, 0, 0.04, None),
            (2, 0, 0.16, None),  # nothing collapses
            (4, 0, 0.01, 10),
            (4, 0, 0.04, 5),
            (4, 0, 0.16, 2),  # everything collapses
            (8, 0, 0.01, None),
            (8, 0, 0.04, 70),
            (8, 0, 0.16, None),  # non-monotone
        ]
    )
    table = frontier.eta_star_table(runs, [100]).set_index("S")
    assert table.loc[1, "eta_star"] == pytest.approx(0.08) and table.loc[1, "bound"] == "none"
    assert table.loc[2, "eta_star"] == 0.16 and table.loc[2, "bound"] == "lower"
    assert table.loc[4, "eta_star"] == 0.01 and table.loc[4, "bound"] == "upper"
    assert table.loc[8, "eta_star"] == pytest.approx(0.02) and table.loc[8, "bound"] == "none"
    assert list(table.columns) == ["T", "seed", "eta_star", "bound"]


def test_eta_star_truncation_to_shorter_horizons():
    runs = _runs([(1, 0, 0.01, None), (1, 0, 0.04, 60), (1, 0, 0.16, 20)])
    table = frontier.eta_star_table(runs, [10, 50, 100]).set_index("T")
    assert table.loc[10, "eta_star"] == 0.16 and table.loc[10, "bound"] == "lower"  # nothing yet
    assert table.loc[50, "eta_star"] == pytest.approx(0.08)  # 0.16 collapsed
    assert table.loc[100, "eta_star"] == pytest.approx(0.02)  # 0.04 too
    assert len(frontier.eta_star_table(runs, [200])) == 0  # censored at 100 says nothing about 200
    runs.loc[0, "horizon"] = runs.loc[0, "collapse_step"] = 400  # now known stable up to 400
    assert frontier.eta_star_table(runs, [200])["eta_star"].item() == pytest.approx(0.02)


def test_eta_star_summary_median_range_and_bound():
    table = pd.DataFrame(
        {
            "S": 1,
            "T": 100,
            "seed": [0, 1, 2],
            "eta_star": [0.02, 0.04, 0.16],
            "bound": ["none", "none", "lower"],
        }
    )
    row = frontier.eta_star_summary(table).iloc[0]
    assert (row["median"], row["min"], row["max"]) == (0.04, 0.02, 0.16)
    assert row["frac_censored"] == pytest.approx(1 / 3)
    assert row["bound"] == "none"  # the censored seed is above the median: the median is exact
    table.loc[1, "bound"] = "lower"
    assert frontier.eta_star_summary(table).iloc[0]["bound"] == "lower"


# --- F3: frontier fit --------------------------------------------------------------------------


def _frontier_points(a, b, S, T, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in S:
        for t in T:
            eta = min(a / s if s > 0 else np.inf, b / t) * math.exp(rng.normal(0, noise))
            rows.append(
                {
                    "S": s,
                    "T": t,
                    "median": eta,
                    "min": eta,
                    "max": eta,
                    "n_seeds": 1,
                    "frac_censored": 0.0,
                    "bound": "none",
                }
            )
    return pd.DataFrame(rows)


def test_frontier_recovers_a_b_and_s_star():
    points = _frontier_points(2.0, 50.0, [0, 1, 2, 4, 8, 16, 32], [100, 200, 400], noise=0.05)
    fit = frontier.fit_frontier(points)
    assert fit["status"] == "ok" and fit["a_identified"] and fit["b_identified"]
    assert fit["a"] == pytest.approx(2.0, rel=0.1) and fit["b"] == pytest.approx(50.0, rel=0.1)
    # the true boundary a/S = b/T is at S* = 2·T/50: 4, 8 and 16 at T = 100, 200, 400
    s_star = {entry["T"]: entry["S_star"] for entry in fit["S_star"]}
    assert s_star == pytest.approx({100.0: 4.0, 200.0: 8.0, 400.0: 16.0}, rel=0.1)
    # and S* is where the regimes meet: a point is in the staleness regime iff its S exceeds S*(T)
    assert all((p["regime"] == "staleness") == (p["S"] > s_star[p["T"]]) for p in fit["points"])
    assert {p["regime"] for p in fit["points"]} == {"staleness", "horizon"}
    assert all(p["regime"] == "horizon" for p in fit["points"] if p["S"] == 0)
    assert fit["r2"] > 0.95
    assert fit["r2"] > fit["pure_S"]["r2"] + 0.1 and fit["r2"] > fit["pure_T"]["r2"] + 0.1


def test_frontier_one_regime_only_pure_fit_matches():
    points = _frontier_points(2.0, 1e6, [1, 2, 4, 8, 16], [100, 200], noise=0.02)
    fit = frontier.fit_frontier(points)
    assert fit["status"] == "ok" and not fit["b_identified"] and "bound" in fit["message"]
    assert fit["a"] == pytest.approx(2.0, rel=0.05)
    assert fit["pure_S"]["r2"] == pytest.approx(fit["r2"], abs=0.02)
    assert fit["pure_T"]["r2"] < 0.5


def test_frontier_censored_points_are_one_sided_and_too_few():
    points = _frontier_points(2.0, 50.0, [0, 1, 2, 4, 8, 16], [100, 200])
    points.loc[0, ["median", "bound"]] = [1e-3, "lower"]  # a consistent lower bound: no pull
    fit = frontier.fit_frontier(points)
    assert fit["n_censored"] == 1 and fit["a"] == pytest.approx(2.0, rel=1e-3)
    assert fit["b"] == pytest.approx(50.0, rel=1e-3)
    assert frontier.fit_frontier(points.iloc[:2])["status"] == "too_few_points"
    assert frontier.fit_frontier(pd.DataFrame())["status"] == "too_few_points"


# --- one grid, end to end ----------------------------------------------------------------------


def _grid(a=0.4, b=20.0, horizon=200):
    """Runs that collapse where η > a/S (at once) or at T_c = b/η (the horizon law)."""
    runs, steps = [], []
    for s in (0, 1, 2, 4, 8):
        for eta in np.geomspace(0.02, 1.0, 8):
            for seed in (0, 1):
                tc = 5 if s > 0 and eta > a / s else int(b / eta)
                run = len(runs)
                runs.append(
                    {
                        "run": run,
                        "S": s,
                        "eta": eta,
                        "seed": seed,
                        "eps": 0.2,
                        "objective": "behavior",
                        "optimizer": "sgd",
                        "horizon": horizon,
                        "collapse_step": min(tc, horizon),
                        "detector": "reward",
                        "censored": tc >= horizon,
                    }
                )
                for step in range(0, 40, 4):
                    steps.append(
                        {
                            "run": run,
                            "S": s,
                            "eta": eta,
                            "seed": seed,
                            "step": step,
                            "bias": 0.3 * s * eta,
                            "reward": 0.5,
                        }
                    )
    return pd.DataFrame(steps), pd.DataFrame(runs)


def test_summarize_exact_end_to_end_and_macros(tmp_path):
    steps, runs = _grid()
    summary = laws.summarize_exact(steps, runs, {"n_boot": 100})
    json.dumps(summary, allow_nan=False)
    assert summary["bias_slope"]["slope"] == pytest.approx(1.0)
    assert summary["tc_eta"]["status"] == "ok" and summary["tc_eta"]["regime"] == "S == 0"
    assert summary["horizons"] == [50, 100, 200]
    assert summary["frontier"]["status"] == "ok"
    assert summary["counts"]["n_runs"] == len(runs)

    path = report.write_macros(summary, tmp_path / "macros.tex", prefix="Exact")
    lines = path.read_text().splitlines()[1:]
    names = [re.match(r"\\newcommand\{\\(\w+)\}\{(.+)\}$", line).group(1) for line in lines]
    assert all(name.isalpha() for name in names) and len(set(names)) == len(names)
    assert r"\newcommand{\ExactBiasSlope}{1.00}" in lines
    assert "ExactFrontierSstarTTwoZeroZero" in names


def test_summarize_exact_never_raises_on_empty_input(tmp_path):
    summary = laws.summarize_exact(pd.DataFrame(), pd.DataFrame(), {})
    json.dumps(summary, allow_nan=False)
    for key in ("bias_slope", "tc_eta", "frontier"):
        assert summary[key]["status"] == "too_few_points"
    text = report.write_macros(summary, tmp_path / "m.tex").read_text()
    assert r"\newcommand{\BiasSlope}{\textrm{n/a}}" in text
    with pytest.raises(ValueError):
        report.write_macros(summary, tmp_path / "m.tex", prefix="Grid2")


def test_summarize_exact_prefers_the_run_bias_and_splits_variants():
    steps, runs = _grid()
    runs["bias"] = 0.1 * (runs["S"] * runs["eta"]) ** 2
    other = runs.assign(run=runs["run"] + len(runs), eps=0.3)
    summary = laws.summarize_exact(steps, pd.concat([runs, other]), {"n_boot": 50, "small_drift_max": 1.0})
    assert summary["bias_slope"]["slope"] == pytest.approx(2.0)
    assert summary["bias_slope"]["source"] == "run bias"
    assert set(summary["by_variant"]) == {
        "objective=behavior,eps=0.2,optimizer=sgd",
        "objective=behavior,eps=0.3,optimizer=sgd",
    }
    assert summary["warnings"]


# ---------------------------------------------------------------------------------------------
# language-model runs
# ---------------------------------------------------------------------------------------------


def _lm_run(run, S, eta, seed, collapse=None, threads=1, lr_schedule="constant", schedule="fixed", **extra):
    return {
        "run": run,
        "S": S,
        "eta": eta,
        "seed": seed,
        "objective": "behavior",
        "lr_schedule": lr_schedule,
        "schedule": schedule,
        "threads": threads,
        "collapse_step": collapse,
        "censored": collapse is None,
        "horizon": 100,
        "steps_done": 100 if collapse is None else collapse + 10,
        "wall_time": 50.0,
        "initial_eval_accuracy": 0.2,
        "final_eval_accuracy": 0.5,
    } | extra


def test_lm_main_grid_keeps_controlled_runs_once_per_point():
    runs = pd.DataFrame(
        [
            _lm_run("a", 0, 1e-4, 0, threads=2),
            _lm_run("b", 0, 1e-4, 0, threads=1),  # the same point on fewer threads: kept instead of a
            _lm_run("c", 4, 1e-4, 0, lr_schedule="ess"),
            _lm_run("d", 4, 1e-4, 0, schedule="async", threads=2),
            _lm_run("e", 4, 1e-4, 0),
        ]
    )
    assert lm.lm_main_grid(runs)["run"].tolist() == ["b", "e"]
    assert lm.lm_schedule_runs(runs)["run"].tolist() == ["c", "e"]
    assert sorted(lm.lm_overlap_runs(runs)["run"]) == ["a", "d"]


def test_lm_run_bias_averages_bias_squared_at_full_lag_before_collapse():
    runs = pd.DataFrame([_lm_run("r", 4, 1e-4, 0, collapse=60), _lm_run("q", 4, 1e-4, 1)])
    steps = pd.DataFrame(
        {
            "run": ["r"] * 5 + ["q"] * 2,
            "step": [0, 20, 40, 60, 80, 20, 40],
            "probe_lag": [0, 4, 4, 4, 4, 4, 4],
            # step 0 (lag 0) and steps >= 60 (collapsed) must not count; q's mean is negative
            "bias_sq": [9.0, 0.5, 1.5, 9.0, 9.0, -0.2, 0.1],
            "grad_sq": [1.0, 3.0, 5.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    out = lm.lm_run_bias(steps, runs).set_index("run")
    assert out.loc["r", "bias"] == pytest.approx(1.0) and out.loc["r", "n_probes"] == 2
    assert out.loc["r", "relative_bias"] == pytest.approx(0.5)  # 1 / sqrt(mean(3, 5))
    assert out.loc["q", "bias"] == 0.0 and out.loc["q", "n_probes"] == 2


def test_lm_run_bias_interval_from_the_pairs_spread():
    runs = pd.DataFrame([_lm_run("r", 2, 1e-4, 0)])
    steps = pd.DataFrame(
        {"run": ["r", "r"], "step": [10, 20], "probe_lag": [2, 2], "bias_sq": [0.8, 1.2],
         "grad_sq": [4.0, 4.0], "bias_sq_se": [0.3, 0.4]}
    )
    out = lm.lm_run_bias(steps, runs).iloc[0]
    se = 0.5 / 2  # the mean of two probes: √(0.3² + 0.4²) / 2
    assert out["relative_bias"] == pytest.approx(0.5)
    assert out["relative_bias_lo"] == pytest.approx(math.sqrt(1 - 1.96 * se) / 2)
    assert out["relative_bias_hi"] == pytest.approx(math.sqrt(1 + 1.96 * se) / 2)
    wide = lm.lm_run_bias(steps.assign(bias_sq_se=[3.0, 4.0]), runs).iloc[0]
    assert wide["relative_bias_lo"] == 0.0  # the interval reaches bias² = 0


def test_summarize_lm_fits_the_controlled_grid_and_compares_groups():
    rows, steps = [], []
    for S in (0, 2, 8):
        for eta in (1e-4, 2e-4, 4e-4, 8e-4):
            for seed in (0, 1):
                run = f"S{S}e{eta}s{seed}"
                collapse = None if S * eta < 1e-3 and eta < 8e-4 else 30
                rows.append(_lm_run(run, S, eta, seed, collapse=collapse))
                bias_sq = (3.0 * S * eta) ** 2  # bias = 3·S·η exactly: the fitted slope must be 1
                steps += [{"run": run, "step": k, "probe_lag": S, "bias_sq": bias_sq} for k in (10, 20)]
    rows += [_lm_run("ess", 8, 4e-4, 0, lr_schedule="ess", final_eval_accuracy=0.7)]
    rows += [_lm_run("async", 2, 1e-4, 0, schedule="async", threads=2, wall_time=25.0)]
    rows += [_lm_run("sync", 0, 1e-4, 0, threads=2, wall_time=50.0)]
    summary = lm.summarize_lm(pd.DataFrame(steps), pd.DataFrame(rows), {"n_boot": 200})
    assert summary["bias_slope"]["status"] == laws.OK and summary["bias_slope"]["slope"] == pytest.approx(1.0)
    assert summary["counts"]["n_main"] == 24 and len(summary["cells"]) == 12
    frontier_S8 = [r for r in summary["eta_star_summary"] if r["S"] == 8 and r["T"] == 100]
    assert frontier_S8[0]["median"] == pytest.approx(math.sqrt(1e-4 * 2e-4))
    by_schedule = {r["lr_schedule"]: r for r in summary["schedules"]}
    assert by_schedule["ess"]["final_accuracy"] == 0.7 and by_schedule["constant"]["n_collapsed"] == 2
    by_mode = {r["schedule"]: r for r in summary["overlap"]}
    assert by_mode["async"]["steps_per_s"] == pytest.approx(2 * by_mode["fixed"]["steps_per_s"])
    json.dumps(summary, allow_nan=False)


def test_summarize_lm_takes_each_claim_from_its_own_grid():
    """F2-F4 read the hack grid (T_c = 0.08/η exactly at S = 0: CV 0), F1 only the runs probed at a
    fixed time (bias = 2·S·η: slope 1, the periodic probes of the well-specified grid left out),
    and the objectives and vary-S comparisons group their own runs."""
    rows, steps = [], []
    for eta in (1e-4, 2e-4, 4e-4, 8e-4):
        for seed in (0, 1):
            rows.append(_lm_run(f"h{eta}s{seed}", 0, eta, seed, collapse=round(0.08 / eta), reward_hack="first_digit",
                                peak_eval_accuracy=0.7, final_eval_accuracy=0.1, final_eval_hack_rate=0.9))
            rows.append(_lm_run(f"m{eta}s{seed}", 4, eta, seed, reward_hack="none"))  # periodic probes only
            steps.append({"run": f"m{eta}s{seed}", "step": 20, "probe_lag": 4, "bias_sq": 1.0})
    # a fast instability at S = 0 (no hack): another mechanism, left out of the T_c·η law
    rows.append(_lm_run("fast", 0, 1.6e-3, 0, collapse=5, reward_hack="first_digit", final_eval_hack_rate=0.0))
    for S in (1, 4, 16):
        for eta in (2.5e-5, 1e-4):
            run = f"b{S}e{eta}"
            rows.append(_lm_run(run, S, eta, 0, reward_hack="none", probe_time=0.01))
            steps.append({"run": run, "step": round(0.01 / eta), "probe_lag": S, "bias_sq": (2 * S * eta) ** 2})
    rows += [_lm_run("rec", 0, 2e-4, 0, objective="recompute", reward_hack="first_digit", collapse=300)]
    for S in (0, 2):
        rows += [_lm_run(f"a{S}", S, 2e-4, 0, schedule="async", threads=2, reward_hack="first_digit", collapse=100 + S)]
    summary = lm.summarize_lm(pd.DataFrame(steps), pd.DataFrame(rows), {"n_boot": 200, "small_drift_max": 2e-3})
    assert summary["claim_grid"]["reward_hack"] == "first_digit" and summary["claim_grid"]["n"] == 9
    assert summary["tc_eta"]["cv"] == pytest.approx(0.0, abs=0.01) and summary["tc_eta"]["n"] == 8
    assert summary["tc_eta"]["exponent"]["slope"] == pytest.approx(-1.0, abs=0.01)
    assert summary["tc_eta"]["cv_ci_high"] < 0.05 and summary["tc_eta"]["n_other_mechanism"] == 1
    assert summary["mechanisms"] == {"n_collapsed": 9, "n_hack": 8, "hack_rate_min": 0.9, "other_rate_max": 0.0}
    assert summary["tc_eta_all"]["n"] == 9
    assert summary["bias_grid"] == {"n": 6, "probe_time": 0.01, "probe_pairs": None, "probe_prompts": None,
                                    "probe_estimator": None}
    assert summary["bias_slope"]["slope"] == pytest.approx(1.0) and summary["bias_slope"]["n"] == 6
    assert summary["bias_sq_slope"]["slope"] == pytest.approx(1.0, abs=1e-3) and summary["bias_sq_slope"]["n"] == 6
    # the main grid: 8 m* and 6 b* runs, one per (S, η, seed): b4e0.0001 shares m0.0001s0's point
    assert summary["well_specified"]["counts"]["n_runs"] == 13
    objectives = {r["objective"]: r for r in summary["objectives"]}
    assert set(objectives) == {"behavior", "recompute"} and objectives["recompute"]["median_collapse_step"] == 300
    assert objectives["behavior"]["peak_to_final"] == pytest.approx(0.6)
    assert [(r["S"], r["median_collapse_step"]) for r in summary["vary_s"]] == [(0, 100), (2, 102)]
    # the seeds behind each comparison: F2 has 2 per η but 1 at the fast instability's η
    seeds = summary["seeds"]
    assert seeds["tc_eta"] == {"min": 1, "max": 2} and seeds["bias"] == {"min": 1, "max": 1}
    assert seeds["objectives"] == {"min": 1, "max": 2} and seeds["vary_s"] == {"min": 1, "max": 1}
    assert seeds["schedules"] == {"min": None, "max": None}
    # each seed alone: the hack grid's T_c = 0.08/η gives b = -1 on either seed
    assert [row["seed"] for row in summary["per_seed"]] == [0, 1]
    assert all(row["tc_exponent"]["slope"] == pytest.approx(-1.0, abs=0.01) for row in summary["per_seed"])
    assert "bias_sq_slope" in summary["per_seed"][0] and "bias_sq_slope" not in summary["per_seed"][1]
    text = report_lm.seeds_summary(seeds)
    assert text.startswith(r"1--2 per $\eta$ at $S=0$ for F2;") and "F5" not in text
    json.dumps(summary, allow_nan=False)


def test_summarize_lm_without_any_collapse_column():
    """The aggregated table drops the all-null collapse_step of a grid where nothing collapsed."""
    runs = pd.DataFrame([_lm_run(f"r{S}", S, 1e-4, 0) for S in (0, 2, 4)]).drop(columns="collapse_step")
    steps = pd.DataFrame({"run": ["r2", "r4"], "step": [10, 10], "probe_lag": [2, 4], "bias_sq": [0.04, 0.16]})
    summary = lm.summarize_lm(steps, runs, {"n_boot": 50})
    assert summary["counts"]["n_collapsed"] == 0 and len(summary["cells"]) == 3
    unprobed = lm.summarize_lm(pd.DataFrame({"run": ["r0"], "step": [0]}), runs, {"n_boot": 50})
    assert unprobed["bias_sq_slope"]["status"] == laws.TOO_FEW  # no probe columns at all
    assert all(r["bound"] == frontier.LOWER for r in summary["eta_star_summary"])


def test_lm_grid_macros_name_the_task_and_base_policy():
    runs = pd.DataFrame(
        [_lm_run(f"r{seed}", 0, 1e-4, seed) | {"task": "countdown", "base": "results/lm/pretrain/my_base"} for seed in (0, 1)]
    )
    facts = report.grid_facts(runs)
    assert facts["tasks"] == ["countdown"] and facts["bases"] == ["my_base"]
    values = report.grid_macros("LM", facts, {})
    assert values["LMTask"] == r"\texttt{countdown}" and values["LMBase"] == r"\texttt{my\_base}"
    assert "LMTask" not in report.grid_macros("LM", report.grid_facts(runs.drop(columns=["task", "base"])), {})


def test_bias_sq_slope_keeps_readings_at_or_below_zero():
    """bias² = (2x)² plus noise of known standard error, so that some readings are ≤ 0: the
    log-log fit drops those, the fit on the squares keeps them and recovers slope 1 within its CI."""
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(1e-4, 1e-2, 6), 3)
    se = 0.3 * (2 * x) ** 2 + 4e-7  # a noise floor ten times the smallest bias² (4e-8)
    y = (2 * x) ** 2 + se * rng.standard_normal(len(x))
    fit = laws.fit_bias_sq_slope(x, y, se, n_boot=300)
    negative = int((y <= 0).sum())
    assert negative >= 2 and fit["n_nonpositive"] == negative
    assert fit["status"] == laws.OK and fit["weighted"] and fit["n"] == 18
    assert fit["ci_low"] <= 1.0 <= fit["ci_high"] and abs(fit["slope"] - 1) < 0.15
    assert laws.fit_bias_slope(x, np.sqrt(np.clip(y, 0, None)))["n"] == 18 - negative
    flat = laws.fit_bias_sq_slope(x, np.full_like(x, 4e-6) + 1e-7 * rng.standard_normal(len(x)), n_boot=100)
    assert abs(flat["slope"]) < 0.05  # a bias² that does not grow with S·η: slope 0
    assert laws.fit_bias_sq_slope([1e-3, 1e-3], [1.0, 2.0])["status"] == laws.TOO_FEW


def test_objectives_summary_and_verdicts_read_the_numbers():
    rows = [
        {"S": 8, "objective": "recompute", "n_collapsed": 1, "n": 1, "median_collapse_step": 17, "clip_frac": 0.0},
        {"S": 8, "objective": "behavior", "n_collapsed": 0, "n": 1, "median_collapse_step": None, "clip_frac": 0.13},
    ]
    assert report_lm.objectives_summary(rows) == (
        r"At $S=8$: \texttt{behavior} 0 of 1 collapsed, 13.0\% of tokens clipped; "
        r"\texttt{recompute} 1 of 1 collapsed (median $\Tc$ 17), 0\% of tokens clipped"
    )
    assert report.slope_verdict({"ci_low": 0.4, "ci_high": 1.3}, 1.0).startswith("consistent")
    assert "bound" in report.slope_verdict({"ci_low": 0.5, "ci_high": laws.SLOPE_RANGE[1]}, 1.0)
    assert report.slope_verdict({"ci_low": -0.2, "ci_high": 1.3}, 1.0).startswith("not resolved")
    assert report.slope_verdict({"ci_low": -0.75, "ci_high": -0.41}, -1.0).startswith("inconsistent")
    assert report.slope_verdict({}, 1.0).startswith("not tested")
    assert report.frontier_verdict({"status": "ok", "r2": -0.04}).startswith("not supported")
    flat = {"status": "ok", "r2": None, "points": [
        {"eta_star": 4.2e-4, "fit": f, "bound": "none"} for f in (6.7e-4, 3.3e-4, 4.2e-4)
    ] + [{"eta_star": 1e-4, "fit": 1e-4, "bound": "lower"}]}  # a bound does not count
    assert report.frontier_verdict(flat, 2**0.5).startswith("not supported: $\\eta^\\ast$ is the same")
    assert "factor 2.03" in report.frontier_verdict(flat, 2**0.5)
    assert report.frontier_verdict(flat, 2.5).startswith("not distinguished from a constant")
    assert report.frontier_verdict({"status": "ok", "r2": None}).startswith("not tested")


def test_generated_sentences_are_plain_latex():
    """The verdicts go into the paper as macros: no character that pdflatex cannot set."""
    sentences = [
        report.slope_verdict({"ci_low": a, "ci_high": b}, 1.0) for a, b in ((0.4, 1.3), (-1, 2), (2, 3))
    ] + [report.slope_verdict({}, 1.0)]
    sentences += [report.frontier_verdict(f) for f in (
        {"status": "ok", "r2": -0.1}, {"status": "ok", "r2": None}, {"status": "ok", "r2": 0.9, "pure_S": {"r2": 0.89}},
        {"status": "ok", "r2": 0.9, "pure_S": {"r2": 0.1}}, {},
    )]
    assert all(s.isascii() for s in sentences), [s for s in sentences if not s.isascii()]


def test_vary_s_summary_names_where_runs_collapsed():
    rows = [
        {"lr_schedule": "constant", "S": 0, "n": 2, "n_collapsed": 2, "final_accuracy": 0.2, "steps_per_s": 4.0},
        {"lr_schedule": "constant", "S": 4, "n": 2, "n_collapsed": 1, "final_accuracy": 0.3, "steps_per_s": 4.5},
        {"lr_schedule": "constant", "S": 8, "n": 2, "n_collapsed": 0, "final_accuracy": 0.4, "steps_per_s": 5.0},
    ]
    text = report_lm.vary_s_summary(rows)
    assert text.isascii() and r"collapsed at $S\in\{0, 4\mbox{ (1 of 2)}\}$, stable at $S\in\{8\}$" in text
    assert r"20.0\% at $S=0$ and 40.0\% at $S=8$, at 4.00 and 5.00 learner steps" in text


def test_frontier_shape_names_where_eta_star_rises_with_s():
    """min(a/S, b/T) cannot rise with S: a rise beyond the η grid's ratio is named, a smaller one
    (within the grid's resolution) or one into an upper bound is not."""
    cells = [
        {"S": 0, "T": 600, "median": 1.0e-4, "bound": "none"},
        {"S": 2, "T": 600, "median": 1.3e-4, "bound": "none"},  # x1.3 < √2: not resolved
        {"S": 8, "T": 600, "median": 3.6e-4, "bound": "none"},  # x2.8: a rise
        {"S": 32, "T": 600, "median": 1.8e-4, "bound": "none"},
        {"S": 0, "T": 300, "median": 9.0e-3, "bound": "none"},  # a shorter horizon: not read
    ]
    text = report_lm.frontier_shape(cells, 2**0.5)
    assert text.isascii() and "from $S=2$ to $S=8$ (a factor 2.77)" in text and "$S=0$ to" not in text
    falling = [dict(c, median=1e-3 / (1 + c["S"])) for c in cells]
    assert "nowhere rises" in report_lm.frontier_shape(falling, 2**0.5)
    bounded = [dict(c, bound="upper") if c["S"] == 8 else c for c in cells]
    assert "nowhere rises" in report_lm.frontier_shape(bounded, 2**0.5)
    assert report_lm.frontier_shape([], None).startswith("not read")


def test_per_seed_summary_groups_seeds_by_verdict():
    """Each seed's two F1 verdicts and its F3 verdict, grouped; a seed below a claim's minimum is an
    illustration and shows its estimate instead."""
    enough = {"status": "ok", "n": 9, "n_x": 9, "x_min": 2.5e-5, "x_max": 4e-4}
    rows = [
        {"seed": 0, "bias_sq_slope": enough | {"slope": 1.0, "ci_low": 0.5, "ci_high": 1.5},
         "frontier": {"status": "ok", "n": 5, "r2": 0.9, "pure_S": {"r2": 0.1}, "pure_T": {"r2": 0.2}}},
        {"seed": 1, "bias_sq_slope": enough | {"slope": 1.6, "ci_low": 1.3, "ci_high": 2.0},
         "frontier": {"status": "ok", "n": 3, "r2": 0.4}},
        {"seed": 2, "bias_sq_slope": enough | {"slope": 0.9, "ci_low": 0.6, "ci_high": 1.2}},
    ]
    text = report_lm.per_seed_summary(rows)
    assert text == (
        "F1 bound consistent on seeds 0, 2 and supported on seed 1; "
        "F1 first-order law consistent on seeds 0, 2 and inconsistent on seed 1; "
        "F3 supported on seed 0 and illustration on seed 1 (too few runs per seed for a verdict; "
        "$R^2$ by seed: $0.400$)"
    )
    assert report_lm.per_seed_summary([{"seed": 0, "frontier": {}}]).startswith("no seed")
    few = {"status": "ok", "n": 3, "n_x": 3, "slope": 1.29, "ci_low": 0.913, "ci_high": 1.45}
    assert report_lm.per_seed_summary([{"seed": 0, "bias_sq_slope": few}]) == (
        "F1 illustration on seed 0 (too few runs per seed for a verdict; slope by seed: $1.29$ $[0.913, 1.45]$)"
    )


# --- the bias claim read twice: the bound and the first-order law ------------------------------

ENOUGH = {"status": "ok", "n": 36, "n_x": 9, "x_min": 2.5e-5, "x_max": 4e-4}
"""a bias fit over enough runs for a verdict (≥ 6 runs over ≥ 3 distinct S·η)"""


@pytest.mark.parametrize(
    "low, high, bound, first_order",
    [
        (1.38, 2.66, "supported", "inconsistent"),  # above 1: bias/(S·η) falls as S·η → 0, within the bound
        (0.82, 1.86, "consistent", "consistent"),
        (-0.5, 1.3, "consistent", "not resolved"),
        (0.2, 0.8, "contradicted", "inconsistent"),  # only a CI entirely below 1 contradicts the bound
        (-0.5, 0.7, "contradicted", "inconsistent"),
        (-0.5, 1.0, "consistent", "not resolved"),
    ],
)
def test_bias_bound_is_one_sided_and_the_first_order_law_two_sided(low, high, bound, first_order):
    judged = verdicts.bias_verdicts(ENOUGH | {"slope": (low + high) / 2, "ci_low": low, "ci_high": high})
    assert judged["bias_bound"]["verdict"] == bound
    assert judged["bias_first_order"]["verdict"] == first_order
    for verdict in judged.values():  # each names the S·η range it covers
        assert r"over $S\eta$ from \ensuremath{2.50\times 10^{-5}} to \ensuremath{4.00\times 10^{-4}}" in verdict["text"]
        assert verdict["text"].startswith(verdict["verdict"]) and verdict["text"].isascii()
        assert (verdict["x_min"], verdict["x_max"], verdict["enough"]) == (2.5e-5, 4e-4, True)


def test_below_its_minimum_a_claim_is_an_illustration_that_says_what_is_missing():
    three = ENOUGH | {"n": 3, "n_x": 3, "slope": 1.45, "ci_low": 1.0004, "ci_high": 5.0}  # the default build's F1
    for verdict in verdicts.bias_verdicts(three).values():
        assert verdict["verdict"] == "illustration" and not verdict["enough"]
        assert verdict["text"] == (
            r"illustration: too few runs for a verdict (3 of the 6 runs needed, over 3 of the 3 distinct "
            r"$S\eta$ needed; \texttt{config/lm\_full.yaml} tests it)"
        )
    ci = {"ci_low": 0.5, "ci_high": 1.5}
    assert verdicts.bound_verdict(ENOUGH | ci | {"n": 6, "n_x": 2})["verdict"] == "illustration"  # 2 S·η only
    assert verdicts.bound_verdict(ENOUGH | ci | {"n": 6, "n_x": 3})["verdict"] == "consistent"
    assert verdicts.bound_verdict({"status": "too_few_points", "n": 2, "n_x": 1})["verdict"] == "illustration"

    tc = {"exponent": {"status": "ok", "slope": -0.8, "ci_low": -0.9, "ci_high": -0.7},
          "per_eta": [{"eta": eta, "n": 2} for eta in (1e-4, 2e-4, 4e-4)] + [{"eta": 8e-4, "n": 1}]}
    short = verdicts.tc_verdict(tc)
    assert short["verdict"] == "illustration" and "(3 of the 4 values of $\\eta$ with at least 2 collapses" in short["text"]
    tc["per_eta"][-1]["n"] = 2
    assert verdicts.tc_verdict(tc)["verdict"] == "inconsistent"

    frontier = {"status": "ok", "n": 3, "r2": 0.9, "pure_S": {"r2": 0.1}, "pure_T": {"r2": 0.2}}
    assert verdicts.lm_frontier_verdict(frontier, None)["verdict"] == "illustration"
    assert verdicts.lm_frontier_verdict(frontier | {"n": 4}, None)["verdict"] == "supported"
    assert "(3 of the 4 frontier cells" in verdicts.lm_frontier_verdict(frontier, None)["text"]


def _parse(text: str) -> float:
    """A number as format_number prints it, back to a float."""
    match = re.fullmatch(r"\\ensuremath\{(-?[\d.]+)\\times 10\^\{(-?\d+)\}\}", text)
    return float(match.group(1)) * 10 ** int(match.group(2)) if match else float(text)


@pytest.mark.parametrize("reference", [1.0, -1.0, 0.0])
def test_a_ci_bound_never_reads_as_the_value_it_is_held_against(reference):
    """1.0004 printed as 1.00 beside "the CI excludes 1" reads as a contradiction: a bound prints
    with as many digits as keep it apart from the value, on its own side of it."""
    offsets = np.r_[10.0 ** -np.arange(1, 13), 3.7 * 10.0 ** -np.arange(2, 13)]
    for value in np.r_[reference + offsets, reference - offsets]:
        text = verdicts.format_bound(value, (reference, 0.0))
        printed = _parse(text)
        assert printed != reference, (value, text)
        assert np.sign(printed - reference) == np.sign(value - reference), (value, text)
    assert verdicts.format_bound(reference, (reference,)) == verdicts.format_number(reference)  # equal stays equal
    assert verdicts.format_bound(1.45, (1.0, 0.0)) == "1.45"  # no extra digits where none are needed
    assert verdicts.format_number(1.0004) == "1.00"  # what the old macros printed


def test_the_default_builds_f1_macros_no_longer_read_as_a_contradiction():
    """The issue's case: slope 1.45 with CI [1.0004, 5.00] from 3 runs printed "1.00--5.00: ...
    (the CI excludes it)". Its bounds now keep their digits and its text is an illustration."""
    fit = ENOUGH | {"n": 3, "n_x": 3, "slope": 1.45, "ci_low": 1.0004, "ci_high": 5.0, "n_nonpositive": 1}
    lm_summary = {"bias_sq_slope": fit, "counts": {"n_runs": 3}}
    values = report_lm.lm_macros(lm_summary, pd.DataFrame())
    assert values["LMBiasSqSlopeLow"] == "1.0004" and values["LMBiasSqSlopeHigh"] == "5.00"
    assert values["LMIllustrationSummary"].startswith("For F1 (bias), F2 (collapse time) and F3 (frontier) this build")
    assert values["LMAnyVerdict"] == 0 and values["LMTcHasVerdict"] == 0
    lines = report.macro_lines(lm_summary | {"verdicts": verdicts.lm_verdicts(lm_summary)}, "LM")
    assert r"\newcommand{\LMBiasHasVerdict}{0}" in lines
    bound = next(line for line in lines if line.startswith(r"\newcommand{\LMBiasBoundVerdict}"))
    assert "illustration: too few runs for a verdict (3 of the 6 runs needed" in bound and "excludes" not in bound


def test_the_exact_testbeds_bias_fit_gets_both_verdicts(tmp_path):
    steps, runs = _grid()
    rng = np.random.default_rng(0)
    tau = runs["S"] * runs["eta"]
    runs["bias"] = 0.3 * tau**2 * np.exp(rng.normal(0, 0.05, len(runs)))  # slope 2
    summary = laws.summarize_exact(steps, runs, {"n_boot": 200, "small_drift_max": 1.0})
    judged = summary["verdicts"]
    assert summary["bias_slope"]["slope"] == pytest.approx(2.0, abs=0.05)
    assert judged["bias_bound"]["verdict"] == "supported" and judged["bias_first_order"]["verdict"] == "inconsistent"
    assert judged["bias_bound"]["x_max"] == pytest.approx(tau[(runs["S"] >= 1) & (tau <= 1)].max())
    empty = laws.summarize_exact(pd.DataFrame(), pd.DataFrame(), {})["verdicts"]["bias_bound"]
    assert empty["verdict"] == "illustration" and r"\texttt{config/exact.yaml} tests it" in empty["text"]
    text = report.write_macros(summary, tmp_path / "m.tex", prefix="Exact").read_text()
    assert r"\newcommand{\ExactBiasHasVerdict}{1}" in text
    assert r"\newcommand{\ExactBiasBoundVerdict}{supported by the data over $S\eta$ from" in text
    assert r"\newcommand{\ExactBiasFirstOrderVerdict}{inconsistent with the data over $S\eta$ from" in text


def test_verdict_title_note_states_both_verdicts_or_the_illustration():
    fit = ENOUGH | {"slope": 1.69, "ci_low": 1.38, "ci_high": 2.66}
    summary = {"bias_sq_slope": fit, "verdicts": verdicts.bias_verdicts(fit)}
    assert verdicts.title_note(summary, "bias_sq_slope") == (
        "slope 1.69 [1.38, 2.66]; bound (≤ C·S·η): supported; slope 1: inconsistent"
    )
    few = fit | {"n": 3, "n_x": 3, "ci_low": 1.0004, "ci_high": 5.0}
    note = verdicts.title_note({"bias_sq_slope": few, "verdicts": verdicts.bias_verdicts(few)}, "bias_sq_slope")
    assert note == "slope 1.69 [1.0004, 5.00]; illustration: too few runs for a verdict (3 of 6 runs, 3 of 3 S·η)"
    assert verdicts.title_note({}, "bias_sq_slope") == "no fit"


# --- seed-level uncertainty: the hierarchical bootstrap ---------------------------------------


def _seeded_bias(offsets, rng_seed):
    """9 S·η per seed; seed i's log-log slope is 1 + offsets[i], its lines crossing mid-range."""
    rng = np.random.default_rng(rng_seed)
    x0 = np.geomspace(2.5e-5, 4e-4, 9)
    x, seed = np.tile(x0, len(offsets)), np.repeat(np.arange(len(offsets)), len(x0))
    slope = 1 + np.repeat(np.asarray(offsets, dtype=float), len(x0))
    return x, 0.1 * (x / math.sqrt(x0[0] * x0[-1])) ** slope * np.exp(rng.normal(0, 0.3, x.size)), seed


def _width(fit):
    return fit["ci_high"] - fit["ci_low"]


def test_hierarchical_bootstrap_widens_the_interval_only_when_seeds_differ():
    """Four seeds of nine runs. Alike (one slope): resampling seeds, then runs within each, keeps
    the interval near the one over runs (about 1.3x: the within-seed variance enters at both
    stages). Seeds whose slopes differ (0.4 to 1.6): the interval over runs misses that spread, and
    the hierarchical one is about twice as wide."""
    ratios = {}
    for name, offsets in (("alike", [0, 0, 0, 0]), ("differ", [-0.6, -0.2, 0.2, 0.6])):
        ratios[name] = []
        for rng_seed in range(4):
            x, y, seed = _seeded_bias(offsets, rng_seed)
            over_runs = laws.fit_bias_slope(x, y, n_boot=2000)
            over_seeds = laws.fit_bias_slope(x, y, n_boot=2000, clusters=seed)
            assert over_runs["bootstrap"] == "points" and over_seeds["bootstrap"] == "seeds"
            assert over_seeds["slope"] == over_runs["slope"]  # the estimate itself does not change
            ratios[name].append(_width(over_seeds) / _width(over_runs))
    assert all(0.9 < r < 1.5 for r in ratios["alike"]), ratios
    assert all(r > 1.8 for r in ratios["differ"]), ratios
    # the fit on the squares (the LM verdict's fit) resamples the same way
    x, y, seed = _seeded_bias([-0.6, -0.2, 0.2, 0.6], 0)
    squares = laws.fit_bias_sq_slope(x, y**2, 0.3 * y**2, n_boot=200, clusters=seed)
    assert _width(squares) > 1.3 * _width(laws.fit_bias_sq_slope(x, y**2, 0.3 * y**2, n_boot=200))


def test_hierarchical_bootstrap_draws_seeds_then_runs_and_flags_too_few_seeds():
    draw = laws.bootstrap_indices(["a"] * 3 + ["b"] * 5, seed=0)
    for _ in range(20):
        idx = draw()
        n_a, n_b = int((idx < 3).sum()), int((idx >= 3).sum())
        assert (n_a, n_b) in {(6, 0), (3, 5), (0, 10)}  # two seeds drawn, each with all its run count
    cells = laws.bootstrap_indices([0, 0, 0, 0], strata=[1, 1, 2, 2], seed=0)()
    assert sorted(set(np.where(cells < 2, 1, 2))) == [1, 2]  # within a (seed, η) cell: no η is lost
    x, y, seed = _seeded_bias([0, 0, 0, 0], 0)
    assert laws.fit_bias_slope(x, y, n_boot=50, clusters=seed)["seed_variance"] is True
    two = laws.fit_bias_slope(x[seed < 2], y[seed < 2], n_boot=50, clusters=seed[seed < 2])
    assert two["bootstrap"] == "seeds" and two["n_seeds"] == 2 and two["seed_variance"] is False
    assert "too few seeds for the interval to carry seed-to-seed variance" in verdicts.ci_note(two)
    one = laws.fit_bias_slope(x[seed == 0], y[seed == 0], n_boot=50, clusters=seed[seed == 0])
    assert one["bootstrap"] == "points" and one["seed_variance"] is False
    assert one["ci_low"] == laws.fit_bias_slope(x[seed == 0], y[seed == 0], n_boot=50)["ci_low"]


def test_summarize_lm_pools_over_seeds_and_judges_each_claim(tmp_path):
    """Two seeds: the pooled bias and exponent CIs are hierarchical and flagged as unable to carry
    seed variance; F1 and F2 have enough runs for a verdict, F3 (S = 0 only) does not."""
    rng = np.random.default_rng(1)
    rows, steps = [], []
    for eta in (1e-4, 2e-4, 4e-4, 8e-4):
        for seed in (0, 1):
            tc = round(0.08 / eta * math.exp(rng.normal(0, 0.1)))
            rows.append(_lm_run(f"h{eta}s{seed}", 0, eta, seed, collapse=tc, reward_hack="first_digit",
                                final_eval_hack_rate=0.3))
    for S in (1, 2, 4):
        for eta in (2.5e-5, 5e-5, 1e-4):
            for seed in (0, 1):
                run = f"b{S}e{eta}s{seed}"
                rows.append(_lm_run(run, S, eta, seed, reward_hack="none", probe_time=0.01))
                bias_sq = (2 * S * eta) ** 2 * math.exp(rng.normal(0, 0.2))
                steps.append({"run": run, "step": round(0.01 / eta), "probe_lag": S, "bias_sq": bias_sq})
    summary = lm.summarize_lm(pd.DataFrame(steps), pd.DataFrame(rows), {"n_boot": 200, "small_drift_max": 4e-4})
    squares, exponent = summary["bias_sq_slope"], summary["tc_eta"]["exponent"]
    assert squares["bootstrap"] == "seeds" and squares["n_seeds"] == 2 and squares["seed_variance"] is False
    assert exponent["bootstrap"] == "seeds" and summary["tc_eta"]["cv_bootstrap"]["n_seeds"] == 2
    assert (squares["x_min"], squares["x_max"], squares["n_x"]) == (pytest.approx(2.5e-5), pytest.approx(4e-4), 5)
    judged = summary["verdicts"]
    assert judged["bias_bound"]["verdict"] in {"supported", "consistent"} and judged["bias_bound"]["enough"]
    assert judged["bias_first_order"]["verdict"] == "consistent"
    assert judged["tc"]["enough"] and judged["tc"]["verdict"] == "consistent"
    assert judged["frontier"]["verdict"] == "illustration"
    per_seed = {row["seed"]: row["verdicts"] for row in summary["per_seed"]}
    assert per_seed[0]["tc"]["verdict"] == "illustration"  # one run per η on one seed
    assert per_seed[0]["bias_bound"]["enough"]  # nine runs over six S·η
    values = report_lm.lm_macros(summary, pd.DataFrame())
    assert (values["LMTcHasVerdict"], values["LMFrontierHasVerdict"], values["LMAnyVerdict"]) == (1, 0, 1)
    assert values["LMIllustrationSummary"].startswith("For F3 (frontier) this build's runs are an illustration")
    assert values["LMIllustrationSummary"].endswith(r"\texttt{config/lm\_full.yaml} tests it).")
    assert values["LMBiasCINote"].startswith("bootstrap over the 2 seeds, then over runs within each: too few seeds")
    json.dumps(summary, allow_nan=False)

    # every macro of a build, once: make_fits writes the exact and the LM summaries' together
    exact = laws.summarize_exact(*_grid(), {"n_boot": 20}) | {"grid": report.grid_facts(_grid()[1])}
    (tmp_path / "main.json").write_text(json.dumps(exact))
    (tmp_path / "lm.json").write_text(json.dumps(summary | {"grid": report.grid_facts(pd.DataFrame(rows))}))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))
    try:
        import make_fits
    finally:
        sys.path.pop(0)
    args = argparse.Namespace(exact=[f"main={tmp_path / 'main.json'}"], lm=tmp_path / "lm.json", throughput=None)
    names = [re.match(r"\\newcommand\{\\(\w+)\}", line).group(1) for line in make_fits.write_macros(args)[1:]]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert {"MainBiasBoundVerdict", "MainBiasFirstOrderVerdict", "LMBiasBoundVerdict", "LMIllustrationSummary"} <= set(names)


def test_an_efficiency_above_one_is_called_noise_and_the_load_is_printed():
    """docs/method.md §7: overlap alone cannot make an async step faster than max(t_gen, t_train)."""
    import pandas as pd

    from stalegrpo.fits.report_lm import lm_macros

    def macros(efficiency):
        table = pd.DataFrame([
            {"S": 0, "speedup": 1.0, "ideal": 1.33, "efficiency": 0.75, "load_before": 0.4, "load_after": 2.1},
            {"S": 2, "speedup": 1.33 * efficiency, "ideal": 1.33, "efficiency": efficiency, "load_before": 0.4,
             "load_after": 2.1},
        ])
        return lm_macros({}, table)

    noisy, clean = macros(1.12), macros(0.9)
    assert noisy["BenchEfficiencyNoisy"] == 1 and clean["BenchEfficiencyNoisy"] == 0
    assert (clean["BenchLoadBefore"], clean["BenchLoadAfter"]) == (0.4, 2.1)
    old_bench = lm_macros({}, pd.DataFrame([{"S": 2, "speedup": 1.2, "ideal": 1.33, "efficiency": 0.9}]))
    assert old_bench["BenchLoadBefore"] is None  # a bench.json from before the load was recorded


def test_the_frontier_interval_widens_only_when_seeds_differ():
    """F3's bootstrap over seeds: four seeds with the same η* in every cell give a point interval;
    the same law with a seed-to-seed factor on η* gives a wide one."""
    from stalegrpo.fits.frontier import frontier_seed_interval

    def table(spread: float) -> pd.DataFrame:
        rows = []
        for seed in range(4):
            factor = (1 + spread) ** (seed - 1.5) * (1 + 0.7 * spread * (seed % 2))
            for S in (1, 2, 8, 32):
                for T in (150, 300, 600):
                    eta = min(4e-3 / S, 0.3 / T) * factor ** (1 if S > 2 else -1)
                    rows.append({"S": S, "T": T, "seed": seed, "eta_star": eta, "bound": "none"})
        return pd.DataFrame(rows)

    same, differ = frontier_seed_interval(table(0.0), 60), frontier_seed_interval(table(0.6), 60)
    assert same["n_seeds"] == differ["n_seeds"] == 4 and same["n_boot"] == 60
    assert same["r2_gain_high"] - same["r2_gain_low"] < 1e-9
    assert differ["r2_gain_high"] - differ["r2_gain_low"] > 0.05
    assert differ["log10_a_high"] - differ["log10_a_low"] > 10 * (same["log10_a_high"] - same["log10_a_low"])
    assert np.isnan(frontier_seed_interval(table(0.0)[lambda t: t["seed"] == 0], 50)["r2_gain_low"])


def test_the_async_sync_comparison_keeps_only_the_synchronous_baseline():
    """F5's async-vs-sync row: the async runs and, of the fixed runs at their threads, η and reward,
    only the behavior-objective S = 0 baseline; other S, objectives or η are not averaged in."""
    from stalegrpo.fits.lm import lm_overlap_runs

    def run(name, schedule, S, objective="behavior", eta=2.5e-4):
        return {"run": name, "schedule": schedule, "S": S, "objective": objective, "eta": eta, "threads": 2,
                "lr_schedule": "constant", "reward_hack": "first_digit"}

    runs = pd.DataFrame([run("a4", "async", 4), run("f0", "fixed", 0), run("f8", "fixed", 8),
                         run("r0", "fixed", 0, objective="recompute"), run("e0", "fixed", 0, eta=5e-4)])
    assert sorted(lm_overlap_runs(runs)["run"]) == ["a4", "f0"]
