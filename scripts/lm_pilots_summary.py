"""Tables of the LM pilots of scripts/lm_pilots.sh (docs/method.md §10).

    .venv/bin/python scripts/lm_pilots_summary.py results/pilots   # also writes ROOT/pilots.png

hack: per run, the collapse step and detector, the held-out gold accuracy at the start, at its
peak and at the end, the held-out hack rate at the end, and T_c·η; then the CV of T_c·η across η
over the runs whose gold reward collapsed (stalegrpo.fits.laws.tc_eta_cv).
bias: per run, the probe at t = k·η = 0.01: relative bias with its 95% interval over the probe's
pairs; then the slope of log relative bias on log(S·η) over all runs, with its bootstrap CI
(stalegrpo.fits.laws.fit_bias_slope).
"""

import json
import math
import sys
from pathlib import Path

import pandas as pd

from stalegrpo.fits import laws


def hack_table(root: Path) -> pd.DataFrame:
    rows = []
    for out in sorted(root.glob("hack/eta*/seed*")):
        if not (out / "summary.json").is_file():
            continue
        summary = json.loads((out / "summary.json").read_text())
        cfg, evals = summary["config"], pd.read_parquet(out / "eval.parquet")
        peak = evals.loc[evals["eval_accuracy"].idxmax()]
        rows.append(
            {
                "eta": cfg["eta"],
                "seed": cfg["seed"],
                "T_c": summary["collapse_step"],
                "detector": summary["collapse_detector"],
                "gold_0": evals["eval_accuracy"].iloc[0],
                "gold_peak": peak["eval_accuracy"],
                "peak_step": int(peak["step"]),
                "gold_end": evals["eval_accuracy"].iloc[-1],
                "hack_end": evals["eval_hack_rate"].iloc[-1],
                "T_c*eta": summary["collapse_step"] * cfg["eta"] if summary["collapse_step"] is not None else math.nan,
            }
        )
    return pd.DataFrame(rows).sort_values(["eta", "seed"]) if rows else pd.DataFrame()


def bias_table(root: Path) -> pd.DataFrame:
    rows = []
    for out in sorted(root.glob("bias/S*/eta*")):
        if not (out / "summary.json").is_file():
            continue
        cfg = json.loads((out / "summary.json").read_text())["config"]
        probe = pd.read_parquet(out / "steps.parquet").dropna(subset=["bias_sq"]).iloc[-1]
        grad = math.sqrt(probe["grad_sq"]) if probe["grad_sq"] > 0 else math.nan
        edges = [math.sqrt(max(probe["bias_sq"] + z * 1.96 * probe["bias_sq_se"], 0)) / grad for z in (-1, 1)]
        rows.append(
            {
                "S": cfg["S"],
                "eta": cfg["eta"],
                "S*eta": cfg["S"] * cfg["eta"],
                "step": int(probe["step"]),
                "pairs": int(probe["probe_pairs"]),
                "relative_bias": probe["relative_bias"],
                "ci_low": edges[0],
                "ci_high": edges[1],
            }
        )
    return pd.DataFrame(rows).sort_values(["S*eta", "S"]) if rows else pd.DataFrame()


def main(root: str) -> None:
    root = Path(root)
    pd.set_option("display.width", 160)
    hack = hack_table(root)
    if len(hack):
        print("hack pilots (S = 0, first_digit, bonus 1.5):")
        print(hack.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        by_reward = hack[hack["detector"] == "reward"]
        slow = by_reward[by_reward["peak_step"] > 0]  # gold rose first: the over-optimisation regime
        cv = laws.tc_eta_cv(slow["eta"], slow["T_c"], [False] * len(slow))
        print(f"T_c*eta over runs whose gold rose and then fell: {cv['message']}: CV = {cv['cv']:.3f}, "
              f"mean {cv['mean']:.4g}; per eta: {[(r['eta'], round(r['tc_eta'], 4), r['n']) for r in cv['per_eta']]}")
        # T_c ∝ η^b: b = -1 is the T·η law; the same OLS-with-bootstrap as the bias slope
        law = laws.fit_bias_slope(slow["eta"], slow["T_c"], n_boot=2000)
        print(f"log T_c on log eta over the same runs: exponent {law['slope']:.3f} "
              f"[{law['ci_low']:.3f}, {law['ci_high']:.3f}] (95% bootstrap; -1 is T_c*eta = const)")
    bias = bias_table(root)
    if len(bias):
        print("\nbias pilots (probe at t = 0.01):")
        print(bias.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        fit = laws.fit_bias_slope(bias["S*eta"], bias["relative_bias"], n_boot=2000)
        print(f"slope of log relative bias on log(S*eta): {fit['slope']:.3f} "
              f"[{fit['ci_low']:.3f}, {fit['ci_high']:.3f}] (95% bootstrap), R^2 {fit['r2']:.3f}, "
              f"n = {fit['n']} ({fit['n_dropped']} dropped: non-positive)")
    figure(root, bias)


def figure(root: Path, bias: pd.DataFrame) -> None:
    """Held-out gold accuracy and hack rate of the hack runs against k·η, and the bias readings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    runs = sorted(root.glob("hack/eta*/seed*"), key=lambda p: (float(p.parent.name[3:]), p.name))
    etas = sorted({float(p.parent.name[3:]) for p in runs})
    colours = plt.cm.viridis([i / max(len(etas) - 1, 1) for i in range(len(etas))])
    for out in runs:
        eta = float(out.parent.name[3:])
        evals = pd.read_parquet(out / "eval.parquet")
        style = dict(color=colours[etas.index(eta)], ls="-" if out.name == "seed0" else "--", lw=1)
        label = f"η = {eta:g}" if out.name == "seed0" else None
        axes[0].plot(evals["step"] * eta, evals["eval_accuracy"], label=label, **style)
        axes[1].plot(evals["step"] * eta, evals["eval_hack_rate"], **style)
    axes[0].set(xlabel="k·η", ylabel="held-out gold accuracy (temperature 1)", xlim=(0, 0.15))
    axes[1].set(xlabel="k·η", ylabel="held-out hack rate", xlim=(0, 0.15))
    axes[0].legend(fontsize=7)
    if len(bias):
        err = [bias["relative_bias"] - bias["ci_low"], bias["ci_high"] - bias["relative_bias"]]
        for S, group in bias.groupby("S"):
            e = [err[0][group.index], err[1][group.index]]
            axes[2].errorbar(group["S*eta"], group["relative_bias"], yerr=e, fmt="o", capsize=3, label=f"S = {S}")
        axes[2].set(xscale="log", xlabel="S·η", ylabel="relative bias at t = 0.01 (95% over 8 pairs)")
        axes[2].legend(fontsize=7)
    fig.suptitle("LM pilots: S = 0 with the first_digit hack (solid seed 0, dashed seed 1); bias probe", fontsize=9)
    fig.tight_layout()
    fig.savefig(root / "pilots.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/pilots")
