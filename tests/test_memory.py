"""Memory that grows with a micro-batch and a chunk of logits, not with tokens × vocabulary.

A model with Qwen's 151,936-row vocabulary and a tiny body (hidden 64, one layer) takes one learner
step on 32 sequences of 160 tokens, whose full fp32 logits alone would take 3.1 GB. The step runs
in a subprocess whose address space is capped (``resource.setrlimit``), so that a regression fails
with an allocation error instead of taking the machine down; its peak resident set must stay
under 2 GB, with and without micro-batches. (Measured on the code before chunked log-probs: 16.2 GB
uncapped, and "can't allocate memory" under this cap.)"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CAP = 4 * 2**30
"""address-space cap of the step's process: torch, DeepSpeed and transformers map ~1.5 GB"""
QWEN_VOCAB_TINY_BODY = "qwen2:64x1,heads=1,kv_heads=1,intermediate=128,vocab=151936"


@pytest.fixture(scope="module")
def wide_vocab_model(tmp_path_factory) -> Path:
    from stalegrpo.checkpoints import make_model

    return make_model(QWEN_VOCAB_TINY_BODY, tmp_path_factory.mktemp("wide_vocab") / "model")


def capped_step(model: Path, sequences: int, micro: int | None) -> dict:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    done = subprocess.run(
        [sys.executable, str(HERE / "memory_step.py"), str(model), str(sequences), str(micro).lower()],
        capture_output=True, text=True, timeout=600, preexec_fn=cap, env=os.environ | {"OMP_NUM_THREADS": "2"},
    )
    assert done.returncode == 0, f"the capped learner step failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("micro", [None, 4])
def test_a_wide_vocabulary_step_peaks_under_2_gb(wide_vocab_model, micro):
    result = capped_step(wide_vocab_model, 32, micro)
    assert result["logits_bytes"] > 3e9  # what one full fp32 logits tensor of this batch would take
    assert result["reset"] and result["finite"] and result["grad_norm"] > 0
    assert result["peak_bytes"] < 2e9, f"peak RSS {result['peak_bytes'] / 1e9:.2f} GB"
