"""``scripts/gpu_check.sh``, the one-call check of a CUDA machine: its wheel-folder handling, and
its CPU fallback end to end at toy size (the same steps as on a GPU: install, pytest -m cuda,
the bench, one table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def gpu_check(tmp_path, *steps, timeout=120, **env) -> subprocess.CompletedProcess:
    environment = os.environ | {"PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"} | env
    return subprocess.run(["bash", str(SCRIPT), *steps], env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def no_deepspeed(tmp_path) -> str:
    """A PYTHONPATH on which ``import deepspeed`` fails, as on a CUDA image without it."""
    shim = tmp_path / "shim" / "deepspeed"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('deepspeed is hidden by the test')\n")
    return str(shim.parent)


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_unknown_steps_are_refused(tmp_path):
    result = gpu_check(tmp_path, "install", "benchmark")
    assert result.returncode == 2 and "unknown step 'benchmark'" in result.stderr


def test_a_missing_wheel_folder_is_named_and_stops_the_steps(tmp_path, no_deepspeed):
    wheels = tmp_path / "no-such-wheels"
    result = gpu_check(tmp_path, "install", "tests", WHEELS=str(wheels), PYTHONPATH=no_deepspeed)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "step 'install' failed" in result.stdout and f"'{wheels}' is missing or empty" in result.stdout
    assert "cannot import: deepspeed" in result.stdout
    table = (tmp_path / "out" / "table.txt").read_text()
    assert "| install " in table and "FAILED" in table and "not run" in table  # the tests did not run
    assert "FAILED step(s): install" in result.stdout


@pytest.mark.slow
def test_a_wheel_folder_that_cannot_help_fails_the_install(tmp_path, no_deepspeed):
    """pip finds deepspeed already installed, but it still does not import: not a success."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "README").write_text("no wheels here\n")
    result = gpu_check(tmp_path, "install", WHEELS=str(wheels), PYTHONPATH=no_deepspeed)
    assert result.returncode == 1 and "step 'install' failed" in result.stdout, result.stdout


@pytest.mark.slow
def test_an_importable_deepspeed_needs_no_wheels(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "deepspeed-0.0.0-py3-none-any.whl").write_text("not a wheel: it must not be installed\n")
    result = gpu_check(tmp_path, "install", WHEELS=str(wheels))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "install: ok (deepspeed" in result.stdout and "already importable" in result.stdout
    assert "all steps passed" in result.stdout


@pytest.mark.slow
def test_cpu_fallback_runs_every_step_at_toy_size(tmp_path):
    # one engine count keeps it shorter; bench.engines=[1, 2] at full size
    result = gpu_check(tmp_path, timeout=400, BENCH_ARGS="bench.engines=[1]")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    assert "no CUDA device: the same steps at toy size" in result.stdout
    for log in ["machine.log", "install.log", "tests.log", "bench.log", "bench.json", "table.txt"]:
        assert (out / log).is_file(), log
    summary = json.loads((out / "bench.json").read_text())["summary"]
    assert summary["precision"] == "fp32" and summary["zero"] == 2 and summary["task"] == "countdown"
    assert summary["learner_tokens_per_s"] > 0 and summary["actor_tokens_per_s"] > 0 and summary["weight_sync_s"] > 0
    table = (out / "table.txt").read_text()
    assert table in result.stdout  # the one table, printed at the end and kept
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[3:]}
    assert rows["install"] == rows["pytest -m cuda"] == rows["stalegrpo bench lm"] == "ok"
    assert float(rows["learner tokens/s"]) > 0 and float(rows["weight sync s"]) > 0
    assert float(rows["async speedup A=1, S=1"]) > 0
    assert "skipped" in (out / "tests.log").read_text()  # the cuda tests are collected, and skipped here
