# Helpers of the workflow: config validation, every path, the LM parameter space, and the
# functions that rules call for their inputs and shell arguments. Rules themselves hold no
# lambdas and build no paths; they read them from PATHS and call the functions below.

import itertools
import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import yaml
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import Paramspace, validate


validate(config, "../config/schema/workflow.schema.yaml")

# Shell commands call `python`. Without --sdm conda, that is the interpreter that runs Snakemake
# (so a venv works without being activated); with it, the rule's env. code/ goes on PYTHONPATH
# so that a conda env needs the dependencies only, not an install of stalegrpo.
_CODE = shlex.quote(str(Path(workflow.basedir) / "code"))
_USE_CONDA = DeploymentMethod.CONDA in (workflow.deployment_settings.deployment_method or ())
_BIN = "" if _USE_CONDA else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
shell.prefix(f"set -euo pipefail; {_BIN}export PYTHONPATH={_CODE}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
STALEGRPO = "python -m stalegrpo.cli"
"""the stalegrpo command line (code/stalegrpo/cli.py), independent of console-script installs"""

RESULTS = config["results"]
EXACT = config["exact"]
LM = config["lm"]
FIGURES = ("bias", "collapse", "frontier", "dashboard", "schedules", "throughput")
"""one figure per docs/method.md §8 item F1-F6, each made by code/plot_<name>.py"""



def _selected(section: str, names, defined: dict) -> list:
    """The names a `run` list selects (all defined ones for null); an unknown name stops the run."""
    if names is None:
        return sorted(defined)
    unknown = sorted(set(names) - set(defined))
    if unknown:
        raise ValueError(f"config key {section}.run names {unknown}, not defined in {section}: {sorted(defined)}")
    return list(names)


EXACT_EXPERIMENTS = _selected("exact", EXACT["run"], EXACT["experiments"]) if EXACT["enabled"] else []
LM_GRIDS = _selected("lm", LM["run"], LM["grids"]) if LM["enabled"] else []

# -- the LM grid: one Paramspace over the de-duplicated union of the configured grids ---------
GRID_COLUMNS = ["S", "eta", "seed", "objective", "lr_schedule", "schedule", "threads"]
"""a run's point; `threads` is one because it changes the wall-clock that F5 plots"""


def _grid_frame(grids: dict) -> pd.DataFrame:
    rows = []  # an empty frame (no grids) still has the columns, so the wildcard pattern exists
    for grid in grids.values():
        grid = {"threads": [LM["resources"]["threads"]]} | grid
        rows.extend(itertools.product(*(grid[c] for c in GRID_COLUMNS)))
    frame = pd.DataFrame(rows, columns=GRID_COLUMNS).drop_duplicates()
    return frame.astype({"S": int, "eta": float, "seed": int, "threads": int}).reset_index(drop=True)


LM_SPACE = Paramspace(_grid_frame({name: LM["grids"][name] for name in LM_GRIDS}))

PATHS = dict(
    # simulation outputs
    exact_steps=f"{RESULTS}/exact/{{experiment}}/steps.parquet",
    exact_runs=f"{RESULTS}/exact/{{experiment}}/runs.parquet",
    exact_summary=f"{RESULTS}/exact/{{experiment}}/summary.json",
    pretrain_dir=f"{RESULTS}/lm/pretrain/{{base}}",
    pretrain_json=f"{RESULTS}/lm/pretrain/{{base}}/pretrain.json",
    run_steps=f"{RESULTS}/lm/runs/{LM_SPACE.wildcard_pattern}/steps.parquet",
    run_summary=f"{RESULTS}/lm/runs/{LM_SPACE.wildcard_pattern}/summary.json",
    bench_json=f"{RESULTS}/lm/bench/bench.json",
    # logs, one per job
    exact_log=f"{RESULTS}/logs/exact/{{experiment}}.log",
    pretrain_log=f"{RESULTS}/logs/pretrain/{{base}}.log",
    run_log=f"{RESULTS}/logs/train/{LM_SPACE.wildcard_pattern}.log",
    bench_log=f"{RESULTS}/logs/bench/lm.log",
    aggregate_log=f"{RESULTS}/logs/aggregate.log",
    fits_log=f"{RESULTS}/logs/fits.log",
    paper_log=f"{RESULTS}/logs/paper.log",
    # aggregated tidy tables (the only thing figures and fits read)
    steps=f"{RESULTS}/tables/steps.parquet",
    runs=f"{RESULTS}/tables/runs.parquet",
    throughput=f"{RESULTS}/tables/throughput.parquet",
    # fits
    fits=f"{RESULTS}/fits/fits.json",
    macros="paper/generated/macros.tex",
    # figures and paper
    paper="paper/main.pdf",
)
for _key in ("exact_steps", "exact_runs", "exact_summary"):
    PATHS[f"all_{_key}"] = expand(PATHS[_key], experiment=EXACT_EXPERIMENTS)
PATHS["all_run_steps"] = expand(PATHS["run_steps"], zip, **LM_SPACE.dataframe.to_dict("list"))
PATHS["all_run_summaries"] = expand(PATHS["run_summary"], zip, **LM_SPACE.dataframe.to_dict("list"))
FIGURE = {
    name: dict(
        script=f"code/plot_{name}.py",
        pdf=f"figures/{name}.pdf",
        png=f"figures/{name}.png",
        caption=f"../report/{name}.rst",
        log=f"{RESULTS}/logs/figures/{name}.log",
    )
    for name in FIGURES
}
PATHS["all_figures"] = [FIGURE[name][kind] for name in FIGURES for kind in ("pdf", "png")]


def _plain(value):
    """A numpy scalar as the Python scalar it holds (so a shell sees 0.001, not np.float64(0.001))."""
    return value.item() if hasattr(value, "item") else value


def override_args(overrides: dict) -> str:
    """{'a': 1, 'b': [1, 2]} -> "a=1 'b=[1, 2]'", shell-quoted for a stalegrpo command line."""
    parts = []
    for key, value in overrides.items():
        text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        parts.append(shlex.quote(f"{key}={text}"))
    return " ".join(parts)


# -- input functions and params (named functions: rules hold no lambdas) -----------------------
def output_dir(wildcards, output):
    """The folder of a job's first output: the --out of a stalegrpo command."""
    return str(Path(output[0]).parent)


def exact_config(wildcards):
    return EXACT["experiments"][wildcards.experiment]["config"]


def exact_overrides(wildcards):
    return override_args(EXACT["experiments"][wildcards.experiment]["overrides"])


def pretrain_inputs(wildcards):
    """The base policy a train job needs: the workflow's own pretraining, or nothing when the
    config names a local checkpoint."""
    return [] if LM["checkpoint"] else expand(PATHS["pretrain_json"], base=LM["base"])


def checkpoint_dir():
    return LM["checkpoint"] or expand(PATHS["pretrain_dir"], base=LM["base"])[0]


def train_threads(wildcards):
    """The threads of a train job: its grid point's (the shell passes them on as threads=)."""
    return int(LM_SPACE.instance(wildcards)["threads"])


def train_overrides(wildcards):
    """The grid point of this job as `stalegrpo train` overrides, plus the base checkpoint."""
    point = LM_SPACE.instance(wildcards)
    overrides = {LM["keys"][column]: _plain(point[column]) for column in GRID_COLUMNS if column != "threads"}
    overrides[LM["checkpoint_key"]] = checkpoint_dir()
    return override_args(LM["train_overrides"] | overrides)


def bench_overrides(wildcards):
    return override_args(LM["bench"]["overrides"] | {LM["checkpoint_key"]: checkpoint_dir()})


def bench_outputs(wildcards):
    return [PATHS["bench_json"]] if LM["enabled"] and LM["bench"]["enabled"] else []


def fit_options(wildcards):
    """Per exact experiment, the options of stalegrpo.fits.summarize_exact as one JSON argument
    for code/make_fits.py: the experiment's exact config (so that e.g. small_drift_max is the
    testbed's own), its overrides, then the workflow's `fits` entries."""
    options = {}
    for name in EXACT_EXPERIMENTS:
        experiment = EXACT["experiments"][name]
        loaded = yaml.safe_load(Path(experiment["config"]).read_text()) or {}
        options[name] = loaded | experiment["overrides"] | experiment["fits"]
    return json.dumps(options)


def default_targets():
    targets = list(PATHS["all_figures"]) + [PATHS["fits"], PATHS["macros"]]
    if config["paper"]["enabled"]:
        targets.append(PATHS["paper"])
    return targets
