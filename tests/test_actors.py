"""The ``hf`` actor (docs/method.md §1-§2): rollout shapes and masks, version tags, seeded sampling,
behavior log-probs equal to the learner's full-forward recomputation, and in-place weight loads."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stalegrpo import actors
from stalegrpo.actors import benchmark_sampling, make_actor
from stalegrpo.policy import build_model, build_tokenizer, sequence_logprobs
from stalegrpo.rollout import Rollout
from stalegrpo.tasks import Problem, get_task

TOL = 1e-5
"""max |behavior log-prob − learner recomputation| in fp32 at the same weights"""
MIXED = [Problem("1+2=", "03"), Problem("12+34=", "046"), Problem("5*6=", "0030"), Problem("99+99=", "198")]
"""prompts of different lengths, so left padding and position ids matter"""


@dataclass
class CountingTask:
    """A stand-in verifier: 10·(index of the problem in MIXED) + the length of the completion."""

    max_new_tokens: int = 4

    def reward(self, problem, completion):
        return 10.0 * MIXED.index(problem) + len(completion)


@pytest.fixture
def actor():
    tokenizer = build_tokenizer()
    return make_actor("hf", build_model(tokenizer, seed=0), tokenizer, get_task("addition"))


def test_rollout_shapes_masks_and_versions(actor):
    tok, task = actor.tokenizer, actor.task
    problems = task.sample("train", 16, np.random.default_rng(0))
    r = actor.generate(problems, 4, seed=0)
    n, lc = 64, r.completion_ids.shape[1]
    assert r.prompt_ids.shape == r.prompt_mask.shape == (n, 7)  # BOS + "ab+cd="
    assert r.completion_ids.shape == r.completion_mask.shape == r.behavior_logprobs.shape == (n, lc)
    assert lc <= task.max_new_tokens and r.gen_seconds > 0
    assert torch.equal(r.group, torch.arange(16).repeat_interleave(4))
    assert torch.equal(r.prompt_ids[::4].repeat_interleave(4, 0), r.prompt_ids)
    assert torch.equal(r.version, torch.zeros(n, dtype=torch.long))
    assert r.rewards.shape == (n,) and bool(((r.rewards == 0) | (r.rewards == 1)).all())
    # sampled tokens first, then padding; EOS only as a row's last sampled token
    lengths = r.completion_mask.sum(1)
    assert torch.equal(r.completion_mask, torch.arange(lc) < lengths[:, None])
    eos = r.completion_ids == tok.eos_token_id
    assert eos.any() and bool((eos.sum(1) <= 1).all())
    assert bool((eos.long().argmax(1)[eos.any(1)] == lengths[eos.any(1)] - 1).all())
    assert bool((lengths[~eos.any(1)] == task.max_new_tokens).all())  # no EOS: the budget ran out
    assert bool((r.completion_ids[~r.completion_mask] == tok.pad_token_id).all())
    assert bool((r.behavior_logprobs[~r.completion_mask] == 0).all())
    assert bool((r.behavior_logprobs[r.completion_mask] < 0).all())
    texts = r.texts(tok)
    assert all(tok.eos_token not in t and len(t) <= task.max_new_tokens for t in texts)
    # each row's reward is its own problem's verdict on its own text: with a verifier whose reward
    # is 10·(problem index) + (characters of the text), the rewards follow from the tokens alone
    # (one character per non-special token)
    counting = make_actor("hf", actor.model, tok, CountingTask())
    c = counting.generate(MIXED, 3, seed=0)
    chars = (c.completion_mask & ~torch.isin(c.completion_ids, torch.tensor(tok.all_special_ids))).sum(1)
    assert torch.equal(c.rewards, (10 * torch.arange(4).repeat_interleave(3) + chars).float())
    assert len(set(chars.tolist())) > 1  # the lengths vary, so a row/text mix-up would show


def test_same_seed_same_rollout(actor):
    a = actor.generate(MIXED, 8, seed=7)
    b = actor.generate(MIXED, 8, seed=7)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.equal(a.behavior_logprobs, b.behavior_logprobs)
    c = actor.generate(MIXED, 8, seed=8)
    assert c.completion_ids.shape != a.completion_ids.shape or not torch.equal(
        c.completion_ids, a.completion_ids
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_behavior_logprobs_equal_learner_recomputation(actor, temperature):
    r = actor.generate(MIXED, 8, temperature=temperature, seed=3)
    with torch.no_grad():
        learner = sequence_logprobs(
            actor.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, temperature or 1.0
        )
    gap = float((learner - r.behavior_logprobs).abs().max())
    assert gap < TOL, f"max |log mu - log pi| = {gap:.2e}"
    if temperature == 0.0:  # greedy: every group member is the same
        assert torch.equal(r.completion_ids[::8].repeat_interleave(8, 0), r.completion_ids)


def test_load_weights_changes_samples_and_version(actor):
    before = actor.generate(MIXED, 4, seed=1)
    g = torch.Generator().manual_seed(0)
    new = {n: p.detach() + 0.5 * torch.randn(p.shape, generator=g) for n, p in actor.model.named_parameters()}
    actor.load_weights({f"module.{k}": v for k, v in new.items()}, 5)  # a DeepSpeed-style prefix is fine
    after = actor.generate(MIXED, 4, seed=1)
    assert actor.version == 5 and torch.equal(after.version, torch.full((16,), 5))
    assert torch.equal(actor.model.model.embed_tokens.weight, new["model.embed_tokens.weight"])
    assert not torch.equal(before.behavior_logprobs, after.behavior_logprobs)
    with torch.no_grad():
        learner = sequence_logprobs(
            actor.model, after.prompt_ids, after.prompt_mask, after.completion_ids, after.completion_mask
        )
    assert float((learner - after.behavior_logprobs).abs().max()) < TOL
    with pytest.raises(KeyError, match="lm_head|embed_tokens"):
        actor.load_weights({"model.norm.weight": new["model.norm.weight"]}, 6)


def test_cat_keeps_groups_and_logprobs(actor):
    a = actor.generate(MIXED[:2], 3, seed=0)
    b = actor.generate(MIXED[2:], 2, seed=1)
    b.version[:] = 4
    r = Rollout.cat([a, b], pad_token_id=actor.tokenizer.pad_token_id)
    assert r.problems == MIXED and len(r) == 10
    assert r.group.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3] and r.version.tolist() == [0] * 6 + [4] * 4
    assert r.texts(actor.tokenizer) == a.texts(actor.tokenizer) + b.texts(actor.tokenizer)
    with torch.no_grad():
        learner = sequence_logprobs(
            actor.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask
        )
    assert float((learner - r.behavior_logprobs).abs().max()) < TOL


def test_benchmark_reports_both_samplers(actor, monkeypatch):
    result = benchmark_sampling(actor, MIXED, 2, repeats=1)
    assert result["batch"] == 8 and result["loop_tokens_per_s"] > 0 and result["generate_tokens_per_s"] > 0
    # known timings: a one-token budget makes every sampler emit exactly 8 tokens per batch, and a
    # fake clock makes the three timed loop batches take 2, 9 and 4 s and the generate ones 1, 1
    # and 0.5 s (the timed calls alternate loop, generate). Medians: loop 4 s → 8/4 = 2 tokens/s,
    # generate 1 s → 8 tokens/s; ratio loop/generate = 2/8 = 0.25
    one_token = make_actor("hf", actor.model, actor.tokenizer, CountingTask(max_new_tokens=1))
    clock = iter([0.0, 2.0, 2.0, 3.0, 3.0, 12.0, 12.0, 13.0, 13.0, 17.0, 17.0, 17.5])  # start, end, ...
    monkeypatch.setattr(actors, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    timed = benchmark_sampling(one_token, MIXED, 2, repeats=3)
    assert timed["loop_seconds_per_batch"] == 4.0 and timed["generate_seconds_per_batch"] == 1.0
    assert timed["loop_tokens_per_s"] == 2.0 and timed["generate_tokens_per_s"] == 8.0
    assert timed["ratio"] == 0.25


def test_unknown_backend_is_an_error(actor):
    with pytest.raises(ValueError, match="tpu"):
        make_actor("tpu", actor.model, actor.tokenizer, actor.task)


def test_completions_end_at_the_first_stop_string():
    from stalegrpo.policy import build_tokenizer
    from stalegrpo.rollout import Rollout

    tok = build_tokenizer()
    texts = ["12=34", "5678", "=9", ""]
    width = max(len(t) for t in texts)
    ids = torch.full((4, width), tok.pad_token_id)
    mask = torch.zeros(4, width, dtype=torch.bool)
    for row, text in enumerate(texts):
        encoded = tok(text, add_special_tokens=False)["input_ids"]
        ids[row, : len(encoded)], mask[row, : len(encoded)] = torch.tensor(encoded, dtype=torch.long), True
    rollout = Rollout([], ids, mask, ids, mask.clone(), torch.zeros(4, width), torch.zeros(4), torch.arange(4),
                      torch.zeros(4, dtype=torch.long), 0.0)
    rollout.cut_at_stop(tok, ("=", "78"))
    assert rollout.texts(tok) == ["12=", "5678", "=", ""]  # "78" completes at its last token
    assert rollout.completion_mask.sum(1).tolist() == [3, 4, 1, 0]
    rollout.cut_at_stop(tok, ())
    assert rollout.completion_mask.sum(1).tolist() == [3, 4, 1, 0]
