"""Actors: sample G completions per prompt from the behavior policy μ = π_{θ_v} and record μ.

docs/method.md §1-§2: every sample carries the behavior version v of the weights that generated it
and the log-prob log μ(y_t | x, y_<t) of each sampled token, at the sampling temperature. The
learner's ratio ρ = π_θ / μ uses exactly these numbers, so they must equal the learner's own
computation (:func:`stalegrpo.policy.sequence_logprobs`) at the same weights: the sampler uses
the same left padding and position ids ``cumsum(mask) - 1``, and the gap is tested to 1e-5.

Backends implement the contract of :mod:`stalegrpo.rollout` (:class:`~stalegrpo.rollout.Actor`
returning a :class:`~stalegrpo.rollout.Rollout`) and are built by :func:`make_actor`: ``hf`` is a
hand-written KV-cache sampling loop over a transformers model (CPU or CUDA), which is at least
as fast as ``model.generate`` and yields the log-probs as it goes; ``vllm`` is
:mod:`stalegrpo.actors_vllm`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import DynamicCache

from stalegrpo.policy import encode_prompts, load_policy, position_ids
from stalegrpo.rollout import Actor, Rollout, copy_weights
from stalegrpo.tasks import Problem, Task

BACKENDS = ("hf", "vllm")


@torch.no_grad()
def sample(
    model,
    prompt_ids,
    prompt_mask,
    max_new_tokens,
    eos_token_id,
    pad_token_id,
    temperature=1.0,
    generator=None,
):
    """KV-cache sampling with per-token log-probs: (completion_ids, completion_mask, logprobs).

    Each step feeds only the newest token; the attention mask grows by one column per step
    (False once a row has emitted EOS) and the position of a new token is one past its row's
    last one, i.e. ``cumsum(mask) - 1`` as in :func:`stalegrpo.policy.sequence_logprobs`.
    ``temperature = 0`` is greedy decoding, with log-probs of the untempered softmax.
    """
    n, lp = prompt_ids.shape
    device = prompt_ids.device
    # the attention mask of the whole sequence, filled one column per step (no per-step cat)
    mask = torch.zeros(n, lp + max_new_tokens, dtype=torch.long, device=device)
    mask[:, :lp] = prompt_mask
    positions = position_ids(mask[:, :lp])
    cache = DynamicCache(config=model.config)
    logits = model(
        input_ids=prompt_ids,
        attention_mask=mask[:, :lp],
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    next_pos = positions[:, -1:] + 1
    alive = torch.ones(n, dtype=torch.bool, device=device)
    tokens, logprobs, masks = [], [], []
    for t in range(max_new_tokens):
        logp = torch.log_softmax(logits.float() / (temperature or 1.0), dim=-1)
        if temperature == 0:
            tok = logp.argmax(-1)
        else:
            tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        tok = torch.where(alive, tok, pad_token_id)
        tokens.append(tok)
        logprobs.append(torch.where(alive, logp.gather(-1, tok[:, None]).squeeze(-1), 0.0))
        masks.append(alive)
        alive = alive & (tok != eos_token_id)
        if t == max_new_tokens - 1 or not alive.any():
            break
        mask[:, lp + t] = alive
        logits = model(
            input_ids=tok[:, None],
            attention_mask=mask[:, : lp + t + 1],
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(logprobs, 1)


class HFActor:
    """The ``hf`` backend: a transformers causal LM sampled by :func:`sample`."""

    def __init__(self, model, tokenizer, task: Task, device="cpu", version: int = 0, template="auto", system=None):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.template, self.system = template, system
        """prompt format (:func:`stalegrpo.policy.encode_prompts`)"""
        self.task = task
        self.device = torch.device(device)
        self.version = version
        self.weight_sync_s = 0.0
        """seconds the last :meth:`load_weights` took (docs/method.md §3 ``weight_sync_s``)"""

    def encode(self, problems: list[Problem], group_size: int):
        """Prompt ids and mask, each prompt repeated ``group_size`` times (rows of a group contiguous)."""
        ids, mask = encode_prompts(self.tokenizer, [p.prompt for p in problems], self.template, self.system)
        return tuple(x.repeat_interleave(group_size, 0).to(self.device) for x in (ids, mask))

    def generate(self, problems, group_size, temperature=1.0, seed=None, max_new_tokens=None) -> Rollout:
        start = time.perf_counter()
        prompt_ids, prompt_mask = self.encode(problems, group_size)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        completion_ids, completion_mask, logprobs = sample(
            self.model,
            prompt_ids,
            prompt_mask,
            max_new_tokens or self.task.max_new_tokens,
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
            temperature,
            generator,
        )
        n = len(problems) * group_size
        cpu = torch.device("cpu")
        rollout = Rollout(  # a rollout lives on the CPU (docs of stalegrpo.rollout)
            problems=list(problems),
            prompt_ids=prompt_ids.to(cpu),
            prompt_mask=prompt_mask.to(cpu),
            completion_ids=completion_ids.to(cpu),
            completion_mask=completion_mask.to(cpu),
            behavior_logprobs=logprobs.to(cpu),
            rewards=torch.zeros(n, device=cpu),
            group=torch.arange(len(problems), device=cpu).repeat_interleave(group_size),
            version=torch.full((n,), self.version, dtype=torch.long, device=cpu),
            gen_seconds=0.0,
        )
        rollout.score(self.tokenizer, self.task)
        rollout.gen_seconds = time.perf_counter() - start  # the copies to the CPU waited for the device
        return rollout

    @torch.no_grad()
    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Copy the learner's weights into the model in place and tag later samples with ``version``.

        Accepts a ``module.``-prefixed state dict (DDP/DeepSpeed wrappers) and one without the
        tied ``lm_head.weight``.
        """
        start = time.perf_counter()
        copy_weights(self.model, state_dict)
        self.version = int(version)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.weight_sync_s = time.perf_counter() - start


def make_actor(backend: str, model_path_or_model, tokenizer, task: Task, device="cpu", **kw) -> Actor:
    """An actor of ``backend`` over a model object or a local checkpoint directory."""
    if backend == "hf":
        if isinstance(model_path_or_model, (str, bytes)) or hasattr(model_path_or_model, "__fspath__"):
            model, saved_tokenizer = load_policy(model_path_or_model)
            tokenizer = tokenizer or saved_tokenizer
        else:
            model = model_path_or_model
        return HFActor(model, tokenizer, task, device=device, **kw)
    if backend == "vllm":
        from stalegrpo.actors_vllm import VLLMActor  # vLLM is optional; import only when asked for

        return VLLMActor(model_path_or_model, tokenizer, task, device=device, **kw)
    raise ValueError(f"unknown actor backend {backend!r}; choose from {list(BACKENDS)}")


def benchmark_sampling(
    actor: HFActor, problems: list[Problem], G: int, repeats: int = 3, temperature: float = 1.0
) -> dict:
    """Sampled tokens per second of :func:`sample` and of ``model.generate`` on the same batch.

    Both sample at ``temperature`` up to the task's budget and stop when every row has emitted
    EOS; only ``sample`` also returns log-probs. Each is warmed up once, then timed ``repeats``
    times (alternating); tokens are counted up to and including EOS, and the medians over repeats
    are reported.
    """
    prompt_ids, prompt_mask = actor.encode(problems, G)
    max_new = actor.task.max_new_tokens
    tok = actor.tokenizer

    def run_loop():
        _, mask, _ = sample(
            actor.model, prompt_ids, prompt_mask, max_new, tok.eos_token_id, tok.pad_token_id, temperature
        )
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
    result = {"batch": prompt_ids.shape[0], "max_new_tokens": max_new, "repeats": repeats}
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
        result[f"{name}_seconds_per_batch"] = float(np.median([sec for sec, _ in runs]))
        result[f"{name}_tokens_per_s"] = float(np.median([n / sec for sec, n in runs]))
    result["ratio"] = result["loop_tokens_per_s"] / result["generate_tokens_per_s"]
    return result
