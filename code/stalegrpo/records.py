"""The columns of a step row: one schema for ``steps.parquet`` (docs/method.md §3).

Every learner step writes one row with exactly the :data:`STEP_COLUMNS`; a step that ran the bias
probe adds the :data:`PROBE_COLUMNS` (NaN in the table on the other steps). The learner's step,
the training loop and the recorder each fill some of them; :func:`check_row` is applied to every
row before it is recorded, so a column that goes missing or appears undocumented is an error at
once, not a silent gap in a table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

STEP_COLUMNS: dict[str, str] = {
    # identity and clocks
    "step": "learner version k before the update (the step's index)",
    "batch": "rollout batch the minibatch came from (n = k // m)",
    "wall_time": "seconds since the run started, continued across resumptions",
    "cpu_time": "process CPU seconds, continued across resumptions",
    # staleness
    "lag_min": "smallest lag s = k - v in the minibatch",
    "lag_mean": "mean lag in the minibatch",
    "lag_max": "largest lag in the minibatch",
    "drift": "||θ_k - θ_{v_min}||, v_min the oldest behavior version in the minibatch",
    "behavior_checksum": "checksum of the weights the batch was generated with (as the actor reports it)",
    "version_checksum": "the learner's checksum of that version's weights",
    # reward
    "reward_mean": "mean training reward (the proxy where a hack is on)",
    "reward_std": "its standard deviation (ddof = 1)",
    "accuracy": "fraction of training rewards equal to 1",
    "gold_reward": "mean gold reward (equals reward_mean without a hack)",
    "hack_rate": "fraction of completions that are the hack (0 without one)",
    # step and loss
    "eta_k": "learning rate applied at this step (docs/method.md §6)",
    "loss": "minus the objective",
    "finite": "loss and gradient were finite, so the update was taken",
    "rank_samples": "sequences each learner rank took from the minibatch",
    # off-policyness
    "ess": "normalised effective sample size of the sequence ratios",
    "ess_token": "the same over single-token ratios",
    "kl_behavior": "k3 estimate of KL(μ || π_θk)",
    "kl_ref": "k3 estimate of KL(μ || π_ref), every kl_ref_every steps (NaN otherwise)",
    "mismatch_kl": "kl_behavior on the lag-0 samples (NaN without any)",
    # update
    "clip_frac_low": "share of tokens whose gradient the lower clip removed",
    "clip_frac_high": "share of tokens whose gradient the upper clip removed",
    "grad_norm": "global gradient norm before clipping",
    "grad_cos": "cosine with the previous step's gradient",
    "update_norm": "||θ_{k+1} - θ_k||",
    "entropy": "mean entropy of π_θk's tempered softmax at the sampled prefixes",
    # system
    "gen_s": "generation seconds of the batch, divided by m",
    "train_s": "learner seconds of this step",
    "step_time_s": "wall seconds of this step, all included",
    "gen_tokens_per_s": "sampled tokens per generation second",
    "train_tokens_per_s": "trained tokens per learner second",
    "actor_wait_s": "seconds the actor waited for admission (a batch's first minibatch)",
    "learner_wait_s": "seconds the learner waited for the batch (a batch's first minibatch)",
    "weight_sync_s": "seconds to publish and load the weights",
    "bookkeeping_s": "seconds of lags, snapshots and the admission check",
    "train_peak_gib": "peak memory of the learner step (CUDA allocated, else resident), GiB",
    # collapse
    "collapsed": "a collapse detector has fired by this step (docs/method.md §4)",
}
"""every step row's columns, with their meaning"""

PROBE_COLUMNS: dict[str, str] = {
    "bias_sq": "unbiased estimate of ||E g_stale - E g_fresh||² (mean over the pairs)",
    "bias_sq_se": "its standard error across the pairs",
    "bias": "sqrt(max(bias_sq, 0))",
    "grad_sq": "unbiased estimate of ||E g_fresh||²",
    "grad_sq_se": "its standard error across the pairs",
    "relative_bias": "bias / sqrt(grad_sq), where grad_sq > 0",
    "probe_lag": "lag of the stale version the probe compared",
    "probe_pairs": "independent batch pairs the probe drew",
    "probe_s": "seconds the probe took",
}
"""the columns a step adds when it runs the bias probe (docs/method.md §3.2)"""


def check_row(row: dict) -> dict:
    """``row`` if its columns are exactly :data:`STEP_COLUMNS` (plus all of :data:`PROBE_COLUMNS`
    or none); else a ValueError naming the missing and the undocumented columns."""
    columns = set(row)
    expected = set(STEP_COLUMNS) | (set(PROBE_COLUMNS) if columns & set(PROBE_COLUMNS) else set())
    if columns != expected:
        missing, extra = sorted(expected - columns), sorted(columns - expected)
        raise ValueError(
            f"step row {row.get('step')}: missing columns {missing}, undocumented columns {extra} "
            "(stalegrpo.records holds the schema)"
        )
    return row


def _replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: a kill at any moment leaves the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_tables(out: Path, state, summary: dict | None = None) -> None:
    """The tidy tables so far (at every checkpoint), and the summary once the run has ended."""
    lags = np.concatenate(state.lags) if state.lags else np.zeros((0, 5), dtype=np.int64)
    tables = {
        "steps.parquet": pd.DataFrame(state.rows),
        "eval.parquet": pd.DataFrame(state.evals),
        "lags.parquet": pd.DataFrame(lags, columns=["step", "sample", "version", "lag", "engine"]),
    }
    for name, table in tables.items():
        _replace_atomically(out / name, lambda tmp, table=table: table.to_parquet(tmp, index=False))
    if summary is not None:
        text = json.dumps(summary, indent=2, default=float)
        _replace_atomically(out / "summary.json", lambda tmp: tmp.write_text(text))


WALL_COLUMNS = (
    "wall_time",
    "cpu_time",
    "gen_s",
    "train_s",
    "step_time_s",
    "actor_wait_s",
    "learner_wait_s",
    "weight_sync_s",
    "bookkeeping_s",
    "gen_tokens_per_s",
    "train_tokens_per_s",
    "probe_s",
    "train_peak_gib",
)
"""columns that measure the machine (wall time, memory): excluded when runs are compared for determinism"""
MEAN_COLUMNS = (
    "gen_s",
    "train_s",
    "step_time_s",
    "bookkeeping_s",
    "weight_sync_s",
    "learner_wait_s",
    "actor_wait_s",
    "lag_mean",
)
"""step columns whose run means go into summary.json"""
