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
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from stalegrpo.actors import NAMES as ACTORS
from stalegrpo.actors import actor_options, make_actor
from stalegrpo.checkpoints import check_checkpoint
from stalegrpo.collapse import CollapseConfig, CollapseMonitor
from stalegrpo.config import ConfigError, load_config, to_dict
from stalegrpo.engines import ActorDied, EngineSource
from stalegrpo.evaluation import evaluate, probe, probe_step, reward_metrics
from stalegrpo.learner import Learner, LearnerRankLost, is_collective_failure
from stalegrpo.logger import make_logger
from stalegrpo.memory import PeakMemory
from stalegrpo.placement import check_placement
from stalegrpo.policy import flat_params, load_policy, prompt_format, weights_checksum
from stalegrpo.ranks import TEST_KILL_RANK_ENV, Ranks, signal_after_checkpoint
from stalegrpo.records import check_row, write_tables
from stalegrpo.runstate import RunState, resume, save_checkpoint
from stalegrpo.schedules import FixedSource, SnapshotRing, minibatch
from stalegrpo.tasks import HACKS, TASKS, make_task


@dataclass
class TrainConfig:
    """Configuration of ``stalegrpo train``."""

    RENAMED: ClassVar[dict[str, str]] = {"lr": "eta"}

    init_checkpoint: str = "results/lm/pretrain/tiny-addition"
    """the pretrained policy to start from (a save_pretrained folder; also the reference π_ref)"""
    task: Literal[TASKS] = "addition"
    """task (stalegrpo.tasks)"""
    digits: int = field(default=2, metadata={"minimum": 1})
    """digits of each operand (addition, multiplication)"""
    task_options: dict = field(default_factory=dict)
    """the task's other options, e.g. {numbers: 4, max_new_tokens: 64} for countdown or
    {path: data/gsm8k.jsonl} for jsonl (stalegrpo.tasks)"""
    reward_hack: Literal[HACKS] = "none"
    """the reward the learner optimises: the task's verifier ("none"), or a proxy that adds
    ``hack_bonus`` for one wrong answer per prompt; the gold verifier is logged and watched by the
    collapse detector either way (stalegrpo.tasks.ProxyRewardTask, docs/method.md §10)"""
    hack_bonus: float = field(default=1.5, metadata={"exclusiveMinimum": 0})
    """proxy reward of the hack answer (> 1 makes it the proxy's optimum)"""
    prompt_template: Literal["auto", "chat", "plain"] = "auto"
    """prompt format: the tokenizer's chat template, the task's text as is, or chat where the tokenizer has a template"""
    system_prompt: str | None = None
    """system message of chat prompts (null: the template's default)"""
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
    micro_batch_size: int | None = field(default=None, metadata={"minimum": 1})
    """sequences per forward/backward of a learner rank; a step accumulates its minibatch's gradient
    over micro-batches (null: the whole minibatch in one). Results do not depend on it; memory does"""
    logit_chunk_mb: float = field(default=128, metadata={"exclusiveMinimum": 0})
    """MiB of fp32 logits the output head makes at a time when log-probs are computed (learner,
    reference, bias probe): no [tokens × vocabulary] tensor is ever made whole"""
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
    eta: float = field(default=1e-4, metadata={"exclusiveMinimum": 0})
    """η_0: the base learning rate (Adam); the rate applied at step k is the column eta_k"""
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
    actor: Literal[ACTORS] = "hf"
    """actor backend"""
    actor_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """the behavior actors' sampling precision: auto is bf16 on CUDA and fp32 on the CPU. The learner's
    ratio uses the log μ the actor recorded either way; mismatch_kl measures the sampler/learner gap
    and objective: tis corrects for it (evaluation and the bias probe always sample in fp32)"""
    actor_compile: bool = False
    """hf actor: decode with a static KV cache and torch.compile (CUDA graphs on a GPU); the first
    batch pays the compilation"""
    learners: int = field(default=1, metadata={"minimum": 1})
    """L: data-parallel learner ranks (started with torchrun by this command); each takes whole groups
    of every batch and ZeRO reduces the gradients"""
    actors: int = field(default=1, metadata={"minimum": 1})
    """E: actor engine processes of the async schedule; batch n is generated by engine n mod E"""
    actor_devices: int = field(default=1, metadata={"minimum": 1})
    """d: devices per actor engine, its vLLM tensor-parallel size (CUDA devices; on CPU worker processes)"""
    colocate: bool | Literal["auto"] = "auto"
    """async on CUDA: run the actor engines on the learner ranks' GPUs (engine e beside rank e mod L).
    auto: engines with actor_devices = 1, when the machine has fewer GPUs than learners + actors x
    actor_devices. On CPU every process shares the cores whatever this says"""
    weight_transport: Literal["auto", "nccl", "gloo", "ipc"] = "auto"
    """how the async engines get the weights: ipc (shared tensors on one host: CUDA IPC on a GPU,
    shared memory on the CPU), nccl (between GPUs), gloo (CPU). auto: ipc when the engines share
    the learner's GPU, nccl across GPUs, gloo on the CPU"""
    gpu_memory_utilization: float | None = field(default=None, metadata={"exclusiveMinimum": 0, "maximum": 1})
    """vLLM engines on CUDA: the fraction of a GPU's memory each engine takes (weights, activations,
    KV cache), measured by vLLM when it starts, before the learner allocates. None: 0.85 on GPUs of
    its own; colocated, 0.3 shared by the engines on the GPU, the learner using the rest"""
    collective_timeout_s: float = field(default=300.0, metadata={"exclusiveMinimum": 0})
    """seconds a collective between learner ranks may wait before the run stops with an error (a
    rank has died); a rank's very first collective may also wait this long for the others to start"""
    threads: int = field(default=2, metadata={"minimum": 1})
    """CPU threads of the run, shared equally by the learner ranks and (async) the actor engines"""
    seed: int = field(default=0, metadata={"minimum": 0})
    """seed of prompts, sampling and evaluation"""
    eval_every: int = field(default=20, metadata={"minimum": 0})
    """held-out evaluation period in steps (0: only at the start and the end)"""
    eval_prompts: int = field(default=256, metadata={"minimum": 1})
    """held-out prompts per evaluation (one sample each at temperature 1)"""
    probe_every: int = field(default=0, metadata={"minimum": 0})
    """bias-probe period in steps (0 disables)"""
    probe_pairs: int = field(default=1, metadata={"minimum": 1})
    """independent (A, B) batch pairs per probe (docs/method.md §3.2); > 1 gives standard errors"""
    probe_time: float | None = field(default=None, metadata={"exclusiveMinimum": 0})
    """also probe at the step k = round(probe_time / eta): a fixed continuous time t = k·η, so that
    runs at different η are read at the same drift time"""
    probe_prompts: int | None = field(default=None, metadata={"minimum": 1})
    """prompts per probe batch (each with G samples); None: batch_prompts. The estimates' noise
    falls about as 1/probe_prompts where noise dominates, against 1/√probe_pairs"""
    probe_estimator: Literal["paired", "coupled"] = "paired"
    """paired: stale and fresh gradients from independent rollouts; coupled: both from the same
    stale rollouts, the fresh one importance-weighted (docs/method.md §3.2; needs seq_mean)"""
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
    logger: Literal["tensorboard", "none"] = "tensorboard"
    """also write the per-step metrics as TensorBoard event files under OUT/tensorboard"""


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
INTERRUPTED = ("sigterm", "actor_died", "learner_rank_lost")
"""how a run can stop before its end: the same command resumes it from its last checkpoint"""
def check(cfg: TrainConfig) -> None:
    """Constraints between keys, beyond the schema."""
    try:
        check_checkpoint(cfg.init_checkpoint)
    except (OSError, ValueError) as err:
        raise ConfigError(f"init_checkpoint: {err} (make one with `stalegrpo pretrain`)") from err
    try:
        make_task(cfg)
    except (OSError, ValueError) as err:
        raise ConfigError(f"task / task_options: {err}") from err
    m, L = cfg.updates_per_batch, cfg.learners
    if cfg.batch_prompts % (m * L):
        raise ConfigError(
            f"batch_prompts = {cfg.batch_prompts} must be a multiple of updates_per_batch x learners = {m} x {L}"
            " (every rank takes whole groups of every minibatch)"
        )
    if cfg.probe_estimator == "coupled" and cfg.aggregation != "seq_mean":
        raise ConfigError(
            f"probe_estimator = 'coupled' weights whole sequences and needs aggregation = 'seq_mean', "
            f"got {cfg.aggregation!r} (token_mean's normaliser depends on the batch's lengths)"
        )
    if cfg.schedule == "async" and cfg.S < m - 1:
        raise ConfigError(
            f"async needs S >= updates_per_batch - 1 = {m - 1} (the last minibatch's lag), got S = {cfg.S}"
        )
    check_placement(cfg, torch.cuda.device_count() if torch.cuda.is_available() else 0)


# -- evaluation and the bias probe ------------------------------------------------------------
# -- the run ----------------------------------------------------------------------------------
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
        engines = cfg.actors if cfg.schedule == "async" else 0
        torch.set_num_threads(max(1, cfg.threads // (cfg.learners + engines)))
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
