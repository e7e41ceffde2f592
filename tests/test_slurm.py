"""The cluster path: `snakemake --profile profiles/slurm` submits every kind of job (train with the
fixed and the async schedule, the throughput bench, an exact-testbed grid, fits, the paper) with
the profile's account, partition, memory and time, the GPUs of its placement and the CPUs of its
threads, and each job's command runs with the threads it asked CPUs for.

Snakemake runs for real, through snakemake-executor-plugin-slurm, against stand-in SLURM commands
written by this module (nothing runs: `sbatch` only records its command line). The commands the
jobs run come from a dry run of the same jobs with --cores set to the CPUs of the largest job,
as a job's own Snakemake (`--cores all` in its allocation) computes them; the same dry run shows
that locally the benchmark holds every core (no other job beside it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip(
    "snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm is not installed"
)

pytestmark = pytest.mark.slow  # each job kind's submission runs a workflow through the stand-ins

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
FIGURES = ("bias", "collapse", "frontier", "dashboard", "schedules", "throughput")
TRAIN_THREADS, BENCH_THREADS = 8, 4
"""the test preset's threads of a train job (the paper preset's) and of the bench (not train's,
so that a mix-up shows)"""
# kind of job -> (rule, GPUs of the paper preset's placement, threads)
KINDS = {
    "train-fixed": ("train", 1, TRAIN_THREADS),
    "train-async": ("train", 2, TRAIN_THREADS),
    "bench": ("bench", 2, BENCH_THREADS),
    "exact": ("exact", 0, 1),
    "fits": ("fits_exact", 0, 1),
    "paper": ("paper", 0, 1),
}

# Stand-ins for the SLURM commands that the plugin calls (as the shared fake-slurm tools do):
# sbatch writes its command line to a file of its own, sbatch.<job id>, prints that id and runs
# nothing; sacctmgr lists the profile's account (the plugin checks it); sacct answers a status
# query with every job submitted so far as COMPLETED, so that Snakemake finds the outputs missing
# and stops by itself once the jobs are submitted; the others answer nothing.
STANDIN = {
    "sbatch": 'printf "%s\\n" "$*" > "$FAKE_SLURM_LOG/sbatch.$$"; echo "$$"',
    "sacctmgr": 'echo "$FAKE_SLURM_ACCOUNTS"',
    "sacct": (
        'case "$*" in *JobIdRaw,State*) for f in "$FAKE_SLURM_LOG"/sbatch.*; do'
        ' [ -f "$f" ] && echo "${f##*.}|COMPLETED"; done;; esac; exit 0'
    ),
    **{name: "exit 0" for name in ("squeue", "scancel", "scontrol", "sinfo")},
}


def _copy_tree(dest: Path) -> Path:
    """The working tree's non-ignored files (a clean checkout plus edits), so that Snakemake
    never runs in, or takes the lock of, the repository itself."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _standin_slurm(tmp: Path) -> dict:
    """The environment of a run against the stand-in SLURM commands, which log to tmp/log."""
    bin_dir, log = tmp / "bin", tmp / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, body in STANDIN.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_LOG": str(log),
        "FAKE_SLURM_ACCOUNTS": str(PROFILE["default-resources"]["slurm_account"]),
    }


def _submitted(env: dict) -> list[str]:
    """The sbatch command lines of a run, one per job."""
    return [path.read_text().strip() for path in sorted(Path(env["FAKE_SLURM_LOG"]).glob("sbatch.*"))]


def _minutes(runtime) -> int:
    """A profile runtime (minutes, or a number with unit s/m/h/d) in sbatch -t minutes."""
    if isinstance(runtime, int):
        return runtime
    number, unit = int(runtime[:-1]), runtime[-1]
    return {"s": -(-number // 60), "m": number, "h": number * 60, "d": number * 1440}[unit]


def paper_preset(path: Path, checkpoint: Path) -> Path:
    """config/paper.yaml as a user submits it (the checkpoint filled in), with one exact grid and
    one LM grid point per schedule, so that the run is quick: its jobs ask for what the full
    preset's ask for."""
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert config["lm"]["resources"]["threads"] == TRAIN_THREADS
    config["exact"]["run"] = ["main"]
    config["lm"]["checkpoint"] = str(checkpoint)
    grid = {"S": [4], "eta": [1.0e-6], "seed": [0], "schedule": ["fixed", "async"]}
    config["lm"]["grids"] = {"check": grid}
    config["lm"]["run"] = ["check"]
    config["lm"]["bench"]["threads"] = BENCH_THREADS
    path.write_text(yaml.safe_dump(config))
    return path


def _kind(rule: str, text: str) -> str:
    """The kind of a job of ``rule`` (KINDS), from its wildcards in ``text``."""
    if rule == "train":
        return "train-" + re.search(r"\bschedule=(\w+)", text).group(1)
    return {"fits_exact": "fits"}.get(rule, rule)


def _run(args, cwd: Path, env=None) -> str:
    result = subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, standin_checkpoint):
    """{kind: (sbatch line, the job's command line, threads Snakemake reserves for it locally)}.

    Each kind's job is a target: exact, train and bench need nothing that the workflow makes; the
    inputs of fits and of the paper are put in place and only the rules of the targets may run,
    so that every job is ready at once and submitted in the first round."""
    tmp = tmp_path_factory.mktemp("slurm")
    tree = _copy_tree(tmp / "tree")
    preset = paper_preset(tmp / "paper.yaml", standin_checkpoint)
    results = yaml.safe_load(preset.read_text())["results"]
    for name in (
        f"{results}/tables/exact/main/steps.parquet",
        f"{results}/tables/exact/main/runs.parquet",
        "paper/generated/macros.tex",
        *(f"figures/{figure}.pdf" for figure in FIGURES),
    ):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).touch()
    point = (
        "S~4/eta~1e-06/seed~0/objective~behavior/lr_schedule~constant/schedule~{}"
        f"/threads~{TRAIN_THREADS}/reward_hack~none/steps~300"
    )
    targets = [
        f"{results}/lm/runs/{point.format('fixed')}/summary.json",
        f"{results}/lm/runs/{point.format('async')}/summary.json",
        f"{results}/lm/bench/bench.json",
        f"{results}/exact/main/summary.json",
        f"{results}/fits/exact/main.json",
        "paper/main.pdf",
    ]
    rules = ["--allowed-rules", *sorted({rule for rule, _, _ in KINDS.values()})]
    cores = max(threads for _, _, threads in KINDS.values())
    # the jobs' commands, as a job's Snakemake with `cores` CPUs makes them (and a local run would)
    dry = _run([*targets, "-n", "-p", "--cores", str(cores), "--configfile", str(preset), *rules], tree)
    commands = {}
    for block in dry.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        kind = _kind(rule, block)
        threads = re.search(r"^    threads: (\d+)$", block, re.M)
        commands[kind] = (
            re.search(r"^Shell command: (.*)$", block, re.M).group(1),
            int(threads.group(1)) if threads else 1,
        )
    assert set(commands) == set(KINDS), dry[-3000:]
    # the submission: the user's command, then no resubmission, no waiting for the outputs that
    # the stand-ins never write, and the first status query right away
    env = _standin_slurm(tmp)
    output = _run(
        [
            *targets, "--profile", "profiles/slurm", "--configfile", str(preset), *rules,
            "--retries", "0", "--latency-wait", "0", "--slurm-init-seconds-before-status-checks", "1",
        ],
        tree,
        env,
    )
    submitted = {}
    for line in _submitted(env):
        rule = re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'?(?:\s|$)", line).group(1)
        kind = _kind(rule, line)
        assert kind not in submitted, f"{kind} submitted twice:\n{line}"
        submitted[kind] = line
    assert set(submitted) == set(KINDS), (sorted(submitted), output[-3000:])
    return {kind: (submitted[kind], *commands[kind]) for kind in KINDS}


def _option(line: str, pattern: str):
    found = re.findall(pattern, line)
    assert len(found) <= 1, (pattern, line)
    return found[0] if found else None


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_job_asks_for_what_the_profile_says(jobs, kind):
    line, command, _ = jobs[kind]
    submit, wrap = line.split("--wrap=", 1)
    rule, gpus, threads = KINDS[kind]
    profile = PROFILE["default-resources"] | PROFILE["set-resources"].get(rule, {})
    assert _option(submit, r" -A '?([\w-]+)'? ") == profile["slurm_account"], submit
    assert _option(submit, r" -p '?([\w-]+)'? ") == profile["slurm_partition"], submit
    assert int(_option(submit, r" --mem (\d+) ")) == profile["mem_mb"], submit
    assert int(_option(submit, r" -t '?(\d+)'? ")) == _minutes(profile["runtime"]), submit
    if gpus:
        assert _option(submit, r" --gpus=(\S+)") == f"{profile['gpu_model']}:{gpus}", submit
    else:
        assert _option(submit, r" --gpus=(\S+)") is None and "--gres" not in submit, submit
    # CPUs: the job's threads, for the whole job: one task, no count per GPU
    assert _option(submit, r" --cpus-per-task=(\d+)") == str(threads), submit
    assert _option(submit, r" --cpus-per-gpu=(\d+)") is None, submit
    assert _option(submit, r" --ntasks-per-gpu=(\d+)") is None, submit
    assert _option(submit, r" --ntasks=(\d+)") in (None, "1"), submit
    # the job's Snakemake may use every CPU of its allocation, and its command has its threads
    wrap = shlex.split(wrap)
    assert wrap[wrap.index("--cores") + 1] == "all", line
    if rule in ("train", "bench", "exact"):
        assert f" threads={threads} " in command, command
    if rule == "train":
        assert f"threads={threads}" in wrap[wrap.index("--target-jobs") + 1], line


def test_locally_the_bench_holds_every_core(jobs):
    """In a local run the benchmark job reserves all --cores, so that no other job runs beside
    it, and still runs on lm.bench.threads; other jobs reserve their own threads."""
    _, command, reserved = jobs["bench"]
    assert reserved == max(threads for _, _, threads in KINDS.values())
    assert f" threads={BENCH_THREADS} " in command, command
    assert jobs["train-fixed"][2] == TRAIN_THREADS and jobs["exact"][2] == 1


def test_the_workflow_profile_sets_nothing_that_a_cluster_profile_sets():
    """Snakemake loads profiles/default in every run, and its keys win over --profile's."""
    workflow_profile = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text()) or {}
    machine = {"cores", "jobs", "executor", "default-resources", "set-resources", "set-threads", "resources"}
    assert not machine & set(workflow_profile), workflow_profile
    for key, value in workflow_profile.items():
        assert PROFILE.get(key, value) == value, key


@pytest.mark.slow
def test_an_unedited_paper_preset_stops_before_submitting(tmp_path):
    """The checkpoint is checked when the workflow is read: nothing reaches sbatch."""
    tree = _copy_tree(tmp_path / "tree")
    env = _standin_slurm(tmp_path)
    output = _run(["--profile", "profiles/slurm", "--configfile", "config/paper.yaml"], tree, env)
    assert "config key lm.checkpoint" in output, output[-2000:]
    assert not _submitted(env)
