"""The GRPO surrogate of docs/method.md §2: values, clipping and the objectives' relations."""

import pytest
import torch

from stalegrpo.objectives import aggregate, group_advantages, k3_kl, token_surrogate


def test_group_advantages_zero_mean_unit_std_and_zero_spread():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))


def test_behavior_clipping_removes_gradient_only_on_the_clipped_side():
    behavior = torch.zeros(4)
    # ratios 1.5 (A>0: clipped high), 1.5 (A<0: unclipped), 0.5 (A<0: clipped low), 0.5 (A>0: unclipped)
    logprobs = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    out = token_surrogate(logprobs, behavior, adv, "behavior", 0.2, 0.2)
    out.value.sum().backward()
    assert out.clipped_high.tolist() == [True, False, False, False]
    assert out.clipped_low.tolist() == [False, False, True, False]
    # d(ρA)/dlogπ = ρA on unclipped tokens, 0 on clipped ones
    assert torch.allclose(logprobs.grad, torch.tensor([0.0, -1.5, 0.0, 0.5]))
    assert torch.allclose(out.value.detach(), torch.tensor([1.2, -1.5, -0.8, 0.5]))


def test_recompute_ignores_behavior_and_decoupled_weights_by_behavior():
    logprobs = torch.tensor([-1.0, -2.0], requires_grad=True)
    behavior = torch.tensor([-1.5, -1.0])
    adv = torch.tensor([1.0, -1.0])
    recompute = token_surrogate(logprobs, behavior, adv, "recompute")
    (g_re,) = torch.autograd.grad(recompute.value.sum(), logprobs)
    assert torch.allclose(g_re, adv)  # ratio ≡ 1: the on-policy score-function weight
    # w = π_θk / μ = exp(log π - log μ) = [exp(-1 + 1.5), exp(-2 + 1)] = [e^0.5, e^-1] = [1.6487, 0.3679]
    # at θ = θ_k the ratio r = π_θ / π_θk is 1, so d(w·r·A)/dlog π = w·A = [1.6487, -0.3679]
    decoupled = token_surrogate(logprobs, behavior, adv, "decoupled")
    (g_dec,) = torch.autograd.grad(decoupled.value.sum(), logprobs)
    assert torch.allclose(g_dec, torch.tensor([1.6487213, -0.3678794]))
    # the same gradient as the behavior objective's (ρ = π/μ, d(ρA)/dlog π = ρA) with a clip too
    # wide to bind: both are the importance-weighted policy gradient at θ_k
    wide = token_surrogate(logprobs, behavior, adv, "behavior", eps_lo=10.0, eps_hi=10.0)
    (g_wide,) = torch.autograd.grad(wide.value.sum(), logprobs)
    assert torch.allclose(g_dec, g_wide)
    # tis with C = 1: the cap binds on the first token (1.6487 → 1) and not on the second
    tis = token_surrogate(logprobs, behavior, adv, "tis", tis_cap=1.0)
    (g_tis,) = torch.autograd.grad(tis.value.sum(), logprobs)
    assert torch.allclose(g_tis, torch.tensor([1.0, -0.3678794]))


def test_all_objectives_agree_on_policy():
    logprobs = torch.randn(3, 5, requires_grad=True)
    adv = torch.randn(3, 1).expand(3, 5)
    grads = []
    for objective in ("behavior", "recompute", "decoupled", "tis"):
        out = token_surrogate(logprobs, logprobs.detach(), adv, objective)
        grads.append(torch.autograd.grad(out.value.sum(), logprobs)[0])
    for g in grads[1:]:
        assert torch.allclose(g, grads[0])


def test_aggregation_modes_and_bad_names():
    values = torch.tensor([[1.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert aggregate(values, mask, "seq_mean").item() == pytest.approx(2.5)
    assert aggregate(values, mask, "token_mean").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(values, mask, "sum")
    with pytest.raises(ValueError, match="objective"):
        token_surrogate(values, values, values, "ppo")


def test_k3_is_an_unbiased_kl_estimate():
    torch.manual_seed(0)
    q = torch.tensor([0.5, 0.3, 0.2])
    p = torch.tensor([0.2, 0.3, 0.5])
    samples = torch.multinomial(q, 200_000, replacement=True)
    estimate = k3_kl(q.log()[samples], p.log()[samples]).mean()
    exact = (q * (q / p).log()).sum()
    assert estimate.item() == pytest.approx(exact.item(), abs=0.01)
    assert (k3_kl(q.log(), p.log()) >= 0).all()
