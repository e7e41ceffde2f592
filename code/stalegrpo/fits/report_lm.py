"""The language-model comparisons in the paper's words (docs/method.md §8, §10): the table of
(S, η) cells, the F5 schedule and async-vs-sync numbers, the claim verdicts with their seed-level
intervals, the sentences that say what each claim's runs show, and the benchmark's numbers, all as
macro values (:func:`lm_macros`), written to the paper by :func:`stalegrpo.fits.report.newcommand`.
"""

from __future__ import annotations

import pandas as pd

from stalegrpo.fits import verdicts
from stalegrpo.fits.laws import OK
from stalegrpo.fits.lm import HACK_TAKEOVER
from stalegrpo.fits.report import _bound, _percent, _texttt
from stalegrpo.fits.verdicts import format_number


def _pct(value):
    return None if value is None or value != value else 100.0 * value


def _cell_rows(cells: list[dict]) -> str:
    """The paper's table of LM (S, η) cells: collapses, median T_c, accuracy before and after."""
    rows = [
        " & ".join(
            [
                str(int(c["S"])),
                format_number(c["eta"]),
                f"{c['n_collapsed']} of {c['n']}",
                str(c.get("n_hack", 0)),
                format_number(c["median_collapse_step"]) if c["n_collapsed"] else "--",
                format_number(_pct(c["initial_accuracy"])),
                format_number(_pct(c["final_accuracy"])),
            ]
        )
        + r" \\"
        for c in cells
    ]
    return "\n".join(rows) or r"\multicolumn{7}{c}{no LM runs} \\"


def _schedule_macros(schedules: list[dict]) -> dict:
    """F5 (top): the η schedules compared at the largest S that ran more than one."""
    values = {"LMHasSchedules": int(bool(schedules))}
    if not schedules:
        return values
    s_max = max(r["S"] for r in schedules)
    at_s = [r for r in schedules if r["S"] == s_max]
    values |= {"LMSchedS": int(s_max), "LMSchedEta": at_s[0]["eta"], "LMSchedN": at_s[0]["n"]}
    values["LMSchedInitialAcc"] = _pct(at_s[0]["initial_accuracy"])
    by_schedule = {row["lr_schedule"]: row for row in at_s}
    for schedule in ("constant", "ess", "staleness"):  # n/a for a schedule the grid left out
        row = by_schedule.get(schedule, {})
        values[f"LMSched{schedule.capitalize()}Collapsed"] = row.get("n_collapsed")
        values[f"LMSched{schedule.capitalize()}FinalAcc"] = _pct(row.get("final_accuracy"))
    return values


def _overlap_macros(overlap: list[dict]) -> dict:
    """F5 (bottom): the async runs at the largest S against the synchronous baseline."""
    async_rows = [r for r in overlap if r["schedule"] == "async"]
    sync_rows = [r for r in overlap if r["schedule"] == "fixed" and r["S"] == 0]
    values = {"LMHasOverlap": int(bool(async_rows and sync_rows))}
    if not values["LMHasOverlap"]:
        return values
    a = max(async_rows, key=lambda r: r["S"])
    b = next((r for r in sync_rows if r["threads"] == a["threads"] and r["eta"] == a["eta"]), sync_rows[0])
    return values | {
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


def _rows(rows: list[dict], cells, width: int, empty: str) -> str:
    """LaTeX table rows, one per dict, its cells from ``cells(row)``; ``empty`` when none."""
    lines = [" & ".join(cells(row)) + r" \\" for row in rows]
    return "\n".join(lines) or rf"\multicolumn{{{width}}}{{c}}{{{empty}}} \\"


def _tc_cells(row: dict) -> list[str]:
    """collapsed, median T_c, peak, final and peak-to-final held-out gold accuracy (%)"""
    return [
        f"{row['n_collapsed']} of {row['n']}",
        format_number(row["median_collapse_step"]) if row["n_collapsed"] else "--",
        format_number(_pct(row.get("peak_accuracy"))),
        format_number(_pct(row["final_accuracy"])),
        format_number(_pct(row.get("peak_to_final"))),
    ]


def _objective_rows(objectives: list[dict]) -> str:
    return _rows(
        objectives,
        lambda r: [str(int(r["S"])), format_number(r["eta"]), _texttt([r["objective"]])]
        + _tc_cells(r)
        + [format_number(_pct(r.get("clip_frac")))],
        9,
        "no objectives comparison in this build",
    )


def _vary_s_rows(vary: list[dict]) -> str:
    def cells(r):
        wall = format_number(r.get("median_collapse_wall")) if r["n_collapsed"] else "--"
        return [_texttt([r["lr_schedule"]]), str(int(r["S"]))] + _tc_cells(r)[:2] + [wall] + _tc_cells(r)[2:] + [
            format_number(r.get("peak_wall")),
            format_number(r.get("steps_per_s")),
        ]

    return _rows(vary, cells, 10, "no vary-S test in this build")


def frontier_shape(eta_star: list[dict], ratio: float | None) -> str:
    """Whether η* at the longest horizon falls with S, as min(a/S, b/T) requires (it cannot rise),
    in LaTeX: the steps between consecutive S where the median η* rises by more than the η grid
    resolves (a factor ``ratio``), or that it nowhere does. Cells whose median is a bound count
    only where the bound points the same way (a lower bound that rises, an upper one that falls)."""
    rows = [r for r in eta_star if r.get("median") is not None]
    if not rows:
        return "not read (no frontier cells)"
    longest = max(r["T"] for r in rows)
    cells = sorted((r for r in rows if r["T"] == longest), key=lambda r: r["S"])
    tolerance = ratio or 1.0
    rises = []
    for low, high in zip(cells, cells[1:]):
        if high["median"] > tolerance * low["median"] and low.get("bound") != "lower" and high.get("bound") != "upper":
            rises.append(
                rf"from $S={int(low['S'])}$ to $S={int(high['S'])}$ (a factor "
                rf"{format_number(high['median'] / low['median'])})"
            )
    where = rf"at $T={int(longest)}$"
    if not rises:
        return rf"{where} the median $\eta^\ast$ nowhere rises with $S$ by more than the grid's factor {format_number(tolerance)}"
    return (
        rf"{where} the median $\eta^\ast$ rises with $S$ " + " and ".join(rises)
        + r", which $\min(a/S,b/T)$ does not allow"
    )


def objectives_summary(objectives: list[dict]) -> str:
    """One clause per S of the objectives comparison, e.g. "at $S=8$: behavior 0 of 1 collapsed
    (11% of tokens clipped), recompute 1 of 1 (median T_c 17)", in LaTeX."""
    parts = []
    for s in sorted({int(r["S"]) for r in objectives}):
        rows = sorted((r for r in objectives if int(r["S"]) == s), key=lambda r: r["objective"])
        items = []
        for r in rows:
            item = f"{_texttt([r['objective']])} {r['n_collapsed']} of {r['n']} collapsed"
            if r["n_collapsed"]:
                item += rf" (median $\Tc$ {format_number(r['median_collapse_step'])})"
            clip = _pct(r.get("clip_frac"))
            if clip is not None:
                item += rf", {format_number(clip)}\% of tokens clipped"
            items.append(item)
        parts.append(rf"At $S={s}$: " + "; ".join(items))
    return ". ".join(parts) or "no objectives comparison in this build"


def vary_s_summary(vary: list[dict]) -> str:
    """Per η schedule of the vary-S test: at which S runs collapsed, the final gold accuracy and
    the learner steps per second from the smallest to the largest S, in LaTeX."""
    parts = []
    for schedule in sorted({r["lr_schedule"] for r in vary}):
        rows = sorted((r for r in vary if r["lr_schedule"] == schedule), key=lambda r: r["S"])
        collapsed = [
            str(int(r["S"])) + ("" if r["n_collapsed"] == r["n"] else rf"\mbox{{ ({r['n_collapsed']} of {r['n']})}}")
            for r in rows
            if r["n_collapsed"]
        ]
        stable = [str(int(r["S"])) for r in rows if not r["n_collapsed"]]
        first, last = rows[0], rows[-1]
        text = f"{_texttt([schedule])} $\\eta$: "
        text += f"collapsed at $S\\in\\{{{', '.join(collapsed)}\\}}$" if collapsed else "no collapse"
        text += f", stable at $S\\in\\{{{', '.join(stable)}\\}}$" if stable and collapsed else ""
        text += (
            f"; final gold accuracy {format_number(_pct(first['final_accuracy']))}\\% at $S={int(first['S'])}$ and "
            f"{format_number(_pct(last['final_accuracy']))}\\% at $S={int(last['S'])}$, at "
            f"{format_number(first['steps_per_s'])} and {format_number(last['steps_per_s'])} learner steps per second"
        )
        parts.append(text)
    return "; ".join(parts) or "no vary-S test in this build"


SEED_UNITS = {
    "tc_eta": r"per $\eta$ at $S=0$ for F2",
    "frontier": r"per $(S,T)$ cell of the frontier",
    "bias": r"per $(S,\eta)$ point of the bias fit",
    "objectives": "per row of the objectives table",
    "vary_s": "per row of the vary-$S$ table",
    "schedules": r"per $\eta$ schedule of F5",
}


def seeds_summary(seeds: dict) -> str:
    r"""The seeds behind each LM comparison, e.g. "2 per $\eta$ at $S=0$ for F2; 1--2 per
    $(S,T)$ cell of the frontier", in LaTeX; comparisons with no runs are left out."""
    parts = []
    for key, unit in SEED_UNITS.items():
        low, high = (seeds.get(key) or {}).get("min"), (seeds.get(key) or {}).get("max")
        if low is not None:
            parts.append(f"{low}{'' if low == high else f'--{high}'} {unit}")
    return "; ".join(parts) or "no LM comparison in this build"


PER_SEED_CLAIMS = (
    ("F1 bound", "bias_bound", "bias_sq_slope", "slope"),
    ("F1 first-order law", "bias_first_order", "bias_sq_slope", "slope"),
    ("F2", "tc", "tc_exponent", "$b$"),
    ("F3", "frontier", "frontier", "$R^2$"),
)
"""per-seed summary: label, verdict key, fit key and what its number is"""


def _row_verdicts(row: dict) -> dict:
    """A per-seed row's verdicts: its own (:func:`stalegrpo.fits.lm.per_seed_fits`), else those of
    its fits under the same minimums."""
    if row.get("verdicts"):
        return row["verdicts"]
    judged = {}
    if "bias_sq_slope" in row:
        judged |= verdicts.bias_verdicts(row["bias_sq_slope"])
    if "tc_exponent" in row:
        judged["tc"] = verdicts.tc_verdict({"exponent": row["tc_exponent"], "per_eta": row.get("per_eta")})
    if "frontier" in row:
        judged["frontier"] = verdicts.lm_frontier_verdict(row["frontier"], None)
    return judged


def _seed_number(fit: dict, what: str) -> str | None:
    """One seed's estimate for an illustration, in LaTeX: a slope with its CI, or an R²."""
    if (fit or {}).get("status") != OK:
        return None
    if what == "$R^2$":
        return f"${format_number(fit.get('r2'))}$"
    ci = f"[{format_number(fit.get('ci_low'))}, {format_number(fit.get('ci_high'))}]"
    return f"${format_number(fit.get('slope'))}$ ${ci}$"


def per_seed_summary(per_seed: list[dict]) -> str:
    """Per claim, which seeds' own fits give which verdict, e.g. "F1 bound supported on seeds 1,
    2 and consistent on seeds 0, 3", in LaTeX. A seed whose runs are below the claim's minimum
    is an illustration, and its estimate is given instead; claims that no seed could fit alone
    are left out."""
    parts = []
    for name, key, fit_key, what in PER_SEED_CLAIMS:
        groups: dict[str, list[dict]] = {}
        for row in per_seed:
            judged = _row_verdicts(row).get(key)
            if judged:
                groups.setdefault(judged["verdict"], []).append(row)
        fitted = [(row.get(fit_key) or {}).get("status") == OK for rows in groups.values() for row in rows]
        if not any(fitted):  # no seed could fit this claim alone
            continue
        if key == "bias_first_order":  # F1's illustrations are listed once, under the bound
            groups.pop(verdicts.ILLUSTRATION, None)
            if not groups:
                continue
        if key == "bias_bound" and set(groups) == {verdicts.ILLUSTRATION}:
            name = "F1"
        items = []
        for label, rows in groups.items():
            seeds = ", ".join(str(r["seed"]) for r in rows)
            item = f"{label} on seed{'s' if len(rows) > 1 else ''} {seeds}"
            numbers = [_seed_number(r.get(fit_key), what) for r in rows]
            if label == verdicts.ILLUSTRATION and any(numbers):
                listed = ", ".join(n or "n/a" for n in numbers)
                item += f" (too few runs per seed for a verdict; {what} by seed: {listed})"
            items.append(item)
        parts.append(f"{name} " + " and ".join(items))
    return "; ".join(parts) or "no seed has enough runs for a fit of its own"


CLAIM_NAMES = {"bias_bound": "F1 (bias)", "tc": "F2 (collapse time)", "frontier": "F3 (frontier)"}


def illustration_summary(judged: dict) -> str:
    r"""One sentence for the claims whose runs are below their minimum, e.g. "For F1 (bias) this
    build's runs are an illustration: too few runs for a verdict (3 of the 6 runs needed, ...;
    \texttt{config/lm\_full.yaml} tests it)."; empty when every claim has enough."""
    short = [(name, judged[key]) for key, name in CLAIM_NAMES.items()
             if (judged.get(key) or {}).get("verdict") == verdicts.ILLUSTRATION]
    if not short:
        return ""
    names = [name for name, _ in short]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    reasons = "; ".join(
        (f"{name.split()[0]}: " if len(short) > 1 else "") + verdict["support"] for name, verdict in short
    )
    it = "it" if len(short) == 1 else "them"
    return (
        f"For {listed} this build's runs are an illustration: too few runs for a verdict ({reasons}; "
        f"{verdicts.FULL_TEST['lm']} tests {it})."
    )


def _claim_macros(lm: dict) -> dict:
    """The LM claims' grids: the reward of the collapse grid, the bias probe and its two fits, the
    objectives and vary-S tables, and the well-specified grid's collapses."""
    claim, probe = lm.get("claim_grid") or {}, lm.get("bias_grid") or {}
    squares = lm.get("bias_sq_slope") or {}
    ok = squares.get("status") == OK
    hack = claim.get("reward_hack") or "none"
    estimator = probe.get("probe_estimator")
    values = {
        "LMHasHack": int(hack != "none"),
        "LMClaimHack": _texttt([hack]),
        "LMHackBonus": claim.get("hack_bonus"),
        "LMClaimN": claim.get("n"),
        "LMTcSeedsSZero": claim.get("n_seed_at_S0"),
        "LMBiasGridN": probe.get("n"),
        "LMBiasProbeTime": probe.get("probe_time"),
        "LMBiasProbePairs": probe.get("probe_pairs"),
        "LMBiasProbePrompts": probe.get("probe_prompts"),
        "LMBiasProbeEstimator": _texttt([estimator if isinstance(estimator, str) else "paired"]),
        "LMBiasRange": (lm.get("bias_slope") or {}).get("small_drift_max"),
        "LMBiasSqSlope": squares.get("slope") if ok else None,
        "LMBiasSqSlopeLow": _bound(squares.get("ci_low") if ok else None, 1.0),
        "LMBiasSqSlopeHigh": _bound(squares.get("ci_high") if ok else None, 1.0),
        "LMBiasCINote": verdicts.ci_note(squares),
        "LMBiasSqSlopeN": squares.get("n"),
        "LMBiasSqSlopeNNonpos": squares.get("n_nonpositive"),
        "LMHasObjectives": int(bool(lm.get("objectives"))),
        "LMObjectiveRows": _objective_rows(lm.get("objectives") or []),
        "LMObjectivesSummary": objectives_summary(lm.get("objectives") or []),
        "LMHasVaryS": int(bool(lm.get("vary_s"))),
        "LMVarySRows": _vary_s_rows(lm.get("vary_s") or []),
        "LMVarySSummary": vary_s_summary(lm.get("vary_s") or []),
        "LMSeedsSummary": seeds_summary(lm.get("seeds") or {}),
        "LMPerSeedSummary": per_seed_summary(lm.get("per_seed") or []),
    }
    tc = lm.get("tc_eta") or {}
    exponent = tc.get("exponent") or {}
    tc_ok, exp_ok = tc.get("status") == OK, exponent.get("status") == OK
    # F1's two verdicts are macro_lines' (LMBiasBoundVerdict, LMBiasFirstOrderVerdict); F2, F3 here
    judged = lm.get("verdicts") or verdicts.lm_verdicts(lm, (lm.get("grid") or {}).get("eta_ratio"))
    has = {key: int(judged[key]["verdict"] != verdicts.ILLUSTRATION) for key in CLAIM_NAMES}
    values |= {
        "LMTcEtaCVLow": tc.get("cv_ci_low") if tc_ok else None,
        "LMTcEtaCVHigh": tc.get("cv_ci_high") if tc_ok else None,
        "LMTcNOther": tc.get("n_other_mechanism", 0),
        "LMTcExponent": exponent.get("slope") if exp_ok else None,
        "LMTcExponentLow": _bound(exponent.get("ci_low") if exp_ok else None, -1.0),
        "LMTcExponentHigh": _bound(exponent.get("ci_high") if exp_ok else None, -1.0),
        "LMTcCINote": verdicts.ci_note(exponent),
        "LMTcCVCINote": verdicts.ci_note(tc.get("cv_bootstrap") or {}),
        "LMNumHackCollapses": (lm.get("mechanisms") or {}).get("n_hack", 0),
        "LMClaimNumCollapsed": (lm.get("mechanisms") or {}).get("n_collapsed", 0),
        "LMHackTakeover": 100 * HACK_TAKEOVER,
        # final hack rates (%) of the hack collapses (lowest) and the other collapses (highest)
        "LMHackRateHackMin": _percent((lm.get("mechanisms") or {}).get("hack_rate_min")),
        "LMHackRateOtherMax": _percent((lm.get("mechanisms") or {}).get("other_rate_max")),
        "LMTcVerdict": judged["tc"]["text"],
        "LMTcHasVerdict": has["tc"],
        "LMFrontierVerdict": judged["frontier"]["text"],
        "LMFrontierHasVerdict": has["frontier"],
        "LMAnyVerdict": int(any(has.values())),
        "LMIllustrationSummary": illustration_summary(judged),
        "LMFrontierShape": frontier_shape(lm.get("eta_star_summary") or [], (lm.get("grid") or {}).get("eta_ratio")),
    }
    well = (lm.get("well_specified") or {}).get("counts") or {}
    values |= {"LMWellNumRuns": well.get("n_runs"), "LMWellNumCollapsed": well.get("n_collapsed")}
    return values


def lm_macros(lm: dict, throughput: pd.DataFrame) -> dict:
    """Counts of the LM runs, their F5 comparisons (schedules, async vs sync) and the benchmark."""
    counts = lm.get("counts") or {}
    n_runs = counts.get("n_runs", 0)
    values = {"LMHasRuns": int(n_runs > 0), "LMNumRuns": n_runs, "LMNumCollapsed": counts.get("n_collapsed")}
    relative = lm.get("relative_bias") or {}
    values |= {
        "LMBiasRelMedian": relative.get("median"),
        "LMBiasRelMin": relative.get("min"),
        "LMBiasRelMax": relative.get("max"),
    }
    values["LMCellRows"] = _cell_rows(lm.get("cells") or [])
    values |= _claim_macros(lm)
    values |= _schedule_macros(lm.get("schedules") or [])
    values |= _overlap_macros(lm.get("overlap") or [])
    values["BenchHasData"] = int(len(throughput) > 0)
    if len(throughput):
        best = throughput.loc[throughput["speedup"].idxmax()]
        values |= {
            "BenchSpeedupMax": float(best["speedup"]),
            "BenchSpeedupMaxS": int(best["S"]),
            "BenchIdeal": float(best["ideal"]),
            "BenchEfficiencyAtMax": float(best["efficiency"]),
            # above 1 the synchronous baseline was slowed by something else: noise, not a result
            "BenchEfficiencyNoisy": int(float(throughput["efficiency"].max()) > 1),
            "BenchLoadBefore": _float_or_none(best.get("load_before")),
            "BenchLoadAfter": _float_or_none(best.get("load_after")),
        }
    return values


def _float_or_none(value):
    """A number, or None where the bench did not record it (a bench.json from before the field)."""
    return None if value is None or pd.isna(value) else float(value)
