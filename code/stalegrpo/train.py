"""One asynchronous-GRPO run on a language model (docs/method.md §2-§5).

    stalegrpo train config/train.yaml S=4 lr=3e-4 --out results/run

The learner (:mod:`stalegrpo.learner`) takes T optimizer steps. Rollouts come from one of the
two schedules of §5 (:mod:`stalegrpo.buffer`): ``fixed`` generates batch n in-process with the
snapshot of version max(0, n·m - S); ``async`` runs an actor process that generates while the
learner trains, under admission control (lag ≤ S), and receives the weights after every step.

Per learner step the run appends one tidy row of the §3 metrics to OUT/steps.parquet, every
sample's (version, lag) to OUT/lags.parquet, the held-out sampled accuracy (T = 1) every
``eval_every`` steps to OUT/eval.parquet and the §3.2 bias probe every ``probe_every`` steps to
the step's row. A :class:`~stalegrpo.collapse.CollapseMonitor` watches the run (§4); a collapse
is recorded, the run continues for ``grace_steps`` and exits 0. OUT/summary.json says how the
run ended. A checkpoint (DeepSpeed engine + run state) is written every ``checkpoint_every`` steps
and on SIGTERM; the same command resumes from it, bit for bit in the ``fixed`` schedule.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue as queue_module
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from stalegrpo.actors import make_actor
from stalegrpo.buffer import (
    SnapshotRing,
    admission_version,
    fixed_behavior_version,
    flat_params,
    state_from_flat,
)
from stalegrpo.collapse import CollapseConfig, CollapseMonitor
from stalegrpo.config import ConfigError, load_config, to_dict
from stalegrpo.learner import Learner, bias_probe
from stalegrpo.policy import load_policy
from stalegrpo.tasks import get_task


@dataclass
class TrainConfig:
    """Configuration of ``stalegrpo train``."""

    init_checkpoint: str = "results/lm/pretrain/tiny-addition"
    """the pretrained policy to start from (a save_pretrained folder; also the reference π_ref)"""
    task: str = "addition"
    """task name (stalegrpo.tasks)"""
    digits: int = field(default=2, metadata={"minimum": 1})
    """digits of each operand"""
    schedule: Literal["fixed", "async"] = "fixed"
    """rollout schedule of docs/method.md §5"""
    S: int = field(default=0, metadata={"minimum": 0})
    """staleness bound S: the lag (fixed) or the maximum lag (async) of the batches"""
    steps: int = field(default=400, metadata={"minimum": 1})
    """horizon T: learner (optimizer) steps"""
    batch_prompts: int = field(default=32, metadata={"minimum": 1})
    """B: prompts per rollout batch"""
    group_size: int = field(default=8, metadata={"minimum": 2})
    """G: completions per prompt"""
    updates_per_batch: int = field(default=1, metadata={"minimum": 1})
    """m: optimizer steps per rollout batch (the j-th minibatch is consumed at version k + j)"""
    temperature: float = field(default=1.0, metadata={"exclusiveMinimum": 0})
    """sampling temperature of the actor (and of the learner's log-probs)"""
    objective: Literal["behavior", "recompute", "decoupled", "tis"] = "behavior"
    """surrogate objective of docs/method.md §2"""
    aggregation: Literal["seq_mean", "token_mean"] = "seq_mean"
    """how per-token terms are averaged"""
    eps_lo: float = field(default=0.2, metadata={"minimum": 0})
    """lower clip radius ε_lo"""
    eps_hi: float = field(default=0.2, metadata={"minimum": 0})
    """upper clip radius ε_hi"""
    tis_cap: float = field(default=2.0, metadata={"minimum": 0})
    """truncation C of the tis weight"""
    kl_beta: float = field(default=0.0, metadata={"minimum": 0})
    """β of the k3 KL penalty to the reference policy"""
    kl_ref_every: int = field(default=1, metadata={"minimum": 0})
    """steps between kl_ref measurements (one extra forward of π_ref; 0: never); every step when β > 0"""
    lr: float = field(default=1e-4, metadata={"exclusiveMinimum": 0})
    """η_0: the base learning rate (Adam)"""
    lr_schedule: Literal["constant", "ess", "staleness"] = "constant"
    """learning-rate schedule of docs/method.md §6"""
    warmup_steps: int = field(default=0, metadata={"minimum": 0})
    """linear warm-up steps shared by all schedules"""
    adam_beta1: float = 0.9
    """Adam β1"""
    adam_beta2: float = 0.999
    """Adam β2"""
    grad_clip: float = field(default=1.0, metadata={"minimum": 0})
    """global gradient-norm clip (0 disables); grad_norm is logged before clipping"""
    deepspeed_zero: int = field(default=0, metadata={"minimum": 0, "maximum": 2})
    """ZeRO stage: uses config/deepspeed/zero{N}.json"""
    deepspeed_dir: str = "config/deepspeed"
    """folder of the DeepSpeed JSON configs (relative paths resolve from the repository root)"""
    actor: Literal["hf", "vllm"] = "hf"
    """actor backend"""
    threads: int = field(default=2, metadata={"minimum": 1})
    """torch threads: all for the learner in fixed mode; split between learner and actor in async"""
    seed: int = field(default=0, metadata={"minimum": 0})
    """seed of prompts, sampling and evaluation"""
    eval_every: int = field(default=20, metadata={"minimum": 0})
    """held-out evaluation period in steps (0: only at the start and the end)"""
    eval_prompts: int = field(default=256, metadata={"minimum": 1})
    """held-out prompts per evaluation (one sample each at T = 1)"""
    probe_every: int = field(default=0, metadata={"minimum": 0})
    """bias-probe period in steps (0 disables)"""
    checkpoint_every: int = field(default=50, metadata={"minimum": 1})
    """checkpoint period in steps"""
    max_minutes: float | None = None
    """stop (censored) after this much wall time; None: run the horizon"""
    grace_steps: int = field(default=10, metadata={"minimum": 0})
    """steps the run continues after a collapse fires"""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """collapse detectors (docs/method.md §4)"""
    progress: bool = True
    """show a tqdm progress bar"""


CONFIG_CLASS = TrainConfig
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
)
"""columns that measure wall time: excluded when runs are compared for determinism"""


def check(cfg: TrainConfig) -> None:
    """Constraints between keys, beyond the schema."""
    if not (Path(cfg.init_checkpoint) / "config.json").is_file():
        raise ConfigError(
            f"init_checkpoint {cfg.init_checkpoint!r} is not a saved policy (make one with `stalegrpo pretrain`)"
        )
    m = cfg.updates_per_batch
    if cfg.batch_prompts % m:
        raise ConfigError(
            f"batch_prompts = {cfg.batch_prompts} must be a multiple of updates_per_batch = {m}"
        )
    if cfg.schedule == "async" and cfg.S < m - 1:
        raise ConfigError(
            f"async needs S >= updates_per_batch - 1 = {m - 1} (the last minibatch's lag), got S = {cfg.S}"
        )


def rng(cfg, *keys) -> np.random.Generator:
    """The generator of one random event, keyed by what it is for: nothing to checkpoint."""
    return np.random.default_rng([cfg.seed, *keys])


def batch_seed(cfg, n: int) -> int:
    return int(rng(cfg, n, 1).integers(2**62))


def make_batch(cfg, task, actor, n: int):
    problems = task.sample("train", cfg.batch_prompts, rng(cfg, n, 0))
    return actor.generate(problems, cfg.group_size, cfg.temperature, seed=batch_seed(cfg, n))


def minibatch(rollout, j: int, m: int, group_size: int):
    """The j-th of m minibatches of a rollout: whole groups, in order."""
    if m == 1:
        return rollout
    n = len(rollout.problems) // m
    rows = slice(j * n * group_size, (j + 1) * n * group_size)
    tensors = {k: v[rows] for k, v in vars(rollout).items() if torch.is_tensor(v)}
    return replace(
        rollout,
        **tensors | {"problems": rollout.problems[j * n : (j + 1) * n], "group": tensors["group"] - j * n},
    )


# -- rollout sources: the two schedules of §5 -------------------------------------------------
class FixedSource:
    """Batch n is generated in-process by the snapshot of version max(0, n·m - S)."""

    def __init__(self, cfg, task, model, tokenizer, ring):
        self.cfg, self.task, self.ring = cfg, task, ring
        self.actor = make_actor(cfg.actor, model, tokenizer, task)
        self.actor.version = -1

    def next(self, n: int):
        v = fixed_behavior_version(n * self.cfg.updates_per_batch, self.cfg.S)
        start = time.perf_counter()
        if self.actor.version != v:
            self.actor.load_weights(state_from_flat(self.actor.model, self.ring[v]), v)
        sync = time.perf_counter() - start
        rollout = make_batch(self.cfg, self.task, self.actor, n)
        return rollout, {"actor_wait_s": 0.0, "learner_wait_s": rollout.gen_seconds, "weight_sync_s": sync}

    def publish(self, flat, version):
        return 0.0

    def close(self):
        pass


def actor_process(cfg, shared, queue, stop, start_batch: int) -> None:
    """Actor loop of the async schedule: wait for admission, load the newest weights, generate."""
    torch.set_num_threads(max(1, cfg.threads // 2))
    queue.cancel_join_thread()  # exit without flushing batches nobody will consume
    parent = os.getppid()

    def should_stop():  # asked to, or orphaned by a learner that was killed
        return stop.is_set() or os.getppid() != parent

    model, tokenizer = load_policy(cfg.init_checkpoint)
    task = get_task(cfg.task, digits=cfg.digits)
    actor = make_actor(cfg.actor, model, tokenizer, task)
    actor.version = -1
    flat = flat_params(model)
    n = start_batch
    while not should_stop():
        start = time.perf_counter()
        shared.wait_for(admission_version(n, cfg.updates_per_batch, cfg.S), should_stop)
        if should_stop():
            break
        admitted = time.perf_counter()
        version = shared.read(flat)
        if version != actor.version:
            actor.load_weights(state_from_flat(model, flat), version)
        loaded = time.perf_counter()
        rollout = make_batch(cfg, task, actor, n)
        queue.put((n, rollout, {"actor_wait_s": admitted - start, "weight_sync_s": loaded - admitted}))
        n += 1


class AsyncSource:
    """An actor process generating concurrently; weights pushed through shared memory."""

    def __init__(self, cfg, flat, version: int, start_batch: int):
        from stalegrpo.buffer import SharedWeights

        context = torch.multiprocessing.get_context("spawn")
        self.shared = SharedWeights(flat.numel(), context)
        self.shared.publish(flat, version)
        self.queue, self.stop = context.Queue(), context.Event()
        self.process = context.Process(
            target=actor_process, args=(cfg, self.shared, self.queue, self.stop, start_batch), daemon=True
        )
        self.process.start()

    def next(self, n: int):
        start = time.perf_counter()
        while True:
            try:
                index, rollout, info = self.queue.get(timeout=5.0)
                break
            except queue_module.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(
                        f"the actor process died (exit code {self.process.exitcode})"
                    ) from None
        assert index == n, f"actor produced batch {index}, learner expected {n}"
        return rollout, info | {"learner_wait_s": time.perf_counter() - start}

    def publish(self, flat, version):
        start = time.perf_counter()
        self.shared.publish(flat, version)
        return time.perf_counter() - start

    def close(self):
        self.stop.set()
        with self.shared.cond:
            self.shared.cond.notify_all()
        # batches still queued are dropped unread: the actor does not wait for them to be
        # consumed (cancel_join_thread), and unpickling them would need the exiting actor
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
        self.queue.cancel_join_thread()


# -- evaluation and the bias probe ------------------------------------------------------------
def evaluate(cfg, task, scratch, ring, version: int) -> dict:
    """Held-out sampled accuracy at T = 1: one sample per held-out prompt, fixed prompts."""
    scratch.load_weights(state_from_flat(scratch.model, ring[version]), version)
    problems = task.sample("heldout", cfg.eval_prompts, rng(cfg, 0, 2))
    rollout = scratch.generate(problems, 1, 1.0, seed=int(rng(cfg, version, 3).integers(2**62)))
    return {
        "step": version,
        "eval_accuracy": float((rollout.rewards == 1).float().mean()),
        "eval_reward": float(rollout.rewards.mean()),
    }


def probe(cfg, task, scratch, ring, learner) -> dict:
    """docs/method.md §3.2 at θ_k: batches A, B from version max(0, k - S) and from k, same prompts."""
    k = learner.version
    stale = max(0, k - cfg.S)
    problems = task.sample("train", cfg.batch_prompts, rng(cfg, k, 4))
    grads = {}
    for name, version in (("stale", stale), ("fresh", k)):
        scratch.load_weights(state_from_flat(scratch.model, ring[version]), version)
        for half in ("a", "b"):
            seed = int(rng(cfg, k, 5, version, ord(half)).integers(2**62))
            grads[name + half] = scratch.generate(problems, cfg.group_size, cfg.temperature, seed=seed)
    scratch.load_weights(state_from_flat(scratch.model, ring[k]), k)
    grads = {name: learner.probe_gradient(scratch.model, batch) for name, batch in grads.items()}
    return bias_probe(grads["stalea"], grads["staleb"], grads["fresha"], grads["freshb"]) | {
        "probe_lag": k - stale
    }


# -- the run ----------------------------------------------------------------------------------
def main(config_path, overrides, out) -> int:
    cfg = load_config(TrainConfig, config_path, overrides)
    check(cfg)
    return run(cfg, Path(out))["exit_code"]


def _replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: a kill at any moment leaves the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_tables(out: Path, state: dict, summary: dict | None = None) -> None:
    """The tidy tables so far (at every checkpoint), and the summary once the run has ended."""
    lags = np.concatenate(state["lags"]) if state["lags"] else np.zeros((0, 4), dtype=np.int64)
    tables = {
        "steps.parquet": pd.DataFrame(state["rows"]),
        "eval.parquet": pd.DataFrame(state["evals"]),
        "lags.parquet": pd.DataFrame(lags, columns=["step", "sample", "version", "lag"]),
    }
    for name, table in tables.items():
        _replace_atomically(out / name, lambda tmp, table=table: table.to_parquet(tmp, index=False))
    if summary is not None:
        text = json.dumps(summary, indent=2, default=float)
        _replace_atomically(out / "summary.json", lambda tmp: tmp.write_text(text))


def save_checkpoint(out: Path, learner, state: dict) -> None:
    """Run state first, then the engine, whose ``latest`` file is written last (atomic enough)."""
    directory, tag = out / "checkpoint", f"step{learner.version}"
    (directory / tag).mkdir(parents=True, exist_ok=True)
    state = state | {
        "torch_rng": torch.get_rng_state(),
        "prev_grad": learner.prev_grad,
        "version": learner.version,
    }
    torch.save(state, directory / tag / "run_state.pt")
    learner.save(directory, tag)
    for old in directory.glob("step*"):
        if old.name != tag:
            shutil.rmtree(old, ignore_errors=True)


def run(cfg: TrainConfig, out: Path) -> dict:
    start_time = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads if cfg.schedule == "fixed" else max(1, cfg.threads // 2))
    task = get_task(cfg.task, digits=cfg.digits)
    model, tokenizer = load_policy(cfg.init_checkpoint)
    # copies made before DeepSpeed touches the model: the reference, the fixed-schedule actor's
    # model and a scratch actor for evaluation and the bias probe
    ref_model, actor_model = copy.deepcopy(model), copy.deepcopy(model)
    scratch = make_actor("hf", copy.deepcopy(model), tokenizer, task)
    learner = Learner(model, ref_model, cfg)
    m, T = cfg.updates_per_batch, cfg.steps
    ring = SnapshotRing(cfg.S + m + 1)
    monitor = CollapseMonitor(cfg.collapse)
    state = {
        "config": to_dict(cfg),
        "rows": [],
        "lags": [],
        "evals": [],
        "ring": None,
        "monitor": monitor,
        "elapsed": 0.0,
        "cpu_time": 0.0,
        "stop_at": T,
        "admission_violations": 0,
    }

    latest = out / "checkpoint" / "latest"
    if latest.is_file():  # resume
        tag = latest.read_text().strip()
        saved = torch.load(out / "checkpoint" / tag / "run_state.pt", weights_only=False)
        if saved["config"] != state["config"]:
            raise ConfigError(
                f"{str(out)!r} holds a run with another config; use a new --out to start afresh"
            )
        learner.load(out / "checkpoint", tag)
        learner.version, learner.prev_grad = saved["version"], saved["prev_grad"]
        torch.set_rng_state(saved["torch_rng"])
        state = {k: saved[k] for k in state}
        ring.load_state_dict(state["ring"])
        monitor = state["monitor"]
        print(f"resuming {out} at step {learner.version}")
    else:
        ring.push(0, flat_params(learner.model))
        state["evals"].append(evaluate(cfg, task, scratch, ring, 0) | {"wall_time": 0.0})
    elapsed0 = state["elapsed"] - time.perf_counter()
    cpu0 = (
        state.get("cpu_time", 0.0) - time.process_time()
    )  # this process's CPU seconds: progress per unit of load

    terminated = []
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    if cfg.schedule == "fixed":
        source = FixedSource(cfg, task, actor_model, tokenizer, ring)
    else:
        source = AsyncSource(cfg, ring[learner.version], learner.version, learner.version // m)
    bar = tqdm(
        total=T,
        initial=learner.version,
        disable=not cfg.progress,
        desc=f"{cfg.schedule} S={cfg.S} lr={cfg.lr:g}",
    )
    last_eval = state["evals"][-1]["eval_accuracy"] if state["evals"] else float("nan")
    stopped = "horizon"
    try:
        while learner.version < state["stop_at"]:
            n = learner.version // m
            step_start = time.perf_counter()
            rollout, info = source.next(n)
            tokens_gen = int(rollout.completion_mask.sum())
            for j in range(m):
                k = learner.version
                row = {"step": k}
                if cfg.probe_every and k % cfg.probe_every == 0:
                    probe_start = time.perf_counter()
                    row |= probe(cfg, task, scratch, ring, learner) | {
                        "probe_s": time.perf_counter() - probe_start
                    }
                batch = minibatch(rollout, j, m, cfg.group_size)
                train_start = time.perf_counter()
                metrics = learner.step(batch)
                train_s = time.perf_counter() - train_start

                book_start = time.perf_counter()  # staleness bookkeeping: lags, snapshots, admission check
                lag = (k - batch.version).numpy()
                state["admission_violations"] += int((lag > cfg.S).sum()) if cfg.schedule == "async" else 0
                state["lags"].append(
                    np.stack([np.full_like(lag, k), np.arange(len(lag)), batch.version.numpy(), lag], 1)
                )
                current = flat_params(learner.model)
                drift = float((ring[k] - ring[int(batch.version.min())]).norm())
                ring.push(learner.version, current)
                book_s = time.perf_counter() - book_start
                sync_s = source.publish(current, learner.version) + (info["weight_sync_s"] if j == 0 else 0.0)

                rewards = batch.rewards
                row |= (
                    {
                        "wall_time": elapsed0 + time.perf_counter(),
                        "cpu_time": cpu0 + time.process_time(),
                        "lag_min": int(lag.min()),
                        "lag_mean": float(lag.mean()),
                        "lag_max": int(lag.max()),
                        "reward_mean": float(rewards.mean()),
                        "reward_std": float(rewards.std()),
                        "accuracy": float((rewards == 1).float().mean()),
                    }
                    | metrics
                    | {"drift": drift}
                )
                row |= {
                    "gen_s": rollout.gen_seconds / m,
                    "train_s": train_s,
                    "step_time_s": time.perf_counter() - step_start,
                    "gen_tokens_per_s": tokens_gen / max(rollout.gen_seconds, 1e-9),
                    "train_tokens_per_s": int(batch.prompt_mask.sum() + batch.completion_mask.sum())
                    / train_s,
                    "actor_wait_s": info["actor_wait_s"] if j == 0 else 0.0,
                    "learner_wait_s": info["learner_wait_s"] if j == 0 else 0.0,
                    "weight_sync_s": sync_s,
                    "bookkeeping_s": book_s,
                }
                step_start = time.perf_counter()
                kl_ref = (
                    row["kl_ref"] if math.isfinite(row["kl_ref"]) or not row["finite"] else None
                )  # None: not measured
                fired = monitor.update(
                    k,
                    row["reward_mean"],
                    kl_behavior=row["kl_behavior"],
                    kl_ref=kl_ref,
                    finite=row["finite"],
                    entropy=row["entropy"],
                )
                row["collapsed"] = bool(monitor.collapsed[0])
                state["rows"].append(row)
                if fired[0]:
                    state["stop_at"] = min(T, k + 1 + cfg.grace_steps)
                    tqdm.write(
                        f"collapse ({monitor.detector_names()[0]}) at step {k}; {cfg.grace_steps} more steps"
                    )
                if not row["finite"]:
                    state["stop_at"] = learner.version  # no update was taken; nothing more can be learned
                if cfg.eval_every and learner.version % cfg.eval_every == 0 or learner.version == T:
                    state["evals"].append(
                        evaluate(cfg, task, scratch, ring, learner.version) | {"wall_time": row["wall_time"]}
                    )
                    last_eval = state["evals"][-1]["eval_accuracy"]
                bar.update(1)
                bar.set_postfix(
                    reward=f"{row['reward_mean']:.3f}",
                    lag=f"{row['lag_mean']:.1f}",
                    ess=f"{row['ess']:.3f}",
                    acc=f"{last_eval:.3f}",
                )
                if learner.version >= state["stop_at"]:
                    break
            state["ring"], state["elapsed"] = ring.state_dict(), elapsed0 + time.perf_counter()
            state["cpu_time"] = cpu0 + time.process_time()
            if terminated or (cfg.max_minutes and state["elapsed"] > 60 * cfg.max_minutes):
                stopped = "sigterm" if terminated else "max_minutes"
                break
            if learner.version % cfg.checkpoint_every < m:
                write_tables(out, state)
                save_checkpoint(out, learner, state)
    finally:
        source.close()
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)

    state["ring"], state["elapsed"] = ring.state_dict(), elapsed0 + time.perf_counter()
    if stopped == "horizon" and state["stop_at"] < T:
        stopped = "collapse" if monitor.collapsed[0] else "nonfinite"
    if stopped != "sigterm" and state["evals"][-1]["step"] != learner.version:
        state["evals"].append(
            evaluate(cfg, task, scratch, ring, learner.version) | {"wall_time": state["elapsed"]}
        )
    save_checkpoint(out, learner, state)
    rows = pd.DataFrame(state["rows"])
    summary = {
        "config": state["config"],
        "steps_done": learner.version,
        "horizon": T,
        "finished": stopped != "sigterm",
        "stopped": stopped,
        "collapse_step": int(monitor.collapse_step[0]) if monitor.collapsed[0] else None,
        "collapse_detector": monitor.detector_names()[0] if monitor.collapsed[0] else None,
        "censored": not bool(monitor.collapsed[0]),
        "initial_eval_accuracy": state["evals"][0]["eval_accuracy"] if state["evals"] else None,
        "final_eval_accuracy": state["evals"][-1]["eval_accuracy"] if state["evals"] else None,
        "admission_violations": state["admission_violations"],
        "wall_time": state["elapsed"],
        "run_seconds": time.perf_counter() - start_time,
        "mean": {
            c: float(rows[c].mean())
            for c in (
                "gen_s",
                "train_s",
                "step_time_s",
                "bookkeeping_s",
                "weight_sync_s",
                "learner_wait_s",
                "actor_wait_s",
                "lag_mean",
            )
            if c in rows
        },
    }
    write_tables(out, state, summary)
    summary["exit_code"] = 143 if stopped == "sigterm" else 0
    return summary
