"""Throughput of asynchronous GRPO against its synchronous baseline (docs/method.md §7).

    stalegrpo bench lm config/train.yaml init_checkpoint=results/lm/pretrain/tiny-addition --out results/bench/lm

In one process, one after the other on the same machine:

1. the synchronous baseline: the ``async`` schedule with S = 0 (actor and learner alternate);
   its steady-state steps give t_gen (one batch generated) and t_train (one learner step,
   weight push and bookkeeping included), hence the ideal speedup (t_gen + t_train) / max(t_gen, t_train);
2. ``async`` runs with S in ``bench.S``: their measured speedup over (1) and its efficiency
   measured / ideal;
3. the staleness bookkeeping (lags, snapshots, admission check) as a % of the step time;
4. sampling tokens/s of the actor's KV-cache loop against ``transformers``' ``generate``, and the
   ``hf`` actor's tokens/s by precision and decode (``bench.actor_modes``: fp32 against bf16,
   the eager loop against the static-cache compiled one, on the same batch);
5. per actor backend in ``bench.actors`` (``hf``, ``vllm``): generation tokens/s on the same batch
   and the in-process weight-load time as a % of the synchronous step. ``actor=vllm`` runs steps
   1-3 with vLLM actors;
6. the weight sync of the engines (broadcast over torch.distributed, gloo on CPU, NCCL on CUDA,
   plus the engine's copy) per step and as a % of the synchronous step, for the checkpoint (from
   the baseline of step 1, which is that synchronous run) and the models of ``bench.sync_models``
   (a synchronous run each). The async runs of step 2 run with every A in ``bench.engines``
   (actor engines).

``bench.model`` benches a random model of a given shape instead of ``init_checkpoint``, written
to a temporary folder with the stand-in's BPE tokenizer and chat template
(:mod:`stalegrpo.checkpoints`); ``bench.model=qwen2.5-0.5b`` is Qwen2.5-0.5B's shape and vocabulary.

On CUDA an async run needs a device per learner rank and per actor engine, or engines colocated
on the learners' GPUs (:func:`stalegrpo.placement.check_placement`). Points that do not fit the
machine are left out and listed with the reason; where not even the baseline fits (one GPU with
``colocate: false``), the baseline is the ``fixed`` schedule at S = 0, a train run whose actor
lives in the learner's process, with no speedup to measure.

Overrides ``bench.KEY=VALUE`` set :class:`BenchConfig`; all others set the train config.
The ratios are printed and written to OUT/bench.json, whose ``summary`` holds the headline
numbers: learner and actor tokens/s (the latter also by mode), weight-sync seconds and the async
speedups. The actors of the bench get the train config's ``actor_dtype``/``actor_compile``
(:func:`stalegrpo.actors.actor_options`); the by-mode benchmark sets its own.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from stalegrpo.actors import NAMES as ACTORS
from stalegrpo.checkpoints import count_parameters_of, make_model
from stalegrpo.config import ConfigError, load_config, to_dict
from stalegrpo.memory import PeakMemory
from stalegrpo.placement import weight_transport

ACTOR_MODES = ("float32/eager", "bfloat16/eager", "float32/compiled", "bfloat16/compiled")
"""the ``hf`` actor's precisions and decodes that ``bench.actor_modes`` can measure"""


@dataclass
class BenchConfig:
    """Options of ``stalegrpo bench lm`` (given as ``bench.KEY=VALUE``)."""

    RENAMED: ClassVar[dict[str, str]] = {"lags": "S"}

    steps: int = field(default=40, metadata={"minimum": 2})
    """learner steps per measured run"""
    skip: int = field(default=5, metadata={"minimum": 0})
    """first steps of each run left out of the rates (start-up, first weight push)"""
    S: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"minimum": 1, "minItems": 1})
    """staleness bounds S of the async runs"""
    sampling_repeats: int = field(default=5, metadata={"minimum": 1})
    """timed repeats of the sampling benchmark"""
    actor_modes: list[Literal[ACTOR_MODES]] | None = None
    """hf actor modes DTYPE/DECODE whose sampling tokens/s are measured on the same batch. None: all
    four on CUDA; on the CPU float32/eager alone (bf16 gains little there, or is several times slower
    without bf16 instructions, and a compiled decode first compiles for ten seconds or more)"""
    actors: list[Literal[ACTORS]] = field(default_factory=lambda: ["hf"])
    """actor backends whose generation tokens/s and weight-sync time are measured on the same batch"""
    engines: list[int] = field(default_factory=lambda: [1], metadata={"minimum": 1, "minItems": 1})
    """numbers of actor engines A of the async runs (each A runs at every S)"""
    transports: list[Literal["auto", "nccl", "gloo", "ipc"]] = field(default_factory=lambda: ["auto"])
    """weight transports whose weight sync is measured for the checkpoint and each of sync_models
    (e.g. [gloo, ipc] on the CPU; auto: the run's own, see stalegrpo.placement)"""
    sync_models: list[str] = field(default_factory=list)
    """models, as HIDDENxLAYERS with random weights, whose weight sync is also measured (e.g. 384x4,
    about 7M parameters, and 768x8, about 57M); the bench's own checkpoint is always measured"""
    sync_steps: int = field(default=6, metadata={"minimum": 2})
    """learner steps of the weight-sync run of each of sync_models (synchronous, the first one left out)"""
    model: str | None = None
    """a random model to bench instead of init_checkpoint: a name in checkpoints.MODELS (qwen2.5-0.5b) or
    ARCH:HIDDENxLAYERS[,KEY=VALUE...] with ARCH qwen2 or llama and KEY heads (default hidden/64),
    kv_heads (1), intermediate (8/3 hidden) or vocab (the stand-in tokenizer's 512; more pads the
    embedding as Qwen's checkpoints do)"""


# -- what fits the machine ----------------------------------------------------------------------
def cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def placement_error(cfg) -> str | None:
    """Why the run ``cfg`` does not fit this machine's CUDA devices, or None if it does."""
    from stalegrpo.placement import check_placement

    try:
        check_placement(cfg, cuda_devices())
    except ConfigError as err:
        return str(err)
    return None


def transport_words(transport: str) -> str:
    """How the weights reach an engine, in words (``weight_transport`` resolved)."""
    if transport == "ipc":
        return "ipc: shared buffer + copy (CUDA IPC on a GPU, shared memory on the CPU)"
    return f"{transport} broadcast + copy"


def precision(cfg) -> str:
    """The learner's precision: its DeepSpeed JSON with ``"auto"`` resolved for this machine."""
    from stalegrpo.learner import resolve_path, resolve_precision

    path = resolve_path(Path(cfg.deepspeed_dir) / f"zero{cfg.deepspeed_zero}.json")
    ds_config = resolve_precision(json.loads(path.read_text()), torch.cuda.is_available())
    for name in ("bf16", "fp16"):
        if ds_config.get(name, {}).get("enabled") is True:
            return name
    return "fp32"


# -- the measurements ---------------------------------------------------------------------------
def steady(rows: pd.DataFrame, skip: int) -> pd.DataFrame:
    return rows.iloc[min(skip, len(rows) - 2) :]


def rates(rows: pd.DataFrame) -> dict:
    """Steady-state step rate and mean component times of a run's step rows."""
    # steps per second from the wall clock over the steady window (the step before it included)
    span = rows["wall_time"].iloc[-1] - rows["wall_time"].iloc[0]
    step_s = span / (len(rows) - 1) if len(rows) > 1 else float(rows["step_time_s"].mean())
    t_train = float((rows["train_s"] + rows["bookkeeping_s"] + rows["weight_sync_s"]).mean())
    return {
        "steps_per_s": 1.0 / step_s,
        "step_s": step_s,
        "t_gen": float(rows["gen_s"].mean()),
        "t_train": t_train,
        "learner_wait_s": float(rows["learner_wait_s"].mean()),
        "actor_wait_s": float(rows["actor_wait_s"].mean()),
        "lag_mean": float(rows["lag_mean"].mean()),
        "bookkeeping_s": float(rows["bookkeeping_s"].mean()),
        "bookkeeping_pct": 100 * float(rows["bookkeeping_s"].mean()) / step_s,
        "weight_sync_s": float(rows["weight_sync_s"].mean()),
        # the learner's prompt + completion tokens per second of its step; the actor's sampled tokens
        "train_tokens_per_s": float(rows["train_tokens_per_s"].mean()),
        "gen_tokens_per_s": float(rows["gen_tokens_per_s"].mean()),
        # the largest learner step (PeakMemory: CUDA max_memory_allocated, CPU peak RSS)
        "train_peak_gib": float(rows["train_peak_gib"].max()),
    }


def measure(cfg, out: Path, skip: int) -> dict:
    """One train run from scratch; its steady-state rates and mean component times."""
    from stalegrpo.train import run

    shutil.rmtree(out, ignore_errors=True)
    summary = run(cfg, out)
    # the run's final checkpoint (engine, optimizer, snapshot ring) is no measurement: gigabytes at 0.5B
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    rows = steady(pd.read_parquet(out / "steps.parquet"), skip)
    return {"S": cfg.S, "schedule": cfg.schedule} | rates(rows) | {
        "actors": cfg.actors,
        "admission_violations": summary["admission_violations"],
    }


def weight_sync(cfg, spec: str | None, out: Path, steps: int, baseline: dict, transport: str = "auto") -> dict:
    """Weight-sync seconds per step over ``transport`` and their share of the synchronous step, for
    the checkpoint (``spec`` None) or a random model of HIDDENxLAYERS with the checkpoint's
    tokenizer. The checkpoint's comes from ``baseline``, the bench's synchronous run, when that ran
    with this transport; otherwise a synchronous run of ``steps`` steps measures it. The sync is
    the learner's send to the engine plus the engine's copy into its model. Where the machine
    has no device for the engine, the entry says so (``skipped``)."""
    from stalegrpo.policy import build_model, load_policy

    sync_cfg = replace(cfg, S=0, actors=1, steps=steps, weight_transport=transport)
    skipped = placement_error(sync_cfg)
    name = spec or "checkpoint"
    if skipped is not None:
        return {"model": name, "transport": transport, "skipped": skipped}
    resolved = weight_transport(sync_cfg, cuda_devices())
    if spec is None and baseline["schedule"] == "async" and resolved == weight_transport(cfg, cuda_devices()):
        run = baseline
    else:
        if spec is not None:
            hidden, layers = (int(v) for v in spec.lower().split("x"))
            _, tokenizer = load_policy(cfg.init_checkpoint)
            model = build_model(tokenizer, hidden, layers, max(1, hidden // 32), 8 * (hidden * 8 // 3 // 8), seed=0)
            path = out / "models" / spec
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            sync_cfg = replace(sync_cfg, init_checkpoint=str(path))
        run = measure(sync_cfg, out / f"sync_{name}_{resolved}", 1)
    return {
        "model": name,
        "parameters": count_parameters_of(sync_cfg.init_checkpoint),
        "transport": resolved,
        "weight_sync_s": run["weight_sync_s"],
        "step_s": run["step_s"],
        "weight_sync_pct_of_step": 100 * run["weight_sync_s"] / run["step_s"],
    }


def actor_device() -> str:
    """Where the in-process actors of the sampling and backend benchmarks run: the learner's device."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def sampling(cfg, repeats: int) -> dict:
    """The ``hf`` actor's KV-cache loop (in the config's actor_dtype/actor_compile) against
    ``generate`` (:func:`stalegrpo.actors.throughput.benchmark_sampling`)."""
    from stalegrpo.actors import actor_options, make_actor
    from stalegrpo.actors.throughput import benchmark_sampling
    from stalegrpo.policy import load_policy
    from stalegrpo.tasks import make_task

    torch.set_num_threads(max(1, cfg.threads // 2))  # the actor's share in async runs
    task = make_task(cfg)
    model, tokenizer = load_policy(cfg.init_checkpoint)
    actor = make_actor("hf", model, tokenizer, task, device=actor_device(), **actor_options(cfg, "hf"))
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(cfg.seed))
    return benchmark_sampling(actor, problems, cfg.group_size, repeats=repeats, temperature=cfg.temperature)


def default_actor_modes(cuda: bool) -> list[str]:
    """``bench.actor_modes`` unset: every mode on CUDA, fp32 eager alone on the CPU."""
    return list(ACTOR_MODES) if cuda else ["float32/eager"]


def actor_modes(cfg, modes: list[str], repeats: int) -> dict[str, dict]:
    """The ``hf`` actor's sampling tokens/s in each mode DTYPE/DECODE of ``modes``, on the bench's
    batch (:func:`stalegrpo.actors.throughput.benchmark_modes`: the decode loop alone, without scoring; a
    compiled mode's compilation is in its ``first_batch_s``, not in its tokens/s)."""
    from stalegrpo.actors import actor_options, make_actor
    from stalegrpo.actors.throughput import benchmark_modes
    from stalegrpo.policy import load_policy
    from stalegrpo.tasks import make_task

    torch.set_num_threads(max(1, cfg.threads // 2))  # the actor's share in async runs
    task = make_task(cfg)
    model, tokenizer = load_policy(cfg.init_checkpoint)
    actors = []
    for mode in modes:
        dtype, decode = mode.split("/")
        options = actor_options(cfg, "hf") | {"dtype": dtype, "compile": decode == "compiled"}
        actors.append(make_actor("hf", copy.deepcopy(model), tokenizer, task, actor_device(), **options))
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(cfg.seed))
    result = benchmark_modes(actors, problems, cfg.group_size, repeats=repeats, temperature=cfg.temperature)
    del actors
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def actor_throughput(cfg, backend: str, repeats: int, step_s: float) -> dict:
    """Generation tokens/s and weight-sync seconds of one actor backend on the bench's batch.

    Both backends start from the same checkpoint and generate the same B prompts × G; tokens
    are the sampled completion tokens (EOS included). The weight sync reloads the checkpoint's
    own weights as a new version, as the learner does after every step; its share is given
    against ``step_s``, the synchronous step time of the bench's hf runs.
    """
    from stalegrpo.actors import actor_options, make_actor
    from stalegrpo.tasks import make_task

    task = make_task(cfg)
    options = actor_options(cfg, backend)
    actor = make_actor(backend, cfg.init_checkpoint, None, task, device=actor_device(), **options)
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(cfg.seed))
    actor.generate(problems, cfg.group_size, cfg.temperature, seed=0)  # warm-up
    seconds, tokens = [], []
    with PeakMemory(actor_device()) as peak:
        for repeat in range(repeats):
            start = time.perf_counter()
            rollout = actor.generate(problems, cfg.group_size, cfg.temperature, seed=repeat + 1)
            seconds.append(time.perf_counter() - start)
            tokens.append(int(rollout.completion_mask.sum()))
    state = {name: p.detach().clone() for name, p in actor.model.named_parameters()}
    syncs = []
    for version in range(1, repeats + 1):
        actor.load_weights(state, version)
        syncs.append(actor.weight_sync_s)
    weight_sync_s = float(np.median(syncs))
    actor.close()  # a vLLM actor's engine holds the device's memory
    return {
        "backend": backend,
        "tokens_per_s": float(np.sum(tokens) / np.sum(seconds)),
        "gen_s": float(np.median(seconds)),
        "weight_sync_s": weight_sync_s,
        "weight_sync_pct_of_step": 100 * weight_sync_s / step_s,
        "peak_gib": peak.gib,
        "peak_memory": peak.kind,
    }


def summary(cfg, options: BenchConfig, result: dict) -> dict:
    """The headline numbers of a bench: what the GPU check's table shows."""
    base = result["runs"][0]
    cuda = torch.cuda.is_available()
    engines = base["schedule"] == "async"
    speedups = [
        {"S": r["S"], "A": r["actors"], "speedup": r["speedup"], "efficiency": r["efficiency"]}
        for r in result["runs"][1:]
    ]
    speedups += [
        {"S": s["S"], "A": s["actors"], "skipped": s["reason"]} for s in result["skipped"] if s["S"] > 0
    ]
    return {
        "model": options.model or cfg.init_checkpoint,
        "parameters": count_parameters_of(cfg.init_checkpoint),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "devices": cuda_devices(),
        "precision": precision(cfg),
        "zero": cfg.deepspeed_zero,
        "actor": cfg.actor,
        "task": cfg.task,
        "batch": f"{cfg.batch_prompts} x {cfg.group_size}",
        "baseline": "async S=0, A=1" if engines else "fixed S=0 (the actor in the learner's process)",
        "learner_tokens_per_s": base["train_tokens_per_s"],
        "actor_tokens_per_s": base["gen_tokens_per_s"],
        "actor_tokens_per_s_by_mode": {mode: r["tokens_per_s"] for mode, r in result["actor_modes"].items()},
        "weight_sync_s": base["weight_sync_s"],
        "weight_sync": transport_words(weight_transport(replace(cfg, S=0, actors=1), cuda_devices()))
        if engines
        else "snapshot copy into the in-process actor",
        "learner_peak_gib": base["train_peak_gib"],
        "actor_peak_gib": next((a["peak_gib"] for a in result["actors"] if a["backend"] == cfg.actor), None),
        "peak_memory": "CUDA max_memory_allocated" if cuda else "peak RSS of the process",
        "micro_batch_size": cfg.micro_batch_size,
        "t_gen": result["t_gen"],
        "t_train": result["t_train"],
        "ideal_speedup": result["ideal_speedup"],
        "speedups": speedups,
    }


def bench(config_path, overrides, out) -> int:
    bench_overrides = [o.removeprefix("bench.") for o in overrides if o.startswith("bench.")]
    options = load_config(BenchConfig, None, bench_overrides)
    with tempfile.TemporaryDirectory(prefix="stalegrpo-bench-model-") as models:
        if options.model is not None:
            path = make_model(options.model, Path(models) / "model")
            overrides = [*overrides, f"init_checkpoint={path}"]
        train_overrides = [o for o in overrides if not o.startswith("bench.")]
        return bench_checkpoint(options, config_path, train_overrides, Path(out))


def bench_checkpoint(options: BenchConfig, config_path, overrides, out: Path) -> int:
    """The bench of the train config's ``init_checkpoint`` (``bench.model``'s, once written)."""
    from stalegrpo.train import TrainConfig, check

    cfg = load_config(TrainConfig, config_path, overrides)
    cfg = replace(
        cfg,
        schedule="async",
        steps=options.steps,
        eval_every=0,
        eval_prompts=32,
        probe_every=0,
        checkpoint_every=10**6,
        max_minutes=None,
        progress=False,
    )
    out.mkdir(parents=True, exist_ok=True)

    # the machine's 1-minute load average: a busy machine slows the synchronous baseline and the
    # async runs unequally, so the bench says how busy it was (docs/method.md §7)
    load_before = os.getloadavg()[0]
    print(f"load average before the bench: {load_before:.2f} on {os.cpu_count()} cores", flush=True)
    runs, skipped = [], []
    points = [(0, 1)] + [(S, A) for A in options.engines for S in options.S]
    for S, A in points:
        run_cfg = replace(cfg, S=S, actors=A)
        reason = placement_error(run_cfg)
        if reason is not None:
            skipped.append({"S": S, "actors": A, "reason": reason})
            print(f"S={S}, A={A}: left out, {reason}", flush=True)
            continue
        check(run_cfg)
        runs.append(measure(run_cfg, out / f"async_S{S}_A{A}", options.skip))
        print(
            f"S={S}, A={A}: {runs[-1]['steps_per_s']:.2f} steps/s, t_gen {runs[-1]['t_gen'] * 1e3:.0f} ms, "
            f"t_train {runs[-1]['t_train'] * 1e3:.0f} ms, mean lag {runs[-1]['lag_mean']:.2f}",
            flush=True,
        )
    if not runs:  # not even the baseline's engine fits: the fixed schedule at S = 0, in one process
        fixed_cfg = replace(cfg, schedule="fixed", S=0)
        check(fixed_cfg)
        runs.append(measure(fixed_cfg, out / "fixed_S0", options.skip) | {"actors": 0})
        print(
            f"fixed S=0 baseline (actor in the learner's process): {runs[0]['steps_per_s']:.2f} steps/s, "
            f"t_gen {runs[0]['t_gen'] * 1e3:.0f} ms, t_train {runs[0]['t_train'] * 1e3:.0f} ms",
            flush=True,
        )
    sync = runs[0]
    t_gen, t_train = sync["t_gen"], sync["t_train"]
    ideal = (t_gen + t_train) / max(t_gen, t_train)
    for r in runs:
        r["speedup"] = r["steps_per_s"] / sync["steps_per_s"]
        r["efficiency"] = r["speedup"] / ideal
        # where the time goes: components slowed by sharing the cores (gen_slowdown, train_slowdown)
        # versus imperfect overlap (overlap_efficiency = max(t_gen, t_train) of this run / its step)
        r["gen_slowdown"], r["train_slowdown"] = r["t_gen"] / t_gen, r["t_train"] / t_train
        r["overlap_efficiency"] = max(r["t_gen"], r["t_train"]) / r["step_s"]
    result = {
        "config": to_dict(cfg),
        "bench": to_dict(options),
        "t_gen": t_gen,
        "t_train": t_train,
        "ideal_speedup": ideal,
        "sync_steps_per_s": sync["steps_per_s"],
        "runs": runs,
        "skipped": skipped,
        "bookkeeping_pct_max": max(r["bookkeeping_pct"] for r in runs),
        "sampling": sampling(cfg, options.sampling_repeats),
        "actor_modes": actor_modes(cfg, options.actor_modes or default_actor_modes(torch.cuda.is_available()),
                                   options.sampling_repeats),
        # learner runs before the in-process actors: a vLLM engine claims torch.distributed's
        # default group in this process, and a DeepSpeed engine built after it cannot start
        "weight_sync": [
            weight_sync(cfg, spec, out, options.sync_steps, sync, transport)
            for spec in [None, *options.sync_models]
            for transport in options.transports
        ],
        "actors": [
            actor_throughput(cfg, backend, options.sampling_repeats, sync["step_s"]) for backend in options.actors
        ],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "cores": os.cpu_count(),
        "threads": cfg.threads,
    }
    result["summary"] = summary(cfg, options, result)
    (out / "bench.json").write_text(json.dumps(result, indent=2))

    print(f"t_gen = {t_gen * 1e3:.1f} ms, t_train = {t_train * 1e3:.1f} ms, ideal speedup = {ideal:.2f}; "
          f"load average {result['load_before']:.2f} before, {result['load_after']:.2f} after")
    if any(r["efficiency"] > 1 for r in runs[1:]):
        print("an efficiency above 1 means the synchronous baseline's steps took longer than their parts took "
              "in the async runs (other load, or the baseline's hand-offs): a noisy measurement, not a result")
    for r in runs[1:]:
        print(
            f"async S={r['S']}, A={r['actors']}: speedup {r['speedup']:.2f} (ideal {ideal:.2f}, efficiency {r['efficiency']:.2f}), "
            f"bookkeeping {r['bookkeeping_pct']:.2f}% of the step; overlapped t_gen x{r['gen_slowdown']:.2f}, "
            f"t_train x{r['train_slowdown']:.2f}, overlap efficiency {r['overlap_efficiency']:.2f}"
        )
    s = result["sampling"]
    print(
        f"sampling ({s['mode']}): KV-cache loop {s['loop_tokens_per_s']:.0f} tokens/s vs generate "
        f"{s['generate_tokens_per_s']:.0f} tokens/s (ratio {s['ratio']:.2f})"
    )
    for mode, m in result["actor_modes"].items():
        print(f"hf actor {mode}: {m['tokens_per_s']:.0f} tokens/s (first batch {m['first_batch_s']:.1f} s)")
    for w in result["weight_sync"]:
        if "skipped" in w:
            print(f"weight sync, {w['model']}: left out, {w['skipped']}")
            continue
        print(
            f"weight sync ({w['transport']}), {w['model']} ({w['parameters'] / 1e6:.2f}M parameters): "
            f"{w['weight_sync_s'] * 1e3:.1f} ms per step, {w['weight_sync_pct_of_step']:.1f}% of the synchronous step"
        )
    for a in result["actors"]:
        print(
            f"actor {a['backend']}: {a['tokens_per_s']:.0f} tokens/s, weight sync {a['weight_sync_s'] * 1e3:.1f} ms "
            f"({a['weight_sync_pct_of_step']:.1f}% of the synchronous step), peak memory {a['peak_gib']:.2f} GiB"
        )
    print(f"learner step: peak memory {result['summary']['learner_peak_gib']:.2f} GiB ({result['summary']['peak_memory']})")
    return 0
