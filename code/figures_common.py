"""What the figure scripts share: arguments, table loading, a grayscale-safe style, saving, and
the "no data yet" figure (docs/method.md §8: one script per figure, from the tidy tables and fits).

Every figure must read in grayscale: series differ by marker and line style as well as colour,
and colours come from a cubehelix palette whose lightness is monotone in the series order.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<"]
DASHES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]


INPUTS = {
    "exact_steps": "steps table of the exact experiment shown",
    "exact_runs": "runs table of the exact experiment shown",
    "exact_fits": "fits JSON of the exact experiment shown",
    "lm_steps": "steps table of the LM runs",
    "lm_runs": "runs table of the LM runs",
    "lm_fits": "fits JSON of the LM runs",
    "throughput": "the benchmark's throughput table",
}
"""every input a plot script can read; a script asks for the ones its figure shows"""


def parse_args(description: str, inputs: tuple[str, ...]) -> argparse.Namespace:
    """Arguments of a plot script: its input tables and fits, the experiment's name, the outputs.
    Every input is optional: a preset without LM runs (or without the exact experiment) has none,
    and the figure then says so."""
    parser = argparse.ArgumentParser(description=description)
    for name in inputs:
        parser.add_argument(
            "--" + name.replace("_", "-"), type=Path, help=INPUTS[name]
        )
    parser.add_argument("--experiment", default="main", help="name of the exact-testbed experiment shown")
    parser.add_argument(
        "--S", default="None", help="dashboard: staleness bound of the two runs (None = choose)"
    )
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution")
    parser.add_argument("--pdf", required=True, type=Path)
    parser.add_argument("--png", required=True, type=Path)
    return parser.parse_args()


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.05)
    plt.rcParams.update({"figure.constrained_layout.use": True, "savefig.bbox": "tight", "pdf.fonttype": 42})


def palette(n: int) -> list:
    """n colours, dark to light, readable in grayscale (cubehelix, monotone lightness)."""
    return sns.cubehelix_palette(max(n, 2), start=0.3, rot=-0.9, dark=0.12, light=0.72, reverse=True)[:n]


def read_table(path: Path | None) -> pd.DataFrame:
    """A tidy table without the columns its source never fills; empty when there is none."""
    frame = pd.read_parquet(path) if path is not None else pd.DataFrame()
    return frame.dropna(axis="columns", how="all").reset_index(drop=True) if len(frame) else frame


def exact_tables(steps_path: Path | None, runs_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, runs) of the exact-testbed experiment shown."""
    return read_table(steps_path), read_table(runs_path)


def lm_tables(steps_path: Path | None, runs_path: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, runs) of the language-model runs; empty without them."""
    steps, runs = read_table(steps_path), read_table(runs_path)
    if len(runs) and "collapse_step" not in runs:  # nothing collapsed: the column was all null
        runs = runs.assign(collapse_step=float("nan"))
    return steps, runs


def read_fits(path: Path | None) -> dict:
    """A fits JSON of code/make_fits.py; {} without one."""
    return json.loads(path.read_text()) if path is not None else {}


def lag_axis(ax, s_values, floor: float = 0.5) -> None:
    """A log x axis of S with ticks at the measured S values (S = 0 drawn at ``floor``)."""
    s_values = sorted({int(s) for s in s_values})
    step = max(1, len(s_values) // 8)  # at most ~8 labels
    shown = s_values[::step]
    ax.set_xscale("log")
    ax.set_xticks([max(s, floor) for s in shown], [str(s) for s in shown])
    ax.minorticks_off()


def fit_ok(fit: dict, *keys: str) -> bool:
    """Whether a fit from a fits JSON succeeded and has numbers for ``keys`` (NaN is stored as null)."""
    return fit.get("status") == "ok" and all(isinstance(fit.get(k), (int, float)) for k in keys)


def save(fig, args) -> None:
    args.pdf.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.pdf)
    fig.savefig(args.png, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {args.pdf} and {args.png}")


def no_data(args, title: str, message: str) -> None:
    """A figure that says in words why there is nothing to plot (never placeholder data)."""
    fig, ax = plt.subplots(figsize=(6.0, 2.4))
    ax.set_axis_off()
    ax.text(0.5, 0.72, title, ha="center", va="center", fontsize=13, weight="bold", transform=ax.transAxes)
    ax.text(
        0.5,
        0.35,
        "\n".join(textwrap.wrap(message, 70)),
        ha="center",
        va="center",
        fontsize=10,
        transform=ax.transAxes,
    )
    save(fig, args)
