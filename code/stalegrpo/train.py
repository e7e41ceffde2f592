"""One asynchronous-GRPO run on a language model (docs/method.md §2-§5).

    stalegrpo train config/train.yaml S=4 eta=3e-4 --out results/run

The learner (:mod:`stalegrpo.learner`) takes T optimizer steps. Rollouts come from one of the
two schedules of §5 (:mod:`stalegrpo.schedules`): ``fixed`` generates batch n in-process with the
snapshot of version max(0, n·m - S); ``async`` runs an actor process that generates while the
learner trains, under admission control (lag ≤ S), and receives the weights after every step.

Per learner step the run appends one tidy row of the §3 metrics to OUT/steps.parquet, every
sample's (version, lag) to OUT/lags.parquet, the held-out sampled accuracy (temperature 1) every
``eval_every`` steps to OUT/eval.parquet and the §3.2 bias probe every ``probe_every`` steps to
the step's row; with ``logger: tensorboard`` the rows also go to OUT/tensorboard. A
:class:`~stalegrpo.collapse.CollapseMonitor` watches the run (§4); a collapse is recorded, the
run continues for ``grace_steps`` and exits 0. OUT/summary.json says how the run ended. A
checkpoint (DeepSpeed engine + :class:`RunState`) is written every ``checkpoint_every`` steps and
on SIGTERM; the same command resumes from it, bit for bit in the ``fixed`` schedule.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from stalegrpo.actors import actor_options, make_actor
from stalegrpo.collapse import CollapseMonitor
from stalegrpo.config import load_config, to_dict
from stalegrpo.engines import ActorDied, EngineSource
from stalegrpo.evaluation import evaluate, probe, probe_step, reward_metrics
from stalegrpo.learner import Learner, LearnerRankLost, is_collective_failure
from stalegrpo.logger import make_logger
from stalegrpo.memory import PeakMemory
from stalegrpo.placement import threads_per_process
from stalegrpo.policy import flat_params, load_policy, prompt_format, weights_checksum
from stalegrpo.ranks import TEST_KILL_RANK_ENV, Ranks, signal_after_checkpoint
from stalegrpo.records import MEAN_COLUMNS, check_row, write_tables
from stalegrpo.runstate import RunState, resume, save_checkpoint
from stalegrpo.schedules import FixedSource, SnapshotRing, minibatch
from stalegrpo.tasks import make_task
from stalegrpo.train_config import TrainConfig, check

CONFIG_CLASS = TrainConfig
"""the keys of ``stalegrpo train`` (:mod:`stalegrpo.train_config`)"""
INTERRUPTED = ("sigterm", "actor_died", "learner_rank_lost")
"""how a run can stop before its end: the same command resumes it from its last checkpoint"""


def main(config_path, overrides, out) -> int:
    cfg = load_config(TrainConfig, config_path, overrides)
    check(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) != cfg.learners:  # not yet under a launcher of L ranks
        return launch_ranks(cfg, config_path, overrides, out)
    try:
        return run(cfg, Path(out))["exit_code"]
    except LearnerRankLost as err:
        print(f"stalegrpo train: {err}", file=sys.stderr)
        return 1


def launch_ranks(cfg: TrainConfig, config_path, overrides, out) -> int:
    """The same command once per learner rank, under torchrun (which sets RANK, WORLD_SIZE and
    LOCAL_RANK, picks a free port, and ends every rank when one fails); its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cfg.learners}"]
    command += ["-m", "stalegrpo.cli", "train", *([str(config_path)] if config_path else []), *overrides]
    return subprocess.run([*command, "--out", str(out)], check=False).returncode


class Run:
    """One training run: the learner, the reference and scratch actors, the records."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.ranks = cfg, out, Ranks()
        out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(threads_per_process(cfg))
        self.task = make_task(cfg)
        model, self.tokenizer = load_policy(cfg.init_checkpoint)
        # copies made before DeepSpeed touches the model: the reference, the fixed-schedule actor's
        # model and a scratch actor for evaluation and the bias probe
        ref_model, self.actor_model, scratch_model = (copy.deepcopy(model) for _ in range(3))
        self.source = None
        """the rollout source (rank 0 only); async engines start before the learner allocates"""
        if cfg.schedule == "async" and self.ranks.lead:
            self.source = EngineSource(cfg, flat_params(model).numel(), self.ranks.device)
        try:
            self._build(model, ref_model, scratch_model)
        except BaseException:
            if self.source is not None:
                self.source.close()
            raise

    def _build(self, model, ref_model, scratch_model) -> None:
        cfg, out = self.cfg, self.out
        self.learner = Learner(model, ref_model, cfg)
        # in-process actors on the learner's device (on CUDA: rank 0's GPU)
        self.scratch = make_actor(
            "hf", scratch_model, self.tokenizer, self.task, device=self.learner.device, **prompt_format(cfg)
        )
        self.ring = SnapshotRing(cfg.S + cfg.updates_per_batch + 1)
        state = resume(out, self.learner, self.ring, to_dict(cfg))
        if state is not None:
            if self.ranks.lead:
                print(f"resuming {out} at step {self.learner.version}")
        else:
            if self.ranks.lead and (out / "steps.parquet").is_file():  # an attempt that died before a checkpoint
                print(f"{out} has no checkpoint of an earlier attempt: the run starts afresh from step 0")
            state = RunState(config=to_dict(cfg), monitor=CollapseMonitor(cfg.collapse), stop_at=cfg.steps)
            self.ring.push(0, flat_params(self.learner.model))
            if self.ranks.lead:
                state.evals.append(self.evaluate(0) | {"wall_time": 0.0})
        self.state = state
        # clocks that continue across resumptions; CPU seconds measure progress per unit of load
        self.elapsed0 = state.elapsed - time.perf_counter()
        self.cpu0 = state.cpu_time - time.process_time()

    def evaluate(self, version: int) -> dict:
        return evaluate(self.cfg, self.task, self.scratch, self.ring, version)

    def wall_time(self) -> float:
        return self.elapsed0 + time.perf_counter()

    def train_step(self, rollout, info: dict, j: int, step_start: float) -> dict:
        """The j-th learner step on ``rollout``: probe, update, staleness bookkeeping; its §3 row."""
        cfg, learner, state, ring = self.cfg, self.learner, self.state, self.ring
        m, k = cfg.updates_per_batch, learner.version
        row = {"step": k}
        if self.ranks.lead and (
            (cfg.probe_every and k % cfg.probe_every == 0) or k == probe_step(cfg)
        ):
            probe_start = time.perf_counter()
            row |= probe(cfg, self.task, self.scratch, ring, learner)
            row["probe_s"] = time.perf_counter() - probe_start
        batch = minibatch(rollout, j, m, cfg.group_size)
        train_start = time.perf_counter()
        # this rank's whole groups of the minibatch; the metrics are reduced over the ranks
        shard = minibatch(batch, self.ranks.rank, self.ranks.size, cfg.group_size)
        with PeakMemory(learner.device) as peak:
            metrics = learner.step(shard) | {"rank_samples": len(shard)}
        train_s = time.perf_counter() - train_start

        book_start = time.perf_counter()  # staleness bookkeeping: lags, snapshots, admission check
        lag = (k - batch.version).numpy()
        state.admission_violations += int((lag > cfg.S).sum()) if cfg.schedule == "async" else 0
        state.lags.append(
            np.stack([np.full_like(lag, k), np.arange(len(lag)), batch.version.numpy(), lag, batch.engine.numpy()], 1)
        )
        v = int(batch.version.max())  # a batch comes from one version
        current = flat_params(learner.model)
        drift = float((ring[k] - ring[int(batch.version.min())]).norm())
        ring.push(learner.version, current)
        book_s = time.perf_counter() - book_start
        published = self.source.publish(current, learner.version) if self.source is not None else 0.0
        sync_s = published + (info["weight_sync_s"] if j == 0 else 0.0)

        rewards = batch.rewards
        row |= {
            "batch": k // m,
            "behavior_checksum": rollout.weights_checksum,
            "version_checksum": weights_checksum(ring[v]),
            "wall_time": self.wall_time(),
            "cpu_time": self.cpu0 + time.process_time(),
            "lag_min": int(lag.min()),
            "lag_mean": float(lag.mean()),
            "lag_max": int(lag.max()),
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
        }
        scores = reward_metrics(batch)
        row |= {k: scores[k] for k in ("accuracy", "gold_reward", "hack_rate")}
        row |= metrics | {"drift": drift}
        row |= {
            "gen_s": rollout.gen_seconds / m,
            "train_s": train_s,
            "step_time_s": time.perf_counter() - step_start,
            "gen_tokens_per_s": int(rollout.completion_mask.sum()) / max(rollout.gen_seconds, 1e-9),
            "train_tokens_per_s": int(batch.prompt_mask.sum() + batch.completion_mask.sum()) / train_s,
            "actor_wait_s": info["actor_wait_s"] if j == 0 else 0.0,
            "learner_wait_s": info["learner_wait_s"] if j == 0 else 0.0,
            "weight_sync_s": sync_s,
            "bookkeeping_s": book_s,
            "train_peak_gib": peak.gib,
        }
        return row

    def watch(self, row: dict) -> None:
        """Feed the collapse detectors; a collapse (or a step with no update) sets the stop step."""
        cfg, state = self.cfg, self.state
        k = row["step"]
        kl_ref = row["kl_ref"] if math.isfinite(row["kl_ref"]) or not row["finite"] else None  # None: not measured
        fired = state.monitor.update(
            k,
            row["gold_reward"],  # the gold verifier, as in the exact testbed (= reward_mean without a hack)
            kl_behavior=row["kl_behavior"],
            kl_ref=kl_ref,
            finite=row["finite"],
            entropy=row["entropy"],
        )
        row["collapsed"] = bool(state.monitor.collapsed[0])
        if fired[0]:
            state.stop_at = min(cfg.steps, k + 1 + cfg.grace_steps)
            tqdm.write(f"collapse ({state.monitor.detector_names()[0]}) at step {k}; {cfg.grace_steps} more steps")
        if not row["finite"]:
            state.stop_at = self.learner.version  # no update was taken; nothing more can be learned

    def checkpoint(self) -> None:
        """Every rank saves its part of the engine; rank 0 the run state."""
        self.state.ring, self.state.elapsed = self.ring.state_dict(), self.wall_time()
        self.state.cpu_time = self.cpu0 + time.process_time()
        save_checkpoint(self.out, self.learner, self.state, self.ranks.lead)

    def summary(self, stopped: str) -> dict:
        state, monitor, learner = self.state, self.state.monitor, self.learner
        rows = pd.DataFrame(state.rows)
        collapsed = bool(monitor.collapsed[0])
        return {
            "config": state.config,
            "steps_done": learner.version,
            "horizon": self.cfg.steps,
            "finished": stopped not in INTERRUPTED,
            "stopped": stopped,
            "collapse_step": int(monitor.collapse_step[0]) if collapsed else None,
            "collapse_detector": monitor.detector_names()[0] if collapsed else None,
            "censored": not collapsed,
            "initial_eval_accuracy": state.evals[0]["eval_accuracy"] if state.evals else None,
            "final_eval_accuracy": state.evals[-1]["eval_accuracy"] if state.evals else None,
            "peak_eval_accuracy": max(e["eval_accuracy"] for e in state.evals) if state.evals else None,
            "final_eval_hack_rate": state.evals[-1].get("eval_hack_rate") if state.evals else None,
            "admission_violations": state.admission_violations,
            "wall_time": state.elapsed,
            "mean": {c: float(rows[c].mean()) for c in MEAN_COLUMNS if c in rows},
        }

    # -- the pieces of the loop (:func:`run`) ---------------------------------------------------
    @contextlib.contextmanager
    def session(self):
        """SIGTERM caught, the rollout source started, the logger and progress bar open; all
        closed again however the loop ends."""
        cfg, learner, lead = self.cfg, self.learner, self.ranks.lead
        self.terminated = []
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.terminated.append(signum))
        if lead and cfg.schedule == "fixed":
            actor = make_actor(cfg.actor, self.actor_model, self.tokenizer, self.task, device=learner.device,
                               **actor_options(cfg))
            self.source = FixedSource(cfg, self.task, actor, self.ring)
        elif lead:
            m = cfg.updates_per_batch
            self.source.start(self.ring[learner.version], learner.version, learner.version // m)
        self.logger = make_logger(cfg.logger if lead else "none", self.out / "tensorboard", learner.version)
        self.bar = tqdm(total=cfg.steps, initial=learner.version, disable=not (cfg.progress and lead),
                        desc=f"{cfg.schedule} S={cfg.S} eta={cfg.eta:g}")
        self.last_eval = self.state.evals[-1]["eval_accuracy"] if self.state.evals else float("nan")
        try:
            yield
        finally:
            if self.source is not None:
                self.source.close()
            self.logger.close()
            self.bar.close()
            signal.signal(signal.SIGTERM, previous)

    def next_batch(self) -> tuple:
        """("batch", rollout, info) of the next batch on every rank, or ("stop", reason, error):
        rank 0 decides (the horizon, or a dead actor engine) and tells the others."""
        learner, ranks, message = self.learner, self.ranks, None
        if ranks.lead and learner.version >= self.state.stop_at:
            message = ("stop", "horizon", None)
        elif ranks.lead:
            try:
                message = ("batch", *self.source.next(learner.version // self.cfg.updates_per_batch))
            except ActorDied as err:  # a fault, not a result: checkpoint, say so, exit non-zero
                message = ("stop", "actor_died", str(err))
        message = ranks.share(message, learner.device)
        if os.environ.get(TEST_KILL_RANK_ENV) == f"{ranks.rank}:{learner.version}":
            os.kill(os.getpid(), signal.SIGKILL)
        return message

    def record(self, row: dict) -> bool:
        """Rank 0 watches and records a step's row, evaluates when due, logs; whether the run has
        reached its stop step (on every rank)."""
        cfg, learner, state = self.cfg, self.learner, self.state
        if self.ranks.lead:
            self.watch(row)
            state.rows.append(check_row(row))
            if cfg.eval_every and learner.version % cfg.eval_every == 0 or learner.version == cfg.steps:
                state.evals.append(self.evaluate(learner.version) | {"wall_time": row["wall_time"]})
                self.last_eval = state.evals[-1]["eval_accuracy"]
                self.logger.log(state.evals[-1] | {"step": learner.version, "wall_time": math.nan})
            self.logger.log(row)
            self.bar.update(1)
            self.bar.set_postfix(reward=f"{row['reward_mean']:.3f}", lag=f"{row['lag_mean']:.1f}",
                                 ess=f"{row['ess']:.3f}", acc=f"{self.last_eval:.3f}")
        return self.ranks.share(self.ranks.lead and learner.version >= state.stop_at, learner.device)

    def interruption(self) -> str | None:
        """After a batch: "sigterm" or "max_minutes" if the run must stop now (rank 0 decides)."""
        state, reason = self.state, None
        if self.ranks.lead:
            state.ring, state.elapsed = self.ring.state_dict(), self.wall_time()
            state.cpu_time = self.cpu0 + time.process_time()
            if self.terminated or (self.cfg.max_minutes and state.elapsed > 60 * self.cfg.max_minutes):
                reason = "sigterm" if self.terminated else "max_minutes"
        return self.ranks.share(reason, self.learner.device)

    def checkpoint_if_due(self) -> None:
        """Tables and a checkpoint every ``checkpoint_every`` steps."""
        if self.learner.version % self.cfg.checkpoint_every < self.cfg.updates_per_batch:
            if self.ranks.lead:
                write_tables(self.out, self.state)
            self.checkpoint()
            if self.ranks.lead:
                signal_after_checkpoint(self.learner.version)

    def rank_lost(self, err: RuntimeError, run_seconds: float) -> LearnerRankLost:
        """The error for a failed collective between learner ranks (another rank died), with the
        tables so far written and what a rerun will do."""
        cfg, ranks, out = self.cfg, self.ranks, self.out
        latest = out / "checkpoint" / "latest"
        rerun = (
            f"rerun the command to resume from the checkpoint at step {latest.read_text().strip().removeprefix('step')}"
            if latest.is_file()
            else f"no checkpoint was written yet (the first is due after step {cfg.checkpoint_every}), so a rerun "
            "starts afresh from step 0"
        )
        message = (
            f"learner rank {ranks.rank} of {ranks.size}: a collective with the other learner ranks failed "
            f"({str(err).splitlines()[0]}); a rank has most likely died (its log says why). Collectives wait "
            f"at most collective_timeout_s = {cfg.collective_timeout_s:g} s. Tables up to step "
            f"{self.learner.version} are in {out}; {rerun}"
        )
        if ranks.lead:
            summary = self.summary("learner_rank_lost") | {"run_seconds": run_seconds}
            write_tables(out, self.state, summary | {"error": message})
        return LearnerRankLost(message)

    def finish(self, stopped: str, error: str | None, run_seconds: float) -> dict:
        """The last evaluation, checkpoint, tables and summary; the summary with its exit code."""
        cfg, learner, state = self.cfg, self.learner, self.state
        exit_code = {"sigterm": 143, "actor_died": 1}.get(stopped, 0)
        if not self.ranks.lead:
            self.checkpoint()
            return {"stopped": stopped, "exit_code": exit_code}
        state.ring, state.elapsed = self.ring.state_dict(), self.wall_time()
        if stopped == "horizon" and state.stop_at < cfg.steps:
            stopped = "collapse" if state.monitor.collapsed[0] else "nonfinite"
        if stopped not in INTERRUPTED and state.evals[-1]["step"] != learner.version:
            state.evals.append(self.evaluate(learner.version) | {"wall_time": state.elapsed})
        self.checkpoint()
        summary = self.summary(stopped) | {"run_seconds": run_seconds, "error": error}
        write_tables(self.out, state, summary)
        if error:
            print(f"stalegrpo train: {error}; checkpoint at step {learner.version} in {self.out}, rerun to resume",
                  file=sys.stderr)
        return summary | {"exit_code": exit_code}


def run(cfg: TrainConfig, out: Path) -> dict:
    """Train until the horizon, a collapse's grace window, SIGTERM or ``max_minutes``; the summary.
    Every learner rank runs this; rank 0 (``lead``) draws the batches and records the run: get a
    batch, take its m steps, record each, watch for a stop, checkpoint when due."""
    start = time.perf_counter()
    r = Run(cfg, out)
    stopped, error = "horizon", None
    with r.session():
        try:
            while True:
                step_start = time.perf_counter()
                kind, *message = r.next_batch()
                if kind == "stop":
                    stopped, error = message
                    break
                rollout, info = message
                for j in range(cfg.updates_per_batch):
                    row = r.train_step(rollout, info, j, step_start)
                    step_start = time.perf_counter()
                    if r.record(row):
                        break
                stopped = r.interruption() or stopped
                if stopped != "horizon":
                    break
                r.checkpoint_if_due()
        except RuntimeError as err:
            if r.ranks.size == 1 or not is_collective_failure(err):
                raise
            raise r.rank_lost(err, time.perf_counter() - start) from err
    return r.finish(stopped, error, time.perf_counter() - start)
