"""Fit the scaling laws on the aggregated tables; write fits.json and the paper's LaTeX macros.

For each exact-testbed experiment, :func:`stalegrpo.fits.summarize_exact` gives the F1-F3 fits
(docs/method.md §8), and :func:`stalegrpo.fits.write_macros` their macros, prefixed with the
experiment's name (``main`` → ``\\MainBiasSlope``). This script adds the numbers that describe the
grids themselves (S values, η range, horizon, run counts) and the LM run and benchmark counts,
so that the paper types no number by hand. ``\\LMHasRuns`` and ``\\BenchHasData`` are 0 or 1
for ``\\ifnum`` in the text.

    python code/make_fits.py --steps results/tables/steps.parquet --runs results/tables/runs.parquet \
        --throughput results/tables/throughput.parquet --options '{"main": {}}' \
        --fits results/fits/fits.json --macros paper/generated/macros.tex
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from stalegrpo import fits


def _fmt_list(values) -> str:
    return ", ".join(fits.format_number(v) for v in values)


def grid_macros(prefix: str, runs: pd.DataFrame, summary: dict) -> dict:
    """Numbers that describe one experiment's grid, for the text (n/a where there are no runs)."""
    values = dict.fromkeys(
        ["SValues", "SMax", "EtaMin", "EtaMax", "NumSeeds", "Objective", "Horizon", "FrontierSstarLongest"]
    )
    if len(runs):
        values["SValues"] = _fmt_list(sorted(runs["S"].unique()))
        values["SMax"] = int(runs["S"].max())
        values["EtaMin"] = float(runs["eta"].min())
        values["EtaMax"] = float(runs["eta"].max())
        values["NumSeeds"] = int(runs["seed"].nunique())
        if "objective" in runs:
            values["Objective"] = (
                r"\texttt{" + ", ".join(sorted(runs["objective"].astype(str).unique())) + "}"
            )
        if "horizon" in runs:
            values["Horizon"] = int(runs["horizon"].max())
    for detector in ("reward", "kl", "nonfinite", "entropy"):  # which mechanism ended the runs
        fired = runs["detector"].astype(str) == detector if "detector" in runs else []
        values[f"NumDetector{detector.capitalize()}"] = int(sum(fired))
    horizons = summary.get("horizons") or []
    values["FrontierHorizons"] = _fmt_list(horizons) if horizons else r"\textrm{n/a}"
    s_star = {
        entry["T"]: entry.get("S_star") for entry in (summary.get("frontier") or {}).get("S_star") or []
    }
    if horizons:
        ok = (summary.get("frontier") or {}).get("status") == fits.OK
        values["FrontierSstarLongest"] = s_star.get(max(horizons)) if ok else None
    return {prefix + name: value for name, value in values.items()}


def experiment_row(experiment: str, runs: pd.DataFrame, summary: dict) -> str:
    """One row of the paper's table of exact experiments: runs, collapses and the three fits."""
    counts, bias = summary.get("counts") or {}, summary.get("bias_slope") or {}
    tc, front = summary.get("tc_eta") or {}, summary.get("frontier") or {}
    ok = {name: part.get("status") == fits.OK for name, part in (("b", bias), ("t", tc), ("f", front))}
    cells = [
        r"\texttt{" + experiment + "}",
        r"\texttt{" + ", ".join(sorted(runs["objective"].astype(str).unique())) + "}"
        if "objective" in runs
        else "",
        fits.format_number(counts.get("n_runs")),
        fits.format_number(counts.get("n_collapsed")),
        (
            f"{fits.format_number(bias['slope'])} [{fits.format_number(bias['ci_low'])}, {fits.format_number(bias['ci_high'])}]"
            if ok["b"]
            else r"\textrm{n/a}"
        ),
        fits.format_number(tc.get("cv") if ok["t"] else None),
        fits.format_number(front.get("r2") if ok["f"] else None),
    ]
    return " & ".join(cells) + r" \\"


def _pct(value):
    return None if value is None or value != value else 100.0 * value


def lm_macros(runs: pd.DataFrame, lm: dict, throughput: pd.DataFrame) -> dict:
    """Counts of the LM runs, their F5 comparisons (schedules, async vs sync) and the benchmark."""
    lm_runs = runs[runs["source"] == "lm"] if "source" in runs else runs.iloc[0:0]
    values = {"LMHasRuns": int(len(lm_runs) > 0), "LMNumRuns": len(lm_runs), "LMNumCollapsed": None}
    if len(lm_runs) and "censored" in lm_runs:
        values["LMNumCollapsed"] = int((~lm_runs["censored"].astype(bool)).sum())

    relative = lm.get("relative_bias") or {}
    values |= {
        "LMBiasRelMedian": relative.get("median"),
        "LMBiasRelMin": relative.get("min"),
        "LMBiasRelMax": relative.get("max"),
    }
    cells = lm.get("cells") or []
    values["LMCellRows"] = "\n".join(
        " & ".join(
            [
                str(int(c["S"])),
                fits.format_number(c["eta"]),
                f"{c['n_collapsed']} of {c['n']}",
                fits.format_number(c["median_collapse_step"]) if c["n_collapsed"] else "--",
                fits.format_number(_pct(c["initial_accuracy"])),
                fits.format_number(_pct(c["final_accuracy"])),
            ]
        )
        + r" \\"
        for c in cells
    ) or r"\multicolumn{6}{c}{no LM runs} \\"

    schedules = lm.get("schedules") or []
    values["LMHasSchedules"] = int(bool(schedules))
    if schedules:
        s_max = max(r["S"] for r in schedules)
        at_s = [r for r in schedules if r["S"] == s_max]
        values |= {"LMSchedS": int(s_max), "LMSchedEta": at_s[0]["eta"], "LMSchedN": at_s[0]["n"]}
        values["LMSchedInitialAcc"] = _pct(at_s[0]["initial_accuracy"])
        by_schedule = {row["lr_schedule"]: row for row in at_s}
        for schedule in ("constant", "ess", "staleness"):  # n/a for a schedule the grid left out
            row = by_schedule.get(schedule, {})
            values[f"LMSched{schedule.capitalize()}Collapsed"] = row.get("n_collapsed")
            values[f"LMSched{schedule.capitalize()}FinalAcc"] = _pct(row.get("final_accuracy"))

    overlap = lm.get("overlap") or []
    async_rows = [r for r in overlap if r["schedule"] == "async"]
    sync_rows = [r for r in overlap if r["schedule"] == "fixed" and r["S"] == 0]
    values["LMHasOverlap"] = int(bool(async_rows and sync_rows))
    if async_rows and sync_rows:
        a = max(async_rows, key=lambda r: r["S"])
        b = next((r for r in sync_rows if r["threads"] == a["threads"] and r["eta"] == a["eta"]), sync_rows[0])
        values |= {
            "LMOverlapS": int(a["S"]),
            "LMOverlapEta": a["eta"],
            "LMOverlapThreads": int(a["threads"]),
            "LMOverlapN": a["n"],
            "LMAsyncStepsPerS": a["steps_per_s"],
            "LMSyncStepsPerS": b["steps_per_s"],
            "LMOverlapSpeedup": a["steps_per_s"] / b["steps_per_s"] if b["steps_per_s"] else None,
            "LMAsyncWall": a["wall_time"],
            "LMSyncWall": b["wall_time"],
            "LMAsyncFinalAcc": _pct(a["final_accuracy"]),
            "LMSyncFinalAcc": _pct(b["final_accuracy"]),
            "LMAsyncCollapsed": a["n_collapsed"],
            "LMSyncCollapsed": b["n_collapsed"],
        }

    values["BenchHasData"] = int(len(throughput) > 0)
    if len(throughput):
        best = throughput.loc[throughput["speedup"].idxmax()]
        values |= {
            "BenchSpeedupMax": float(best["speedup"]),
            "BenchSpeedupMaxS": int(best["S"]),
            "BenchIdeal": float(best["ideal"]),
            "BenchEfficiencyAtMax": float(best["efficiency"]),
        }
    return values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", required=True, type=Path)
    parser.add_argument("--runs", required=True, type=Path)
    parser.add_argument("--throughput", required=True, type=Path)
    parser.add_argument("--options", default="{}", help="JSON: experiment -> summarize_exact options")
    parser.add_argument("--lm-options", default="{}", help="JSON: summarize_lm options (n_boot, seed, ...)")
    parser.add_argument("--fits", required=True, type=Path)
    parser.add_argument("--macros", required=True, type=Path)
    args = parser.parse_args(argv)

    steps, runs = pd.read_parquet(args.steps), pd.read_parquet(args.runs)
    throughput = pd.read_parquet(args.throughput)
    options, lm_options = json.loads(args.options), json.loads(args.lm_options)

    result = {"exact": {}}
    lines = [r"% generated by code/make_fits.py from the aggregated tables; do not edit"]
    extra = {"NumExactExperiments": len(options)}
    for experiment, opts in options.items():
        prefix = experiment.capitalize()
        exp_runs = runs[(runs["source"] == "exact") & (runs["experiment"] == experiment)]
        exp_steps = steps[(steps["source"] == "exact") & (steps["experiment"] == experiment)]
        exp_runs = exp_runs.dropna(axis="columns", how="all")
        exp_steps = exp_steps.dropna(axis="columns", how="all")
        summary = fits.summarize_exact(exp_steps, exp_runs, opts)
        result["exact"][experiment] = summary | {"options": opts}
        lines += fits.macro_lines(summary, prefix)
        extra |= grid_macros(prefix, exp_runs, summary)
        for warning in summary.get("warnings", []):
            print(f"{experiment}: {warning}")
    extra["ExactExperimentRows"] = "\n".join(
        experiment_row(e, runs[(runs["source"] == "exact") & (runs["experiment"] == e)], s)
        for e, s in result["exact"].items()
    )
    lm_steps = steps[steps["source"] == "lm"].dropna(axis="columns", how="all")
    lm_runs = runs[runs["source"] == "lm"].dropna(axis="columns", how="all")
    result["lm"] = fits.summarize_lm(lm_steps, lm_runs, lm_options) | {"options": lm_options}
    if len(lm_runs):
        lines += fits.macro_lines(result["lm"], "LM")
        extra |= grid_macros("LM", fits.lm_main_grid(lm_runs), result["lm"])
    extra |= lm_macros(runs, result["lm"], throughput)
    for name, value in extra.items():
        text = value if isinstance(value, str) else fits.format_number(value)
        lines.append(rf"\newcommand{{\{name}}}{{{text}}}")

    fits.write_summary(fits.jsonable(result), args.fits)
    args.macros.parent.mkdir(parents=True, exist_ok=True)
    args.macros.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.fits} and {args.macros} ({len(lines) - 1} macros)")


if __name__ == "__main__":
    main()
