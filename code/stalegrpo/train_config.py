"""The keys of ``stalegrpo train`` (:class:`TrainConfig`, one documented field per key, whose
schema ``stalegrpo schema train`` prints) and the constraints between them (:func:`check`).
The choices of ``task``, ``reward_hack`` and ``actor`` come from their registries
(:mod:`stalegrpo.tasks`, :mod:`stalegrpo.actors`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from stalegrpo.actors.registry import NAMES as ACTORS
from stalegrpo.checkpoints import check_checkpoint
from stalegrpo.collapse import CollapseConfig
from stalegrpo.config import ConfigError
from stalegrpo.placement import check_placement
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
