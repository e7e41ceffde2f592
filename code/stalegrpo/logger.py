"""Live dashboards: a run's per-step metrics as TensorBoard event files (docs/method.md §3).

    tensorboard --logdir results/lm/runs

Each metric column of ``steps.parquet`` becomes a scalar series, grouped the way a reader of an
async-RL dashboard looks for them: ``staleness/lag_mean``, ``ess/ess``, ``kl/kl_behavior``,
``optimizer/grad_norm``, ``reward/eval_accuracy``, ``bias/relative_bias``, ``time/step_time_s``...
The parquet tables stay the record the analysis reads; the event files are for watching a run.
A resumed run purges the events after its checkpoint, so its curves are not drawn twice.
"""

from __future__ import annotations

import math
from pathlib import Path

GROUPS = {
    "staleness": ("lag_min", "lag_mean", "lag_max", "drift"),
    "reward": (
        "reward_mean",
        "reward_std",
        "accuracy",
        "gold_reward",
        "hack_rate",
        "eval_accuracy",
        "eval_reward",
        "eval_gold_reward",
        "eval_hack_rate",
    ),
    "kl": ("kl_behavior", "kl_ref", "mismatch_kl"),
    "ess": ("ess", "ess_token"),
    "optimizer": (
        "eta_k",
        "loss",
        "grad_norm",
        "grad_cos",
        "update_norm",
        "clip_frac_low",
        "clip_frac_high",
        "entropy",
    ),
    "bias": ("bias_sq", "bias", "grad_sq", "relative_bias", "probe_lag"),
    "collapse": ("finite", "collapsed"),
}
"""dashboard group of each metric column; columns not listed go to ``time/`` (they measure time)"""
_GROUP_OF = {column: group for group, columns in GROUPS.items() for column in columns}


def tag(column: str) -> str:
    """The TensorBoard tag of a metric column, e.g. ``lag_mean`` → ``staleness/lag_mean``."""
    return f"{_GROUP_OF.get(column, 'time')}/{column}"


class TensorBoardLogger:
    """Writes each row's numbers at its ``step`` under ``directory``."""

    def __init__(self, directory: Path, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(str(directory), purge_step=start_step or None)

    def log(self, row: dict) -> None:
        step = int(row["step"])
        for column, value in row.items():
            if column == "step" or not isinstance(value, (bool, int, float)):
                continue
            if math.isfinite(float(value)):
                self.writer.add_scalar(tag(column), float(value), step)

    def close(self) -> None:
        self.writer.close()


class NullLogger:
    """``logger: none``: nothing is written."""

    def log(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


def make_logger(kind: str, directory: Path, start_step: int = 0):
    """The logger of a run's ``logger`` key (``tensorboard`` or ``none``)."""
    if kind == "tensorboard":
        return TensorBoardLogger(directory, start_step)
    if kind == "none":
        return NullLogger()
    raise ValueError(f"logger {kind!r}: expected 'tensorboard' or 'none'")
