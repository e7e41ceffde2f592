"""The Snakemake workflow: conda envs agree with pyproject.toml, the smoke preset runs end to end
(exact testbed → tables → fits → figures → paper), a bad config value stops the run naming the
key, `snakemake --lint` is clean, and the SLURM profile dry-runs.

The smoke run works in a copy of the checkout (tracked and untracked, non-ignored files), so the
repository's own results/, figures/ and paper/ are never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
FIGURES = ("bias", "collapse", "frontier", "dashboard", "schedules", "throughput")
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
"""pyproject dependencies that run the workflow rather than a rule, so no rule env needs them"""


def snakemake(*args, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    requirements: dict[str, list[Requirement]] = {}
    for text in texts:
        req = Requirement(text)
        requirements.setdefault(req.name.lower(), []).append(req)
    return requirements


def _env_requirements(path: Path) -> list[Requirement]:
    env = yaml.safe_load(path.read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return [Requirement(text) for text in (pip[0] if pip else [])]


ENVS = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("env", ENVS, ids=[p.stem for p in ENVS])
def test_env_versions_agree_with_pyproject(env):
    pyproject = _pyproject_requirements()
    for req in _env_requirements(env):
        assert req.name.lower() in pyproject, f"{env.name}: {req.name} is not a pyproject dependency"
        allowed = {str(r.specifier) for r in pyproject[req.name.lower()]}
        assert str(req.specifier) in allowed, (
            f"{env.name}: {req.name}{req.specifier} disagrees with pyproject.toml ({', '.join(sorted(allowed))})"
        )


def test_every_pyproject_dependency_is_in_an_env():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    in_envs = {req.name.lower() for env in ENVS for req in _env_requirements(env)}
    for text in project["dependencies"]:
        name = Requirement(text).name.lower()
        assert name in in_envs or name in WORKFLOW_ONLY, f"{name} (pyproject) is in no envs/*.yaml"


def test_every_rule_names_an_existing_env():
    for smk in (ROOT / "rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if line.strip().startswith('"../envs/'):
                assert (ROOT / "rules" / line.strip().strip('"')).resolve().is_file(), (
                    f"{smk.name}: {line.strip()}"
                )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the working tree's non-ignored files (what a clean checkout plus edits holds)."""
    dest = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_smoke_preset_end_to_end(checkout):
    targets = [f"figures/{name}.{ext}" for name in FIGURES for ext in ("pdf", "png")]
    targets += ["results/fits/fits.json", "paper/generated/macros.tex", "results/tables/steps.parquet"]
    if shutil.which("latexmk"):
        targets.append("paper/main.pdf")
    # targets first: --configfile takes every word after it
    result = snakemake(*targets, "--cores", "2", "--configfile", "config/smoke.yaml", cwd=checkout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for target in targets:
        assert (checkout / target).stat().st_size > 0, target
    macros = (checkout / "paper/generated/macros.tex").read_text()
    assert r"\newcommand{\MainBiasSlope}" in macros and r"\newcommand{\LMHasRuns}{1}" in macros
    assert r"\newcommand{\LMBiasSlope}" in macros and r"\newcommand{\BenchHasData}{1}" in macros

    # a plot-script edit reruns only its figure, not the simulation or the other figures
    script = checkout / "code/plot_throughput.py"
    script.write_text(script.read_text() + "\n# edited\n")
    dry = snakemake(*targets, "-n", "--cores", "2", "--configfile", "config/smoke.yaml", cwd=checkout)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = {line.split()[1] for line in dry.stdout.splitlines() if line.startswith("rule ")}
    jobs = {job.rstrip(":") for job in jobs}
    assert "figure_throughput" in jobs and not jobs & {"exact", "aggregate", "fits", "figure_bias"}, jobs


def test_bad_config_value_stops_before_any_job_naming_the_key(tmp_path):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["figures"]["dpi"] = "high"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "dpi" in output and "high" in output, output[-2000:]


def test_unknown_run_name_is_reported_with_its_key(tmp_path):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["exact"]["run"] = ["nosuch"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0 and "exact.run" in result.stdout + result.stderr


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("preset", ["config/config.yaml", "config/paper.yaml"])
def test_slurm_profile_dry_runs(preset):
    result = snakemake("-n", "--profile", "profiles/slurm", "--jobs", "10", "--configfile", preset)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_cpu_default_preset_dry_runs_with_its_lm_part():
    """The default preset wires up the LM rules (pretrain -> one train job per Paramspace point ->
    bench); a point's threads reach both the scheduler and the command line."""
    result = snakemake("-n", "-F", "-p", "--cores", "2")  # -F: every job, whatever is on disk
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("rule ")]
    assert "pretrain:" in jobs and "bench:" in jobs and jobs.count("train:") > 1, jobs
    async_runs = [line for line in result.stdout.splitlines() if "stalegrpo.cli train" in line and "schedule=async" in line]
    assert async_runs and all("threads=2 " in line and "/threads~2 " in line for line in async_runs)
    exact_only = snakemake("-n", "-F", "--cores", "2", "--configfile", "config/exact_only.yaml")
    assert exact_only.returncode == 0 and "rule train:" not in exact_only.stdout
