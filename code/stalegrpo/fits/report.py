"""The fits as the paper sees them: numbers formatted for LaTeX, ``\\newcommand`` macros, JSON.

Every number in ``paper/main.tex`` is a macro written from the fits' JSON (docs/method.md §8):
:func:`macro_lines` for the fitted laws of one summary, :func:`grid_macros` and
:func:`experiment_row` for the numbers that describe the grids, and
:func:`stalegrpo.fits.report_lm.lm_macros` for the LM comparisons and the benchmark. A fit that said too_few_points gives n/a, so the paper states that
instead of a number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from stalegrpo.fits import verdicts
from stalegrpo.fits.laws import OK, eta_ratio
from stalegrpo.fits.verdicts import format_bound, format_number, frontier_verdict, slope_verdict  # noqa: F401

_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def _spell(number) -> str:
    """A number as letters for a macro name, digit by digit: 500 → FiveZeroZero."""
    return "".join(_DIGITS[int(d)] for d in str(round(float(number))))


def _macro_values(summary: dict) -> dict:
    """Macro name (letters only, without prefix) → value, from a :func:`summarize_exact` dict."""
    bias, tc, front = summary.get("bias_slope", {}), summary.get("tc_eta", {}), summary.get("frontier", {})
    ok = {name: part.get("status") == OK for name, part in (("bias", bias), ("tc", tc), ("front", front))}

    def val(part, key, okay):
        return part.get(key) if okay else None

    # the F1 verdicts: the summary's own (an LM summary's rest on its fit on the squares), else
    # those of its log-log fit, for the exact testbed
    judged = summary.get("verdicts") or verdicts.bias_verdicts(bias, verdicts.FULL_TEST["exact"])
    bound, first = judged.get("bias_bound") or {}, judged.get("bias_first_order") or {}
    values = {
        "BiasSlope": val(bias, "slope", ok["bias"]),
        "BiasSlopeLow": _bound(val(bias, "ci_low", ok["bias"]), 1.0),
        "BiasSlopeHigh": _bound(val(bias, "ci_high", ok["bias"]), 1.0),
        "BiasSlopeRsq": val(bias, "r2", ok["bias"]),
        "BiasSlopeN": bias.get("n"),
        "BiasSEtaMin": bound.get("x_min"),
        "BiasSEtaMax": bound.get("x_max"),
        "BiasHasVerdict": int(bound.get("verdict", verdicts.ILLUSTRATION) != verdicts.ILLUSTRATION),
        "BiasBoundVerdict": bound.get("text", r"	extrm{n/a}"),
        "BiasFirstOrderVerdict": first.get("text", r"	extrm{n/a}"),
        "TcEtaCV": val(tc, "cv", ok["tc"]),
        "TcEtaMean": val(tc, "mean", ok["tc"]),
        "TcEtaN": tc.get("n"),
        "TcEtaNCensored": tc.get("n_censored"),
        "FrontierA": val(front, "a", ok["front"]),
        "FrontierB": val(front, "b", ok["front"]),
        "FrontierRsq": val(front, "r2", ok["front"]),
        "FrontierRsqPureS": val(front.get("pure_S") or {}, "r2", ok["front"]),
        "FrontierRsqPureT": val(front.get("pure_T") or {}, "r2", ok["front"]),
        "FrontierN": front.get("n"),
        "FrontierNCensored": front.get("n_censored"),
    }
    interval = front.get("seed_interval") or {}
    has_interval = ok["front"] and (interval.get("n_boot") or 0) >= 20 and interval.get("r2_gain_low") is not None
    values |= {  # F3's bootstrap over seeds (LM runs only): the R² gain of the two-branch law
        "FrontierHasInterval": int(bool(has_interval)),
        "FrontierGainLow": format_bound(interval.get("r2_gain_low"), (0.05, 0.0)) if has_interval else None,
        "FrontierGainHigh": format_bound(interval.get("r2_gain_high"), (0.05, 0.0)) if has_interval else None,
        "FrontierGainShare": 100 * interval["share_supported"] if has_interval else None,
        "FrontierIntervalSeeds": interval.get("n_seeds"),
    }
    for entry in front.get("S_star") or []:
        values[f"FrontierSstarT{_spell(entry['T'])}"] = val(entry, "S_star", ok["front"])
    for key, count in (summary.get("counts") or {}).items():
        values["Count" + "".join(part.capitalize() for part in key.split("_"))] = count
    return values


def _bound(value, predicted: float) -> str:
    """A CI bound as the paper prints it: with the digits that keep it apart from the predicted
    value and from 0, the values the verdicts hold it against (:func:`verdicts.format_bound`)."""
    return format_bound(value, (predicted, 0.0))


def macro_lines(summary: dict, prefix: str = "") -> list[str]:
    r"""One ``\newcommand`` line per key number of ``summary`` (see :func:`write_macros`)."""
    if not prefix.isalpha() and prefix != "":
        raise ValueError(f"macro prefix must be letters only, got {prefix!r}")
    return [newcommand(prefix + name, value) for name, value in _macro_values(summary).items()]


def write_macros(summary: dict, path, prefix: str = "") -> Path:
    r"""Write one ``\newcommand`` per key number of ``summary`` to ``path`` (a .tex file to \input).

    Names are ``prefix`` + a letters-only name (LaTeX macro names cannot hold digits, so horizons
    are spelled out: S* at T = 500 is ``\FrontierSstarTFiveZeroZero``). A fit that said
    too_few_points gives n/a, so the paper states that instead of a number.
    """
    lines = ["% generated by stalegrpo.fits.write_macros; do not edit"] + macro_lines(summary, prefix)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_summary(summary: dict, path) -> Path:
    """Write a :func:`summarize_exact` dict as JSON (strict: NaN already mapped to null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return path


# -- the numbers that describe the grids, the LM comparisons and the benchmark -----------------
DETECTOR_NAMES = ("reward", "kl", "nonfinite", "entropy")


def grid_facts(runs: pd.DataFrame) -> dict:
    """What one grid holds, for the text: its S values, η range, seeds, objectives, horizon and
    how many runs each collapse detector ended. Stored in the fits JSON so that the macros need
    no table."""
    facts = {"n_runs": len(runs)}
    if len(runs):
        facts |= {
            "S_values": sorted(int(v) for v in runs["S"].unique()),
            "eta_min": float(runs["eta"].min()),
            "eta_max": float(runs["eta"].max()),
            "n_seeds": int(runs["seed"].nunique()),
            "eta_per_S": int(runs.groupby("S")["eta"].nunique().max()),
            "eta_ratio": eta_ratio(runs),
        }
        if "objective" in runs:
            facts["objectives"] = sorted(runs["objective"].astype(str).unique())
        if "horizon" in runs:
            facts["horizon"] = int(runs["horizon"].max())
            facts["horizons"] = sorted(int(v) for v in runs["horizon"].dropna().unique())
        for column, key in (("task", "tasks"), ("base", "bases")):  # LM runs: what they trained
            if column in runs and runs[column].notna().any():
                names = runs[column].dropna().astype(str)
                facts[key] = sorted({Path(v).name if column == "base" else v for v in names})
    detector = runs["detector"].astype(str) if "detector" in runs else pd.Series([], dtype=str)
    facts["n_by_detector"] = {name: int((detector == name).sum()) for name in DETECTOR_NAMES}
    return facts


def _percent(share) -> float | None:
    """A share as a percentage; None (printed "n/a") when absent or NaN."""
    return None if share is None or share != share else 100 * share


def _fmt_list(values) -> str:
    return ", ".join(format_number(v) for v in values)


def _texttt(names) -> str:
    escaped = (re.sub(r"([_#%&$])", r"\\\1", str(n)).replace("~", r"\textasciitilde{}") for n in names)
    return r"\texttt{" + ", ".join(escaped) + "}"


def grid_macros(prefix: str, facts: dict, summary: dict) -> dict:
    """Macros that describe one grid (n/a where it has no runs) and its frontier's horizons."""
    values = dict.fromkeys(
        ["SValues", "SMax", "EtaMin", "EtaMax", "NumSeeds", "EtaPerS", "EtaRatio", "Objective", "Horizon", "Horizons",
         "FrontierSstarLongest"]
    )
    if facts.get("n_runs"):
        values["SValues"] = _fmt_list(facts["S_values"])
        values["SMax"] = max(facts["S_values"])
        values["EtaMin"], values["EtaMax"] = facts["eta_min"], facts["eta_max"]
        values["NumSeeds"] = facts["n_seeds"]
        values["EtaPerS"], values["EtaRatio"] = facts.get("eta_per_S"), facts.get("eta_ratio")
        if "objectives" in facts:
            values["Objective"] = _texttt(facts["objectives"])
        values["Horizon"] = facts.get("horizon")
        values["Horizons"] = _fmt_list(facts["horizons"]) if facts.get("horizons") else None
        for key, name in (("tasks", "Task"), ("bases", "Base")):
            if key in facts:
                values[name] = _texttt(facts[key])
    for detector in DETECTOR_NAMES:  # which mechanism ended the runs
        values[f"NumDetector{detector.capitalize()}"] = facts.get("n_by_detector", {}).get(detector, 0)
    horizons = summary.get("horizons") or []
    values["FrontierHorizons"] = _fmt_list(horizons) if horizons else r"\textrm{n/a}"
    frontier = summary.get("frontier") or {}
    s_star = {entry["T"]: entry.get("S_star") for entry in frontier.get("S_star") or []}
    if horizons:
        values["FrontierSstarLongest"] = s_star.get(max(horizons)) if frontier.get("status") == OK else None
    return {prefix + name: value for name, value in values.items()}


def experiment_row(experiment: str, facts: dict, summary: dict) -> str:
    """One row of the paper's table of exact experiments: runs, collapses and the three fits."""
    counts, bias = summary.get("counts") or {}, summary.get("bias_slope") or {}
    tc, front = summary.get("tc_eta") or {}, summary.get("frontier") or {}
    ok = {name: part.get("status") == OK for name, part in (("b", bias), ("t", tc), ("f", front))}
    slope = (
        f"{format_number(bias['slope'])} [{_bound(bias['ci_low'], 1.0)}, {_bound(bias['ci_high'], 1.0)}]"
        if ok["b"]
        else r"\textrm{n/a}"
    )
    cells = [
        r"\texttt{" + experiment + "}",
        _texttt(facts["objectives"]) if "objectives" in facts else "",
        format_number(counts.get("n_runs")),
        format_number(counts.get("n_collapsed")),
        slope,
        format_number(tc.get("cv") if ok["t"] else None),
        format_number(front.get("r2") if ok["f"] else None),
    ]
    return " & ".join(cells) + r" \\"


def newcommand(name: str, value) -> str:
    r"""``\newcommand{\name}{value}``: a string as it is, anything else through :func:`format_number`."""
    text = value if isinstance(value, str) else format_number(value)
    return rf"\newcommand{{\{name}}}{{{text}}}"
