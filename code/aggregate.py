"""Aggregate the runs of one source into tidy tables (docs/method.md §8).

One subcommand per source, so that a figure or fit depends only on the tables it reads:
``exact`` (one experiment of the exact testbed), ``lm`` (every language-model run) and ``bench``
(the throughput benchmark).

- ``steps``: one row per (run, step). Columns: ``source`` ("exact" or "lm"), ``experiment``
  (the exact experiment, or "lm"), ``run`` (unique within the table), then the per-step metrics
  as each source writes them (docs/method.md §3; the exact testbed's ``reward`` is the LM's
  ``reward_mean``). An LM run's held-out evals (eval.parquet) join at their steps.
- ``runs``: one row per run: its grid coordinates (S, eta, seed, objective, ...), horizon,
  collapse_step, detector, censored, and for LM runs the summary's final numbers.
- ``throughput``: one row per S from the LM benchmark's bench.json (docs/method.md §7); empty with
  its columns when there is no benchmark yet.

    python code/aggregate.py exact --runs-in results/exact/main/runs.parquet \
        --steps results/tables/exact/main/steps.parquet --runs results/tables/exact/main/runs.parquet
    python code/aggregate.py lm --summaries results/lm/runs/*/.../summary.json \
        --steps results/tables/lm/steps.parquet --runs results/tables/lm/runs.parquet
    python code/aggregate.py bench --bench results/lm/bench/bench.json \
        --throughput results/tables/throughput.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

THROUGHPUT_COLUMNS = ["S", "steps_per_s", "t_gen", "t_train", "speedup", "ideal", "efficiency"]


def exact_tables(runs_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One experiment's (steps, runs); the experiment is the name of the folder."""
    experiment = runs_path.parent.name
    runs = pd.read_parquet(runs_path)
    steps = pd.read_parquet(runs_path.parent / "steps.parquet")
    if "horizon" not in runs.columns:  # steps run per run, when the testbed does not record it
        runs = runs.merge(
            steps.groupby("run")["step"].max().add(1).rename("horizon"),
            left_on="run",
            right_index=True,
            how="left",
        )
    for frame in (steps, runs):
        frame.insert(0, "experiment", experiment)
        frame.insert(0, "source", "exact")
        frame["run"] = experiment + "/" + frame["run"].astype(str)
    return steps, runs


NUMERIC = {"S": int, "eta": float, "seed": int, "threads": int, "steps": int}
"""grid columns that are numbers; the others (objective, lr_schedule, schedule, reward_hack) are names"""


def _grid_point(run_dir: Path) -> dict:
    """{'S': 4, 'eta': 0.001, ...} from a Paramspace folder such as .../S~4/eta~0.001/seed~0/..."""
    point = {}
    for part in run_dir.parts:
        if "~" in part:
            key, value = part.split("~", 1)
            point[key] = NUMERIC[key](value) if key in NUMERIC else value
    return point


RUN_SETTINGS = ("probe_time", "probe_pairs", "probe_prompts", "probe_estimator", "hack_bonus", "batch_prompts")
"""train keys that select or describe runs in the fits, copied from each run's config"""


def _wall_at(steps: pd.DataFrame, step) -> float | None:
    """The wall-clock time of the learner step ``step`` (None if it has no row)."""
    if step is None or "wall_time" not in steps:
        return None
    rows = steps.loc[steps["step"] == step, "wall_time"]
    return float(rows.iloc[0]) if len(rows) else None


def lm_tables(summary_paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, runs) of every LM run, keyed by the run's Paramspace folder."""
    steps, runs = [], []
    for path in summary_paths:
        run_dir = path.parent
        run = "/".join(p for p in run_dir.parts if "~" in p)
        point = _grid_point(run_dir)
        summary = json.loads(path.read_text())
        scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        scalars["detector"] = scalars.pop("collapse_detector", None)  # the exact runs' column name
        config = summary.get("config") or {}
        scalars |= {"task": config.get("task"), "base": config.get("init_checkpoint")}  # for the text
        scalars |= {key: config.get(key) for key in RUN_SETTINGS}
        frame = pd.read_parquet(run_dir / "steps.parquet")
        scalars["collapse_wall_time"] = _wall_at(frame, summary.get("collapse_step"))
        if {"clip_frac_low", "clip_frac_high"} <= set(frame.columns):  # share of tokens the clip cut
            scalars["clip_frac"] = float((frame["clip_frac_low"] + frame["clip_frac_high"]).mean())
        if (run_dir / "eval.parquet").is_file():  # periodic held-out evals, as columns at their steps
            evals = pd.read_parquet(run_dir / "eval.parquet")
            if len(evals) and "eval_accuracy" in evals:  # when the gold accuracy peaked, in steps and seconds
                peak = evals.loc[evals["eval_accuracy"].idxmax()]
                wall = peak["wall_time"] if "wall_time" in peak and pd.notna(peak["wall_time"]) else None
                scalars |= {"peak_eval_step": int(peak["step"]), "peak_wall_time": wall}
            frame = frame.merge(evals, on="step", how="outer", suffixes=("", "_eval")).sort_values("step")
            if "wall_time_eval" in frame:  # the final eval comes after the last step's row
                frame["wall_time"] = frame["wall_time"].fillna(frame.pop("wall_time_eval"))
        runs.append({"source": "lm", "experiment": "lm", "run": run} | point | scalars)
        frame.insert(0, "run", run)
        frame.insert(0, "experiment", "lm")
        frame.insert(0, "source", "lm")
        for key, value in point.items():
            frame[key] = value
        steps.append(frame)
    return (pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(), pd.DataFrame(runs))


def throughput_table(bench_paths: list[Path]) -> pd.DataFrame:
    """bench.json (`stalegrpo bench lm`) → one row per S: the async run at that S (S = 0 is the
    synchronous baseline) with its steps/s, speedup and efficiency, plus the shared ideal speedup
    (t_gen + t_train) / max(t_gen, t_train) of the synchronous run."""
    rows = []
    for path in bench_paths:
        bench = json.loads(path.read_text())
        shared = {
            "ideal": bench.get("ideal_speedup"),
            "sync_t_gen": bench.get("t_gen"),
            "sync_t_train": bench.get("t_train"),
            "device": bench.get("device"),
            "threads": bench.get("threads"),
            "load_before": bench.get("load_before"),
            "load_after": bench.get("load_after"),
        }
        rows.extend(
            shared | {k: v for k, v in run.items() if not isinstance(v, (dict, list))}
            for run in bench.get("runs", [])
        )
    table = pd.DataFrame(rows)
    for column in THROUGHPUT_COLUMNS:
        if column not in table:
            table[column] = pd.Series(dtype=float)
    return table


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _empty(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame``, or an empty table with ``columns`` when there is nothing (so readers find them)."""
    return frame if len(frame) else pd.DataFrame(columns=columns)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("exact", help="one exact experiment's tables")
    p.add_argument("--runs-in", required=True, type=Path, help="the experiment's runs.parquet (steps beside it)")
    p.add_argument("--steps", required=True, type=Path)
    p.add_argument("--runs", required=True, type=Path)
    p = sub.add_parser("lm", help="the tables of every LM run")
    p.add_argument("--summaries", nargs="*", default=[], type=Path, help="summary.json of each LM run")
    p.add_argument("--steps", required=True, type=Path)
    p.add_argument("--runs", required=True, type=Path)
    p = sub.add_parser("bench", help="the benchmark's throughput table")
    p.add_argument("--bench", nargs="*", default=[], type=Path, help="bench.json of the LM benchmark")
    p.add_argument("--throughput", required=True, type=Path)
    args = parser.parse_args(argv)

    if args.source == "bench":
        throughput = throughput_table(args.bench)
        _write(throughput, args.throughput)
        print(f"throughput: {len(throughput)} rows")
        return
    steps, runs = exact_tables(args.runs_in) if args.source == "exact" else lm_tables(args.summaries)
    _write(_empty(steps, ["source", "experiment", "run", "step"]), args.steps)
    _write(_empty(runs, ["source", "experiment", "run"]), args.runs)
    print(f"{args.source}: steps {len(steps)} rows, runs {len(runs)} rows")


if __name__ == "__main__":
    main()
