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


def _copy_tree(dest: Path) -> Path:
    """A copy of the working tree's non-ignored files (what a clean checkout plus edits holds), so
    that Snakemake never runs in, or takes the lock of, the repository itself."""
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


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A fresh tree: nothing has run in it (dry runs only)."""
    return _copy_tree(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A tree in which the smoke preset runs."""
    return _copy_tree(tmp_path_factory.mktemp("checkout"))


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of a dry run (empty when nothing is to do)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    if "Job stats:" not in lines:
        assert "Nothing to be done" in result.stdout, result.stdout[-2000:]
        return {}
    table = lines[lines.index("Job stats:") + 3 :]
    counts = {}
    for line in table[: next(i for i, line in enumerate(table) if line.startswith("total"))]:
        rule, count = line.split()
        counts[rule] = int(count)
    return counts


SIMULATION = {"exact", "pretrain", "train", "bench"}
SMOKE_TARGETS = [f"figures/{name}.{ext}" for name in FIGURES for ext in ("pdf", "png")]
SMOKE_TARGETS += ["paper/generated/macros.tex", "results/tables/lm/steps.parquet"]
if shutil.which("latexmk"):
    SMOKE_TARGETS.append("paper/main.pdf")
PAPER = {"paper"} if shutil.which("latexmk") else set()


def smoke_plan(checkout: Path) -> dict[str, int]:
    # targets first: --configfile takes every word after it
    return planned(snakemake(*SMOKE_TARGETS, "-n", "--cores", "2", "--configfile", "config/smoke.yaml", cwd=checkout))


def test_one_figure_plans_only_what_it_reads(fresh):
    """F6 reads only the benchmark: in a fresh tree it plans the benchmark (and the policy it
    benchmarks), the throughput table and the figure, no exact grid and no LM run."""
    plan = planned(snakemake("figures/throughput.pdf", "-n", "--cores", "2", cwd=fresh))
    assert plan == {"pretrain": 1, "bench": 1, "aggregate_bench": 1, "figure_throughput": 1}, plan
    plan = planned(snakemake("figures/schedules.pdf", "-n", "--cores", "2", cwd=fresh))
    assert "exact" not in plan and "aggregate_exact" not in plan and plan["train"] > 1, plan


def _edited(path: Path, text: str):
    """Append ``text`` to ``path`` (a real edit: Snakemake compares contents, not only mtimes)."""
    original = path.read_text()
    path.write_text(original + text)
    return original


@pytest.mark.slow
def test_smoke_preset_end_to_end_and_reruns_exactly_what_changed(checkout):
    result = snakemake(*SMOKE_TARGETS, "--cores", "2", "--configfile", "config/smoke.yaml", cwd=checkout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for target in SMOKE_TARGETS:
        assert (checkout / target).stat().st_size > 0, target
    macros = (checkout / "paper/generated/macros.tex").read_text()
    assert r"\newcommand{\MainBiasSlope}" in macros and r"\newcommand{\LMHasRuns}{1}" in macros
    assert r"\newcommand{\LMBiasSlope}" in macros and r"\newcommand{\BenchHasData}{1}" in macros
    assert smoke_plan(checkout) == {}

    fits_rules = {"fits_exact", "fits_lm", "macros"} | PAPER
    # a library edit: every rule whose script imports stalegrpo.fits.laws, and nothing else
    laws = checkout / "code/stalegrpo/fits/laws.py"
    original = _edited(laws, "\n# edited\n")
    plan = smoke_plan(checkout)
    laws.write_text(original)
    # the figures that read the fits' output (bias, collapse, frontier), and those that pick their
    # runs with stalegrpo.fits.lm, which imports laws (schedules, dashboard)
    readers = {"figure_bias", "figure_collapse", "figure_frontier", "figure_schedules", "figure_dashboard"}
    assert set(plan) == fits_rules | readers, plan

    # an actor backend, which the factory imports by name (no import statement names it): every
    # rule that samples from a policy reruns, the exact testbed does not
    backend = checkout / "code/stalegrpo/actors/hf.py"
    original = _edited(backend, "\n# edited\n")
    plan = smoke_plan(checkout)
    backend.write_text(original)
    assert {"pretrain", "train", "bench"} <= set(plan) and "exact" not in plan, plan

    # a fit setting: the fits, the figures that read fits, the paper; no simulation
    preset = checkout / "config/smoke.yaml"
    original = preset.read_text()
    edited = original.replace("fits: {n_boot: 100, frontier_horizons", "fits: {n_boot: 101, frontier_horizons")
    assert edited != original
    preset.write_text(edited)
    plan = smoke_plan(checkout)
    preset.write_text(original)
    assert set(plan) == {"fits_lm", "macros", "figure_bias", "figure_collapse", "figure_frontier"} | PAPER, plan

    # a plotting script: its figure and the paper only
    script = checkout / "code/plot_throughput.py"
    original = _edited(script, "\n# edited\n")
    plan = smoke_plan(checkout)
    script.write_text(original)
    assert set(plan) == {"figure_throughput"} | PAPER, plan
    assert not set(plan) & SIMULATION


def test_bad_config_value_stops_before_any_job_naming_the_key(fresh, tmp_path):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["figures"]["dpi"] = "high"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad), cwd=fresh)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "dpi" in output and "high" in output, output[-2000:]


def test_unknown_run_name_is_reported_with_its_key(fresh, tmp_path):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["exact"]["run"] = ["nosuch"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad), cwd=fresh)
    assert result.returncode != 0 and "exact.run" in result.stdout + result.stderr


def test_grids_that_share_a_point_must_share_its_overrides(fresh, tmp_path):
    """A grid's overrides are not part of a run's folder, so two grids that reach one point with
    different overrides would make the run depend on the grid; the workflow refuses that, and
    otherwise passes a grid's overrides to its runs only."""
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["lm"]["grids"]["probed"] = {"S": [2], "eta": [1.0e-3], "seed": [0], "overrides": {"probe_pairs": 4}}
    config["lm"]["run"].append("probed")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad), cwd=fresh)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "lm.grids" in output and "probed" in output, output[-2000:]
    config["lm"]["grids"]["probed"]["seed"] = [5]  # its own point now
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(bad), cwd=fresh)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    commands = [line for line in result.stdout.splitlines() if "stalegrpo.cli train" in line]
    probed = [line for line in commands if "seed=5 " in line]
    assert len(probed) == 1 and "probe_pairs=4" in probed[0]
    assert not any("probe_pairs" in line for line in commands if "seed=5 " not in line)


def test_lint_is_clean(fresh):
    result = snakemake("--lint", cwd=fresh)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def paper_preset(tmp_path: Path, checkpoint: Path, gpus_per_node: int | None = None, **train_overrides) -> Path:
    """config/paper.yaml with its placeholder checkpoint replaced, as a user does before submitting."""
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    config["lm"]["checkpoint"] = str(checkpoint)
    if gpus_per_node:
        config["lm"]["resources"]["gpus_per_node"] = gpus_per_node
    config["lm"]["train_overrides"] |= train_overrides
    preset = tmp_path / "paper.yaml"
    preset.write_text(yaml.safe_dump(config))
    return preset


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["config/config.yaml", "paper"])
def test_slurm_profile_dry_runs(fresh, preset, tmp_path, standin_checkpoint):
    if preset == "paper":
        preset = str(paper_preset(tmp_path, standin_checkpoint))
    result = snakemake("-n", "--profile", "profiles/slurm", "--jobs", "10", "--configfile", preset, cwd=fresh)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_a_bad_checkpoint_or_an_oversized_placement_stops_before_any_job(fresh, tmp_path, standin_checkpoint):
    """Both are found when the workflow is read, so nothing is submitted (here: not even run)."""
    results = fresh / "results"
    shutil.rmtree(results, ignore_errors=True)
    unedited = snakemake("--profile", "profiles/slurm", "--jobs", "10", "--configfile", "config/paper.yaml", cwd=fresh)
    assert unedited.returncode != 0
    assert "config key lm.checkpoint" in unedited.stderr and "/path/to/checkpoints" in unedited.stderr, unedited.stderr[-2000:]
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(standin_checkpoint, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    (tmp_path / "one").mkdir()
    result = snakemake("--cores", "1", "--configfile", str(paper_preset(tmp_path / "one", no_tokenizer)), cwd=fresh)
    assert result.returncode != 0 and "lm.checkpoint" in result.stderr and "tokenizer" in result.stderr, result.stderr[-2000:]
    # the paper preset's nodes: a 2 + 2 x 2 = 6-GPU async job does not fit 4 GPUs per node when its
    # engines may not share the learners' GPUs
    (tmp_path / "two").mkdir()
    preset = paper_preset(tmp_path / "two", standin_checkpoint, gpus_per_node=4, learners=2, actors=2, actor_devices=2,
                          colocate=False)
    result = snakemake("--profile", "profiles/slurm", "--jobs", "10", "--configfile", str(preset), cwd=fresh)
    assert result.returncode != 0
    assert "needs 6 GPUs" in result.stderr and "lm.resources.gpus_per_node = 4" in result.stderr, result.stderr[-2000:]
    assert not results.exists()  # no job ran


def test_cpu_default_preset_dry_runs_with_its_lm_part(fresh):
    """The default preset wires up the LM rules (pretrain -> one train job per Paramspace point ->
    bench); a point's threads reach both the scheduler and the command line (lm_full's vary-S grid)."""
    result = snakemake("-n", "-p", "--cores", "2", cwd=fresh)
    plan = planned(result)
    assert plan["pretrain"] == 1 and plan["bench"] == 1 and plan["train"] > 1, plan
    assert plan["aggregate_exact"] == plan["fits_exact"] == plan["exact"], plan
    full = snakemake("-n", "-p", "--cores", "2", "--configfile", "config/lm_full.yaml", cwd=fresh)
    lines = full.stdout.splitlines()
    async_runs = [line for line in lines if "stalegrpo.cli train" in line and "schedule=async" in line]
    assert async_runs and all("threads=2 " in line and "/threads~2/" in line for line in async_runs)
    exact_only = planned(snakemake("-n", "--cores", "2", "--configfile", "config/exact_only.yaml", cwd=fresh))
    assert "train" not in exact_only and "aggregate_lm" not in exact_only, exact_only


@pytest.mark.slow
def test_gpu_jobs_ask_for_their_placement(fresh, tmp_path, standin_checkpoint):
    """On CUDA a train job asks for learners + actors x actor_devices GPUs when async, learners when fixed,
    derived from the train config (the profile types no count)."""
    preset = paper_preset(tmp_path, standin_checkpoint, gpus_per_node=8, learners=2, actors=2, actor_devices=2)
    result = snakemake("-n", "--profile", "profiles/slurm", "--jobs", "10", "--configfile", str(preset), cwd=fresh)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    gpus = {}
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("rule train:"):
            block = "\n".join(lines[i : i + 12])
            schedule = "async" if "schedule~async" in block else "fixed"
            gpus.setdefault(schedule, set()).add(int(block.split(" gpu=")[1].split(",")[0].split()[0]))
    assert gpus == {"async": {6}, "fixed": {2}}, gpus
    # on one-GPU nodes the async engines share the learner's GPU (colocate: auto): 1 GPU, and the check accepts it
    (tmp_path / "one").mkdir()
    preset = paper_preset(tmp_path / "one", standin_checkpoint, gpus_per_node=1, learners=1, actors=2, actor_devices=1,
                          actor="hf")
    result = snakemake("-n", "--profile", "profiles/slurm", "--jobs", "10", "--configfile", str(preset), cwd=fresh)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    asked = {int(part.split(",")[0].split()[0]) for part in result.stdout.split(" gpu=")[1:]}
    assert asked == {1}, asked
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert not any("tasks" in resources for resources in profile["set-resources"].values()), profile
