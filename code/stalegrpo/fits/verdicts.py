"""What the fits may claim, in words: the verdicts, the minimum data behind them, and the digits
their numbers are printed with (docs/method.md §8).

- **Two verdicts on the bias claim (F1).** The paper's claim is an order bound, bias = O(S·η). On
  log-log axes a slope above 1 means bias/(S·η) *falls* as S·η → 0, which the bound allows; only
  a slope below 1 contradicts it. :func:`bound_verdict` is that one-sided test: the bound is
  contradicted only when the slope's whole CI lies below 1. :func:`first_order_verdict` tests
  the stronger statement that the bias is first order in S·η (slope exactly 1), two-sided. Each
  names the S·η range its fit covers.
- **Minimums** (:data:`MINIMUMS`). Below them a claim gets no verdict: its text says
  "illustration: too few runs for a verdict (n of the m needed; <config> tests it)".
- **Digits.** :func:`format_bound` prints a CI bound with as many digits as it takes not to read
  as equal to a value that the text compares it with (a bound of 1.0004 is not "1.00" beside
  "the CI excludes 1").

Each verdict is a dict: ``verdict`` (the class: "supported", "consistent", "contradicted",
"inconsistent", "not resolved", "not tested" or "illustration"), ``text`` (LaTeX, for the
paper), ``enough`` (whether the data meet the claim's minimum) and ``support`` (what they hold,
in words).
"""

from __future__ import annotations

import math

import numpy as np

OK = "ok"
TOO_FEW = "too_few_points"
"""a fit's status where the data are too few for it (its numbers are NaN)"""
"""the status of a fit that succeeded"""
MIN_SEEDS_FOR_SEED_VARIANCE = 3
"""a pooled interval over fewer seeds than this cannot carry seed-to-seed variance (with two seeds
the resampled seeds are only {a, a}, {a, b} or {b, b}); the fits flag it (``seed_variance``)"""
SLOPE_RANGE = (-3.0, 5.0)
"""bounds on the slope of :func:`fit_bias_sq_slope` (a pure-noise fit would otherwise run away)"""

MINIMUMS = {
    "bias": {"runs": 6, "s_eta": 3},
    "tc": {"eta": 4, "collapses_per_eta": 2},
    "frontier": {"cells": 4},
}
"""the least data a claim's verdict rests on: F1 ≥ 6 runs over ≥ 3 distinct S·η; F2 ≥ 4 values of
η with ≥ 2 collapses each; F3 ≥ 4 (S, T) cells with an exact η*"""

FULL_TEST = {"lm": r"\texttt{config/lm\_full.yaml}", "exact": r"\texttt{config/exact.yaml}"}
"""where each instrument's claims get the runs a verdict needs"""

ILLUSTRATION = "illustration"

EDGE = ", but one end of the CI is the fit's bound on the slope, so the data do not limit it on that side"


# -- numbers -----------------------------------------------------------------------------------


def format_number(value, digits: int = 3, latex: bool = True) -> str:
    """``digits`` significant digits; scientific notation as ×10^k outside [1e-3, 1e4); n/a for
    missing. ``latex=False`` gives plain text (for figure titles)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return r"\textrm{n/a}" if latex else "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(f"{float(value):.{digits}g}")  # round first, so 9.996 becomes 10.0 and not 10.00
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if -3 <= exponent < 4:
        decimals = max(0, digits - 1 - exponent)
        return f"{round(value, decimals):.{decimals}f}"
    mantissa = value / 10**exponent
    if not latex:
        return f"{mantissa:.{digits - 1}f}e{exponent}"
    return rf"\ensuremath{{{mantissa:.{digits - 1}f}\times 10^{{{exponent}}}}}"


def format_bound(value, references=(), digits: int = 3, latex: bool = True) -> str:
    """A CI bound, with at least ``digits`` significant digits and as many more as it takes for it
    not to read as equal to any of ``references`` (the values the text holds it against) unless it
    is equal: 1.0004 beside 1 prints as 1.0004, not 1.00."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return format_number(value, digits, latex)
    value = float(value)
    for d in range(digits, 17):
        text = format_number(value, d, latex)
        if all(value == float(r) or text != format_number(float(r), d, latex) for r in references):
            return text
    return text


def _ci_text(fit: dict, references, latex: bool = True) -> str:
    low = format_bound(fit.get("ci_low"), references, latex=latex)
    high = format_bound(fit.get("ci_high"), references, latex=latex)
    return f"[{low}, {high}]"


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# -- minimums ----------------------------------------------------------------------------------


def _support(enough: bool, short: str, held: str) -> dict:
    """``support``: what is missing in the words of an illustration ("3 of the 6 runs needed"),
    or, with enough, what the verdict rests on."""
    return {"enough": bool(enough), "support": held if enough else short}


def bias_support(fit: dict) -> dict:
    """F1: the fit's runs and distinct S·η against :data:`MINIMUMS` ``["bias"]``."""
    need = MINIMUMS["bias"]
    n, n_x = int(fit.get("n") or 0), int(fit.get("n_x") or 0)
    short = rf"{n} of the {need['runs']} runs needed, over {n_x} of the {need['s_eta']} distinct $S\eta$ needed"
    held = rf"{n} runs over {n_x} distinct $S\eta$ (a verdict needs {need['runs']} over {need['s_eta']})"
    return _support(n >= need["runs"] and n_x >= need["s_eta"], short, held)


def tc_support(tc: dict) -> dict:
    """F2: how many η have at least 2 of the collapses the law is fitted on (``per_eta``)."""
    need = MINIMUMS["tc"]
    count = sum(1 for row in tc.get("per_eta") or [] if (row.get("n") or 0) >= need["collapses_per_eta"])
    each = rf"$\eta$ with at least {need['collapses_per_eta']} collapses each"
    short = rf"{count} of the {need['eta']} values of {each} needed"
    held = rf"{count} values of {each} (a verdict needs {need['eta']})"
    return _support(count >= need["eta"], short, held)


def frontier_support(frontier: dict) -> dict:
    """F3: the (S, T) cells with an exact η* (``n``)."""
    need = MINIMUMS["frontier"]
    n = int(frontier.get("n") or 0)
    short = rf"{n} of the {need['cells']} frontier cells with an exact $\eta^\ast$ needed"
    held = rf"{n} frontier cells with an exact $\eta^\ast$ (a verdict needs {need['cells']})"
    return _support(n >= need["cells"], short, held)


def illustration(support: dict, where: str) -> dict:
    """The verdict of a claim below its minimum."""
    text = rf"illustration: too few runs for a verdict ({support['support']}; {where} tests it)"
    return {"verdict": ILLUSTRATION, "text": text} | support


# -- the verdicts ------------------------------------------------------------------------------


def _range(fit: dict) -> str:
    low, high = fit.get("x_min"), fit.get("x_max")
    if not _finite(low, high):
        return ""
    return rf" over $S\eta$ from {format_number(low)} to {format_number(high)}"


def _untested(support: dict) -> dict:
    return {"verdict": "not tested", "text": "not tested (too few usable points for a fit)"} | support


def _bias_gate(fit: dict, where: str) -> tuple[dict, dict | None]:
    """What both F1 verdicts check first: the fit's support, and the verdict it already forces (an
    illustration below the minimums, "not tested" without a usable CI), or None."""
    support = bias_support(fit)
    if not support["enough"]:
        return support, illustration(support, where)
    if fit.get("status", OK) != OK or not _finite(fit.get("ci_low"), fit.get("ci_high")):
        return support, _untested(support)
    return support, None


def bound_verdict(fit: dict, where: str = FULL_TEST["lm"]) -> dict:
    """The bound bias ≤ C·S·η at small S·η, one-sided on the log-log slope of ``fit``: contradicted
    only if the whole CI lies below 1; "supported" if it lies at or above 1 (bias/(S·η) does not
    grow as S·η falls); else "consistent" (the CI also holds slopes below 1, so the data do not
    confirm it either). Below :data:`MINIMUMS` it is an illustration."""
    support, early = _bias_gate(fit, where)
    if early is not None:
        return early
    low, high = fit["ci_low"], fit["ci_high"]
    span = _range(fit)
    if high < 1:
        verdict, text = "contradicted", (
            rf"contradicted by the data{span} (the whole CI lies below 1, so bias$/(S\eta)$ grows as "
            r"$S\eta$ falls)"
        )
    elif low >= 1:
        verdict, text = "supported", (
            rf"supported by the data{span} (the whole CI lies at or above 1, so bias$/(S\eta)$ does not grow "
            r"as $S\eta$ falls)"
        )
    else:
        verdict, text = "consistent", (
            rf"consistent with the data{span} but not confirmed (the CI holds 1 and slopes below it; only "
            "a CI entirely below 1 would contradict the bound)"
        )
        if low <= SLOPE_RANGE[0] + 1e-9:
            text = text[:-1] + "; its lower end is the fit's bound on the slope)"
    return {"verdict": verdict, "text": text} | support


def _two_sided(low: float, high: float, predicted: float) -> str:
    if not low <= predicted <= high:
        return "inconsistent"
    if low <= 0 <= high:
        return "not resolved"
    return "consistent"


def first_order_verdict(fit: dict, where: str = FULL_TEST["lm"]) -> dict:
    """The first-order law, slope = 1 exactly, two-sided on the CI of ``fit``'s slope."""
    support, early = _bias_gate(fit, where)
    if early is not None:
        return early
    low, high = fit["ci_low"], fit["ci_high"]
    verdict, span = _two_sided(low, high, 1.0), _range(fit)
    text = {
        "inconsistent": rf"inconsistent with the data{span} (the CI excludes 1)",
        "not resolved": rf"not resolved{span} (the CI holds both 0 and 1)",
        "consistent": rf"consistent with the data{span} (the CI holds 1 and excludes 0)",
    }[verdict]
    if verdict == "consistent" and (high >= SLOPE_RANGE[1] - 1e-9 or low <= SLOPE_RANGE[0] + 1e-9):
        text += EDGE
    return {"verdict": verdict, "text": text} | support


def bias_verdicts(fit: dict, where: str = FULL_TEST["lm"]) -> dict:
    """Both F1 verdicts on one bias fit, with the S·η range they cover."""
    span = {"x_min": fit.get("x_min"), "x_max": fit.get("x_max")}
    return {
        "bias_bound": bound_verdict(fit, where) | span,
        "bias_first_order": first_order_verdict(fit, where) | span,
    }


def slope_verdict(fit: dict, predicted: float) -> str:
    """What a fitted slope's 95% CI says about the predicted slope, in words for the paper."""
    low, high = fit.get("ci_low"), fit.get("ci_high")
    if not _finite(low, high):
        return "not tested (too few usable points for a fit)"
    verdict, value = _two_sided(low, high, predicted), f"${format_number(predicted)}$"
    if verdict == "inconsistent":
        return f"inconsistent with the predicted {value} (the CI excludes it)"
    if verdict == "not resolved":
        return f"not resolved (the CI holds both 0 and the predicted {value})"
    text = f"consistent with the predicted {value} (the CI holds it and excludes 0)"
    if high >= SLOPE_RANGE[1] - 1e-9 or low <= SLOPE_RANGE[0] + 1e-9:
        text += EDGE
    return text


def frontier_verdict(frontier: dict, ratio: float | None = None) -> str:
    """Whether the min(a/S, b/T) law fits better than either branch alone, in words. Where every
    exact cell has the same η* there is no variance for R²: the fitted law is then held against
    the η grid's ratio ``ratio`` (a change by more than it would have been resolved)."""
    if frontier.get("status") != OK:
        return "not tested (too few frontier points for a fit)"
    r2 = frontier.get("r2")
    pure = [(frontier.get(k) or {}).get("r2") for k in ("pure_S", "pure_T")]
    pure = [v for v in pure if v is not None and v == v]
    if r2 is None or r2 != r2:
        exact = [p for p in frontier.get("points") or [] if p.get("bound") == "none"]
        observed = [p["eta_star"] for p in exact]
        if len(observed) >= 2 and max(observed) <= min(observed) * (1 + 1e-9):
            fitted = max(p["fit"] for p in exact) / min(p["fit"] for p in exact)
            text = (
                rf"$\eta^\ast$ is the same in every exact cell (so $R^2$ is undefined), while the fitted law "
                rf"varies by a factor {format_number(fitted)} across them"
            )
            resolved = ratio is not None and fitted > ratio
            return ("not supported: " if resolved else "not distinguished from a constant: ") + text
        return r"not tested (no $R^2$ for the fit)"
    if r2 <= 0:
        return r"not supported: the fit explains none of the variance of $\log\eta^\ast$"
    if pure and r2 > max(pure) + 0.05:
        return "supported: the two-branch law fits better than either branch alone"
    return r"not distinguished from a single branch (its $R^2$ is within 0.05 of the better branch alone)"


def _classed(text: str) -> str:
    """The class of a :func:`slope_verdict` or :func:`frontier_verdict` sentence."""
    for prefix in ("not distinguished", "not supported", "not resolved", "not tested", "inconsistent",
                   "consistent", "supported"):
        if text.startswith(prefix):
            return prefix
    return text


def tc_verdict(tc: dict, where: str = FULL_TEST["lm"]) -> dict:
    """F2: the exponent b of T_c ∝ η^b against the T·η law's −1, two-sided, given enough collapses."""
    support, exponent = tc_support(tc), tc.get("exponent") or {}
    if not support["enough"]:
        return illustration(support, where)
    if exponent.get("status") != OK:
        return _untested(support)
    text = slope_verdict(exponent, -1.0)
    return {"verdict": _classed(text), "text": text} | support


def lm_frontier_verdict(frontier: dict, ratio: float | None, where: str = FULL_TEST["lm"]) -> dict:
    """F3: :func:`frontier_verdict`, given enough exact frontier cells."""
    support = frontier_support(frontier)
    if not support["enough"]:
        return illustration(support, where)
    if frontier.get("status") != OK:
        return {"verdict": "not tested", "text": frontier_verdict(frontier, ratio)} | support
    text = frontier_verdict(frontier, ratio)
    return {"verdict": _classed(text), "text": text} | support


def lm_verdicts(summary: dict, ratio: float | None = None) -> dict:
    """Every LM claim's verdict: F1's two on the fit on the squares (``bias_sq_slope``), F2 on the
    exponent of T_c ∝ η^b, F3 on the frontier fit."""
    return bias_verdicts(summary.get("bias_sq_slope") or {}) | {
        "tc": tc_verdict(summary.get("tc_eta") or {}),
        "frontier": lm_frontier_verdict(summary.get("frontier") or {}, ratio),
    }


# -- words about the intervals -------------------------------------------------------------------


def ci_note(fit: dict) -> str:
    """How a pooled fit's CI was bootstrapped, and whether it carries seed-to-seed variance."""
    seeds = fit.get("n_seeds")
    if fit.get("bootstrap") == "seeds":
        text = f"bootstrap over the {seeds} seeds, then over runs within each"
        if not fit.get("seed_variance"):
            text += ": too few seeds for the interval to carry seed-to-seed variance"
        return text
    if seeds == 1:
        return "bootstrap over the runs of one seed: the interval carries no seed-to-seed variance"
    return "bootstrap over runs"


def title_note(summary: dict, fit_key: str, sep: str = "; ") -> str:
    """The F1 fit and its two verdicts in plain text, for a figure title: e.g. "slope 1.69
    [1.38, 2.66]; bound (≤ C·S·η): supported; slope 1: inconsistent", or the illustration's
    reason; ``sep`` goes between the fit and what it says."""
    fit = summary.get(fit_key) or {}
    if fit.get("status") != OK:
        return "no fit"
    verdicts = summary.get("verdicts") or {}
    bound, first = verdicts.get("bias_bound") or {}, verdicts.get("bias_first_order") or {}
    text = f"slope {format_number(fit.get('slope'), latex=False)} {_ci_text(fit, (1.0, 0.0), latex=False)}"
    if bound.get("verdict") == ILLUSTRATION:
        need = MINIMUMS["bias"]
        have = f"{fit.get('n')} of {need['runs']} runs, {fit.get('n_x')} of {need['s_eta']} S·η"
        return text + f"{sep}illustration: too few runs for a verdict ({have})"
    if bound and first:
        text += f"{sep}bound (≤ C·S·η): {bound['verdict']}; slope 1: {first['verdict']}"
    return text
