"""Tokens per second of the ``hf`` sampler (:mod:`stalegrpo.actors.hf`), for the bench
(:mod:`stalegrpo.bench`): against transformers' ``model.generate`` on the same batch, and across
the actor's precisions and decodes. Medians over repeats, the samplers alternating, so that a
load spike on a shared machine favours none."""

from __future__ import annotations

import time

import numpy as np
import torch

from stalegrpo.actors.hf import HFActor
from stalegrpo.tasks.base import Problem


def benchmark_sampling(
    actor: HFActor, problems: list[Problem], G: int, repeats: int = 3, temperature: float = 1.0
) -> dict:
    """Sampled tokens per second of :func:`sample` (the actor's decoder) and of ``model.generate``
    (over the same model, in the actor's dtype) on the same batch.

    Both sample at ``temperature`` up to the task's budget and stop when every row has emitted
    EOS; only ``sample`` also returns log-probs. Each is warmed up once, then timed ``repeats``
    times (alternating); tokens are counted up to and including EOS, and the medians over repeats
    are reported.
    """
    prompt_ids, prompt_mask = actor.encode(problems, G)
    max_new = actor.task.max_new_tokens
    tok = actor.tokenizer

    def run_loop():
        _, mask, _ = actor.sample(prompt_ids, prompt_mask, temperature, max_new_tokens=max_new)
        return int(mask.sum())

    @torch.no_grad()
    def run_generate():
        out = actor.model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        completion = out[:, prompt_ids.shape[1] :]
        # tokens up to and including the first EOS
        before_eos = (completion == tok.eos_token_id).long().cumsum(1) - (
            completion == tok.eos_token_id
        ).long()
        return int((before_eos == 0).sum())

    # the two samplers alternate and the medians are reported, so that a load spike on a shared
    # machine neither favours one sampler nor dominates the result
    result = {"batch": prompt_ids.shape[0], "max_new_tokens": max_new, "repeats": repeats, "mode": actor.mode}
    timings = {"loop": [], "generate": []}
    run_loop(), run_generate()  # warm-up
    for _ in range(repeats):
        for name, fn in (("loop", run_loop), ("generate", run_generate)):
            start = time.perf_counter()
            n_tokens = fn()
            if actor.device.type == "cuda":
                torch.cuda.synchronize(actor.device)
            timings[name].append((time.perf_counter() - start, n_tokens))
    for name, runs in timings.items():
        medians = median_rates(runs)
        result[f"{name}_seconds_per_batch"] = medians["seconds_per_batch"]
        result[f"{name}_tokens_per_s"] = medians["tokens_per_s"]
    result["ratio"] = result["loop_tokens_per_s"] / result["generate_tokens_per_s"]
    return result


def benchmark_modes(
    actors: list[HFActor], problems: list[Problem], G: int, repeats: int = 3, temperature: float = 1.0
) -> dict[str, dict]:
    """Sampled tokens per second of each actor's :meth:`HFActor.sample` on the same batch, by
    :attr:`HFActor.mode` (e.g. ``"float32/eager"`` against ``"bfloat16/compiled"``).

    Each actor samples the batch once untimed (``first_batch_s``: a compiled decoder compiles
    then), then ``repeats`` times with a seeded generator, the actors alternating so that a load
    spike on a shared machine favours none; tokens up to and including EOS, medians over repeats.
    """
    runs = {}
    for actor in actors:
        if actor.mode in runs:
            raise ValueError(f"two actors of mode {actor.mode!r}")
        runs[actor.mode] = []

    def run(actor, seed):
        ids, mask = actor.encode(problems, G)
        generator = torch.Generator(device=actor.device).manual_seed(seed)
        start = time.perf_counter()
        _, completion_mask, _ = actor.sample(ids, mask, temperature, generator)
        n_tokens = int(completion_mask.sum())  # waits for the device
        return time.perf_counter() - start, n_tokens

    first = {actor.mode: run(actor, 0)[0] for actor in actors}
    for repeat in range(repeats):
        for actor in actors:
            runs[actor.mode].append(run(actor, repeat + 1))
    return {mode: median_rates(timed) | {"first_batch_s": first[mode]} for mode, timed in runs.items()}


def median_rates(timed: list[tuple[float, int]]) -> dict:
    """Medians over repeats of (seconds, tokens) pairs: tokens/s (the median of the per-batch
    rates), seconds and tokens per batch."""
    return {
        "tokens_per_s": float(np.median([n / sec for sec, n in timed])),
        "seconds_per_batch": float(np.median([sec for sec, _ in timed])),
        "tokens_per_batch": float(np.median([n for _, n in timed])),
    }
