"""F4's choice of a stable and a collapsing run (code/plot_dashboard.py): robust to seeds and to a
requested S without a pair, and truthful about why it falls back."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

CODE = Path(__file__).resolve().parents[1] / "code"


@pytest.fixture(scope="module")
def dashboard():
    sys.path.insert(0, str(CODE))  # the plotting scripts import figures_common from code/
    try:
        spec = importlib.util.spec_from_file_location("plot_dashboard", CODE / "plot_dashboard.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(CODE))


def grid(rows):
    return pd.DataFrame(rows, columns=["run", "S", "eta", "seed", "censored"])


def test_a_pair_from_another_seed_and_the_nearest_s(dashboard):
    runs = grid(
        [
            ("a", 16, 2.5e-4, 0, True),
            ("b", 16, 5e-4, 0, True),  # seed 0 never collapses at S = 16 ...
            ("c", 16, 5e-4, 1, False),  # ... seed 1 does
            ("d", 16, 2.5e-4, 1, True),
            ("e", 4, 5e-4, 0, True),
            ("f", 4, 1e-3, 0, False),
            ("g", 0, 1e-3, 0, True),
        ]
    )
    stable, collapsing, s, note = dashboard.choose_pair(runs, 16)
    assert (s, stable["run"], collapsing["run"], note) == (16, "d", "c", "")  # seed 1 has both kinds
    stable, collapsing, s, note = dashboard.choose_pair(runs, 0)  # S = 0 has none: nearest is 4
    assert (s, stable["run"], collapsing["run"]) == (4, "e", "f") and "S = 0 has no stable/collapsing pair" in note
    runs.loc[runs["run"] == "d", "censored"] = False  # now no seed has both kinds at S = 16
    stable, collapsing, s, note = dashboard.choose_pair(runs[runs["S"] == 16], 16)
    assert (stable["run"], collapsing["run"]) == ("b", "d") and "seeds differ" in note


def test_no_pair_says_how_many_runs_of_each_kind(dashboard):
    runs = grid([("a", 0, 1e-3, 0, True), ("b", 4, 1e-3, 0, True), ("c", 4, 2e-3, 1, True)])
    stable, collapsing, s, note = dashboard.choose_pair(runs, None)
    assert stable is None and note == "no S has both a stable and a collapsing run (3 runs: 0 collapsed, 3 stable)"
    assert dashboard.choose_pair(runs.iloc[:0], None)[3] == "no runs"
