"""A run's state besides the DeepSpeed engine (:class:`RunState`), and its checkpoints: written
at every ``checkpoint_every`` steps by :func:`save_checkpoint`, read back by :func:`resume`, so
that the same command continues a run that was stopped (docs/method.md §5)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from stalegrpo.collapse import CollapseMonitor
from stalegrpo.config import ConfigError
from stalegrpo.schedules import SnapshotRing


@dataclass
class RunState:
    """Everything besides the DeepSpeed engine that a checkpoint holds to resume a run exactly."""

    config: dict
    """the run's config, compared on resume"""
    monitor: CollapseMonitor
    """the collapse detectors' state"""
    stop_at: int
    """the step the run stops at: the horizon, or a grace window after a collapse"""
    rows: list[dict] = field(default_factory=list)
    """one dict of §3 metrics per learner step"""
    lags: list[np.ndarray] = field(default_factory=list)
    """per step, the (step, sample, version, lag) rows of its samples"""
    evals: list[dict] = field(default_factory=list)
    """the held-out evaluations so far"""
    ring: dict | None = None
    """the snapshot ring of recent weights"""
    elapsed: float = 0.0
    """wall seconds of the run so far, over all resumptions"""
    cpu_time: float = 0.0
    """CPU seconds of the learner process so far, over all resumptions"""
    admission_violations: int = 0
    """async samples consumed with a lag above S (must stay 0)"""


def save_checkpoint(out: Path, learner, state: RunState, lead: bool = True) -> None:
    """Run state first (by the lead rank), then the engine (by every rank), whose ``latest`` file
    is written last (atomic enough)."""
    directory, tag = out / "checkpoint", f"step{learner.version}"
    if lead:
        (directory / tag).mkdir(parents=True, exist_ok=True)
        saved = vars(state) | {
            "torch_rng": torch.get_rng_state(),
            "prev_grad": learner.prev_grad,
            "version": learner.version,
        }
        torch.save(saved, directory / tag / "run_state.pt")
    learner.save(directory, tag)
    if lead:
        for old in directory.glob("step*"):
            if old.name != tag:
                shutil.rmtree(old, ignore_errors=True)


def resume(out: Path, learner, ring: SnapshotRing, config: dict) -> RunState | None:
    """The state of the run's last checkpoint, loaded into ``learner`` and ``ring``; None if none."""
    latest = out / "checkpoint" / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    saved = torch.load(out / "checkpoint" / tag / "run_state.pt", weights_only=False)
    if saved["config"] != config:
        raise ConfigError(f"{str(out)!r} holds a run with another config; use a new --out to start afresh")
    learner.load(out / "checkpoint", tag)
    learner.version, learner.prev_grad = saved["version"], saved["prev_grad"]
    torch.set_rng_state(saved["torch_rng"])
    state = RunState(**{f.name: saved[f.name] for f in fields(RunState)})
    ring.load_state_dict(state.ring)
    return state
