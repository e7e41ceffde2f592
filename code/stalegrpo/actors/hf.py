"""The ``hf`` actor backend: sample G completions per prompt from μ = π_{θ_v} with a KV-cache
loop over a transformers model, recording log μ as it goes (docs/method.md §1-§2).

Every sample carries the behavior version v of the weights that generated it and the log-prob
log μ(y_t | x, y_<t) of each sampled token, at the sampling temperature. The learner's ratio
ρ = π_θ / μ uses exactly these numbers, so in fp32 they must equal the learner's own computation
(:func:`stalegrpo.policy.sequence_logprobs`) at the same weights: the sampler uses the same left
padding and position ids ``cumsum(mask) - 1``, and the gap is tested to 1e-5. The loop is at
least as fast as ``model.generate`` (:mod:`stalegrpo.actors.throughput` measures both) and runs
on the CPU or CUDA. The backend's functions for the factory and the engines are at the end
(:mod:`stalegrpo.actors`).

Precision (``dtype``; the train key ``actor_dtype``)
----------------------------------------------------
log μ is whatever the sampler computed. Sampling in fp32 makes it the learner's own log π_{θ_v} to
float rounding (on the CPU, where the learner is fp32 too): at lag 0 the ratio is 1 and every
deviation of ρ from 1 is staleness. On a GPU that exactness is expensive (an fp32 decode step
moves twice the bytes of a bf16 one and gets no bf16 tensor cores) and not even exact: the
learner's forward runs in bf16 there (DeepSpeed ``bf16: auto``). So ``auto`` samples in bf16 on
CUDA, as other asynchronous RL systems do, and in fp32 on the CPU, where the learner is fp32 and
bf16 gains little (on a CPU without bf16 instructions it is several times slower). The actor's
copy of the model is cast to its dtype (the parameters; buffers such as the rotary frequencies
stay fp32, as in DeepSpeed's bf16 learner), the learner's weights are cast as they are copied in
(``copy_``), and the sampling distribution, the softmax and the recorded log-probs are computed in
fp32 from the (bf16) logits.

With a bf16 sampler μ is a slightly different policy from the learner's π at the same version: an
fp32 learner's weights are rounded to bf16's 8-bit mantissa, and even against a bf16 learner the
incremental decode rounds differently from the learner's full forward (other kernels, other orders
of summation). The learner still divides by the μ the tokens were drawn from, which is the right
denominator for an importance weight, and reports the gap as ``mismatch_kl``, KL(μ‖π) on the lag-0
samples, where the versions agree and only the sampler differs. What the gap does depends on the
objective. ``behavior`` clips ρ = π_θ/μ around μ, so the mismatch uses up part of the clip range
as staleness would. ``decoupled`` clips around the learner's own proximal policy π_prox and weighs
each token by w = π_prox/μ, which corrects staleness and precision mismatch together, but a token
the sampler under-rated by chance then carries a large weight. ``tis`` (truncated importance
sampling) caps w at C = ``tis_cap``: the variance of those tokens is bounded at the price of a
small bias, the usual correction for a low-precision sampler. Evaluation and the bias probe always
sample in fp32 (the scratch actor of :mod:`stalegrpo.train`).

Decoding (``compile``; the train key ``actor_compile``)
-------------------------------------------------------
:func:`sample` takes one Python step per new token through a :class:`Decoder`. By default the KV
cache is transformers' ``DynamicCache``, which grows by one column per step, and every step
launches the model's kernels one by one. With ``compile=True`` the cache is a ``StaticCache``
preallocated for prompt + ``max_new_tokens`` positions (rounded up to a multiple of
:data:`STATIC_BUCKET`, so that batches of nearby prompt lengths share one compiled graph), the
prompt's prefill runs eagerly into it, and the single-token forward is ``torch.compile``d: with
``mode="reduce-overhead"`` on CUDA, so that a step is one CUDA-graph replay, and with inductor's
default mode on the CPU (C++ kernels; the first batch of a new shape pays the compilation, about
ten seconds for the tiny policy on two cores). Each step sees the full-width attention mask (zero
beyond the last token) and the same positions ``cumsum(mask) - 1`` as the eager loop, so both give
the same log-probs (tested to 1e-5 in fp32 on the CPU, the same tokens for the same seed).
"""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache, StaticCache

from stalegrpo.policy import encode_prompts, flat_params, load_policy, position_ids, resolve_dtype
from stalegrpo.rollout import Rollout, copy_weights
from stalegrpo.tasks.base import Problem, Task
from stalegrpo.weights import GroupReceiver, IpcReceiver, WeightReceiver, weight_group

STATIC_BUCKET = 64
"""a static KV cache holds a multiple of this many positions (fewer distinct shapes to compile)"""
CUDA_CHECK_EVERY = 8
"""on CUDA, :func:`sample` asks whether any row is still alive every this many steps (each question
waits for the device); on the CPU it asks every step"""


def cast_parameters(model, dtype: torch.dtype):
    """``model`` with its parameters cast to ``dtype`` in place (tied ones stay tied) and its buffers
    as they are: the rotary ``inv_freq`` stays fp32, as DeepSpeed's bf16 learner keeps it (rounded
    to bf16 it would shift the angles of positions in the hundreds by tenths of a radian)."""
    for p in model.parameters():
        if p.dtype != dtype:
            p.data = p.data.to(dtype)
    return model


class Decoder:
    """The model calls of :func:`sample`: the prompt's prefill, then one single-token step per token.

    ``static=False`` (the eager loop): a fresh ``DynamicCache`` per batch, which grows by one column
    per step; each call sees the attention mask up to its last column. ``static=True``: a
    ``StaticCache`` of :meth:`width` positions, kept for the next batch of the same shape (and
    reset), and the full-width mask, zero beyond the last token. ``compile=True`` (implies static):
    the step is ``torch.compile``d, with ``mode="reduce-overhead"`` (CUDA graphs) on CUDA and
    inductor's default mode on the CPU; the prefill stays eager (its shape changes with every
    prompt length). The model's parameters are read in place at every call, so weights copied into
    them (:meth:`HFActor.load_weights`) need no recompilation.
    """

    def __init__(self, model, static: bool = False, compile: bool = False):
        self.model = model
        self.compile = bool(compile)
        self.static = bool(static) or self.compile
        self.cache = None
        self._shape = None
        self._compiled = None

    def width(self, prompt_len: int, max_new_tokens: int) -> int:
        """Columns of the batch's attention mask: prompt + budget (static: rounded up to STATIC_BUCKET)."""
        width = prompt_len + max_new_tokens
        return -(-width // STATIC_BUCKET) * STATIC_BUCKET if self.static else width

    def _forward(self, input_ids, attention_mask, position_ids, **kw):
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=self.cache,
            use_cache=True,
            **kw,
        ).logits[:, -1]

    def prefill(self, prompt_ids, mask, positions) -> torch.Tensor:
        """Logits after the prompts ([n, V]); ``mask`` is the batch's [n, width] attention mask."""
        lp = prompt_ids.shape[1]
        if not self.static:
            self.cache = DynamicCache(config=self.model.config)
            return self._forward(prompt_ids, mask[:, :lp], positions, logits_to_keep=1)
        shape = (*mask.shape, self.model.dtype, mask.device)
        if shape == self._shape:
            self.cache.reset()  # zeroed in place: the compiled step keeps its static addresses
        else:
            self.cache = None  # the old cache's memory first
            self.cache = StaticCache(config=self.model.config, max_cache_len=mask.shape[1])
            self._shape = shape
        return self._forward(prompt_ids, mask, positions, logits_to_keep=1)

    def step(self, tokens, mask, positions, seen: int) -> torch.Tensor:
        """Logits after one more token per row ([n, V]); ``seen``: the columns of ``mask`` so far."""
        if not self.static:
            return self._forward(tokens[:, None], mask[:, :seen], positions)
        if not self.compile:
            return self._forward(tokens[:, None], mask, positions)
        if self._compiled is None:
            cuda = mask.device.type == "cuda"
            mode = "reduce-overhead" if cuda else None
            self._compiled = torch.compile(self._forward, mode=mode, dynamic=False, isolate_recompiles=True)
        if mask.device.type == "cuda":
            # a new step of the CUDA graph: the previous step's logits (already consumed) may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled(tokens[:, None], mask, positions)

    def finish(self) -> None:
        """After a batch: a dynamic cache is dropped; a static one is kept for the next batch."""
        if not self.static:
            self.cache = None


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
    decoder: Decoder | None = None,
    check_every: int | None = None,
):
    """KV-cache sampling with per-token log-probs: (completion_ids, completion_mask, logprobs).

    Each step feeds only the newest token; the attention mask grows by one column per step
    (False once a row has emitted EOS) and the position of a new token is one past its row's
    last one, i.e. ``cumsum(mask) - 1`` as in :func:`stalegrpo.policy.sequence_logprobs`.
    ``temperature = 0`` is greedy decoding, with log-probs of the untempered softmax. The logits
    (bf16 in a bf16 model) are turned into the sampling distribution and the log-probs in fp32.

    ``decoder`` makes the model calls (:class:`Decoder`; default: the eager ``DynamicCache``
    loop over ``model``). Sampling stops once every row has emitted EOS, checked every
    ``check_every`` steps (default: every step on the CPU, every :data:`CUDA_CHECK_EVERY` on CUDA,
    so that the host does not wait for the device at every token); the all-padding columns of
    the steps after the last row ended are cut off, so the result does not depend on it.
    """
    decoder = decoder if decoder is not None else Decoder(model)
    n, lp = prompt_ids.shape
    device = prompt_ids.device
    if check_every is None:
        check_every = CUDA_CHECK_EVERY if device.type == "cuda" else 1
    # the attention mask of the whole sequence, filled one column per step (no per-step cat)
    mask = torch.zeros(n, decoder.width(lp, max_new_tokens), dtype=torch.long, device=device)
    mask[:, :lp] = prompt_mask
    positions = position_ids(mask[:, :lp])
    logits = decoder.prefill(prompt_ids, mask, positions)
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
        if t == max_new_tokens - 1 or ((t + 1) % check_every == 0 and not alive.any()):
            break
        mask[:, lp + t] = alive
        logits = decoder.step(tok, mask, next_pos, lp + t + 1)
        next_pos = next_pos + 1
    decoder.finish()
    completion_mask = torch.stack(masks, 1)
    if check_every > 1:  # the columns after the step where every row had ended hold only padding
        width = int(completion_mask.any(0).nonzero().max()) + 1
        completion_mask = completion_mask[:, :width]
        return torch.stack(tokens, 1)[:, :width], completion_mask, torch.stack(logprobs, 1)[:, :width]
    return torch.stack(tokens, 1), completion_mask, torch.stack(logprobs, 1)


class HFActor:
    """The ``hf`` backend: a transformers causal LM sampled by :func:`sample`.

    ``dtype`` (:func:`resolve_dtype`: "auto", "float32" or "bfloat16") is the precision of the
    actor's model, which is moved and cast in place (:func:`cast_parameters`; the default keeps
    fp32, as the scratch actor of evaluation and the probe needs); ``compile`` decodes with a
    static KV cache and a compiled step (:class:`Decoder`).
    """

    def __init__(
        self, model, tokenizer, task: Task, device="cpu", version: int = 0, template="auto", system=None,
        dtype="float32", compile: bool = False,
    ):
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = cast_parameters(model.to(self.device), self.dtype).eval()
        self.decoder = Decoder(self.model, compile=compile)
        self.tokenizer = tokenizer
        self.template, self.system = template, system
        """prompt format (:func:`stalegrpo.policy.encode_prompts`)"""
        self.task = task
        self.version = version
        self.weight_sync_s = 0.0
        """seconds the last :meth:`load_weights` took (docs/method.md §3 ``weight_sync_s``)"""

    @property
    def mode(self) -> str:
        """``"float32/eager"``, ``"bfloat16/compiled"``, ...: the precision and decoding of this actor."""
        return f"{str(self.dtype).removeprefix('torch.')}/{'compiled' if self.decoder.compile else 'eager'}"

    def encode(self, problems: list[Problem], group_size: int):
        """Prompt ids and mask, each prompt repeated ``group_size`` times (rows of a group contiguous)."""
        ids, mask = encode_prompts(self.tokenizer, [p.prompt for p in problems], self.template, self.system)
        return tuple(x.repeat_interleave(group_size, 0).to(self.device) for x in (ids, mask))

    def sample(self, prompt_ids, prompt_mask, temperature=1.0, generator=None, max_new_tokens=None):
        """:func:`sample` with this actor's model, decoder and tokenizer (tensors on its device)."""
        return sample(
            self.model,
            prompt_ids,
            prompt_mask,
            max_new_tokens or self.task.max_new_tokens,
            self.tokenizer.eos_token_id,
            self.tokenizer.pad_token_id,
            temperature,
            generator,
            decoder=self.decoder,
        )

    def generate(self, problems, group_size, temperature=1.0, seed=None, max_new_tokens=None) -> Rollout:
        start = time.perf_counter()
        prompt_ids, prompt_mask = self.encode(problems, group_size)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        completion_ids, completion_mask, logprobs = self.sample(
            prompt_ids, prompt_mask, temperature, generator, max_new_tokens
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

        The weights (fp32 or bf16) are cast to the actor's dtype as they are copied. Accepts a
        ``module.``-prefixed state dict (DDP/DeepSpeed wrappers) and one without the tied
        ``lm_head.weight``.
        """
        start = time.perf_counter()
        copy_weights(self.model, state_dict)
        self.version = int(version)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.weight_sync_s = time.perf_counter() - start

    def close(self) -> None:
        """Nothing to shut down: the model is an ordinary module of this process."""


def make(model_path_or_model, tokenizer, task: Task, device="cpu", **options) -> HFActor:
    """An :class:`HFActor` over a model object or a ``save_pretrained`` directory (``tokenizer``
    None: the directory's)."""
    if isinstance(model_path_or_model, (str, bytes)) or hasattr(model_path_or_model, "__fspath__"):
        model, saved_tokenizer = load_policy(model_path_or_model)
        tokenizer = tokenizer or saved_tokenizer
    else:
        model = model_path_or_model
    return HFActor(model, tokenizer, task, device=device, **options)


def options(cfg) -> dict:
    """This backend's options from a train config: the compiled decode (``actor_compile``)."""
    return {"compile": cfg.actor_compile}


def engine_actor(cfg, model, tokenizer, task: Task, device, options: dict) -> HFActor:
    """An async engine's actor: the engine's copy of the model, in its process."""
    return HFActor(model, tokenizer, task, device=device, **options)


def engine_receiver(actor: HFActor, cfg, store, engine: int, device, ipc, parent_pid: int) -> WeightReceiver:
    """The engine's process receives every version itself: from the learner's shared buffers
    (``ipc``), else over the engine's process group through the run's ``store``."""
    if ipc is not None:
        return IpcReceiver(ipc, engine, parent_pid)
    return GroupReceiver(weight_group(store, engine, 1, device), flat_params(actor.model).numel(), device)
