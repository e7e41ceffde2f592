"""Run by tests/test_memory.py in a subprocess whose memory is capped: one learner step of a model
with Qwen's 151,936-row vocabulary and a tiny body (hidden 64, one layer) on B sequences of 160
tokens, and the step's peak memory (:class:`stalegrpo.memory.PeakMemory`) as JSON on stdout.

    python tests/memory_step.py MODEL_DIR SEQUENCES MICRO_BATCH_SIZE|none
"""

from __future__ import annotations

import json
import sys

import torch

from stalegrpo.learner import Learner
from stalegrpo.memory import PeakMemory
from stalegrpo.policy import load_policy
from stalegrpo.rollout import Rollout
from stalegrpo.train import TrainConfig

PROMPT, COMPLETION, G = 32, 128, 8


def batch(n: int, vocab: int) -> Rollout:
    g = torch.Generator().manual_seed(0)
    completion_mask = torch.ones(n, COMPLETION, dtype=torch.bool)
    completion_mask[::3, COMPLETION // 2 :] = False  # some completions end early
    return Rollout(
        problems=[None] * (n // G),
        prompt_ids=torch.randint(vocab, (n, PROMPT), generator=g),
        prompt_mask=torch.ones(n, PROMPT, dtype=torch.bool),
        completion_ids=torch.randint(vocab, (n, COMPLETION), generator=g),
        completion_mask=completion_mask,
        behavior_logprobs=-12 - torch.rand(n, COMPLETION, generator=g),
        rewards=torch.rand(n, generator=g).round(),
        group=torch.arange(n // G).repeat_interleave(G),
        version=torch.zeros(n, dtype=torch.long),
        gen_seconds=0.0,
    )


def main(path: str, n: int, micro: int | None) -> None:
    torch.set_num_threads(2)
    model, _ = load_policy(path)
    micro_options = {} if micro is None else {"micro_batch_size": micro}
    cfg = TrainConfig(batch_prompts=n // G, group_size=G, kl_ref_every=0, threads=2, **micro_options)
    learner = Learner(model, None, cfg)
    rollout = batch(n, model.config.vocab_size)
    with PeakMemory("cpu") as peak:
        metrics = learner.step(rollout)
    print(json.dumps({"peak_bytes": peak.bytes, "reset": peak.reset, "finite": metrics["finite"],
                      "grad_norm": metrics["grad_norm"], "logits_bytes": n * (PROMPT + COMPLETION) * model.config.vocab_size * 4}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), None if sys.argv[3] == "none" else int(sys.argv[3]))
