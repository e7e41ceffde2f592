"""The six figure scripts code/plot_*.py (F1-F6), each run in-process by its main() on small tidy tables
and fits JSON made here. The figure that figures_common.save would write is captured and checked:
its panels, titles, axis labels and the series drawn in each panel. Without their inputs, the scripts
must draw the "no data" figure that says what is missing."""

import importlib.util
import json
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

CODE = Path(__file__).resolve().parents[1] / "code"
SCRIPTS = ("bias", "collapse", "dashboard", "frontier", "schedules", "throughput")


@pytest.fixture(scope="module")
def scripts():
    """plot_<name> of code/ for every figure, imported as tests/test_figures.py does."""
    sys.path.insert(0, str(CODE))  # the plotting scripts import figures_common from code/
    try:
        loaded = {}
        for name in SCRIPTS:
            spec = importlib.util.spec_from_file_location(f"plot_{name}", CODE / f"plot_{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        yield loaded
    finally:
        sys.path.remove(str(CODE))


@pytest.fixture
def plot(scripts, monkeypatch, tmp_path):
    """plot(name, *options, **inputs): the figure that plot_<name>.main() saves, given ``inputs``
    (paths) as its command-line inputs; with ``save=True`` the figure is written too."""
    figures = []

    def run(name, *options, save=False, **inputs):
        module = scripts[name]
        write = module.fc.save

        def capture(fig, args):
            figures.append(fig)
            if save:
                write(fig, args)

        monkeypatch.setattr(module.fc, "save", capture)  # no_data saves through it as well
        argv = [f"plot_{name}.py", "--pdf", str(tmp_path / "out/f.pdf"), "--png", str(tmp_path / "out/f.png")]
        for key, path in inputs.items():
            argv += ["--" + key.replace("_", "-"), str(path)]
        monkeypatch.setattr(sys, "argv", argv + list(options))
        before = len(figures)
        with matplotlib.rc_context():  # fc.setup() changes the global style
            module.main()
        assert len(figures) == before + 1, f"plot_{name} saved {len(figures) - before} figures"
        return figures[-1]

    yield run
    for fig in figures:
        plt.close(fig)


# -- inputs ------------------------------------------------------------------------------------


def parquet(tmp_path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


def fits_json(tmp_path, name: str, fits: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(fits))
    return path


HORIZON = 40
"""the exact testbed's horizon T"""


def exact_runs() -> pd.DataFrame:
    """18 exact-testbed runs, S ∈ {0, 1, 4} × η ∈ {1e-3, 4e-3, 1.6e-2} × seeds {0, 1}: η = 1.6e-2
    collapses at every S, η = 4e-3 at S = 4 and, for seed 0 only, at S = 1 (a partly censored cell);
    the other 9 runs are censored (collapse_step = horizon, as stalegrpo.exact writes it)."""
    rows = []
    for s in (0, 1, 4):
        for eta in (1e-3, 4e-3, 1.6e-2):
            for seed in (0, 1):
                collapses = eta > 1e-2 or (eta > 2e-3 and (s == 4 or (s == 1 and seed == 0)))
                rows.append(
                    {
                        "run": f"main/{len(rows)}",
                        "S": s,
                        "eta": eta,
                        "seed": seed,
                        "collapse_step": ((10 if eta > 1e-2 else 30) + seed) if collapses else HORIZON,
                        "censored": not collapses,
                        "detector": "reward" if collapses else "none",
                        "horizon": HORIZON,
                        "bias": 0.5 * s * eta * (1 + 0.1 * seed),
                    }
                )
    return pd.DataFrame(rows)


def exact_steps(runs: pd.DataFrame) -> pd.DataFrame:
    """Every step of every run, with the exact testbed's per-step columns (gold = proxy reward)."""
    rows = []
    for run in runs.itertuples():
        for step in range(HORIZON):
            reward = (
                0.2 + 0.01 * step - (0.02 * (step - run.collapse_step) if step > run.collapse_step else 0)
            )
            rows.append(
                {
                    "run": run.run,
                    "step": step,
                    "lag": float(min(step, run.S)),
                    "reward": reward,
                    "gold_reward": reward,
                    "ess": 0.9 - 0.001 * step,
                    "kl_behavior": 1e-4 * (1 + step * run.eta * 10),
                    "grad_norm": 0.5 + 0.01 * step,
                    "entropy": 2.0 - 0.01 * step,
                    "bias": run.bias,
                }
            )
    return pd.DataFrame(rows)


def lm_runs(hack: str = "none") -> pd.DataFrame:
    """22 LM runs on reward ``hack``. The controlled grid: S ∈ {0, 2, 4} × η ∈ {1e-3, 3e-3} × seeds
    {0, 1}, where η = 3e-3 collapses at S = 4 and, for seed 0 only, at S = 2. Beside it: the ess
    and staleness schedules at (S = 4, η = 1e-3), async runs at S = 2 and 4 on 2 threads and their
    synchronous baseline (S = 0, 2 threads), all at η = 1e-3 and never collapsing."""
    rows = []

    def add(s, eta, seed, collapse=None, **settings):
        rows.append(
            {
                "run": f"lm/{len(rows)}",
                "S": s,
                "eta": eta,
                "seed": seed,
                "objective": "behavior",
                "lr_schedule": "constant",
                "schedule": "fixed",
                "reward_hack": hack,
                "threads": 1,
                "steps": 10,
                "horizon": 10,
                "censored": collapse is None,
                "collapse_step": collapse,
                "detector": None if collapse is None else "kl",
            }
            | settings
        )

    for s in (0, 2, 4):
        for eta in (1e-3, 3e-3):
            for seed in (0, 1):
                collapses = eta > 2e-3 and (s == 4 or (s == 2 and seed == 0))
                add(s, eta, seed, collapse=6 + seed if collapses else None)
    for seed in (0, 1):
        for schedule in ("ess", "staleness"):
            add(4, 1e-3, seed, lr_schedule=schedule)
        for s in (2, 4):
            add(s, 1e-3, seed, schedule="async", threads=2)
        add(0, 1e-3, seed, threads=2)
    return pd.DataFrame(rows)


EVAL_STEPS = (0, 3, 6, 9)


def lm_steps(runs: pd.DataFrame, hack: str = "none") -> pd.DataFrame:
    """10 steps per run: the LM per-step columns, held-out evals at EVAL_STEPS, one §3.2 probe at
    step 5 at lag S (bias² = (S·η/2)²); with a hack the gold reward falls below the proxy."""
    rows = []
    for run in runs.itertuples():
        for step in range(10):
            reward = 0.3 + 0.02 * step
            evaluated = step in EVAL_STEPS
            rows.append(
                {
                    "run": run.run,
                    "step": step,
                    "wall_time": (step + 1) * (1.0 if run.schedule == "async" else 1.6) + 0.1 * run.seed,
                    "reward_mean": reward,
                    "gold_reward": reward if hack == "none" else reward - 0.03 * step,
                    "lag_mean": float(min(step, run.S)),
                    "ess": 0.95 - 0.01 * step,
                    "kl_behavior": 1e-3 * (step + 1),
                    "grad_norm": 1.0 + 0.1 * step,
                    "entropy": 1.5 - 0.02 * step,
                    "eval_accuracy": 0.2 + 0.03 * step + 0.01 * run.seed if evaluated else None,
                    "bias_sq": (run.S * run.eta / 2) ** 2 if step == 5 and run.S > 0 else None,
                    "probe_lag": float(run.S) if step == 5 and run.S > 0 else None,
                }
            )
    return pd.DataFrame(rows)


def frontier_rows(a: float, b: float) -> list[dict]:
    """eta_star_summary at T ∈ {100, 400}, S ∈ {0, 1, 4, 8} on the law min(a/S, b/T); S = 0 is a
    lower bound (hollow), the rest exact."""
    rows = []
    for t in (100, 400):
        for s in (0, 1, 4, 8):
            eta = b / t if s == 0 else min(a / s, b / t)
            bound = "lower" if s == 0 else "none"
            rows.append({"S": s, "T": t, "median": eta, "min": 0.8 * eta, "max": 1.25 * eta, "bound": bound})
    return rows


EXACT_FITS = {
    "options": {},
    "bias_slope": {
        "status": "ok",
        "slope": 1.02,
        "intercept": -0.69,
        "ci_low": 0.95,
        "ci_high": 1.08,
        "n": 12,
    },
    "verdicts": {"bias_bound": {"verdict": "supported"}, "bias_first_order": {"verdict": "consistent"}},
    "tc_eta": {"status": "ok", "cv": 0.12, "regime": "S == 0"},
    "eta_star_summary": frontier_rows(0.01, 1.0),  # S* = aT/b = 1 and 4: both drawn
    "frontier": {"status": "ok", "a": 0.01, "b": 1.0, "r2": 0.93},
}
LM_FITS = {
    "options": {},
    "bias_slope": {"status": "ok", "slope": 1.2, "intercept": -0.5, "ci_low": 0.8, "ci_high": 1.6, "n": 8},
    "bias_sq_slope": {
        "status": "ok",
        "slope": 2.1,
        "ci_low": 1.5,
        "ci_high": 2.7,
        "n": 9,
        "n_nonpositive": 1,
    },
    "verdicts": {"bias_bound": {"verdict": "consistent"}, "bias_first_order": {"verdict": "not resolved"}},
    "tc_eta": {"status": "too_few_points", "message": "too few collapses"},
    "eta_star_summary": frontier_rows(0.05, 1.0),  # S* = 5 and 20: only T = 100's is on the axis (≤ 12)
    "frontier": {"status": "ok", "a": 0.05, "b": 1.0, "r2": 0.5},
    "claim_grid": {"reward_hack": "length"},
}


@pytest.fixture
def exact(tmp_path):
    """Paths of the exact testbed's steps, runs and fits."""
    runs = exact_runs()
    return {
        "exact_steps": parquet(tmp_path, "exact_steps", exact_steps(runs)),
        "exact_runs": parquet(tmp_path, "exact_runs", runs),
        "exact_fits": fits_json(tmp_path, "exact_fits", EXACT_FITS),
    }


@pytest.fixture
def lm(tmp_path):
    """Paths of the LM steps, runs and fits (gold reward)."""
    runs = lm_runs()
    return {
        "lm_steps": parquet(tmp_path, "lm_steps", lm_steps(runs)),
        "lm_runs": parquet(tmp_path, "lm_runs", runs),
        "lm_fits": fits_json(tmp_path, "lm_fits", LM_FITS),
    }


# -- what a figure shows -----------------------------------------------------------------------


def data_lines(ax) -> list:
    """The lines in data coordinates with points (not axhline/axvline guides)."""
    return [line for line in ax.get_lines() if line.get_transform() is ax.transData and len(line.get_xdata())]


def guides(ax, vertical: bool = True) -> list:
    """axvline (or axhline) positions."""
    transform = ax.get_xaxis_transform() if vertical else ax.get_yaxis_transform()
    data = (lambda line: line.get_xdata()[0]) if vertical else (lambda line: line.get_ydata()[0])
    return [float(data(line)) for line in ax.get_lines() if line.get_transform() == transform]


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "panel without a legend"
    return [text.get_text() for text in legend.get_texts()]


def texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def assert_no_data(fig, title: str, *phrases: str) -> None:
    """The figures_common.no_data figure: one blank axis, the title, and a message with ``phrases``."""
    (ax,) = fig.axes
    assert not ax.axison and not ax.get_lines() and not ax.collections
    head, message = texts(ax)
    assert head == title
    message = " ".join(message.split())  # undo the wrapping
    for phrase in phrases:
        assert phrase in message, (phrase, message)


# -- F1: bias ----------------------------------------------------------------------------------


def test_bias_exact_and_lm_panels(plot, exact, lm):
    fig = plot("bias", **exact, **lm)
    assert fig.get_suptitle() == "F1: surrogate-gradient bias vs S·η"
    assert len(fig.axes) == 2
    runs, lm_grid = exact_runs(), lm_runs()
    lm_grid = lm_grid[
        (lm_grid["S"] >= 1) & (lm_grid["schedule"] == "fixed") & (lm_grid["lr_schedule"] == "constant")
    ]
    lm_grid = lm_grid[lm_grid["threads"] == 1]  # the main grid: 8 probed runs at S = 2, 4
    for ax, fitted, s_values in zip(fig.axes, (runs[runs["S"] >= 1], lm_grid), (["1", "4"], ["2", "4"])):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert ax.get_xlabel().startswith("S·η")
        (points,) = ax.collections  # one point per fitted run, at x = S·η
        x = sorted(points.get_offsets()[:, 0])
        assert x == pytest.approx(sorted(fitted["S"] * fitted["eta"]))
        labels = legend_labels(ax)
        assert (
            labels[:2] == s_values and labels[2].startswith("fit: slope") and labels[3] == "slope 1 (claim)"
        )
        assert len(data_lines(ax)) == 2  # the power law and the slope-1 guide
    exact_ax, lm_ax = fig.axes
    assert exact_ax.get_ylabel().startswith("bias ‖E g")
    assert exact_ax.get_title().startswith("exact testbed, main (run bias)\nlog-log fit: slope 1.02")
    assert "bound (≤ C·S·η): supported; slope 1: consistent" in exact_ax.get_title()
    assert lm_ax.get_ylabel() == "probe bias (root of mean unbiased bias²)"
    title = lm_ax.get_title()
    assert title.startswith("language model, §3.2 probe (η = Adam step size)")
    assert "the 8 of 9 runs with bias² > 0" in title and "all 9 runs (1 ≤ 0): slope 2.10" in title


def test_bias_from_steps_without_lm_runs_or_a_fit(plot, exact, tmp_path):
    runs = parquet(tmp_path, "runs", exact_runs().drop(columns="bias"))  # the per-step readings instead
    fig = plot("bias", exact_steps=exact["exact_steps"], exact_runs=runs)
    (ax,) = fig.axes  # no LM runs: one panel
    assert fig.get_suptitle().startswith("F1")
    assert ax.get_title() == "exact testbed, main (mean bias over steps S..S+20)\nlog-log fit: no fit"
    assert len(ax.collections[0].get_offsets()) == 12 and not data_lines(ax)
    assert "no fit: missing" in texts(ax)


@pytest.mark.parametrize("runs", [None, "without bias"])
def test_bias_no_data(plot, tmp_path, runs):
    if runs is None:
        fig = plot("bias")
        source = "(no runs)"
    else:  # runs, but neither a run bias nor per-step bias readings
        path = parquet(tmp_path, "runs", exact_runs().drop(columns="bias"))
        fig = plot("bias", exact_runs=path)
        source = "(no bias column)"
    assert_no_data(fig, "F1: staleness bias", f"No bias measurements in experiment 'main' yet {source}")


# -- F2: collapse ------------------------------------------------------------------------------


def test_collapse_exact_and_lm_rows(plot, exact, lm):
    fig = plot(
        "collapse",
        "--experiment",
        "demo",
        exact_runs=exact["exact_runs"],
        exact_fits=exact["exact_fits"],
        lm_runs=lm["lm_runs"],
        lm_fits=lm["lm_fits"],
    )
    assert fig.get_suptitle() == (
        "F2: collapse time over (S, η) — exact testbed, experiment demo; language model, gold reward"
    )
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 and len(colorbars) == 2
    assert all(bar.get_ylabel() == "log10 median T_c (learner steps)" for bar in colorbars)
    heatmaps, line_panels = panels[0::2], panels[1::2]
    exact_cv, lm_cv = "CV of T_c·η across η (S == 0): 0.12", "T_c·η CV: too few collapses"
    rows = [  # (label, runs, grid shape, horizon, fully censored cells, cells with a number, the one with *)
        ("exact testbed, experiment demo", exact_runs(), (3, 3), HORIZON, 4, 5, "35*", exact_cv),
        ("language model, gold reward", lm_runs().iloc[:12], (3, 2), 10, 4, 2, "8*", lm_cv),
    ]
    for (label, runs, shape, horizon, hatched, numbers, star, cv), heat, line in zip(
        rows, heatmaps, line_panels
    ):
        (image,) = heat.get_images()
        assert image.get_array().shape == shape
        assert sum(1 for patch in heat.patches if patch.get_hatch() == "///") == hatched
        assert len(heat.texts) == numbers and [text for text in texts(heat) if "*" in text] == [star]
        assert f"no collapse within T = {horizon} (censored)" in heat.get_title()
        assert heat.get_ylabel() == f"{label}\nmax lag S (learner steps)"
        assert heat.get_xlabel() == "learning rate η (per step)"
        etas = sorted(runs["eta"].unique())
        assert len(data_lines(line)) == len(etas)  # one line per η ...
        assert legend_labels(line) == [f"{eta:g}" for eta in etas]
        hollow = sum(len(c.get_offsets()) for c in line.collections)  # ... and every censored run hollow
        assert hollow == int(runs["censored"].sum())
        assert line.get_title() == cv
        assert line.get_ylabel() == "T_c·η (collapse time × learning rate)"
        assert line.get_xscale() == line.get_yscale() == "log"


def test_collapse_exact_only(plot, exact):
    fig = plot("collapse", exact_runs=exact["exact_runs"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and panels[0].get_images() and len(data_lines(panels[1])) == 3
    assert fig.get_suptitle() == "F2: collapse time over (S, η) — exact testbed, experiment main"
    assert panels[1].get_title() == "T_c·η CV: no fit"


def test_collapse_no_data(plot):
    assert_no_data(plot("collapse"), "F2: collapse time", "No exact-testbed runs in experiment 'main' yet.")


# -- F3: frontier ------------------------------------------------------------------------------


def test_frontier_exact_and_lm_panels(plot, exact, lm):
    fig = plot(
        "frontier",
        exact_runs=exact["exact_runs"],
        exact_fits=exact["exact_fits"],
        lm_runs=lm["lm_runs"],
        lm_fits=lm["lm_fits"],
    )
    assert fig.get_suptitle() == "F3: stability frontier η*(S, T)"
    assert len(fig.axes) == 2
    exact_ax, lm_ax = fig.axes
    assert exact_ax.get_title().startswith(
        "exact testbed, experiment main\nfit η* = min(a/S, b/T): a = 0.01, b = 1,"
    )
    assert lm_ax.get_title().startswith(
        "language model, proxy reward (length hack)\nfit η* = min(a/S, b/T): a = 0.05"
    )
    for ax, s_star in ((exact_ax, [1.0, 4.0]), (lm_ax, [5.0])):
        assert legend_labels(ax) == ["T = 100", "T = 400"]  # one series per horizon
        assert (
            ax.get_xlabel().startswith("max lag S") and ax.get_ylabel() == "largest stable learning rate η*"
        )
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert sum(len(line.get_xdata()) == 200 for line in data_lines(ax)) == 2  # the law at each T
        assert guides(ax) == pytest.approx(s_star)  # S* = aT/b where it is on the axis
        assert texts(ax) == [f"S*(T={t})" for t in (100, 400)[: len(s_star)]]
        markers = [len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]
        assert markers == [3, 1, 3, 1]  # per T: exact η* at S = 1, 4, 8 (filled), the S = 0 bound (hollow)
        errorbars = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert [len(c.get_segments()) for c in errorbars] == [4, 4]  # the range over seeds, every S


def test_frontier_exact_only_without_a_fit(plot, tmp_path):
    fits = EXACT_FITS | {"frontier": {"status": "too_few_points"}}
    fig = plot("frontier", exact_fits=fits_json(tmp_path, "fits", fits))
    (ax,) = fig.axes
    assert ax.get_title().endswith("no frontier fit: too_few_points")
    assert legend_labels(ax) == ["T = 100", "T = 400"] and not guides(ax)
    assert not [line for line in data_lines(ax) if len(line.get_xdata()) == 200]


def test_frontier_no_data(plot, tmp_path):
    fits = fits_json(tmp_path, "fits", EXACT_FITS | {"eta_star_summary": []})
    assert_no_data(
        plot("frontier", exact_fits=fits), "F3: stability frontier", "No η* estimates for experiment 'main'"
    )


# -- F4: dashboard -----------------------------------------------------------------------------


def ylabels(scripts) -> list[str]:
    return [label for _, label in scripts["dashboard"].PANELS]


def test_dashboard_lm_pair_on_a_proxy_reward(plot, scripts, exact, tmp_path):
    runs = lm_runs(hack="length")
    fig = plot(
        "dashboard",
        exact_steps=exact["exact_steps"],  # not read: the LM runs have a pair
        exact_runs=exact["exact_runs"],
        lm_steps=parquet(tmp_path, "lm_steps", lm_steps(runs, hack="length")),
        lm_runs=parquet(tmp_path, "lm_runs", runs),
    )
    assert fig.get_suptitle() == (
        "F4: dashboard at S = 4 — language-model runs, proxy reward (length hack); "
        "dotted line: collapse step 6 (kl detector)"
    )
    assert len(fig.axes) == 6
    expected = ["reward: proxy (plain), gold (markers)"] + ylabels(scripts)[1:]
    assert [ax.get_ylabel() for ax in fig.axes] == expected
    for k, ax in enumerate(fig.axes):
        lines = data_lines(ax)  # stable and collapsing; the reward panel has their gold rewards too
        assert len(lines) == (4 if k == 0 else 2) and all(len(line.get_xdata()) == 10 for line in lines)
        assert guides(ax) == [6.0]
    assert legend_labels(fig.axes[0]) == ["stable: η = 0.001", "collapsing: η = 0.003"]
    assert [ax.get_xlabel() for ax in fig.axes[3:]] == ["learner step k"] * 3
    assert [ax.get_yscale() for ax in fig.axes[3:5]] == ["log", "log"]  # kl_behavior, grad_norm > 0


def test_dashboard_log_scale_ignores_the_rows_without_a_value(plot, tmp_path):
    """aggregate.py adds evaluation rows whose KL and gradient norm are NaN: the panels stay log."""
    runs = lm_runs(hack="length")
    steps = lm_steps(runs, hack="length")
    evals = steps.drop_duplicates("run").assign(kl_behavior=np.nan, grad_norm=np.nan, step=10)
    fig = plot(
        "dashboard",
        lm_steps=parquet(tmp_path, "lm_steps", pd.concat([steps, evals], ignore_index=True)),
        lm_runs=parquet(tmp_path, "lm_runs", runs),
    )
    assert [ax.get_yscale() for ax in fig.axes[3:5]] == ["log", "log"]


def test_dashboard_falls_back_to_the_exact_testbed(plot, scripts, tmp_path):
    runs = exact_runs()
    steps = parquet(tmp_path, "steps", exact_steps(runs).drop(columns="ess"))  # a column it lacks
    fig = plot("dashboard", exact_steps=steps, exact_runs=parquet(tmp_path, "runs", runs))
    assert fig.get_suptitle() == (
        "F4: dashboard at S = 1 — exact testbed, experiment main (no LM runs); "
        "dotted line: collapse step 30 (reward detector)"
    )
    assert [ax.get_ylabel() for ax in fig.axes] == ylabels(scripts)
    for k, ax in enumerate(fig.axes):
        if k == 2:  # ESS
            assert not data_lines(ax) and texts(ax) == ["not recorded by this source"]
        else:
            assert [len(line.get_xdata()) for line in data_lines(ax)] == [HORIZON, HORIZON]
        assert guides(ax) == [30.0]
    assert legend_labels(fig.axes[0]) == ["stable: η = 0.001", "collapsing: η = 0.004"]


def test_dashboard_no_data(plot, tmp_path):
    runs = exact_runs().assign(censored=True)  # nothing collapsed
    fig = plot("dashboard", exact_runs=parquet(tmp_path, "runs", runs))
    assert_no_data(
        fig,
        "F4: run dashboard",
        "source tried: exact testbed, experiment main (no LM runs)",
        "no S has both a stable and a collapsing run (18 runs: 0 collapsed, 18 stable)",
    )


# -- F5: schedules -----------------------------------------------------------------------------


def test_schedules_both_comparisons(plot, lm):
    fig = plot("schedules", lm_steps=lm["lm_steps"], lm_runs=lm["lm_runs"])
    assert fig.get_suptitle().startswith(
        "F5: schedules and baselines — language-model runs (2 run(s) per line;"
    )
    assert len(fig.axes) == 4
    rows = [
        ("η schedules at S = 4, η_0 = 0.001", ["constant", "ess", "staleness"]),
        (
            "async vs sync, constant η = 0.001, 2 threads each",
            ["async, S = 2", "async, S = 4", "fixed, S = 0"],
        ),
    ]
    for (title, series), axes in zip(rows, (fig.axes[:2], fig.axes[2:])):
        for ax, xlabel in zip(axes, ("learner step k", "wall-clock time (s)")):
            assert ax.get_title() == title
            assert ax.get_xlabel() == xlabel and ax.get_ylabel() == "held-out accuracy (temperature 1)"
            assert legend_labels(ax) == series
            lines = data_lines(ax)  # one line per series, through the evals
            assert len(lines) == len(series) and all(
                len(line.get_xdata()) >= len(EVAL_STEPS) for line in lines
            )
        steps_ax = axes[0]
        assert all(list(line.get_xdata()) == list(EVAL_STEPS) for line in data_lines(steps_ax))
        assert len(steps_ax.collections) == len(series)  # a 95% band per line (2 seeds each)


def test_schedules_one_comparison(plot, tmp_path):
    runs = lm_runs()
    runs = runs[runs["schedule"] != "async"]  # no async runs: the schedule row alone
    fig = plot(
        "schedules",
        lm_steps=parquet(tmp_path, "steps", lm_steps(runs)),
        lm_runs=parquet(tmp_path, "runs", runs),
    )
    assert len(fig.axes) == 2 and all(ax.get_title().startswith("η schedules at S = 4") for ax in fig.axes)


@pytest.mark.parametrize("which", ["no runs", "no comparison"])
def test_schedules_no_data(plot, tmp_path, which):
    title = "F5: schedules and baselines"
    if which == "no runs":
        assert_no_data(plot("schedules"), title, "No language-model runs yet", "lm.enabled: true")
        return
    runs = lm_runs().iloc[:12]  # the controlled grid only
    fig = plot(
        "schedules",
        lm_steps=parquet(tmp_path, "steps", lm_steps(runs)),
        lm_runs=parquet(tmp_path, "runs", runs),
    )
    assert_no_data(fig, title, "The LM grid has no schedule or async/sync comparison.")


# -- F6: throughput ----------------------------------------------------------------------------


def throughput() -> pd.DataFrame:
    """The throughput table at S = 0, 1, 2, 4 with one actor, and a two-actor row the figure leaves out."""
    speedup = [1.0, 1.4, 1.6, 1.7, 2.5]
    return pd.DataFrame(
        {
            "S": [0, 1, 2, 4, 4],
            "actors": [1, 1, 1, 1, 2],
            "steps_per_s": [0.5, 0.7, 0.8, 0.85, 1.25],
            "speedup": speedup,
            "ideal": 1.8,
            "efficiency": [v / 1.8 for v in speedup],
        }
    )


def test_throughput_panels(plot, tmp_path):
    fig = plot("throughput", save=True, throughput=parquet(tmp_path, "throughput", throughput()))
    assert fig.get_suptitle() == "F6: throughput of asynchronous GRPO — LM benchmark"
    assert (tmp_path / "out/f.pdf").stat().st_size and (tmp_path / "out/f.png").stat().st_size
    speed, efficiency = fig.axes
    x = [0.5, 1.0, 2.0, 4.0]  # S = 0 drawn at 0.5; the two-actor run left out
    measured, ideal = data_lines(speed)
    assert list(measured.get_xdata()) == x and list(measured.get_ydata()) == [1.0, 1.4, 1.6, 1.7]
    assert list(ideal.get_xdata()) == x and list(ideal.get_ydata()) == [1.8] * 4
    assert legend_labels(speed) == ["measured async / sync", "ideal (t_gen + t_train) / max(t_gen, t_train)"]
    (line,) = data_lines(efficiency)
    assert list(line.get_ydata()) == pytest.approx([v / 1.8 for v in (1.0, 1.4, 1.6, 1.7)])
    assert efficiency.get_ylim() == pytest.approx((0, 1.05))
    assert speed.get_ylabel() == "speedup over synchronous (×)"
    assert efficiency.get_ylabel() == "efficiency (measured / ideal)"
    for ax in (speed, efficiency):
        assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("max lag S")
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["0", "1", "2", "4"]
        assert guides(ax, vertical=False) == [1.0]


@pytest.mark.parametrize("rows", ["empty", "two actors only"])
def test_throughput_no_data(plot, tmp_path, rows):
    table = throughput()
    table = table.iloc[:0] if rows == "empty" else table[table["actors"] == 2]
    fig = plot("throughput", throughput=parquet(tmp_path, "throughput", table))
    assert_no_data(fig, "F6: throughput", "No throughput benchmark yet", "stalegrpo bench lm")


def test_throughput_without_a_table(plot):
    assert_no_data(plot("throughput"), "F6: throughput", "No throughput benchmark yet")


def test_schedules_orders_series_by_the_numbers_in_their_labels(scripts):
    """Legend order and shading follow S: "S = 4" before "S = 16", which a string sort reverses."""
    labels = ["async, S = 16", "fixed, S = 0", "async, S = 4", "async, S = 2"]
    ordered = sorted(labels, key=scripts["schedules"].natural)
    assert ordered == ["async, S = 2", "async, S = 4", "async, S = 16", "fixed, S = 0"]
