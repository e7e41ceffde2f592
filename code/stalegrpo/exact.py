"""The exact staleness testbed (docs/method.md §9): lagged GRPO on an enumerable sequence space.

Every expectation below is a finite sum over all sequences, so the surrogate gradients of §2,
the staleness bias of §3.2 and every §3 metric are computed with no sampling at all (except in
``mode: sampled``, which draws finite groups to study finite-batch effects).

Policy. P prompts, vocabulary V, length L: each prompt has V^L sequences (64 by default). The
policy is a log-linear autoregressive model,

    log π_θ(y_t | x, y_<t) = θ·φ(x, t, y_{t-1}, y_t) - log Σ_v exp θ·φ(x, t, y_{t-1}, v),
    φ = onehot(x, t, y_t) ⊕ onehot(y_{t-1}, y_t)           (y_0 = BOS)

a per-(prompt, position) unigram plus one bigram table shared by every prompt and position.
We chose it over a tabular softmax per sequence because the shared bigram couples sequences the
way a network does: raising one sequence moves the probability of every sequence that shares a
token transition with it, so updates interact and drift is felt everywhere, yet D stays small
(P·L·V + (V+1)·V = 116 by default); the features are two-hot, so the logits of all R runs are
two gathers from θ of shape [R, D].

Rewards. Two tables over (x, y) (§9's over-optimisation mechanism, Gao et al. 2023): the gold
reward is the fraction of positions where y matches a per-prompt target; the proxy reward that
the learner optimises equals that match fraction plus a bonus ``hack_bonus`` on one "hack"
sequence per prompt (the target with its last token changed, which fools the proxy), whose gold
reward is 0. Ascent on the proxy first learns the targets (gold rises), then moves
the mass to the hack (gold falls): the reward detector of §4 fires on the *gold* reward.

Surrogates. The per-token terms come from :func:`stalegrpo.objectives.token_surrogate`, the
same function the language-model learner uses; here each sequence is weighted by μ(y) instead
of being sampled, and the advantage is the infinite-group one: (r - E_μ r) / (std_μ r + 1e-6)
per prompt. Per-run gradients come from one backward through the sum over runs.

Dynamics (§5 ``fixed``). The step-k update uses μ = π_{θ_max(0, k-S)}; all runs of the grid
(S × η × seed × ε) advance in lockstep as θ of shape [R, D] with a ring buffer of past θ.

Regimes (config/exact.yaml). The horizon-limited regime comes from over-optimisation: the gold
reward collapses at a continuous time t_c = T_c·η that does not depend on η. The staleness-limited
regime comes from the ``recompute`` objective, which treats stale samples as on-policy: nothing
bounds the drift from μ, and once S·η is large the §4 KL detector (kl_behavior > κ) fires. Under
``behavior`` the clip bounds that drift and staleness only slows learning (it delays collapse).

Bias measurement. Each run's ``bias`` (runs table) is its bias at one continuous time t0 = k·η
(``bias_time``): at equal t0 all small-drift runs sit at nearly the same θ(t0) of the gradient
flow, so across runs only the delay S·η varies, which is what the O(S·η) claim is about. A
fixed step window would compare different states for different η.

Per step we record the staleness bias ‖g(θ_k; π_{θ_k-S}) - g(θ_k; π_{θ_k})‖ (absolute and
relative), the drift ‖θ_k - θ_k-S‖, proxy and gold reward, entropy, KL(μ‖π_θ), ESS, clip
fractions, and, every ``probe_every`` steps, the gap between the on-policy surrogate gradient
g(θ; π_θ) and the total derivative dF/dθ of F(θ) = L(θ; π_θ) (autograd through μ, advantages
included). Entropy and KL are per token (sequence values divided by L), as the §4 thresholds are.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from stalegrpo.collapse import DETECTORS, CollapseConfig, CollapseMonitor
from stalegrpo.config import load_config, to_dict
from stalegrpo.objectives import group_advantages, token_surrogate


@dataclass
class ExactConfig:
    """The exact testbed: sequence space, rewards, dynamics, grid and collapse detection."""

    RENAMED: ClassVar[dict[str, str]] = {
        "lags": "S",
        "lrs": "eta",
        "seeds": "seed",
        "clip_eps": "eps",
        **dict.fromkeys(
            ("small_drift_max", "horizon_regime_max_tau", "frontier_horizons", "n_boot"),
            "a fit setting now: set it in the workflow config's `fits` section",
        ),
    }

    prompts: int = field(default=8, metadata={"minimum": 1})
    """number of prompts P"""
    vocab: int = field(default=4, metadata={"minimum": 2})
    """vocabulary size V"""
    length: int = field(default=3, metadata={"minimum": 1})
    """completion length L (each prompt has V^L sequences)"""
    reward_seed: int = 0
    """seed of the target and hack sequences (the reward tables)"""
    hack_bonus: float = field(default=0.5, metadata={"minimum": 0})
    """proxy-reward bonus of each prompt's hack sequence (the gold reward of the hack is 0)"""
    init_scale: float = field(default=0.5, metadata={"minimum": 0})
    """std of the Gaussian initial θ_0 (drawn per seed)"""
    objective: Literal["behavior", "recompute", "decoupled", "tis"] = "behavior"
    """surrogate objective of docs/method.md §2"""
    tis_cap: float = field(default=2.0, metadata={"minimum": 0})
    """truncation C of the tis weight"""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """optimizer of the ascent step"""
    adam_betas: list[float] = field(
        default_factory=lambda: [0.9, 0.999], metadata={"minimum": 0, "exclusiveMaximum": 1, "minItems": 2, "maxItems": 2}
    )
    """Adam β1, β2"""
    S: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8, 16], metadata={"minimum": 0, "minItems": 1})
    """grid of staleness bounds S (lag of every batch is exactly min(k, S))"""
    eta: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0], metadata={"exclusiveMinimum": 0, "minItems": 1})
    """grid of learning rates η"""
    seed: list[int] = field(default_factory=lambda: [0], metadata={"minimum": 0, "minItems": 1})
    """grid of seeds (initial θ_0 and, in sampled mode, the samples)"""
    eps: list[float] = field(default_factory=lambda: [0.2], metadata={"minimum": 0, "minItems": 1})
    """grid of clip radii ε (ε_lo = ε_hi = ε)"""
    horizon: int = field(default=200, metadata={"minimum": 1})
    """learner steps T"""
    mode: Literal["exact", "sampled"] = "exact"
    """exact: update with the exact gradient; sampled: with a finite batch of B prompts × G completions"""
    group_size: int = field(default=8, metadata={"minimum": 2})
    """G, completions per prompt (sampled mode)"""
    batch_prompts: int = field(default=8, metadata={"minimum": 1})
    """B, prompts per batch, drawn uniformly with replacement (sampled mode)"""
    probe_every: int = field(default=10, metadata={"minimum": 0})
    """every how many steps to compute the total derivative dF/dθ (0 = never)"""
    collapse_reward: Literal["gold", "proxy"] = "gold"
    """which reward feeds the §4 reward detector"""
    kl_detector: bool = True
    """feed kl_behavior = KL(μ‖π_θ) to the §4 KL detector"""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """collapse detectors (docs/method.md §4)"""
    bias_time: float = field(default=50.0, metadata={"exclusiveMinimum": 0})
    """continuous time t0 = k·η at which each run's bias is read (step ceil(t0/η), at least S)"""
    dtype: Literal["float32", "float64"] = "float64"
    """floating-point precision of the simulation"""
    threads: int = field(default=1, metadata={"minimum": 1})
    """torch CPU threads"""


CONFIG_CLASS = ExactConfig


class ExactTestbed:
    """Sequence space, features and reward tables; sequences are numbered n = x·V^L + y with y
    in lexicographic order, so the sequences sharing a prefix of length t+1 are contiguous."""

    def __init__(self, cfg: ExactConfig, dtype=torch.float64):
        P, V, L = cfg.prompts, cfg.vocab, cfg.length
        self.P, self.V, self.L, self.Y = P, V, L, V**L
        self.D = P * L * V + (V + 1) * V
        # φ(x, t, prefix, v) is two-hot, so θ·φ is the sum of two entries of θ: one per
        # (x, t, v) and one per (previous token, v). features[t] holds their indices, one row
        # per (prompt x, prefix code of length t, next token v).
        self.features = []
        for t in range(L):
            x, code, v = (a.reshape(-1) for a in torch.meshgrid(torch.arange(P), torch.arange(V**t), torch.arange(V), indexing="ij"))
            prev = code % V if t > 0 else torch.full_like(code, V)  # V is BOS
            self.features.append(((x * L + t) * V + v, P * L * V + prev * V + v))
        seqs = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)  # [Y, L]
        g = torch.Generator().manual_seed(cfg.reward_seed)
        target = torch.randint(V, (P, L), generator=g)
        hack = target.clone()  # the target with its last token changed: one step from the optimum
        hack[:, -1] = (target[:, -1] + torch.randint(1, V, (P,), generator=g)) % V
        match = (seqs[None] == target[:, None]).to(dtype).mean(-1)  # [P, Y]
        is_hack = (seqs[None] == hack[:, None]).all(-1).to(dtype)
        self.gold = match * (1 - is_hack)
        self.proxy = match + cfg.hack_bonus * is_hack

    def tables(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """log π_θ(v | x, prefix) per position t, each [R, P·V^t, V]."""
        # x - logsumexp(x) rather than torch.log_softmax, which is several times slower over V = 4
        logits = [(theta[:, unigram] + theta[:, bigram]).view(theta.shape[0], -1, self.V) for unigram, bigram in self.features]
        return [z - z.logsumexp(-1, keepdim=True) for z in logits]

    def token_logprobs(self, theta: torch.Tensor, tables=None) -> torch.Tensor:
        """log π_θ of every token of every sequence, [R, L, N] (N = P·V^L; token-major, so that
        sums over tokens are fast): token t of all sequences sharing a prefix of length t+1."""
        tables = self.tables(theta) if tables is None else tables
        R, V, L = theta.shape[0], self.V, self.L
        out = theta.new_empty(R, L, self.P * self.Y)
        for t, lp in enumerate(tables):
            suffixes = V ** (L - 1 - t)
            out[:, t].view(R, -1, suffixes).copy_(lp.reshape(R, -1, 1).expand(-1, -1, suffixes))
        return out

    def backprop(self, tables, token_grad: torch.Tensor) -> torch.Tensor:
        """Chain rule from ∂J/∂log π of every token [R, L, N] to ∂J/∂θ [R, D]: sum over the
        sequences sharing each (prefix, token), then through log-softmax and the features."""
        R, V, L = token_grad.shape[0], self.V, self.L
        grad = token_grad.new_zeros(R, self.D)
        for t, (lp, (unigram, bigram)) in enumerate(zip(tables, self.features)):
            g = token_grad[:, t].reshape(R, -1, V ** (L - 1 - t)).sum(-1).view(R, -1, V)
            g = (g - lp.exp() * g.sum(-1, keepdim=True)).reshape(R, -1)  # log-softmax Jacobian
            grad.index_add_(1, unigram, g).index_add_(1, bigram, g)
        return grad


def exact_advantages(seq_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Infinite-group advantage (r - E_μ r) / (std_μ r + 1e-6) per prompt; seq_probs [R, P, Y]."""
    mean = (seq_probs * rewards).sum(-1, keepdim=True)
    std = ((seq_probs * (rewards - mean) ** 2).sum(-1, keepdim=True)).clamp(min=0).sqrt()
    return (rewards - mean) / (std + 1e-6)


def exact_surrogate(bed, logprobs, behavior_logprobs, objective, eps, tis_cap=2.0, rewards=None):
    """L(θ; μ) = Σ_x (1/P) Σ_y μ(y|x) (1/L) Σ_t term_t per run; returns (value [R], the
    TokenSurrogate, and the sequence weights μ(y|x)/P [R, N]).

    ``logprobs`` / ``behavior_logprobs`` are token log-probs [R, L, N] of π_θ and μ; ``eps``
    broadcasts as [R, 1, 1]. μ's sequence probabilities weight the sequences and define the
    advantages, so passing an un-detached μ gives the population objective F(θ) = L(θ; π_θ).
    """
    R = logprobs.shape[0]
    rewards = bed.proxy if rewards is None else rewards
    mu = behavior_logprobs.sum(1).exp().view(R, bed.P, bed.Y)
    adv = exact_advantages(mu, rewards).view(R, 1, -1)
    sur = token_surrogate(logprobs, behavior_logprobs, adv, objective, eps, eps, tis_cap)
    value = (sur.value.mean(1) * mu.view(R, -1)).sum(-1) / bed.P
    return value, sur, mu.view(R, -1) / bed.P


def surrogate_grad(bed, theta, behavior_logprobs, objective, eps, tis_cap=2.0, tables=None):
    """g(θ; μ) per run [R, D] in closed form; ``behavior_logprobs = None`` is on-policy (μ = π_θ).

    Every unclipped term of §2 is linear in its ratio exp(log π_θ - anchor), so its derivative
    with respect to log π_θ equals its own value, and a clipped term has derivative 0. The
    formula itself stays in :func:`token_surrogate`; only the chain rule is written out here
    (tested against autograd in tests/test_exact.py). Returns (grad, value, surrogate, weights).
    """
    tables = bed.tables(theta) if tables is None else tables
    logprobs = bed.token_logprobs(theta, tables)
    beh = logprobs if behavior_logprobs is None else behavior_logprobs
    value, sur, weights = exact_surrogate(bed, logprobs, beh, objective, eps, tis_cap)
    active = ~(sur.clipped_low | sur.clipped_high)
    token_grad = sur.value * active * (weights / bed.L)[:, None]
    return bed.backprop(tables, token_grad), value, sur, weights


def surrogate_grad_autograd(bed, theta, behavior_logprobs, objective, eps, tis_cap=2.0):
    """g(θ; μ) by autograd through the sum over runs (the reference for the closed form)."""
    theta = theta.detach().requires_grad_(True)
    logprobs = bed.token_logprobs(theta)
    beh = logprobs.detach() if behavior_logprobs is None else behavior_logprobs
    value, _, _ = exact_surrogate(bed, logprobs, beh, objective, eps, tis_cap)
    (grad,) = torch.autograd.grad(value.sum(), theta)
    return grad


def total_derivative(bed, theta, objective, eps, tis_cap=2.0):
    """dF/dθ of F(θ) = L(θ; π_θ), with μ = π_θ *not* detached (weights, ratio and advantages)."""
    theta = theta.detach().requires_grad_(True)
    logprobs = bed.token_logprobs(theta)
    value, _, _ = exact_surrogate(bed, logprobs, logprobs, objective, eps, tis_cap)
    (grad,) = torch.autograd.grad(value.sum(), theta)
    return grad


def sampled_grad(bed, theta, behavior_logprobs, cfg, eps, generator):
    """Finite-batch gradient: B prompts × G completions drawn from μ, group advantages of §2."""
    R, B, G = theta.shape[0], cfg.batch_prompts, cfg.group_size
    theta = theta.detach().requires_grad_(True)
    logprobs = bed.token_logprobs(theta).transpose(1, 2).reshape(R, bed.P, bed.Y, bed.L)
    beh = behavior_logprobs.transpose(1, 2).reshape(R, bed.P, bed.Y, bed.L)
    prompts = torch.randint(bed.P, (R, B), generator=generator)
    mu = beh.sum(-1).exp()[torch.arange(R)[:, None], prompts]  # [R, B, Y]
    ys = torch.multinomial(mu.reshape(R * B, bed.Y), G, replacement=True, generator=generator).view(R, B, G)
    r_idx, x_idx = torch.arange(R)[:, None, None], prompts[:, :, None]
    adv = group_advantages(bed.proxy[x_idx, ys])[..., None]
    sur = token_surrogate(logprobs[r_idx, x_idx, ys], beh[r_idx, x_idx, ys], adv, cfg.objective, eps[..., None], eps[..., None], cfg.tis_cap)
    (grad,) = torch.autograd.grad(sur.value.mean((-1, -2, -3)).sum(), theta)
    return grad


def grid(cfg: ExactConfig) -> pd.DataFrame:
    """One row per run of the (S, η, seed, ε) grid."""
    rows = list(itertools.product(cfg.S, cfg.eta, cfg.seed, cfg.eps))
    runs = pd.DataFrame(rows, columns=["S", "eta", "seed", "eps"])
    runs.insert(0, "run", np.arange(len(runs)))
    return runs


STEP_COLUMNS = (
    "lag", "reward", "gold_reward", "entropy", "kl_behavior", "ess", "clip_frac_low", "clip_frac_high",
    "bias", "relative_bias", "drift", "grad_norm", "update_norm", "surrogate_grad_norm", "total_derivative_gap",
)


def simulate(cfg: ExactConfig, progress: bool = False):
    """Run the whole grid in lockstep; returns (steps, runs) tidy tables."""
    torch.set_num_threads(cfg.threads)
    dtype = getattr(torch, cfg.dtype)
    bed = ExactTestbed(cfg, dtype)
    runs = grid(cfg)
    R, T, D = len(runs), cfg.horizon, bed.D
    lag = torch.tensor(runs.S.values)
    lr = torch.tensor(runs.eta.values, dtype=dtype)[:, None]
    eps = torch.tensor(runs.eps.values, dtype=dtype)[:, None, None]
    theta = torch.stack([cfg.init_scale * torch.randn(D, generator=torch.Generator().manual_seed(1000 + s), dtype=dtype) for s in runs.seed])
    ring_size = int(lag.max()) + 1
    ring = theta[None].repeat(ring_size, 1, 1)  # ring[k % ring_size] = θ_k
    adam_m, adam_v = torch.zeros_like(theta), torch.zeros_like(theta)
    beta1, beta2 = cfg.adam_betas
    # sampled mode: one stream for the whole grid (runs draw independent samples from it)
    sampler = torch.Generator().manual_seed(int(runs.seed.iloc[0]) * 7919 + 17)
    monitor = CollapseMonitor(cfg.collapse, R)
    record = {name: np.full((T, R), np.nan, dtype=cfg.dtype) for name in STEP_COLUMNS}
    L, arange = bed.L, torch.arange(R)

    for k in range(T):
        version = (k - lag).clamp(min=0)
        theta_behavior = ring[version % ring_size, arange]
        tables = bed.tables(theta)
        behavior_logprobs = bed.token_logprobs(theta_behavior)
        grad_stale, _, sur, mu = surrogate_grad(bed, theta, behavior_logprobs, cfg.objective, eps, cfg.tis_cap, tables)
        grad_fresh = grad_stale
        if lag.max() > 0:  # on-policy reference g(θ_k; π_θk) for the staleness bias
            grad_fresh = surrogate_grad(bed, theta, None, cfg.objective, eps, cfg.tis_cap, tables)[0]
        if cfg.mode == "sampled":
            grad = sampled_grad(bed, theta, behavior_logprobs, cfg, eps, sampler)
        else:
            grad = grad_stale

        with torch.no_grad():
            seq_lp = sum(lp.reshape(R, -1, 1).expand(-1, -1, bed.V ** (L - 1 - t)).reshape(R, -1) for t, lp in enumerate(tables))
            mu_seq_lp = behavior_logprobs.sum(1)
            pi = seq_lp.exp() / bed.P  # joint weights over (x, y), prompts uniform
            fresh_norm = grad_fresh.norm(dim=-1)
            bias = (grad_stale - grad_fresh).norm(dim=-1)
            metrics = {
                "lag": (k - version).to(dtype),
                "reward": (pi * bed.proxy.view(-1)).sum(-1),
                "gold_reward": (pi * bed.gold.view(-1)).sum(-1),
                "entropy": -(pi * seq_lp).sum(-1) / L,
                "kl_behavior": (mu * (mu_seq_lp - seq_lp)).sum(-1) / L,
                # E_μ w² = Σ π²/μ, in log space so that an underflowed μ(y) cannot give 0/0
                "ess": 1 / ((2 * seq_lp - mu_seq_lp).exp().sum(-1) / bed.P),
                "clip_frac_low": (mu * sur.clipped_low.to(dtype).mean(1)).sum(-1),
                "clip_frac_high": (mu * sur.clipped_high.to(dtype).mean(1)).sum(-1),
                "bias": bias,
                "relative_bias": bias / fresh_norm,
                "drift": (theta - theta_behavior).norm(dim=-1),
                "grad_norm": grad.norm(dim=-1),
                "surrogate_grad_norm": fresh_norm,
            }
        if cfg.probe_every and k % cfg.probe_every == 0:
            metrics["total_derivative_gap"] = (total_derivative(bed, theta, cfg.objective, eps, cfg.tis_cap) - grad_fresh).norm(dim=-1)

        with torch.no_grad():  # ascent step (the surrogates are maximised)
            if cfg.optimizer == "adam":
                adam_m.mul_(beta1).add_((1 - beta1) * grad)
                adam_v.mul_(beta2).add_((1 - beta2) * grad**2)
                step = (adam_m / (1 - beta1 ** (k + 1))) / ((adam_v / (1 - beta2 ** (k + 1))).sqrt() + 1e-8)
            else:
                step = grad
            new_theta = theta + lr * step
            metrics["update_norm"] = (new_theta - theta).norm(dim=-1)
        for name, value in metrics.items():
            record[name][k] = value.numpy()
        finite = torch.isfinite(new_theta).all(-1) & torch.isfinite(grad).all(-1)
        monitor.update(
            k,
            record["gold_reward" if cfg.collapse_reward == "gold" else "reward"][k],
            kl_behavior=record["kl_behavior"][k] if cfg.kl_detector else None,
            finite=finite.numpy(),
        )
        theta = new_theta
        ring[(k + 1) % ring_size] = theta
        if progress and k % max(1, T // 10) == 0:
            print(f"step {k}/{T}: collapsed {int(monitor.collapsed.sum())}/{R}", flush=True)

    steps = runs[["run", "S", "eta", "seed", "eps"]].loc[np.tile(np.arange(R), T)].reset_index(drop=True)
    steps.insert(1, "step", np.repeat(np.arange(T), R))
    for name in STEP_COLUMNS:
        steps[name] = record[name].reshape(-1)
    censored = ~monitor.collapsed
    runs["collapse_step"] = np.where(censored, T, monitor.collapse_step)
    runs["censored"] = censored
    runs["detector"] = [DETECTORS[d] for d in monitor.detector]
    runs["horizon"] = T
    runs["objective"], runs["optimizer"] = cfg.objective, cfg.optimizer
    # bias at a fixed continuous time t0 = k·η: every run is read at (nearly) the same state θ(t0)
    # of the gradient flow, so across runs only the delay S·η varies (see bias_time)
    probe_step = np.maximum(np.ceil(cfg.bias_time / runs.eta.values).astype(int), runs.S.values)
    runs["bias_step"] = probe_step
    for name in ("bias", "relative_bias"):
        runs[name] = np.where(probe_step < T, record[name][np.minimum(probe_step, T - 1), np.arange(R)], np.nan)
    runs["final_reward"] = record["reward"][-1]
    runs["final_gold_reward"] = record["gold_reward"][-1]
    runs["peak_gold_reward"] = np.nanmax(record["gold_reward"], axis=0)
    return steps, runs


def _summarize(runs, cfg, seconds) -> dict:
    """What ran and how long it took; the fits are the analysis stage's (code/make_fits.py)."""
    return {"config": to_dict(cfg), "runs": len(runs), "steps": cfg.horizon, "seconds": seconds,
            "runs_x_steps_per_s": len(runs) * cfg.horizon / seconds,
            "n_collapsed": int((~runs.censored).sum())}


def main(config: str | None, overrides: list[str], out: str) -> int:
    """``stalegrpo exact``: run the grid, write steps.parquet, runs.parquet and summary.json."""
    cfg = load_config(ExactConfig, config, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    steps, runs = simulate(cfg, progress=True)
    seconds = time.perf_counter() - start
    steps.to_parquet(out / "steps.parquet", index=False)
    runs.to_parquet(out / "runs.parquet", index=False)
    summary = _summarize(runs, cfg, seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"{len(runs)} runs x {cfg.horizon} steps in {seconds:.1f} s; "
          f"{int((~runs.censored).sum())} collapsed; wrote {out}/steps.parquet, runs.parquet, summary.json")
    return 0


def bench(config: str | None, overrides: list[str], out: str) -> int:
    """``stalegrpo bench exact``: time the lockstep grid and print runs×steps per second."""
    cfg = load_config(ExactConfig, config, overrides)
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    _steps, runs = simulate(cfg)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    # the machine is shared: the CPU time of this process is reported next to the wall time
    result = {"runs": len(runs), "steps": cfg.horizon, "seconds": seconds, "cpu_seconds": cpu_seconds,
              "threads": cfg.threads, "runs_x_steps_per_s": len(runs) * cfg.horizon / seconds,
              "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0]}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "bench.json").write_text(json.dumps(result, indent=2))
    print(f"exact grid: {len(runs)} runs x {cfg.horizon} steps in {seconds:.2f} s total "
          f"({cpu_seconds:.2f} s CPU), {result['runs_x_steps_per_s']:.0f} runs x steps / s "
          f"(threads {cfg.threads}, load average {load_before:.2f} before, {result['load_avg_after']:.2f} after)")
    return 0
