"""The GPU path: the same actor, learner, engine and bench code on CUDA (bf16 learner, NCCL instead
of gloo). Skipped without a GPU; the tests that need an actor engine on a device of its own are
skipped on one GPU. ``bash scripts/gpu_check.sh`` runs them (``pytest -m cuda``) and the bench."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_engines import max_gap
from test_learner import assert_same_step, micro_batched_steps, rollout_with_signal, tiny_setup

from stalegrpo.actors import make_actor
from stalegrpo.config import load_config
from stalegrpo.learner import REPO_ROOT, Learner
from stalegrpo.policy import flat_params, load_policy, weights_checksum
from stalegrpo.tasks import make_task
from stalegrpo.policy import prompt_format
from stalegrpo.train import TrainConfig, check, run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_an_engine_gpu = pytest.mark.skipif(
    GPUS < 2,
    reason="an actor engine needs a CUDA device of its own (train.check_placement: learners + actors devices; "
    "engines.placement pins it with CUDA_VISIBLE_DEVICES), and NCCL refuses two ranks of one group on one GPU",
)
SMOKE = REPO_ROOT / "config" / "train_smoke.yaml"
STANDIN = ["task=countdown", "task_options={max_new_tokens: 8}", "deepspeed_zero=2", "actor=hf", "logger=none"]
"""the paper path at toy size: the Qwen2 stand-in on countdown prompts in its chat template, ZeRO-2"""


@pytest.fixture
def fp32_deepspeed_dir(tmp_path) -> Path:
    """The shipped ZeRO configs with bf16 off: comparisons at fp32 need an fp32 learner on CUDA too."""
    for stage in (0, 1, 2):
        ds_config = json.loads((REPO_ROOT / "config" / "deepspeed" / f"zero{stage}.json").read_text())
        (tmp_path / f"zero{stage}.json").write_text(json.dumps(ds_config | {"bf16": {"enabled": False}}))
    return tmp_path


@pytest.mark.parametrize("stage", [0, 2])
def test_actor_and_deepspeed_learner_on_cuda(stage, fp32_deepspeed_dir):
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 comparisons need full-precision matmuls
    model, tokenizer, task, cfg = tiny_setup()
    cfg = replace(cfg, deepspeed_zero=stage, kl_ref_every=0, deepspeed_dir=str(fp32_deepspeed_dir))
    actor = make_actor("hf", copy.deepcopy(model), tokenizer, task, device="cuda")
    learner = Learner(model, None, cfg)
    assert learner.device.type == "cuda"
    batch = rollout_with_signal(actor, task, cfg).to(learner.device)
    with torch.no_grad():
        logprobs = learner.logprobs(learner.engine, batch)
    gap = (logprobs - batch.behavior_logprobs).abs()[batch.completion_mask].max()
    assert gap < 1e-4
    before = flat_params(learner.model).clone()
    metrics = learner.step(batch)
    assert metrics["finite"] and learner.version == 1
    assert (flat_params(learner.model) - before).norm() > 0
    actor.load_weights(learner.model.state_dict(), learner.version)
    assert actor.version == 1


def test_a_qwen2_checkpoint_trains_in_bf16_under_zero2(standin_checkpoint):
    """Another architecture than the character Llama (the Qwen2 stand-in, chat prompts), with the
    shipped ZeRO-2 JSON, whose bf16 "auto" is bf16 on CUDA; the fp32 actor follows the learner."""
    cfg = load_config(TrainConfig, None, [f"init_checkpoint={standin_checkpoint}", *STANDIN, "batch_prompts=4",
                                          "group_size=4", "eta=1e-2", "kl_ref_every=0", "threads=1"])
    task = make_task(cfg)
    model, tokenizer = load_policy(standin_checkpoint)
    actor = make_actor("hf", copy.deepcopy(model), tokenizer, task, device="cuda", **prompt_format(cfg))
    learner = Learner(model, None, cfg)
    assert learner.device.type == "cuda" and next(learner.model.parameters()).dtype == torch.bfloat16
    for step in range(3):
        batch = rollout_with_signal(actor, task, cfg, seed=step)  # at the learner's version: lag 0
        before = flat_params(learner.model).clone()
        metrics = learner.step(batch)
        assert metrics["finite"] and learner.version == step + 1
        assert (flat_params(learner.model) - before).norm() > 0
        # fp32 sampling against the bf16 recomputation at the same weights: rounding, not a mismatch
        assert 0 <= metrics["mismatch_kl"] < 1e-2
        actor.load_weights(learner.model.state_dict(), learner.version)
        assert actor.version == learner.version


@needs_an_engine_gpu
def test_engine_receives_the_weights_over_nccl(standin_checkpoint):
    """Learner (this process, cuda:0) and an hf engine (its own process on GPU 1) in an NCCL group:
    every version arrives, and the engine samples from exactly those weights."""
    import torch.distributed as dist

    from stalegrpo.engines import EngineSource

    cfg = load_config(TrainConfig, None, [f"init_checkpoint={standin_checkpoint}", *STANDIN, "schedule=async",
                                          "S=0", "batch_prompts=4", "group_size=2", "threads=2"])
    model = load_policy(standin_checkpoint)[0]
    flat0 = flat_params(model).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    source = EngineSource(cfg, flat0.numel(), flat0.device).start(flat0, 0, 0)
    try:
        assert isinstance(source.groups[0], dist.ProcessGroupNCCL)
        sent = [flat0]
        rollouts = [source.next(0)[0]]
        for n in range(1, 4):
            sent.append(flat0 + 0.05 * n * torch.randn(flat0.shape, device="cuda", generator=generator))
            source.publish(sent[-1], n)
            rollouts.append(source.next(n)[0])
    finally:
        source.close()
    for n, (flat, rollout) in enumerate(zip(sent, rollouts)):
        assert (rollout.version == n).all() and (rollout.engine == 0).all()
        np.testing.assert_allclose(rollout.weights_checksum, weights_checksum(flat), rtol=1e-9)
        assert max_gap(model, flat.cpu(), rollout) < 1e-4, n  # engine on its GPU, learner recomputes on CPU


@needs_an_engine_gpu
def test_async_run_with_an_hf_engine_on_its_own_gpu(standin_checkpoint, tmp_path):
    cfg = load_config(TrainConfig, SMOKE, [f"init_checkpoint={standin_checkpoint}", *STANDIN, "schedule=async",
                                           "S=1", "steps=4", "batch_prompts=4", "group_size=2", "threads=2",
                                           "eval_prompts=4", "probe_every=0", "collapse.reward_detector=false"])
    check(cfg)
    summary = run(cfg, tmp_path)
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    lags = pd.read_parquet(tmp_path / "lags.parquet")
    assert summary["admission_violations"] == 0 and steps["step"].tolist() == [0, 1, 2, 3]
    assert lags["lag"].between(0, 1).all() and (lags["engine"] == 0).all()
    # every batch was generated with the weights of the version it claims: the broadcasts arrived
    np.testing.assert_allclose(steps["behavior_checksum"], steps["version_checksum"], rtol=1e-9)
    assert (steps["weight_sync_s"] > 0).all() and steps["finite"].all()


def test_bench_on_cuda(tmp_path):
    """``stalegrpo bench lm`` of a toy Qwen2 with a padded vocabulary, bf16: the async runs, their
    engines colocated on the learner's GPU where there is one GPU (``colocate: auto``)."""
    from stalegrpo.bench import bench

    overrides = ["bench.model=qwen2:64x2,heads=2,intermediate=128,vocab=1024", *STANDIN, "batch_prompts=2",
                 "group_size=2", "threads=2", "bench.steps=3", "bench.skip=1", "bench.S=[1]",
                 "bench.engines=[1]", "bench.sampling_repeats=1", "bench.sync_steps=2"]
    assert bench(None, overrides, tmp_path) == 0
    summary = json.loads((tmp_path / "bench.json").read_text())["summary"]
    assert summary["precision"] == "bf16" and summary["devices"] == GPUS
    assert summary["learner_tokens_per_s"] > 0 and summary["actor_tokens_per_s"] > 0 and summary["weight_sync_s"] > 0
    (speedup,) = summary["speedups"]
    assert summary["baseline"] == "async S=0, A=1" and speedup["speedup"] > 0


def test_a_micro_batched_step_equals_the_whole_batch_step_on_cuda(fp32_deepspeed_dir):
    """As tests/test_learner.py on the CPU: fp32 learner on cuda:0, ZeRO-2, micro-batches of 3."""
    torch.backends.cuda.matmul.allow_tf32 = False
    whole, micro = micro_batched_steps(2, "seq_mean", 3, "decoupled", deepspeed_dir=str(fp32_deepspeed_dir))
    assert whole[2].device.type == "cuda" and whole[0]["grad_norm"] > 0
    assert_same_step(whole, micro, rtol=1e-4, atol=1e-6)


def test_a_wide_vocabulary_step_on_cuda_peaks_below_its_full_logits(tmp_path):
    """tests/test_memory.py on the GPU: Qwen's 151,936-row vocabulary, hidden 64, 32 sequences of 160
    tokens (3.1 GB of fp32 logits), bf16: the step's CUDA peak stays under half of that."""
    from memory_step import batch
    from test_memory import QWEN_VOCAB_TINY_BODY

    from stalegrpo.checkpoints import make_model
    from stalegrpo.memory import PeakMemory

    model, _ = load_policy(make_model(QWEN_VOCAB_TINY_BODY, tmp_path / "model"))
    cfg = TrainConfig(batch_prompts=4, group_size=8, kl_ref_every=0, threads=2, micro_batch_size=8)
    learner = Learner(model, None, cfg)
    rollout = batch(32, model.config.vocab_size)
    with PeakMemory(learner.device) as peak:
        metrics = learner.step(rollout)
    logits_bytes = 32 * 160 * model.config.vocab_size * 4
    assert metrics["finite"] and peak.bytes < logits_bytes / 2, f"peak {peak.gib:.2f} GiB"
