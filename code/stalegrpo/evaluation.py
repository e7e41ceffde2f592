"""What a run measures besides its training step (docs/method.md §3, §3.2): the held-out sampled
accuracy, and the bias probe, which compares gradients at a stale and the current version on the
same prompts. Both run on rank 0's scratch actor, loaded from the snapshot ring."""

from __future__ import annotations

import math

import numpy as np

from stalegrpo.learner import bias_estimate
from stalegrpo.policy import state_from_flat
from stalegrpo.schedules import rng


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
