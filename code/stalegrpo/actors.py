"""Actors: sample G completions per prompt from the behavior policy μ = π_{θ_v} and record μ.

docs/method.md §1-§2: every sample carries the behavior version v of the weights that generated it
and the log-prob log μ(y_t | x, y_<t) of each sampled token, at the sampling temperature. The
learner's ratio ρ = π_θ / μ uses exactly these numbers, so they must equal the learner's own
computation (:func:`stalegrpo.policy.sequence_logprobs`) at the same weights: the sampler uses
the same left padding and position ids ``cumsum(mask) - 1``, and the gap is tested to 1e-5.

Backends sit behind one small interface (:class:`Actor`, :func:`make_actor`): ``hf`` is a
hand-written KV-cache sampling loop over a transformers model (CPU or CUDA), which is at least
as fast as ``model.generate`` and yields the log-probs as it goes; ``vllm`` is
:mod:`stalegrpo.actors_vllm`.

The contract between actors and the learner::

    @dataclass
    class Rollout:
        problems: list[Problem]           # B problems
        prompt_ids: LongTensor            # [N, Lp], N = B*G, rows of one group contiguous
        prompt_mask: BoolTensor           # [N, Lp]
        completion_ids: LongTensor        # [N, Lc]  pad after EOS
        completion_mask: BoolTensor       # [N, Lc]  True for sampled tokens (EOS included)
        behavior_logprobs: FloatTensor    # [N, Lc]  log mu of each sampled token (0 at padding)
        rewards: FloatTensor              # [N]  from task.reward
        group: LongTensor                 # [N]  index of the problem in `problems`
        version: LongTensor               # [N]  behavior version v of each sample
        gen_seconds: float                # wall time of generation
        def texts(self, tokenizer) -> list[str]
        @staticmethod
        def cat(rollouts) -> Rollout
    class Actor(Protocol):
        version: int
        def generate(self, problems, group_size, temperature=1.0, seed=None) -> Rollout
        def load_weights(self, state_dict, version) -> None   # in place; then .version = version
    def make_actor(backend, model_path_or_model, tokenizer, task, device="cpu", **kw) -> Actor
    def benchmark_sampling(actor, problems, G, repeats=3, temperature=1.0) -> dict
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch
from transformers import DynamicCache

from stalegrpo.policy import encode_prompts, load_policy, position_ids
from stalegrpo.tasks import Problem, Task

BACKENDS = ("hf", "vllm")


@dataclass
class Rollout:
    """A batch of B problems × G completions sampled from one or more behavior versions."""

    problems: list[Problem]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    behavior_logprobs: torch.Tensor
    rewards: torch.Tensor
    group: torch.Tensor
    version: torch.Tensor
    gen_seconds: float

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def texts(self, tokenizer) -> list[str]:
        """The completions as text (up to EOS, special tokens dropped)."""
        return [
            tokenizer.decode(ids[mask], skip_special_tokens=True)
            for ids, mask in zip(self.completion_ids, self.completion_mask)
        ]

    def to(self, device) -> Rollout:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Rollout(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in moved.items()})

    @staticmethod
    def cat(rollouts: list[Rollout], pad_token_id: int = 0) -> Rollout:
        """One rollout from several: prompts re-padded on the left, completions on the right."""
        lp = max(r.prompt_ids.shape[1] for r in rollouts)
        lc = max(r.completion_ids.shape[1] for r in rollouts)

        def pad(x, width, left, value):
            extra = width - x.shape[1]
            return torch.nn.functional.pad(x, (extra, 0) if left else (0, extra), value=value)

        offsets, total = [], 0
        for r in rollouts:
            offsets.append(total)
            total += len(r.problems)
        return Rollout(
            problems=[p for r in rollouts for p in r.problems],
            prompt_ids=torch.cat([pad(r.prompt_ids, lp, True, pad_token_id) for r in rollouts]),
            prompt_mask=torch.cat([pad(r.prompt_mask, lp, True, False) for r in rollouts]),
            completion_ids=torch.cat([pad(r.completion_ids, lc, False, pad_token_id) for r in rollouts]),
            completion_mask=torch.cat([pad(r.completion_mask, lc, False, False) for r in rollouts]),
            behavior_logprobs=torch.cat([pad(r.behavior_logprobs, lc, False, 0.0) for r in rollouts]),
            rewards=torch.cat([r.rewards for r in rollouts]),
            group=torch.cat([r.group + o for r, o in zip(rollouts, offsets)]),
            version=torch.cat([r.version for r in rollouts]),
            gen_seconds=sum(r.gen_seconds for r in rollouts),
        )


class Actor(Protocol):
    version: int

    def generate(
        self, problems: list[Problem], group_size: int, temperature: float = 1.0, seed: int | None = None
    ) -> Rollout: ...

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None: ...


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


def copy_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.nn.Parameter]:
    """Copy a learner state dict into ``model``'s parameters in place; returns them by name.

    Accepts a ``module.``-prefixed state dict (DDP/DeepSpeed wrappers) and one without the tied
    ``lm_head.weight`` (tied weights appear once in ``named_parameters``).
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    if missing:
        raise KeyError(f"load_weights: state dict lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])
    return params


class HFActor:
    """The ``hf`` backend: a transformers causal LM sampled by :func:`sample`."""

    def __init__(self, model, tokenizer, task: Task, device="cpu", version: int = 0):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.task = task
        self.device = torch.device(device)
        self.version = version
        self.weight_sync_s = 0.0
        """seconds the last :meth:`load_weights` took (docs/method.md §3 ``weight_sync_s``)"""

    def encode(self, problems: list[Problem], group_size: int):
        """Prompt ids and mask, each prompt repeated ``group_size`` times (rows of a group contiguous)."""
        ids, mask = encode_prompts(self.tokenizer, [p.prompt for p in problems])
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
        group = torch.arange(len(problems)).repeat_interleave(group_size)
        rollout = Rollout(
            problems=list(problems),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            behavior_logprobs=logprobs,
            rewards=torch.zeros(len(group)),
            group=group,
            version=torch.full((len(group),), self.version, dtype=torch.long),
            gen_seconds=0.0,
        )
        texts = rollout.texts(self.tokenizer)
        rollout.rewards = torch.tensor(
            [self.task.reward(problems[g], t) for g, t in zip(group.tolist(), texts)]
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        rollout.gen_seconds = time.perf_counter() - start
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
