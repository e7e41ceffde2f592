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

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from stalegrpo.actors import make_actor
from stalegrpo.checkpoints import check_checkpoint
from stalegrpo.collapse import CollapseConfig, CollapseMonitor
from stalegrpo.config import ConfigError, load_config, to_dict
from stalegrpo.engines import ActorDied, EngineSource
from stalegrpo.learner import Learner, LearnerRankLost, bias_estimate, is_collective_failure
from stalegrpo.logger import make_logger
from stalegrpo.memory import PeakMemory
from stalegrpo.placement import check_placement
from stalegrpo.records import check_row
from stalegrpo.policy import flat_params, load_policy, prompt_format, state_from_flat, weights_checksum
from stalegrpo.schedules import FixedSource, SnapshotRing, minibatch, rng
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
    actor: Literal["hf", "vllm"] = "hf"
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
TEST_SIGNAL_ENV = "STALEGRPO_TEST_SIGNAL_AFTER_CHECKPOINT"
"""test hook, ``STEP:SIGNAL`` (e.g. ``4:SIGKILL``): the run signals itself right after writing
checkpoint STEP, so kill and resume tests stop it at a known step without polling"""
TEST_KILL_RANK_ENV = "STALEGRPO_TEST_KILL_RANK_AT_STEP"
"""test hook, ``RANK:STEP``: that learner rank kills itself (SIGKILL) before that step"""


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
def evaluate(cfg, task, scratch, ring, version: int) -> dict:
    """Held-out sampled accuracy at temperature 1: one sample per held-out prompt, fixed prompts."""
    scratch.load_weights(state_from_flat(scratch.model, ring[version]), version)
    problems = task.sample("heldout", cfg.eval_prompts, rng(cfg, 0, 2))
    rollout = scratch.generate(problems, 1, 1.0, seed=int(rng(cfg, version, 3).integers(2**62)))
    return {"step": version} | reward_metrics(rollout, "eval_")


def reward_metrics(rollout, prefix: str = "") -> dict:
    """Gold accuracy, proxy reward and the hack rate of a scored rollout."""
    gold = rollout.gold_rewards if rollout.gold_rewards is not None else rollout.rewards
    return {
        f"{prefix}accuracy": float((gold == 1).float().mean()),
        f"{prefix}reward": float(rollout.rewards.mean()),
        f"{prefix}gold_reward": float(gold.mean()),
        f"{prefix}hack_rate": float((rollout.rewards > gold).float().mean()),
    }


def probe(cfg, task, scratch, ring, learner) -> dict:
    """docs/method.md §3.2 at θ_k: ``probe_pairs`` independent pairs of batches A, B from version
    max(0, k - S) and (paired estimator) from k, all on the same prompts; the estimates are means
    over the pairs, with their standard errors across pairs."""
    k = learner.version
    stale = max(0, k - cfg.S)
    problems = task.sample("train", cfg.probe_prompts or cfg.batch_prompts, rng(cfg, k, 4))
    rollouts = {}
    versions = (("stale", stale),) if cfg.probe_estimator == "coupled" else (("stale", stale), ("fresh", k))
    for name, version in versions:
        scratch.load_weights(state_from_flat(scratch.model, ring[version]), version)
        for pair in range(cfg.probe_pairs):
            for half in ("a", "b"):
                keys = (k, 5, version, ord(half)) + ((pair,) if pair else ())  # pair 0: as with one pair
                seed = int(rng(cfg, *keys).integers(2**62))
                rollouts[name, half, pair] = scratch.generate(problems, cfg.group_size, cfg.temperature, seed=seed)
    scratch.load_weights(state_from_flat(scratch.model, ring[k]), k)
    pairs = []
    for pair in range(cfg.probe_pairs):  # four flat gradients in memory at a time, whatever P
        if cfg.probe_estimator == "coupled":  # (stale, coupled fresh) on A, then on B
            (stale_a, fresh_a), (stale_b, fresh_b) = (
                learner.probe_gradient(scratch.model, rollouts["stale", half, pair], coupled=True) for half in "ab"
            )
            grads = [stale_a, stale_b, fresh_a, fresh_b]
        else:
            grads = [
                learner.probe_gradient(scratch.model, rollouts[name, half, pair])
                for name in ("stale", "fresh")
                for half in ("a", "b")
            ]
        pairs.append(bias_estimate(*grads))
    return probe_summary(pairs) | {"probe_lag": k - stale}


def probe_summary(pairs: list[dict]) -> dict:
    """One probe's estimates from its pairs' (:func:`stalegrpo.learner.bias_estimate`): the means of
    bias² and ‖E g‖² (each unbiased), the bias and relative bias from those means, and the standard
    errors of the two means across pairs (NaN with one pair)."""
    bias_sq = np.array([p["bias_sq"] for p in pairs])
    grad_sq = np.array([p["grad_sq"] for p in pairs])
    n = len(pairs)
    bias = math.sqrt(max(bias_sq.mean(), 0.0))
    return {
        "bias_sq": float(bias_sq.mean()),
        "bias": bias,
        "grad_sq": float(grad_sq.mean()),
        "relative_bias": bias / math.sqrt(grad_sq.mean()) if grad_sq.mean() > 0 else float("nan"),
        "bias_sq_se": float(bias_sq.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "grad_sq_se": float(grad_sq.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "probe_pairs": n,
    }


def probe_step(cfg) -> int | None:
    """The step of the fixed-time probe (``probe_time``), or None."""
    return None if cfg.probe_time is None else round(cfg.probe_time / cfg.eta)


# -- records and checkpoints -----------------------------------------------------------------
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


def _replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: a kill at any moment leaves the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_tables(out: Path, state: RunState, summary: dict | None = None) -> None:
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


def _signal_after_checkpoint(step: int) -> None:
    """The test hook of :data:`TEST_SIGNAL_ENV`."""
    spec = os.environ.get(TEST_SIGNAL_ENV)
    if spec and int(spec.split(":")[0]) == step:
        os.kill(os.getpid(), getattr(signal, spec.split(":")[1]))


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


class Ranks:
    """The learner's data-parallel ranks. Rank 0 alone talks to the actors, records, evaluates and
    probes; what it decides (the next batch, or stop) reaches the other ranks by broadcast."""

    def __init__(self):
        self.rank, self.size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        self.lead = self.rank == 0
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
        """this rank's device, DeepSpeed's choice (LOCAL_RANK), known before the learner exists"""

    def share(self, obj, device):
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
        return box[0]


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


def run(cfg: TrainConfig, out: Path) -> dict:
    """Train until the horizon, a collapse's grace window, SIGTERM or ``max_minutes``; the summary.
    Every learner rank runs this; rank 0 (``lead``) draws the batches and records the run."""
    start_time = time.perf_counter()
    r = Run(cfg, out)
    state, learner, m, ranks = r.state, r.learner, cfg.updates_per_batch, r.ranks
    lead, device = ranks.lead, learner.device
    terminated = []
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    if lead and cfg.schedule == "fixed":
        r.source = FixedSource(cfg, r.task, r.actor_model, r.tokenizer, r.ring, device)
    elif lead:
        r.source.start(r.ring[learner.version], learner.version, learner.version // m)
    logger = make_logger(cfg.logger if lead else "none", out / "tensorboard", learner.version)
    bar = tqdm(total=cfg.steps, initial=learner.version, disable=not (cfg.progress and lead),
               desc=f"{cfg.schedule} S={cfg.S} eta={cfg.eta:g}")
    last_eval = state.evals[-1]["eval_accuracy"] if state.evals else float("nan")
    stopped, error = "horizon", None
    try:
        while True:
            step_start = time.perf_counter()
            message = None
            if lead and learner.version >= state.stop_at:
                message = ("stop", stopped)
            elif lead:
                try:
                    message = ("batch", *r.source.next(learner.version // m))
                except ActorDied as err:  # a fault, not a result: checkpoint, say so, exit non-zero
                    stopped, error = "actor_died", str(err)
                    message = ("stop", stopped)
            message = ranks.share(message, device)
            if os.environ.get(TEST_KILL_RANK_ENV) == f"{ranks.rank}:{learner.version}":
                os.kill(os.getpid(), signal.SIGKILL)
            if message[0] == "stop":
                stopped = message[1]
                break
            _, rollout, info = message
            for j in range(m):
                row = r.train_step(rollout, info, j, step_start)
                step_start = time.perf_counter()
                if lead:
                    r.watch(row)
                    state.rows.append(check_row(row))
                    if cfg.eval_every and learner.version % cfg.eval_every == 0 or learner.version == cfg.steps:
                        state.evals.append(r.evaluate(learner.version) | {"wall_time": row["wall_time"]})
                        last_eval = state.evals[-1]["eval_accuracy"]
                        logger.log(state.evals[-1] | {"step": learner.version, "wall_time": math.nan})
                    logger.log(row)
                    bar.update(1)
                    bar.set_postfix(reward=f"{row['reward_mean']:.3f}", lag=f"{row['lag_mean']:.1f}",
                                    ess=f"{row['ess']:.3f}", acc=f"{last_eval:.3f}")
                if ranks.share(lead and learner.version >= state.stop_at, device):
                    break
            reason = None
            if lead:
                state.ring, state.elapsed = r.ring.state_dict(), r.wall_time()
                state.cpu_time = r.cpu0 + time.process_time()
                if terminated or (cfg.max_minutes and state.elapsed > 60 * cfg.max_minutes):
                    reason = "sigterm" if terminated else "max_minutes"
            reason = ranks.share(reason, device)
            if reason:
                stopped = reason
                break
            if learner.version % cfg.checkpoint_every < m:
                if lead:
                    write_tables(out, state)
                r.checkpoint()
                if lead:
                    _signal_after_checkpoint(learner.version)
    except RuntimeError as err:
        if ranks.size == 1 or not is_collective_failure(err):
            raise
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
            f"{learner.version} are in {out}; {rerun}"
        )
        if lead:
            summary = r.summary("learner_rank_lost") | {"run_seconds": time.perf_counter() - start_time}
            write_tables(out, state, summary | {"error": message})
        raise LearnerRankLost(message) from err
    finally:
        if r.source is not None:
            r.source.close()
        logger.close()
        bar.close()
        signal.signal(signal.SIGTERM, previous_handler)

    exit_code = {"sigterm": 143, "actor_died": 1}.get(stopped, 0)
    interrupted = stopped in INTERRUPTED
    if not lead:
        r.checkpoint()
        return {"stopped": stopped, "exit_code": exit_code}
    state.ring, state.elapsed = r.ring.state_dict(), r.wall_time()
    if stopped == "horizon" and state.stop_at < cfg.steps:
        stopped = "collapse" if state.monitor.collapsed[0] else "nonfinite"
    if not interrupted and state.evals[-1]["step"] != learner.version:
        state.evals.append(r.evaluate(learner.version) | {"wall_time": state.elapsed})
    r.checkpoint()
    summary = r.summary(stopped) | {"run_seconds": time.perf_counter() - start_time, "error": error}
    write_tables(out, state, summary)
    if error:
        print(f"stalegrpo train: {error}; checkpoint at step {learner.version} in {out}, rerun to resume",
              file=sys.stderr)
    summary["exit_code"] = exit_code
    return summary
