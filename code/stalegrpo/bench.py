"""Throughput of asynchronous GRPO against its synchronous baseline (docs/method.md §7).

    stalegrpo bench lm config/train.yaml init_checkpoint=results/lm/pretrain/tiny-addition --out results/bench/lm

In one process, one after the other on the same machine:

1. the synchronous baseline: the ``async`` schedule with S = 0 (actor and learner alternate);
   its steady-state steps give t_gen (one batch generated) and t_train (one learner step,
   weight push and bookkeeping included), hence the ideal speedup (t_gen + t_train) / max(t_gen, t_train);
2. ``async`` runs with S in ``bench.S``: their measured speedup over (1) and its efficiency
   measured / ideal;
3. the staleness bookkeeping (lags, snapshots, admission check) as a % of the step time;
4. sampling tokens/s of the actor's KV-cache loop against ``transformers``' ``generate``;
5. per actor backend in ``bench.actors`` (``hf``, ``vllm``): generation tokens/s on the same batch
   and the in-process weight-load time as a % of the synchronous step. ``actor=vllm`` runs steps
   1-3 with vLLM actors;
6. the weight sync of the engines (broadcast over torch.distributed, gloo on CPU, NCCL on CUDA,
   plus the engine's copy) per step and as a % of the synchronous step, for the checkpoint and
   the models of ``bench.sync_models``. The async runs of step 2 run with every A in
   ``bench.engines`` (actor engines).

Overrides ``bench.KEY=VALUE`` set :class:`BenchConfig`; all others set the train config.
The ratios are printed and written to OUT/bench.json.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from stalegrpo.config import load_config, to_dict


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
    actors: list[Literal["hf", "vllm"]] = field(default_factory=lambda: ["hf"])
    """actor backends whose generation tokens/s and weight-sync time are measured on the same batch"""
    engines: list[int] = field(default_factory=lambda: [1], metadata={"minimum": 1, "minItems": 1})
    """numbers of actor engines A of the async runs (each A runs at every S)"""
    sync_models: list[str] = field(default_factory=list)
    """models, as HIDDENxLAYERS with random weights, whose weight sync is also measured (e.g. 384x4,
    about 7M parameters, and 768x8, about 57M); the bench's own checkpoint is always measured"""
    sync_steps: int = field(default=6, metadata={"minimum": 2})
    """learner steps of each weight-sync measurement (synchronous, the first one left out)"""


def steady(rows: pd.DataFrame, skip: int) -> pd.DataFrame:
    return rows.iloc[min(skip, len(rows) - 2) :]


def measure(cfg, out: Path, skip: int) -> dict:
    """One train run from scratch; its steady-state rates and mean component times."""
    from stalegrpo.train import run

    shutil.rmtree(out, ignore_errors=True)
    summary = run(cfg, out)
    rows = steady(pd.read_parquet(out / "steps.parquet"), skip)
    # steps per second from the wall clock over the steady window (the step before it included)
    span = rows["wall_time"].iloc[-1] - rows["wall_time"].iloc[0]
    step_s = span / (len(rows) - 1) if len(rows) > 1 else float(rows["step_time_s"].mean())
    t_train = float((rows["train_s"] + rows["bookkeeping_s"] + rows["weight_sync_s"]).mean())
    return {
        "S": cfg.S,
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
        "actors": cfg.actors,
        "admission_violations": summary["admission_violations"],
    }


def weight_sync(cfg, spec: str | None, out: Path, steps: int) -> dict:
    """Weight-sync seconds per step and their share of the synchronous step, for the checkpoint
    (``spec`` None) or a random model of HIDDENxLAYERS with the checkpoint's tokenizer. The sync is
    the learner's broadcast to the engine plus the engine's copy into its model."""
    from stalegrpo.policy import build_model, load_policy

    if spec is not None:
        hidden, layers = (int(v) for v in spec.lower().split("x"))
        _, tokenizer = load_policy(cfg.init_checkpoint)
        model = build_model(tokenizer, hidden, layers, max(1, hidden // 32), 8 * (hidden * 8 // 3 // 8), seed=0)
        path = out / "models" / spec
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        cfg = replace(cfg, init_checkpoint=str(path))
    parameters = sum(p.numel() for p in load_policy(cfg.init_checkpoint)[0].parameters())
    run = measure(replace(cfg, S=0, actors=1, steps=steps), out / f"sync_{spec or 'checkpoint'}", 1)
    return {
        "model": spec or "checkpoint",
        "parameters": parameters,
        "transport": "nccl" if torch.cuda.is_available() else "gloo",
        "weight_sync_s": run["weight_sync_s"],
        "step_s": run["step_s"],
        "weight_sync_pct_of_step": 100 * run["weight_sync_s"] / run["step_s"],
    }


def sampling(cfg, repeats: int) -> dict:
    from stalegrpo.actors import benchmark_sampling, make_actor
    from stalegrpo.policy import load_policy
    from stalegrpo.tasks import get_task

    torch.set_num_threads(max(1, cfg.threads // 2))  # the actor's share in async runs
    task = get_task(cfg.task, digits=cfg.digits)
    model, tokenizer = load_policy(cfg.init_checkpoint)
    actor = make_actor(cfg.actor, model, tokenizer, task)
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(cfg.seed))
    return benchmark_sampling(actor, problems, cfg.group_size, repeats=repeats, temperature=cfg.temperature)


def actor_throughput(cfg, backend: str, repeats: int, step_s: float) -> dict:
    """Generation tokens/s and weight-sync seconds of one actor backend on the bench's batch.

    Both backends start from the same checkpoint and generate the same B prompts × G; tokens
    are the sampled completion tokens (EOS included). The weight sync reloads the checkpoint's
    own weights as a new version, as the learner does after every step; its share is given
    against ``step_s``, the synchronous step time of the bench's hf runs.
    """
    import time

    from stalegrpo.actors import make_actor
    from stalegrpo.tasks import get_task

    task = get_task(cfg.task, digits=cfg.digits)
    actor = make_actor(backend, cfg.init_checkpoint, None, task)
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(cfg.seed))
    actor.generate(problems, cfg.group_size, cfg.temperature, seed=0)  # warm-up
    seconds, tokens = [], []
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
    return {
        "backend": backend,
        "tokens_per_s": float(np.sum(tokens) / np.sum(seconds)),
        "gen_s": float(np.median(seconds)),
        "weight_sync_s": weight_sync_s,
        "weight_sync_pct_of_step": 100 * weight_sync_s / step_s,
    }


def bench(config_path, overrides, out) -> int:
    from stalegrpo.train import TrainConfig, check

    bench_overrides = [o.removeprefix("bench.") for o in overrides if o.startswith("bench.")]
    options = load_config(BenchConfig, None, bench_overrides)
    cfg = load_config(TrainConfig, config_path, [o for o in overrides if not o.startswith("bench.")])
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    runs = []
    points = [(0, 1)] + [(S, A) for A in options.engines for S in options.S]
    for S, A in points:
        run_cfg = replace(cfg, S=S, actors=A)
        check(run_cfg)
        runs.append(measure(run_cfg, out / f"async_S{S}_A{A}", options.skip))
        print(
            f"S={S}, A={A}: {runs[-1]['steps_per_s']:.2f} steps/s, t_gen {runs[-1]['t_gen'] * 1e3:.0f} ms, "
            f"t_train {runs[-1]['t_train'] * 1e3:.0f} ms, mean lag {runs[-1]['lag_mean']:.2f}",
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
        "bookkeeping_pct_max": max(r["bookkeeping_pct"] for r in runs),
        "sampling": sampling(cfg, options.sampling_repeats),
        # learner runs before the in-process actors: a vLLM engine claims torch.distributed's
        # default group in this process, and a DeepSpeed engine built after it cannot start
        "weight_sync": [weight_sync(cfg, spec, out, options.sync_steps) for spec in [None, *options.sync_models]],
        "actors": [
            actor_throughput(cfg, backend, options.sampling_repeats, sync["step_s"]) for backend in options.actors
        ],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": cfg.threads,
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2))

    print(f"t_gen = {t_gen * 1e3:.1f} ms, t_train = {t_train * 1e3:.1f} ms, ideal speedup = {ideal:.2f}")
    for r in runs[1:]:
        print(
            f"async S={r['S']}, A={r['actors']}: speedup {r['speedup']:.2f} (ideal {ideal:.2f}, efficiency {r['efficiency']:.2f}), "
            f"bookkeeping {r['bookkeeping_pct']:.2f}% of the step; overlapped t_gen x{r['gen_slowdown']:.2f}, "
            f"t_train x{r['train_slowdown']:.2f}, overlap efficiency {r['overlap_efficiency']:.2f}"
        )
    s = result["sampling"]
    print(
        f"sampling: KV-cache loop {s['loop_tokens_per_s']:.0f} tokens/s vs generate {s['generate_tokens_per_s']:.0f} "
        f"tokens/s (ratio {s['ratio']:.2f})"
    )
    for w in result["weight_sync"]:
        print(
            f"weight sync ({w['transport']}), {w['model']} ({w['parameters'] / 1e6:.2f}M parameters): "
            f"{w['weight_sync_s'] * 1e3:.1f} ms per step, {w['weight_sync_pct_of_step']:.1f}% of the synchronous step"
        )
    for a in result["actors"]:
        print(
            f"actor {a['backend']}: {a['tokens_per_s']:.0f} tokens/s, weight sync {a['weight_sync_s'] * 1e3:.1f} ms "
            f"({a['weight_sync_pct_of_step']:.1f}% of the synchronous step)"
        )
    return 0
