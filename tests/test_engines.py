"""Actor engines in their own processes, with weights over their torch.distributed (gloo) group
(docs/method.md §5): after each broadcast, an engine's behavior log-probs equal the learner's
recomputation at the weights of that version, for the ``hf`` and (where installed) ``vllm``
backends; and the check does fail when the weights do not arrive."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from stalegrpo.config import load_config
from stalegrpo.engines import EngineSource
from stalegrpo.policy import (
    build_model,
    build_tokenizer,
    flat_params,
    load_flat,
    load_policy,
    sequence_logprobs,
)
from stalegrpo.tasks.arithmetic import ALPHABET
from stalegrpo.train import TrainConfig

TOLERANCE = {"hf": 1e-5, "vllm": 1e-4}
"""max |behavior log-prob − learner recomputation| at the same fp32 weights"""
BACKENDS = [
    "hf",
    pytest.param(
        "vllm",
        marks=[
            pytest.mark.vllm,
            pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM installed"),
        ],
    ),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small random policy; head dim 32, which vLLM's CPU attention supports."""
    tokenizer = build_tokenizer(ALPHABET)
    model = build_model(tokenizer, hidden=64, layers=2, heads=2, intermediate=128, seed=0)
    path = tmp_path_factory.mktemp("policy")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def max_gap(model, flat, rollout) -> float:
    """max |μ − π| over sampled tokens, π recomputed by the learner at the weights ``flat``."""
    load_flat(model, flat)
    with torch.no_grad():
        learner = sequence_logprobs(
            model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask
        )
    return float((learner - rollout.behavior_logprobs)[rollout.completion_mask].abs().max())


def versions(checkpoint, backend, send, *overrides):
    """Batches 0..3 from one engine (S = 0: batch n waits for version n), with version n's weights
    sent by ``send(source, flat_n, n)``; yields (flat_n, rollout of batch n)."""
    path, model = checkpoint, load_policy(checkpoint)[0]
    cfg = load_config(
        TrainConfig,
        None,
        [f"init_checkpoint={path}", f"actor={backend}", "schedule=async", "S=0", "digits=1", "batch_prompts=4",
         "group_size=2", "threads=2", *overrides],
    )
    generator = torch.Generator().manual_seed(0)
    flat0 = flat_params(model)
    source = EngineSource(cfg, flat0.numel(), flat0.device).start(flat0, 0, 0)
    try:
        rollouts = [(flat0, source.next(0)[0])]
        for n in range(1, 4):
            flat_n = flat0 + 0.05 * n * torch.randn(flat0.shape, generator=generator)
            send(source, flat_n, n)
            rollouts.append((flat_n, source.next(n)[0]))
    finally:
        source.close()
    return rollouts


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["gloo", "ipc"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_logprobs_follow_the_broadcast_weights(checkpoint, backend, transport):
    """gloo: a process group; ipc: shared buffers, which a vLLM engine's worker reloads from."""
    rollouts = versions(checkpoint, backend, lambda source, flat, n: source.publish(flat, n),
                        f"weight_transport={transport}")
    model = load_policy(checkpoint)[0]
    for n, (flat, rollout) in enumerate(rollouts):
        assert (rollout.version == n).all() and (rollout.engine == 0).all()
        assert max_gap(model, flat, rollout) < TOLERANCE[backend], n


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM installed")
def test_tensor_parallel_vllm_workers_receive_the_weights(checkpoint):
    """actor_devices = 2: vLLM runs two worker processes (on CPU as on CUDA), each a member of the
    weight group; both load every version, or the sharded model's log-probs would be wrong."""
    rollouts = versions(checkpoint, "vllm", lambda source, flat, n: source.publish(flat, n), "actor_devices=2")
    model = load_policy(checkpoint)[0]
    for n, (flat, rollout) in enumerate(rollouts):
        assert (rollout.version == n).all()
        assert max_gap(model, flat, rollout) < TOLERANCE["vllm"], n


@pytest.mark.slow
def test_the_check_fails_when_the_weights_do_not_arrive(checkpoint):
    """Send the version numbers but the first weights again: the engine then samples from stale
    weights tagged as new, and the log-prob check sees it."""
    model = load_policy(checkpoint)[0]
    flat0 = flat_params(model).clone()
    rollouts = versions(checkpoint, "hf", lambda source, flat, n: source.publish(flat0, n))
    gaps = [max_gap(model, flat, rollout) for flat, rollout in rollouts[1:]]
    assert min(gaps) > 100 * TOLERANCE["hf"], gaps


@pytest.mark.slow
def test_bench_measures_engines_and_weight_sync_by_model_size(checkpoint, tmp_path):
    import json

    from stalegrpo.bench import bench

    overrides = [
        f"init_checkpoint={checkpoint}",
        "batch_prompts=4",
        "group_size=2",
        "digits=1",
        "threads=2",
        "bench.steps=4",
        "bench.skip=1",
        "bench.S=[1]",
        "bench.engines=[1, 2]",
        "bench.sampling_repeats=1",
        "bench.sync_models=[96x3]",
        "bench.sync_steps=3",
    ]
    assert bench(None, overrides, tmp_path) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["S"], r["actors"]) for r in result["runs"]] == [(0, 1), (1, 1), (1, 2)]
    assert all(r["admission_violations"] == 0 and r["lag_mean"] <= r["S"] for r in result["runs"])
    own, bigger = result["weight_sync"]
    assert own["model"] == "checkpoint" and bigger["model"] == "96x3" and bigger["parameters"] > own["parameters"]
    for w in (own, bigger):
        assert w["transport"] == "gloo" and w["weight_sync_s"] > 0 and 0 < w["weight_sync_pct_of_step"] < 100


@pytest.mark.slow
def test_engines_that_never_start_end_with_the_source(checkpoint):
    """The engines start before the learner is built; if it fails, close() still ends them."""
    overrides = [f"init_checkpoint={checkpoint}", "schedule=async", "S=1", "actors=2", "digits=1", "threads=2"]
    cfg = load_config(TrainConfig, None, overrides)
    source = EngineSource(cfg, flat_params(load_policy(checkpoint)[0]).numel(), torch.device("cpu"))
    source.close()
    assert [p.exitcode for p in source.engines] == [0, 0]

