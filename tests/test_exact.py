"""Tests of the exact testbed (docs/method.md §9): gradients against autograd, Monte Carlo and finite
differences, the lag bookkeeping, and the real CLI on the smoke config."""

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stalegrpo import cli
from stalegrpo.config import ConfigError, load_config
from stalegrpo.exact import (
    ExactConfig,
    ExactTestbed,
    exact_advantages,
    exact_surrogate,
    simulate,
    surrogate_grad,
    surrogate_grad_autograd,
    total_derivative,
)
from stalegrpo.objectives import OBJECTIVES, token_surrogate

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


@pytest.fixture(scope="module")
def bed():
    return ExactTestbed(ExactConfig(), F64)


def stale_point(bed, runs=3, drift=0.3, seed=0):
    """θ and a behavior θ' at distance ~drift per coordinate, so that some tokens are clipped."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(runs, bed.D, generator=g, dtype=F64)
    theta_behavior = theta + drift * torch.randn(runs, bed.D, generator=g, dtype=F64)
    eps = torch.tensor([0.1, 0.2, 0.3][:runs], dtype=F64)[:, None, None]
    return theta, bed.token_logprobs(theta_behavior), eps


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_closed_form_gradient_matches_autograd(bed, objective):
    theta, behavior_logprobs, eps = stale_point(bed)
    grad, _, sur, weights = surrogate_grad(bed, theta, behavior_logprobs, objective, eps)
    reference = surrogate_grad_autograd(bed, theta, behavior_logprobs, objective, eps)
    assert torch.allclose(grad, reference, rtol=1e-9, atol=1e-12)
    if objective == "behavior":  # the point exercises clipping on both sides
        assert (weights * sur.clipped_low.double().mean(1)).sum() > 0.01
        assert (weights * sur.clipped_high.double().mean(1)).sum() > 0.01


def test_clipped_gradient_matches_finite_differences(bed):
    theta, behavior_logprobs, eps = stale_point(bed, runs=1, seed=1)
    eps = eps[:1]
    # stay away from the kinks of the clip so that central differences are valid
    ratio = (bed.token_logprobs(theta) - behavior_logprobs).exp()
    assert ((ratio - (1 - eps)).abs().min() > 1e-4) and ((ratio - (1 + eps)).abs().min() > 1e-4)
    _, sur, _ = exact_surrogate(bed, bed.token_logprobs(theta), behavior_logprobs, "behavior", eps)
    assert sur.clipped_low.any() and sur.clipped_high.any()  # the point exercises both clips

    def value(th):
        return exact_surrogate(bed, bed.token_logprobs(th), behavior_logprobs, "behavior", eps)[0].sum()

    grad = surrogate_grad(bed, theta, behavior_logprobs, "behavior", eps)[0][0]
    g = torch.Generator().manual_seed(2)
    h = 1e-6
    for _ in range(5):
        direction = torch.randn(bed.D, generator=g, dtype=F64)
        numeric = (value(theta + h * direction) - value(theta - h * direction)) / (2 * h)
        assert numeric.item() == pytest.approx((grad @ direction).item(), rel=1e-5, abs=1e-9)


def test_exact_gradient_matches_monte_carlo(bed):
    """Sampling sequences from μ (weights 1, the same infinite-group advantages) estimates the
    exact sum; the two agree within a few standard errors per coordinate."""
    theta, behavior_logprobs, eps = stale_point(bed, runs=1, drift=0.2, seed=3)
    eps = eps[:1]
    exact = surrogate_grad(bed, theta, behavior_logprobs, "behavior", eps)[0][0]
    mu = behavior_logprobs.sum(1).exp().view(bed.P, bed.Y)
    adv = exact_advantages(mu[None], bed.proxy).view(-1)
    g = torch.Generator().manual_seed(4)
    batches, per_prompt = 40, 500
    estimates = []
    for _ in range(batches):
        ys = torch.multinomial(mu, per_prompt, replacement=True, generator=g)
        n = (torch.arange(bed.P)[:, None] * bed.Y + ys).reshape(-1)
        th = theta.detach().requires_grad_(True)
        logprobs = bed.token_logprobs(th)[0, :, n].T  # [samples, L]
        sur = token_surrogate(logprobs, behavior_logprobs[0, :, n].T, adv[n, None], "behavior", eps[0], eps[0])
        (grad,) = torch.autograd.grad(sur.value.mean(-1).mean(), th)
        estimates.append(grad[0])
    estimates = torch.stack(estimates)
    mean, stderr = estimates.mean(0), estimates.std(0) / batches**0.5
    z = (mean - exact) / stderr.clamp(min=1e-12)
    assert z.abs().max() < 5, z.abs().max()
    assert (z.abs() < 2).double().mean() > 0.85
    assert exact.norm() > 10 * stderr.norm() / bed.D**0.5  # the comparison has power


def brute_force_seq_probs(bed, theta):
    """π_θ(y|x) as [P, Y] straight from the policy's definition (module docstring of
    stalegrpo.exact): log π(y_t | x, y_<t) = log-softmax over v of θ_unigram[x, t, v] +
    θ_bigram[y_{t-1}, v] (y_0 = BOS, the bigram table's last row), summed over t, with the sequences
    of a prompt in lexicographic order. Independent of the testbed's feature gathers and expands."""
    P, V, L = bed.P, bed.V, bed.L
    unigram = theta[: P * L * V].view(P, L, V)
    bigram = theta[P * L * V :].view(V + 1, V)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))  # [Y, L]
    logp = torch.zeros(P, len(seqs), dtype=theta.dtype)
    for t in range(L):
        prev = seqs[:, t - 1] if t > 0 else torch.full((len(seqs),), V)
        logits = unigram[:, t, None, :] + bigram[prev][None]  # [P, Y, V]
        logp += logits.log_softmax(-1).gather(-1, seqs[None, :, t, None].expand(P, -1, 1))[..., 0]
    return logp.exp()


def run_grid(*overrides):
    cfg = load_config(ExactConfig, ROOT / "config" / "exact_smoke.yaml", ["dtype=float64", "horizon=40", *overrides])
    return simulate(cfg)


def test_lag_zero_is_on_policy_grpo(bed):
    """The lagged run at S = 0 equals a run whose μ is always π_θk (here written by hand)."""
    steps, _ = run_grid("S=[0]", "eta=[2.0]", "probe_every=0")
    cfg = ExactConfig(S=[0], eta=[2.0])
    theta = cfg.init_scale * torch.randn(bed.D, generator=torch.Generator().manual_seed(1000), dtype=F64)[None]
    eps = torch.tensor(0.2, dtype=F64)
    gold = []
    for _ in range(40):
        # the gold reward E_x E_{y~π(·|x)} gold(x, y) read from the policy's definition, not
        # from the testbed's gathers (see brute_force_seq_probs)
        gold.append(float((brute_force_seq_probs(bed, theta[0]) * bed.gold).sum() / bed.P))
        theta = theta + 2.0 * surrogate_grad_autograd(bed, theta, None, "behavior", eps)
    assert np.allclose(steps.gold_reward.values, gold, rtol=1e-10, atol=1e-12)
    assert (steps.bias == 0).all() and (steps.lag == 0).all() and (steps.kl_behavior.abs() < 1e-12).all()
    assert np.allclose(steps.ess, 1.0, rtol=0, atol=1e-12)  # μ = π: every weight π/μ is 1


def test_recompute_equals_behavior_only_on_policy():
    behavior, _ = run_grid("S=[0, 4]", "eta=[2.0]", "objective=behavior")
    recompute, _ = run_grid("S=[0, 4]", "eta=[2.0]", "objective=recompute")
    on = behavior.S == 0
    assert np.allclose(behavior[on].gold_reward, recompute[on].gold_reward, rtol=1e-12)
    assert np.abs(behavior[~on].gold_reward.values - recompute[~on].gold_reward.values).max() > 1e-3


def test_lag_bookkeeping_and_bias():
    steps, runs = run_grid("S=[0, 3]", "eta=[2.0]")
    stale = steps[steps.S == 3]
    assert (stale.lag.values == np.minimum(stale.step.values, 3)).all()
    assert stale.drift.iloc[0] == 0 and (stale.drift.iloc[1:] > 0).all()
    assert stale.bias.iloc[0] == 0 and (stale.bias.iloc[1:] > 0).all()
    assert len(steps) == 2 * 40 and len(runs) == 2
    assert ((steps.ess > 0) & (steps.ess <= 1 + 1e-12)).all()


def test_total_derivative_differs_from_the_surrogate_mapping(bed):
    """F(θ) = L(θ; π_θ) is constant (Σ π A = 0) for `behavior`, so dF/dθ = 0 while the
    surrogate mapping is not; for `recompute` the stop-gradient makes them agree."""
    theta, _, eps = stale_point(bed)
    g = surrogate_grad(bed, theta, None, "behavior", eps)[0]
    assert total_derivative(bed, theta, "behavior", eps).norm() < 1e-12 < g.norm()
    assert torch.allclose(total_derivative(bed, theta, "recompute", eps), g, atol=1e-12)


def test_sampled_mode_runs():
    steps, _runs = run_grid("mode=sampled", "S=[0, 2]", "eta=[1.0]", "group_size=4", "batch_prompts=4")
    assert np.isfinite(steps.grad_norm).all() and (steps.grad_norm > 0).any()
    assert not np.allclose(steps.grad_norm, steps.surrogate_grad_norm)


@pytest.mark.parametrize("override, key", [("objective=ppo", "objective"), ("horizn=3", "horizn"), ("collapse.kappa=-x", "kappa")])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(ExactConfig, ROOT / "config" / "exact_smoke.yaml", [override])


def test_cli_writes_tables_and_summary(tmp_path):
    assert cli.main(["exact", str(ROOT / "config" / "exact_smoke.yaml"), "--out", str(tmp_path)]) == 0
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(steps) == len(runs) * summary["config"]["horizon"]
    assert {"collapse_step", "censored", "detector", "S", "eta", "seed"} <= set(runs.columns)
    assert {"bias", "relative_bias", "drift", "gold_reward", "kl_behavior", "ess"} <= set(steps.columns)
    assert "fits" not in summary and summary["runs_x_steps_per_s"] > 0  # fits are the analysis stage's
    assert cli.main(["exact", str(ROOT / "config" / "exact_smoke.yaml"), "horizon=oops", "--out", str(tmp_path)]) == 2


def test_adam_runs_and_differs_from_sgd():
    sgd, _ = run_grid("S=[2]", "eta=[0.05]", "optimizer=sgd")
    adam, _ = run_grid("S=[2]", "eta=[0.05]", "optimizer=adam")
    assert np.isfinite(adam.gold_reward).all()
    # Adam's first step has size ~η per coordinate whatever the gradient scale
    assert adam.update_norm.iloc[0] == pytest.approx(0.05 * np.sqrt(ExactTestbed(ExactConfig()).D), rel=0.01)
    assert abs(adam.update_norm.iloc[0] - sgd.update_norm.iloc[0]) > 0.1
