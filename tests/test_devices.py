"""Device-correct code, checked on the CPU: under ``torch.device("meta")`` a tensor that code makes
without naming its device lands on ``meta``, and mixing it with the CPU tensors of the run raises
(or ``.item()`` on it does). On a GPU the same tensor would land on the CPU beside CUDA tensors
and crash the step ("Expected all tensors to be on the same device"), as the first GPU run did.
So the actor, the learner's micro-batched step with every metric reduction, and the bias probe
run here under that context, and must not notice it."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_learner import rollout_with_signal, tiny_setup

from stalegrpo.actors import make_actor
from stalegrpo.learner import Learner
from stalegrpo.rollout import Rollout


def setup(stage: int):
    model, tokenizer, task, cfg = tiny_setup()
    cfg = replace(cfg, deepspeed_zero=stage, kl_beta=0.05, micro_batch_size=5)
    actor = make_actor("hf", copy.deepcopy(model), tokenizer, task)
    learner = Learner(model, copy.deepcopy(model), cfg)
    return actor, learner, task, cfg


def on_cpu(rollout: Rollout) -> bool:
    return all(v.device.type == "cpu" for v in vars(rollout).values() if torch.is_tensor(v))


def test_the_actor_makes_every_tensor_on_a_named_device():
    actor, _, task, cfg = setup(0)
    problems = task.sample("train", cfg.batch_prompts, np.random.default_rng(0))
    with torch.device("meta"):
        rollout = actor.generate(problems, cfg.group_size, 1.0, seed=0)
    assert on_cpu(rollout) and rollout.completion_mask.any()


@pytest.mark.parametrize("stage", [0, 2])
def test_a_learner_step_and_its_metrics_make_every_tensor_on_a_named_device(stage):
    actor, learner, task, cfg = setup(stage)
    batch = rollout_with_signal(actor, task, cfg)
    with torch.device("meta"):
        metrics = learner.step(batch)
    assert metrics["finite"] and learner.version == 1
    assert all(isinstance(v, (float, bool)) for v in metrics.values())


@pytest.mark.parametrize("coupled", [False, True])
def test_the_bias_probe_makes_every_tensor_on_a_named_device(coupled):
    actor, learner, task, cfg = setup(0)
    batch = rollout_with_signal(actor, task, cfg)
    with torch.device("meta"):
        gradients = learner.probe_gradient(copy.deepcopy(learner.model), batch, coupled=coupled)
    for gradient in gradients if coupled else (gradients,):
        assert gradient.device.type == "cpu" and gradient.norm() > 0
