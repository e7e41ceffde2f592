"""Run by tests/test_learner.py under ``torchrun --nproc-per-node 2``: on each learner rank, one
step on its shard of the same batch, with the whole shard in one forward and in micro-batches of
3 sequences. Rank 0 saves both steps' metrics and updates to the path given as argument."""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_learner import rollout_with_signal, tiny_setup  # noqa: E402

from stalegrpo.actors import make_actor  # noqa: E402
from stalegrpo.learner import Learner  # noqa: E402
from stalegrpo.policy import flat_params  # noqa: E402
from stalegrpo.schedules import minibatch  # noqa: E402

torch.set_num_threads(1)
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
model, tokenizer, task, cfg = tiny_setup()
cfg = replace(cfg, deepspeed_zero=2, batch_prompts=4, kl_beta=0.1, aggregation=sys.argv[2])
batch = rollout_with_signal(make_actor("hf", copy.deepcopy(model), tokenizer, task), task, cfg)
shard = minibatch(batch, rank, size, cfg.group_size)
results = {}
for micro in (None, 3):
    learner = Learner(copy.deepcopy(model), copy.deepcopy(model), replace(cfg, micro_batch_size=micro))
    before = flat_params(learner.model)
    metrics = learner.step(shard)
    results[micro] = {"metrics": metrics, "update": flat_params(learner.model) - before, "rows": len(shard)}
if rank == 0:
    torch.save(results, sys.argv[1])
