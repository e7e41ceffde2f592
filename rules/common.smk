# Helpers of the workflow: config validation, every path, the LM parameter space, and the
# functions that rules call for their inputs and shell arguments. Rules themselves hold no
# lambdas and build no paths; they read them from PATHS and call the functions below.

import ast
import importlib.util
import itertools
import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
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
sys.path.insert(0, str(Path(workflow.basedir) / "code"))  # stalegrpo.placement, for the GPU requests
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
GRID_COLUMNS = ["S", "eta", "seed", "objective", "lr_schedule", "schedule", "threads", "reward_hack", "steps"]
"""a run's point; `threads` is one because it changes the wall-clock that F5 plots, `steps` (the
horizon T) because grids of different reward mechanisms need different horizons"""


def _plain(value):
    """A numpy scalar as the Python scalar it holds (so a shell sees 0.001, not np.float64(0.001))."""
    return value.item() if hasattr(value, "item") else value


def _default_steps() -> int:
    """The horizon of a grid that names none: lm.train_overrides.steps, else the train config's."""
    if "steps" in LM["train_overrides"]:
        return int(LM["train_overrides"]["steps"])
    loaded = yaml.safe_load(Path(LM["train_config"]).read_text()) or {}
    return int(loaded.get("steps", 400))


def _grid_frame(grids: dict) -> tuple[pd.DataFrame, dict]:
    """The union of ``grids`` as one frame, and each point's grid-level `overrides` (train keys
    that are fixed for a whole grid, such as its probe settings). A point that two grids share
    must have the same overrides in both, or the run would depend on which grid asked first."""
    rows, extra, owner = [], {}, {}  # an empty frame still has the columns (the wildcard pattern)
    for name, grid in grids.items():
        overrides = dict(grid.get("overrides", {}))
        grid = {"threads": [LM["resources"]["threads"]], "steps": [_default_steps()]} | grid
        for row in itertools.product(*(grid[c] for c in GRID_COLUMNS)):
            key = tuple(_plain(v) for v in row)
            if key in extra and extra[key] != overrides:
                raise WorkflowError(
                    f"config key lm.grids: grids {owner[key]!r} and {name!r} share the point "
                    f"{dict(zip(GRID_COLUMNS, key))} but set different overrides "
                    f"({extra[key]} and {overrides}); give one of them another value of a grid column"
                )
            extra.setdefault(key, overrides)
            owner.setdefault(key, name)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=GRID_COLUMNS).drop_duplicates()
    types = {"S": int, "eta": float, "seed": int, "threads": int, "steps": int}
    return frame.astype(types).reset_index(drop=True), extra


_frame, GRID_OVERRIDES = _grid_frame({name: LM["grids"][name] for name in LM_GRIDS})
LM_SPACE = Paramspace(_frame)

PATHS = dict(
    # simulation outputs
    exact_steps=f"{RESULTS}/exact/{{experiment}}/steps.parquet",
    exact_runs=f"{RESULTS}/exact/{{experiment}}/runs.parquet",
    exact_summary=f"{RESULTS}/exact/{{experiment}}/summary.json",
    standin_config=f"{RESULTS}/lm/standin/{{base}}/config.json",
    pretrain_dir=f"{RESULTS}/lm/pretrain/{{base}}",
    pretrain_json=f"{RESULTS}/lm/pretrain/{{base}}/pretrain.json",
    run_steps=f"{RESULTS}/lm/runs/{LM_SPACE.wildcard_pattern}/steps.parquet",
    run_summary=f"{RESULTS}/lm/runs/{LM_SPACE.wildcard_pattern}/summary.json",
    bench_json=f"{RESULTS}/lm/bench/bench.json",
    # tidy tables, one set per source: what fits and figures read
    exact_table_steps=f"{RESULTS}/tables/exact/{{experiment}}/steps.parquet",
    exact_table_runs=f"{RESULTS}/tables/exact/{{experiment}}/runs.parquet",
    lm_table_steps=f"{RESULTS}/tables/lm/steps.parquet",
    lm_table_runs=f"{RESULTS}/tables/lm/runs.parquet",
    throughput=f"{RESULTS}/tables/throughput.parquet",
    # fits, one per source, and the paper's macros from all of them
    exact_fits=f"{RESULTS}/fits/exact/{{experiment}}.json",
    lm_fits=f"{RESULTS}/fits/lm.json",
    macros="paper/generated/macros.tex",
    paper="paper/main.pdf",
    # logs, one per job
    exact_log=f"{RESULTS}/logs/exact/{{experiment}}.log",
    standin_log=f"{RESULTS}/logs/standin/{{base}}.log",
    pretrain_log=f"{RESULTS}/logs/pretrain/{{base}}.log",
    run_log=f"{RESULTS}/logs/train/{LM_SPACE.wildcard_pattern}.log",
    bench_log=f"{RESULTS}/logs/bench/lm.log",
    aggregate_exact_log=f"{RESULTS}/logs/aggregate/exact/{{experiment}}.log",
    aggregate_lm_log=f"{RESULTS}/logs/aggregate/lm.log",
    aggregate_bench_log=f"{RESULTS}/logs/aggregate/bench.log",
    fits_exact_log=f"{RESULTS}/logs/fits/exact/{{experiment}}.log",
    fits_lm_log=f"{RESULTS}/logs/fits/lm.log",
    macros_log=f"{RESULTS}/logs/macros.log",
    paper_log=f"{RESULTS}/logs/paper.log",
)
PATHS["all_run_steps"] = expand(PATHS["run_steps"], zip, **LM_SPACE.dataframe.to_dict("list"))
PATHS["all_run_summaries"] = expand(PATHS["run_summary"], zip, **LM_SPACE.dataframe.to_dict("list"))


# -- the code of each job: its script and every module of the repository that it imports ------
_CODE_DIR = Path(workflow.basedir) / "code"


def _module_file(name: str) -> Path | None:
    """The file of a module of this repository (code/<name>.py or a package), None otherwise."""
    path = _CODE_DIR.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    """Module names that ``path`` imports anywhere (lazy imports inside functions included), and
    for ``from a import b`` also ``a.b``, which is a module when b is a submodule."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _by_name() -> dict[Path, list[str]]:
    """Modules that a package imports by name (importlib), which no import statement shows: the
    actor factory's backends (stalegrpo.actors.registry)."""
    from stalegrpo.actors.registry import BACKENDS

    return {_module_file("stalegrpo.actors"): [backend.module for backend in BACKENDS.values()]}


def code_inputs(*roots: str) -> list[str]:
    """The repository files that ``roots`` (scripts, or modules such as "stalegrpo.train") run:
    the roots and, transitively, every module of code/ they import (by name too, _by_name). A rule
    lists them as inputs, so that editing any of them reruns the rule and only the rules that use it."""
    by_name = _by_name()
    seen, todo = set(), []
    for root in roots:
        todo.append(Path(workflow.basedir) / root if root.endswith(".py") else _module_file(root))
    while todo:
        path = todo.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in _imported(path) | set(by_name.get(path, [])):
            # importing a package's module runs its parents' __init__ too
            todo += [_module_file(".".join(name.split(".")[:i])) for i in range(1, name.count(".") + 2)]
    return sorted(str(p.relative_to(workflow.basedir)) for p in seen)


CLI_CODE = ("stalegrpo.cli", "stalegrpo.config")
"""what every `stalegrpo` command runs besides its own module (cli imports it by name)"""
CODE = {
    "exact": code_inputs(*CLI_CODE, "stalegrpo.exact"),
    "standin": code_inputs(*CLI_CODE, "stalegrpo.checkpoints"),
    "pretrain": code_inputs(*CLI_CODE, "stalegrpo.pretrain"),
    "train": code_inputs(*CLI_CODE, "stalegrpo.train"),
    "bench": code_inputs(*CLI_CODE, "stalegrpo.bench"),
    "aggregate": code_inputs("code/aggregate.py"),
    "fits": code_inputs("code/make_fits.py"),
}
"""per rule, the repository code it runs"""


# -- figures: what each one reads -------------------------------------------------------------
FIGURE_READS = {
    "bias": ("exact_steps", "exact_runs", "exact_fits", "lm_steps", "lm_runs", "lm_fits"),
    "collapse": ("exact_runs", "exact_fits", "lm_runs", "lm_fits"),
    "frontier": ("exact_runs", "exact_fits", "lm_runs", "lm_fits"),
    "dashboard": ("exact_steps", "exact_runs", "lm_steps", "lm_runs"),
    "schedules": ("lm_steps", "lm_runs"),
    "throughput": ("throughput",),
}
"""the tables and fits each figure script reads (code/figures_common.py INPUTS)"""


def _figure_sources() -> dict:
    """Every table and fits file a figure may read, for the presets' sources that are on."""
    sources = {"throughput": PATHS["throughput"]}
    experiment = config["figures"]["experiment"]
    if experiment in EXACT_EXPERIMENTS:
        sources |= {
            "exact_steps": PATHS["exact_table_steps"].format(experiment=experiment),
            "exact_runs": PATHS["exact_table_runs"].format(experiment=experiment),
            "exact_fits": PATHS["exact_fits"].format(experiment=experiment),
        }
    if LM_GRIDS:
        sources |= {"lm_steps": PATHS["lm_table_steps"], "lm_runs": PATHS["lm_table_runs"], "lm_fits": PATHS["lm_fits"]}
    return sources


def _figure(name: str) -> dict:
    sources = _figure_sources()
    inputs = {key: sources[key] for key in FIGURE_READS[name] if key in sources}
    script = f"code/plot_{name}.py"
    return dict(
        script=script,
        code=[path for path in code_inputs(script) if path != script],
        inputs=inputs,
        args=" ".join(f"--{key.replace('_', '-')} {shlex.quote(path)}" for key, path in inputs.items()),
        pdf=f"figures/{name}.pdf",
        png=f"figures/{name}.png",
        caption=f"../report/{name}.rst",
        log=f"{RESULTS}/logs/figures/{name}.log",
    )


FIGURE = {name: _figure(name) for name in FIGURES}
PATHS["all_figures"] = [FIGURE[name][kind] for name in FIGURES for kind in ("pdf", "png")]


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


def standin_inputs(wildcards):
    """The stand-in checkpoint pretraining starts from, when lm.standin asks for one."""
    return expand(PATHS["standin_config"], base=wildcards.base) if LM["standin"] else []


def standin_overrides(wildcards):
    return override_args(LM["standin"] or {})


def pretrain_overrides(wildcards):
    """lm.pretrain.overrides, plus model=<the stand-in> when lm.standin is set."""
    overrides = dict(LM["pretrain"]["overrides"])
    if LM["standin"]:
        overrides["model"] = str(Path(standin_inputs(wildcards)[0]).parent)
    return override_args(overrides)


def train_threads(wildcards):
    """The threads of a train job: its grid point's (the shell passes them on as threads=)."""
    return int(LM_SPACE.instance(wildcards)["threads"])


def bench_threads(wildcards):
    """The threads Snakemake reserves for the benchmark job: in a local run every core it was
    given (--cores), so that no other job runs beside the benchmark and skews its timings; on a
    cluster, where the job has its CPUs to itself, lm.bench.threads (the CPUs it asks for). The
    benchmark itself always runs on lm.bench.threads (the rule's params.threads)."""
    return workflow.cores if workflow.local_exec else LM["bench"]["threads"]


# -- devices: each job's GPUs, derived from the placement keys of the train config -------------
def _train_setting(key: str, default, overrides: dict):
    """A `stalegrpo train` key as a job gets it: its overrides, else the train config file, else
    ``default`` (the TrainConfig default)."""
    if key in overrides:
        return overrides[key]
    loaded = yaml.safe_load(Path(LM["train_config"]).read_text()) or {}
    return loaded.get(key, default)


def _gpus(overrides: dict, schedule: str, engines: int | None = None) -> int:
    """GPUs of one LM job, by the rule `stalegrpo train` places its processes with
    (stalegrpo.placement.gpus_needed), for a node of lm.resources.gpus_per_node GPUs. 0 on CPU."""
    from stalegrpo.placement import gpus_needed

    if LM["resources"]["device"] != "cuda":
        return 0
    if engines is None:
        engines = _train_setting("actors", 1, overrides)
    return gpus_needed(
        schedule,
        _train_setting("learners", 1, overrides),
        engines,
        _train_setting("actor_devices", 1, overrides),
        _train_setting("colocate", "auto", overrides),
        LM["resources"]["gpus_per_node"],
    )


def train_gpus(wildcards):
    point = LM_SPACE.instance(wildcards)
    return _gpus(LM["train_overrides"], point["schedule"])


def bench_gpus(wildcards):
    """The benchmark runs async with every A of bench.engines: it needs the largest."""
    overrides = LM["bench"]["overrides"]
    return _gpus(overrides, "async", max(overrides.get("bench.engines", [1])))


def pretrain_gpus(wildcards):
    return 1 if LM["resources"]["device"] == "cuda" else 0


def _actor(overrides: dict) -> dict:
    """``actor: auto`` made concrete: vllm where vLLM is installed, else hf."""
    if overrides.get("actor") != "auto":
        return overrides
    return overrides | {"actor": "vllm" if importlib.util.find_spec("vllm") else "hf"}


def train_overrides(wildcards):
    """The grid point of this job as `stalegrpo train` overrides (grid columns are train keys),
    over its grid's `overrides` and lm.train_overrides, plus the base checkpoint."""
    point = LM_SPACE.instance(wildcards)
    key = tuple(_plain(point[column]) for column in GRID_COLUMNS)
    overrides = {column: _plain(point[column]) for column in GRID_COLUMNS if column != "threads"}
    overrides["init_checkpoint"] = checkpoint_dir()
    return override_args(_actor(LM["train_overrides"]) | GRID_OVERRIDES.get(key, {}) | overrides)


def bench_overrides(wildcards):
    return override_args(_actor(LM["bench"]["overrides"]) | {"init_checkpoint": checkpoint_dir()})


def bench_outputs(wildcards):
    return [PATHS["bench_json"]] if LM["enabled"] and LM["bench"]["enabled"] else []


def _fit_settings(*layers: dict) -> str:
    """The workflow's `fits` section overlaid with ``layers``, unset (null) settings left out, as
    one JSON argument for code/make_fits.py."""
    merged = {}
    for layer in (config["fits"], *layers):
        merged |= layer
    return json.dumps({key: value for key, value in merged.items() if value is not None})


def exact_fit_options(wildcards):
    return _fit_settings(EXACT["experiments"][wildcards.experiment]["fits"])


def lm_fit_options(wildcards):
    return _fit_settings(LM["fits"])


def lm_fits_inputs(wildcards):
    return [PATHS["lm_fits"]] if LM_GRIDS else []


def macros_args(wildcards, input):
    """``--exact NAME=PATH ...`` and ``--lm PATH`` (when there are LM runs) for make_fits macros."""
    exact = " ".join(shlex.quote(f"{name}={path}") for name, path in zip(EXACT_EXPERIMENTS, input.exact))
    args = f"--exact {exact}" if exact else ""
    return args + (f" --lm {shlex.quote(input.lm[0])}" if input.lm else "")


def default_targets():
    targets = list(PATHS["all_figures"]) + [PATHS["macros"]]
    if config["paper"]["enabled"]:
        targets.append(PATHS["paper"])
    return targets


# -- checks before any job: a wrong checkpoint or placement stops here, not on the cluster -----
def _check_checkpoint() -> None:
    """lm.checkpoint is a loadable checkpoint: config.json, weights and a tokenizer (read, not loaded)."""
    sys.path.insert(0, str(Path(workflow.basedir) / "code"))
    from stalegrpo.checkpoints import check_checkpoint

    try:
        check_checkpoint(LM["checkpoint"])
    except (OSError, ValueError) as err:
        raise WorkflowError(f"config key lm.checkpoint: {err}") from None


def _check_placement() -> None:
    """Every LM job's GPUs (from the placement keys) fit on one node of lm.resources.gpus_per_node."""
    limit = LM["resources"]["gpus_per_node"]
    schedules = sorted(set(LM_SPACE.dataframe["schedule"]))
    jobs = [(f"train job ({schedule} schedule)", _gpus(LM["train_overrides"], schedule)) for schedule in schedules]
    if LM["bench"]["enabled"]:
        jobs.append(("bench job", bench_gpus(None)))
    for job, gpus in jobs:
        if limit is not None and gpus > limit:
            raise WorkflowError(
                f"a {job} needs {gpus} GPUs (learners + actors x actor_devices, from lm.train_overrides "
                f"and {LM['train_config']}; colocate: true needs only the learners'), more than "
                f"lm.resources.gpus_per_node = {limit}"
            )


if LM["enabled"]:
    if LM["checkpoint"]:
        _check_checkpoint()
    _check_placement()
