"""The GRPO surrogate objectives of docs/method.md §2, in one place.

Every objective is *maximised*. For a completion y_j of prompt x with advantage A_j and
tokens y_{j,t}, the per-token term is

    behavior   : min(ρ A, clip(ρ, 1-ε_lo, 1+ε_hi) A),        ρ = π_θ / μ
    recompute  : the same with μ replaced by sg[π_θ]           (ρ ≡ 1 at the current θ)
    decoupled  : w · min(r A, clip(r, 1-ε_lo, 1+ε_hi) A),       w = sg[π_prox] / μ,  r = π_θ / sg[π_prox]
    tis        : as decoupled with w truncated at C            (w ← min(w, C))

where μ is the behavior policy (the actor's recorded log-probs), π_prox = π_{θ_k} is the
learner's proximal policy and sg[·] stops gradients. The per-token terms are then averaged
per sequence and over sequences (``seq_mean``, the default) or over all tokens (``token_mean``).

The same function serves the language-model learner (tensors of sampled tokens, weights 1)
and the exact testbed (tensors over the whole enumerated sequence space, weighted by μ(y)),
so both compute exactly the same objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OBJECTIVES = ("behavior", "recompute", "decoupled", "tis")
AGGREGATIONS = ("seq_mean", "token_mean")

ADV_EPS = 1e-6
"""added to the group standard deviation (docs/method.md §2)"""


@dataclass
class TokenSurrogate:
    """Per-token surrogate values and the clipping masks that produced them."""

    value: torch.Tensor
    """per-token surrogate, to be maximised"""
    clipped_low: torch.Tensor
    """tokens whose ratio is below 1-ε_lo and whose gradient the clip removed (A < 0)"""
    clipped_high: torch.Tensor
    """tokens whose ratio is above 1+ε_hi and whose gradient the clip removed (A > 0)"""


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_j = (r_j - mean_G r) / (std_G r + 1e-6) over the last dimension (the group).

    The std is the population std (ddof = 0), which is what the infinite-group advantage of
    the exact testbed converges to. A group with zero spread gets A = 0 and contributes nothing.
    """
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, correction=0)
    return (rewards - mean) / (std + ADV_EPS)


def token_surrogate(
    logprobs: torch.Tensor,
    behavior_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    objective: str = "behavior",
    eps_lo: float | torch.Tensor = 0.2,
    eps_hi: float | torch.Tensor = 0.2,
    tis_cap: float = 2.0,
    prox_logprobs: torch.Tensor | None = None,
) -> TokenSurrogate:
    """The per-token surrogate of docs/method.md §2.

    ``logprobs`` are log π_θ of the sampled tokens (with gradient), ``behavior_logprobs`` the
    actor's log μ of the same tokens, ``advantages`` broadcast against them (one value per
    sequence, expanded over tokens). ``prox_logprobs`` defaults to ``logprobs.detach()``, i.e.
    π_prox = π_{θ_k}. ``eps_lo``/``eps_hi`` may be tensors that broadcast (the exact testbed
    vectorises over ε).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if prox_logprobs is None:
        prox_logprobs = logprobs.detach()

    if objective == "behavior":
        anchor, weight = behavior_logprobs, None
    elif objective == "recompute":
        anchor, weight = logprobs.detach(), None
    else:
        anchor = prox_logprobs
        weight = torch.exp(prox_logprobs - behavior_logprobs).detach()
        if objective == "tis":
            weight = weight.clamp(max=tis_cap)

    ratio = torch.exp(logprobs - anchor)
    clipped_ratio = ratio.clamp(min=1 - eps_lo, max=1 + eps_hi)
    value = torch.minimum(ratio * advantages, clipped_ratio * advantages)
    with torch.no_grad():
        clipped_low = (ratio < 1 - eps_lo) & (advantages < 0)
        clipped_high = (ratio > 1 + eps_hi) & (advantages > 0)
    if weight is not None:
        value = weight * value
    return TokenSurrogate(value=value, clipped_low=clipped_low, clipped_high=clipped_high)


def aggregate(
    token_values: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "seq_mean",
    seq_weights: torch.Tensor | None = None,
    count: float | None = None,
) -> torch.Tensor:
    """Reduce [N, T] per-token values to one scalar: per-sequence token mean then mean over
    sequences (``seq_mean``), or the mean over every token of the batch (``token_mean``).
    ``seq_weights`` ([N], detached) multiply the per-sequence terms of ``seq_mean`` (the coupled
    bias probe's importance weights, docs/method.md §3.2).

    ``count`` is the denominator of a larger batch (:func:`aggregate_count`) whose micro-batch
    these N rows are: the micro-batches' values then add up to the batch's value."""
    mask = mask.to(token_values.dtype)
    if mode == "seq_mean":
        per_seq = (token_values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        if seq_weights is not None:
            per_seq = seq_weights.to(per_seq.dtype) * per_seq
        return per_seq.mean() if count is None else per_seq.sum() / count
    if seq_weights is not None:
        raise ValueError(f"per-sequence weights need aggregation 'seq_mean', got {mode!r}")
    if mode == "token_mean":
        return (token_values * mask).sum() / (mask.sum().clamp(min=1) if count is None else count)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")


def aggregate_count(mask: torch.Tensor, mode: str = "seq_mean") -> float:
    """The denominator of :func:`aggregate` over a whole batch: its sequences (``seq_mean``) or
    its tokens (``token_mean``, at least 1)."""
    if mode == "seq_mean":
        return float(mask.shape[0])
    if mode == "token_mean":
        return float(max(int(mask.sum()), 1))
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")


def k3_kl(logprobs: torch.Tensor, other_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(q‖p) from samples of q: ρ - 1 - log ρ with ρ = p/q.

    ``logprobs`` are log q (the sampling policy), ``other_logprobs`` log p. Non-negative and
    unbiased for KL(q‖p) under samples of q.
    """
    log_ratio = other_logprobs - logprobs
    return torch.exp(log_ratio) - 1 - log_ratio
