"""The policy π_θ: a character tokenizer and a small Llama, and the log-probs of completions.

docs/method.md §10: the default policy is a ~330k-parameter ``LlamaForCausalLM`` (hidden 128,
2 layers, 4 heads, MLP 256, tied embeddings) over character tokens, pretrained locally by
``stalegrpo pretrain``; nothing comes from a model hub. :func:`sequence_logprobs` is the one
computation of log π_θ(y_t | x, y_<t) that both the actor (to check its behavior log-probs μ)
and the learner (for the ratio ρ = π_θ / μ of docs/method.md §2) use: prompts are left-padded and
the position ids are ``cumsum(mask) - 1`` everywhere, so a sampled sequence gets the same
positions in generation and in training.

Interface::

    def build_tokenizer(alphabet: str) -> PreTrainedTokenizerFast  # pad/bos/eos
    def build_model(tokenizer, hidden=128, layers=2, heads=4, intermediate=256, seed=0) -> LlamaForCausalLM
    def load_policy(path, dtype=torch.float32) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]
    def prompt_format(cfg) -> dict  # the config's prompt_template and system_prompt, as actors take them
    def format_prompts(tokenizer, prompts, template="auto", system=None) -> list[str]  # chat template or as is
    def encode_prompts(tokenizer, prompts, template="auto", system=None) -> tuple[LongTensor, BoolTensor]
        # [B, Lp] formatted, left-padded; BOS first where the tokenizer adds one
    def token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                       temperature=1.0, chunk_mb=128) -> (logprobs, entropy)  # [N, Lc] each, 0 at padding
    def sequence_logprobs(...same...) -> FloatTensor  # the log-probs alone
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.utils.checkpoint
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

# a 1 MB checkpoint loads in milliseconds; the progress bars would only clutter logs and tests
hf_logging.disable_progress_bar()

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
TEMPLATES = ("auto", "chat", "plain")
"""prompt formats: the tokenizer's chat template ("chat"), the prompt as it is ("plain"), or chat
where the tokenizer has a template and plain otherwise ("auto")"""


def build_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """One token per character of ``alphabet`` (WordLevel over single characters, in its order),
    with pad/bos/eos/unk tokens. A task that a fresh model can learn with it names its characters
    (``alphabet``, e.g. :data:`stalegrpo.tasks.arithmetic.ALPHABET`).

    Encoding a text prepends BOS; prompts are padded on the left so that every completion
    starts at the same column of the batch.
    """
    chars = list(dict.fromkeys(alphabet))  # unique, order kept
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, UNK, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters join without spaces
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=512,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 256,
    seed: int = 0,
    max_positions: int = 128,
) -> LlamaForCausalLM:
    """A freshly initialised small Llama with tied input/output embeddings."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_policy(path, dtype: torch.dtype = torch.float32) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Model and tokenizer saved with ``save_pretrained`` in the local directory ``path``.

    The Auto classes also load a user-supplied checkpoint of another architecture (docs/method.md
    §10, paper scale); nothing is downloaded.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no policy checkpoint at {str(path)!r} (expected config.json from save_pretrained; "
            "make one with `stalegrpo pretrain --out DIR`)"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    if tokenizer.pad_token is None:  # padding is always masked, so any token will do
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""the sampling precisions of an actor; ``"auto"`` is :func:`resolve_dtype`'s choice for the device"""


def resolve_dtype(dtype, device) -> torch.dtype:
    """The torch dtype of ``dtype`` ("auto", "float32", "bfloat16" or a torch dtype) on ``device``:
    ``auto`` is bf16 on CUDA and fp32 elsewhere (on the CPU bf16 gains little or is much slower)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"actor dtype {dtype}: expected one of {list(DTYPES)}")
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"actor dtype {dtype!r}: expected auto or one of {list(DTYPES)}")
    return DTYPES[dtype]


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def resolve_template(tokenizer, template: str = "auto") -> str:
    """``"chat"`` or ``"plain"``: what ``template`` (one of :data:`TEMPLATES`) means for ``tokenizer``."""
    if template not in TEMPLATES:
        raise ValueError(f"template={template!r}: expected one of {', '.join(TEMPLATES)}")
    has_chat = getattr(tokenizer, "chat_template", None) is not None
    if template == "chat" and not has_chat:
        name = getattr(tokenizer, "name_or_path", "")
        raise ValueError(
            f"template='chat' but the tokenizer{f' of {name!r}' if name else ''} has no chat template "
            "(use template=plain or auto)"
        )
    if template == "auto":
        return "chat" if has_chat else "plain"
    return template


def format_prompts(tokenizer, prompts: list[str], template: str = "auto", system: str | None = None) -> list[str]:
    """The prompt texts: each prompt the single user turn of a chat, followed by the assistant's
    generation prompt ("chat"), or the prompt as it is ("plain").

    ``system`` is the chat's system message (None: the template's default, if it has one).
    """
    if resolve_template(tokenizer, template) == "plain":
        return list(prompts)
    head = [{"role": "system", "content": system}] if system is not None else []
    return [
        tokenizer.apply_chat_template([*head, {"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in prompts
    ]


def prompt_format(cfg) -> dict:
    """The prompt-format options of a run's config (``prompt_template``, ``system_prompt``), as
    :func:`encode_prompts` and every actor take them: the one place they are read."""
    return {"template": cfg.prompt_template, "system": cfg.system_prompt}


def encode_prompts(
    tokenizer, prompts: list[str], template: str = "auto", system: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, Lp] token ids of the formatted prompts (:func:`format_prompts`), left-padded, and the
    boolean attention mask.

    Chat-formatted text is encoded without the tokenizer's special tokens: the template already
    wrote them, and a Llama-3 template that starts with BOS would otherwise get two. Plain text
    keeps them (the character policy's BOS first).
    """
    plain = resolve_template(tokenizer, template) == "plain"
    texts = format_prompts(tokenizer, prompts, template, system)
    enc = tokenizer(texts, padding=True, return_tensors="np", padding_side="left", add_special_tokens=plain)
    # from numpy: CPU tensors whatever the default device
    return torch.from_numpy(enc["input_ids"]).long(), torch.from_numpy(enc["attention_mask"]).bool()


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: cumsum(mask) - 1 (padding gets 0)."""
    return (mask.long().cumsum(-1) - 1).clamp_(min=0)


LOGIT_CHUNK_MB = 128
"""default memory of one chunk's fp32 logits in :func:`token_logprobs` (MiB)"""


def unwrap(model):
    """The ``transformers`` model inside a DeepSpeed engine (or the model itself)."""
    return getattr(model, "module", model)


def completion_hidden(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """The last hidden states at the positions that predict each completion token: [N, Lc, H].

    The decoder runs without its output head, so no [tokens × vocabulary] tensor is made here."""
    model = unwrap(model)
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
    out = model.base_model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False)
    lp = prompt_ids.shape[1]
    # the state at column i predicts token i + 1
    return out.last_hidden_state[:, lp - 1 : -1]


def _chunk_logprobs(head, softcap, temperature, hidden, targets):
    """log π(target) and the entropy of one chunk of tokens' softmax, [c] each."""
    logits = head(hidden).float()
    if softcap:  # Gemma-style final-logit soft-capping, as the model's own forward applies it
        logits = softcap * torch.tanh(logits / softcap)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, targets[:, None]).squeeze(-1), entropy


def token_logprobs(
    model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0,
    chunk_mb: float = LOGIT_CHUNK_MB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π_θ(y_t | x, y_<t) at ``temperature`` and the entropy of π_θ(· | x, y_<t) for each
    completion token: ([N, Lc], [N, Lc]), 0 at padding; the entropy carries no gradient.

    The output head runs on ``chunk_mb`` MiB of fp32 logits at a time, over the unpadded tokens
    only, so memory grows with the chunk and not with tokens × vocabulary. With gradients on,
    each chunk is checkpointed: its logits are recomputed in the backward pass instead of kept.
    """
    model = unwrap(model)
    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    hidden = completion_hidden(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    mask = completion_mask.bool()
    states, targets = hidden[mask], completion_ids[mask]  # [M, H], [M]: the real tokens
    chunk = max(1, int(chunk_mb * 2**20) // (4 * head.weight.shape[0]))
    pieces = []
    for start in range(0, len(targets), chunk):
        args = (head, softcap, temperature, states[start : start + chunk], targets[start : start + chunk])
        if torch.is_grad_enabled():
            pieces.append(torch.utils.checkpoint.checkpoint(_chunk_logprobs, *args, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(*args))
    logprobs = hidden.new_zeros(mask.shape, dtype=torch.float32)
    entropy = torch.zeros_like(logprobs, requires_grad=False)
    if pieces:
        logprobs = logprobs.masked_scatter(mask, torch.cat([lp for lp, _ in pieces]))
        entropy = entropy.masked_scatter(mask, torch.cat([e for _, e in pieces]))
    return logprobs, entropy.detach()


def sequence_logprobs(
    model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0,
    chunk_mb: float = LOGIT_CHUNK_MB,
) -> torch.Tensor:
    """log π_θ(y_t | x, y_<t) at ``temperature`` for each completion token, [N, Lc], 0 at padding
    (:func:`token_logprobs` without the entropy).

    This is the learner's full-forward recomputation; the actor's behavior log-probs equal it
    at the same weights (tested to 1e-5 in fp32).
    """
    return token_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, chunk_mb)[0]


# -- the weights as one flat vector (snapshots, drift norms, weight sync) -----------------------
def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """All parameters as one detached fp32 vector (tied weights once)."""
    return torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])


def state_from_flat(model: torch.nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """A ``named_parameters`` state dict of views into ``flat`` (for ``Actor.load_weights``)."""
    state, offset = {}, 0
    for name, p in model.named_parameters():
        state[name] = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return state


@torch.no_grad()
def load_flat(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Copy ``flat`` into ``model``'s parameters in place."""
    offset = 0
    for p in model.parameters():
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def weights_checksum(flat: torch.Tensor) -> float:
    """A number that changes with any weight: a position-dependent sum in float64. Actors record it
    for the weights they generate with; the learner compares it with its own for that version."""
    flat = flat.detach().reshape(-1)
    # float64 sums without a float64 copy of the weights (it runs every step); the strided second
    # sum makes the checksum depend on where a value sits, not only on the values
    total = torch.sum(flat, dtype=torch.float64) + 2.0 * torch.sum(flat[::2], dtype=torch.float64)
    return float(total)
