"""The ``hf`` actor (docs/method.md §1-§2): rollout shapes and masks, version tags, seeded sampling,
behavior log-probs equal to the learner's full-forward recomputation, and in-place weight loads."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from stalegrpo.actors import hf as actors
from stalegrpo.actors import make_actor
from stalegrpo.actors.throughput import benchmark_sampling
from stalegrpo.policy import build_model, build_tokenizer, sequence_logprobs
from stalegrpo.rollout import Rollout
from stalegrpo.tasks import Problem, get_task
from stalegrpo.tasks.arithmetic import ALPHABET

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
    tokenizer = build_tokenizer(ALPHABET)
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


def test_benchmark_reports_both_samplers(actor):
    result = benchmark_sampling(actor, MIXED, 2, repeats=1)
    assert result["batch"] == 8 and result["loop_tokens_per_s"] > 0 and result["generate_tokens_per_s"] > 0
    assert result["loop_seconds_per_batch"] > 0 and result["generate_seconds_per_batch"] > 0
    assert result["ratio"] == result["loop_tokens_per_s"] / result["generate_tokens_per_s"]


def test_rates_are_medians_over_repeats():
    """Three batches of 8 tokens in 2, 9 and 4 s: the median rate is 8/4 = 2 tokens/s (not the
    mean's 24/15), the median time 4 s; a spike on a shared machine moves neither."""
    from stalegrpo.actors.throughput import median_rates

    assert median_rates([(2.0, 8), (9.0, 8), (4.0, 8)]) == {
        "tokens_per_s": 2.0, "seconds_per_batch": 4.0, "tokens_per_batch": 8.0
    }
    # rates per batch: 10/2 = 5, 4/1 = 4, 30/10 = 3 → 4; times 1, 2, 10 → 2; tokens 4, 10, 30 → 10
    assert median_rates([(2.0, 10), (1.0, 4), (10.0, 30)]) == {
        "tokens_per_s": 4.0, "seconds_per_batch": 2.0, "tokens_per_batch": 10.0
    }


def test_unknown_backend_is_an_error(actor):
    with pytest.raises(ValueError, match="tpu"):
        make_actor("tpu", actor.model, actor.tokenizer, actor.task)


def test_completions_end_at_the_first_stop_string():
    from stalegrpo.policy import build_tokenizer
    from stalegrpo.rollout import Rollout

    tok = build_tokenizer(ALPHABET)
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


# -- precision and the static / compiled decode -------------------------------------------------
def test_dtype_resolves_against_the_device():
    from stalegrpo.policy import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cuda") == torch.float32
    assert resolve_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    for bad in ("float16", "fp32", torch.float16):
        with pytest.raises(ValueError, match="expected"):
            resolve_dtype(bad, "cpu")


def static_decoder(actor):
    """The actor's model decoded with a static KV cache, eagerly."""
    return actors.Decoder(actor.model, static=True)


@pytest.mark.parametrize("kind", ["static", "compiled"])
def test_static_and_compiled_decode_equal_the_eager_loop(actor, kind):
    """The static-cache decode, eager or compiled (inductor on the CPU), samples the eager loop's
    tokens for the same seed, with its behavior log-probs to 1e-5 in fp32, also after a weight
    load into the compiled model."""
    tok = actor.tokenizer
    decoder = static_decoder(actor) if kind == "static" else actors.Decoder(actor.model, compile=True)
    ids, mask = actor.encode(MIXED, 8)
    assert decoder.width(ids.shape[1], 12) == actors.STATIC_BUCKET  # 8 + 12 positions, rounded up

    def both(temperature, seed):
        out = []
        for d in (None, decoder):
            g = torch.Generator().manual_seed(seed)
            out.append(actors.sample(actor.model, ids, mask, 12, tok.eos_token_id, tok.pad_token_id,
                                     temperature, g, decoder=d))
        return out

    for temperature, seed in [(1.0, 3), (0.7, 4), (1.0, 5)]:  # the last reuses the static cache, reset
        (e_ids, e_mask, e_lp), (s_ids, s_mask, s_lp) = both(temperature, seed)
        assert torch.equal(s_ids, e_ids) and torch.equal(s_mask, e_mask)
        assert e_mask.sum(1).min() < e_mask.sum(1).max()  # rows end at different steps
        gap = float((s_lp - e_lp).abs().max())
        assert gap < TOL, f"{kind}: max |log mu_static - log mu_eager| = {gap:.2e}"
    # weights loaded in place reach the compiled step (no stale constants); a modest change, so
    # that the logits stay in the range where fp32 rounding is below 1e-5
    g = torch.Generator().manual_seed(0)
    new = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=g) for n, p in actor.model.named_parameters()}
    actor.load_weights(new, 1)
    (e_ids, e_mask, e_lp), (s_ids, s_mask, s_lp) = both(1.0, 3)
    assert torch.equal(s_ids, e_ids) and float((s_lp - e_lp).abs().max()) < TOL
    with torch.no_grad():
        learner = sequence_logprobs(actor.model, ids, mask, s_ids, s_mask)
    assert float((learner - s_lp).abs().max()) < TOL


def test_compiled_actor_rollouts(actor):
    """``make_actor(..., compile=True)``: the rollout of the eager actor, batch after batch and for a
    batch of another shape (a new static cache)."""
    compiled = make_actor("hf", actor.model, actor.tokenizer, actor.task, compile=True)
    assert compiled.mode == "float32/compiled" and actor.mode == "float32/eager"
    for problems, G, seed in [(MIXED, 8, 1), (MIXED[:3], 2, 2)]:
        a, b = actor.generate(problems, G, seed=seed), compiled.generate(problems, G, seed=seed)
        assert torch.equal(a.completion_ids, b.completion_ids)
        assert torch.equal(a.completion_mask, b.completion_mask)
        assert float((a.behavior_logprobs - b.behavior_logprobs).abs().max()) < TOL
        assert torch.equal(a.rewards, b.rewards) and b.behavior_logprobs.device.type == "cpu"


def test_checking_for_the_end_less_often_gives_the_same_sample(actor):
    """On CUDA the loop asks whether any row is alive only every few steps; the extra padding
    columns are cut, so the sample is the one of checking every step."""
    tok = actor.tokenizer
    ids, mask = actor.encode(MIXED, 4)

    def run(eos, every):
        g = torch.Generator().manual_seed(11)
        return actors.sample(actor.model, ids, mask, 100, eos, tok.pad_token_id, 1.0, g, check_every=every)

    # the untrained policy seldom emits EOS: its most frequent token stands in for it
    eos = int(run(-1, 1)[0].flatten().mode().values)
    out = {every: run(eos, every) for every in (1, 3, 5, 50)}
    lengths = out[1][1].sum(1)
    assert out[1][1].shape[1] < 100 and len(set(lengths.tolist())) > 1  # rows end early, at various steps
    for every in (3, 5, 50):
        assert all(torch.equal(a, b) for a, b in zip(out[1], out[every]))


def test_bf16_actor_samples_with_fp32_logprobs():
    """A bf16 actor: the model copy is cast, weights are cast on load, the sampling distribution
    and the log-probs are fp32, and μ stays close to (not equal to) the fp32 learner's π."""
    tokenizer = build_tokenizer(ALPHABET)
    learner_model = build_model(tokenizer, seed=0)
    task = get_task("addition")
    actor = make_actor("hf", build_model(tokenizer, seed=0), tokenizer, task, dtype="bfloat16")
    assert actor.mode == "bfloat16/eager"
    assert all(p.dtype == torch.bfloat16 for p in actor.model.parameters())
    assert actor.model.model.rotary_emb.inv_freq.dtype == torch.float32  # buffers keep their precision
    assert actor.model.lm_head.weight is actor.model.model.embed_tokens.weight  # still tied
    r = actor.generate(MIXED, 8, seed=3)
    assert r.behavior_logprobs.dtype == torch.float32
    with torch.no_grad():
        learner = sequence_logprobs(learner_model, r.prompt_ids, r.prompt_mask, r.completion_ids,
                                    r.completion_mask)
    gap = (learner - r.behavior_logprobs).abs()[r.completion_mask]
    assert 0 < float(gap.max()) < 0.1  # bf16 rounding, far below a policy change
    state = {n: p.detach() + 0.01 for n, p in learner_model.named_parameters()}  # fp32 weights
    actor.load_weights(state, 2)
    assert torch.equal(actor.model.model.norm.weight, state["model.norm.weight"].to(torch.bfloat16))
    assert actor.generate(MIXED, 2, seed=3).version.tolist() == [2] * 8
    with pytest.raises(ValueError, match="float16"):
        make_actor("hf", learner_model, tokenizer, task, dtype="float16")


def test_actor_options_of_a_train_config():
    from stalegrpo.actors import actor_options
    from stalegrpo.train import TrainConfig

    cfg = TrainConfig(prompt_template="plain", system_prompt="be brief", actor_dtype="bfloat16",
                      actor_compile=True)
    assert actor_options(cfg) == {"template": "plain", "system": "be brief", "dtype": "bfloat16",
                                  "compile": True}
    # vLLM has no compile option of ours (its own CUDA graphs are its engine's business)
    assert actor_options(cfg, "vllm") == {"template": "plain", "system": "be brief", "dtype": "bfloat16"}
    # a GPU share set in the config reaches every vLLM actor (the fixed schedule's in-process one too)
    shared = TrainConfig(gpu_memory_utilization=0.5)
    assert actor_options(shared, "vllm")["gpu_memory_utilization"] == 0.5
    assert "gpu_memory_utilization" not in actor_options(shared, "hf")
    default = actor_options(TrainConfig())
    assert default["dtype"] == "auto" and default["compile"] is False
    tokenizer = build_tokenizer(ALPHABET)
    hf = make_actor("hf", build_model(tokenizer), tokenizer, get_task("addition"), **default)
    assert hf.mode == "float32/eager"  # auto on the CPU


def test_benchmark_modes_times_each_actor_on_the_same_batch(actor):
    from stalegrpo.actors.throughput import benchmark_modes

    one_token = CountingTask(max_new_tokens=1)
    tokenizer = actor.tokenizer
    fp32 = make_actor("hf", actor.model, tokenizer, one_token)
    bf16 = make_actor("hf", build_model(tokenizer, seed=0), tokenizer, one_token, dtype="bfloat16")
    result = benchmark_modes([fp32, bf16], MIXED, 2, repeats=1)
    assert set(result) == {"float32/eager", "bfloat16/eager"}
    assert all(r["tokens_per_s"] > 0 and r["tokens_per_batch"] == 8 for r in result.values())
    assert all(r["first_batch_s"] > 0 and r["seconds_per_batch"] > 0 for r in result.values())
    with pytest.raises(ValueError, match="two actors"):
        benchmark_modes([fp32, fp32], MIXED, 2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_decode_equals_the_eager_loop_on_cuda(monkeypatch):
    """On CUDA the compiled step is a CUDA-graph replay: in fp32 it samples the eager loop's tokens
    with its log-probs (to the 1e-4 of the CUDA tests), batch after batch and after a weight load;
    bf16 (``auto`` there) stays close to the fp32 learner and follows loaded weights too."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # fp32 comparisons
    tokenizer, task = build_tokenizer(ALPHABET), get_task("addition")
    eager = make_actor("hf", build_model(tokenizer, seed=0), tokenizer, task, device="cuda")
    compiled = make_actor("hf", build_model(tokenizer, seed=0), tokenizer, task, device="cuda", compile=True)
    bf16 = make_actor("hf", build_model(tokenizer, seed=0), tokenizer, task, device="cuda", dtype="auto",
                      compile=True)
    assert bf16.mode == "bfloat16/compiled"
    g = torch.Generator().manual_seed(0)
    params = eager.model.named_parameters()
    new = {n: p.detach().cpu() + 0.1 * torch.randn(p.shape, generator=g) for n, p in params}
    for version, seeds in [(0, (1, 2, 3)), (1, (4, 5))]:
        if version:
            for actor in (eager, compiled, bf16):
                actor.load_weights(new, version)
        for seed in seeds:
            a, b = eager.generate(MIXED, 8, seed=seed), compiled.generate(MIXED, 8, seed=seed)
            assert torch.equal(a.completion_ids, b.completion_ids)
            assert torch.equal(a.completion_mask, b.completion_mask)
            assert float((a.behavior_logprobs - b.behavior_logprobs).abs().max()) < 1e-4
            r = bf16.generate(MIXED, 8, seed=seed)
            with torch.no_grad():
                learner = sequence_logprobs(eager.model, *(x.cuda() for x in (
                    r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask))).cpu()
            assert r.version.tolist() == [version] * 32
            assert float((learner - r.behavior_logprobs).abs()[r.completion_mask].max()) < 0.1
