"""The GPU path: the same actor and learner code on CUDA (NCCL instead of gloo). Skipped without a GPU."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from test_learner import rollout_with_signal, tiny_setup

from stalegrpo.actors import make_actor
from stalegrpo.learner import Learner
from stalegrpo.policy import flat_params

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("stage", [0, 2])
def test_actor_and_deepspeed_learner_on_cuda(stage):
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 comparisons need full-precision matmuls
    model, tokenizer, task, cfg = tiny_setup()
    cfg = replace(cfg, deepspeed_zero=stage, kl_ref_every=0)
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
