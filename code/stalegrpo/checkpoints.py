"""Bring your own checkpoint: a user's local Hugging Face policy, its prompt format, and its check.

docs/method.md §10, paper preset: a user-supplied local checkpoint (``lm.checkpoint``, e.g.
Qwen2.5-0.5B-Instruct) replaces pretraining. Such a policy brings its own BPE tokenizer and,
when it is an instruct model, a chat template; a question reaches it wrapped in that template
(:func:`stalegrpo.policy.encode_prompts`). The default character policy has no template, so its
prompts stay byte-identical ("plain").

Nothing may be downloaded, so the tests use a stand-in made here (:func:`make_standin_checkpoint`):
a randomly initialised ``Qwen2ForCausalLM`` (tied embeddings, grouped-query attention, q/k/v
biases, as Qwen2.5-0.5B) or ``LlamaForCausalLM``, with a byte-level BPE tokenizer trained on
built-in task-like text and, for Qwen, the ChatML template: the real model's file layout, special
tokens and template in about 100k parameters. :func:`check_checkpoint` is the workflow's fast
pre-job check of a checkpoint directory. vLLM (CPU, fp32) loads both stand-ins, and its sampled
log-probs agree with :func:`stalegrpo.policy.sequence_logprobs` to 5e-7.

Interface::

    def make_standin_checkpoint(path, arch="qwen2", hidden=64, layers=2, heads=2, kv_heads=1,
                                intermediate=128, vocab_size=512, seed=0) -> Path
    def check_checkpoint(path) -> None  # FileNotFoundError / ValueError naming the path
    def make_model(spec, path) -> Path  # a stand-in of a bench.model shape, e.g. "qwen2.5-0.5b"
    stalegrpo make-checkpoint --out DIR [arch=llama]  # main(config_path, overrides, out)
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from stalegrpo.config import ConfigError, load_config

# saving a 1 MB checkpoint is instant; its progress bar would only clutter logs and tests
hf_logging.disable_progress_bar()

"""the values of ``template``: chat when the tokenizer has a chat template (auto), or always/never"""

# Qwen2's pre-tokenizer regex: digits split one by one, which arithmetic answers need
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# the ChatML template of Qwen2.5-Instruct without its tool-calling branches
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# per architecture, the special tokens of the model family it stands in for: Qwen2.5-Instruct
# (ChatML, no BOS) and Llama-3 base (BOS prepended by the tokenizer, no pad, no template)
SPECIAL_TOKENS = {
    "qwen2": {"pad": "<|endoftext|>", "eos": "<|im_end|>", "bos": None, "extra": ["<|im_start|>"]},
    "llama": {"pad": None, "eos": "<|end_of_text|>", "bos": "<|begin_of_text|>", "extra": []},
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""single-file weights that ``from_pretrained`` loads; sharded ones have ``NAME.index.json``"""
VOCAB_FILES = (("vocab.json", "merges.txt"), ("tokenizer.model",), ("vocab.txt",))
"""the slow-tokenizer vocabularies that can stand in for tokenizer.json next to tokenizer_config.json"""


@dataclass
class StandinConfig:
    """Configuration of ``stalegrpo make-checkpoint`` (a stand-in for a downloaded checkpoint)."""

    arch: Literal["qwen2", "llama"] = "qwen2"
    """model family: qwen2 (ChatML chat template, no BOS) or llama (BOS, no chat template)"""
    hidden: int = field(default=64, metadata={"minimum": 32})
    """hidden size; hidden / heads is the head dim, and vLLM's CPU attention needs 32, 64, 80, ..."""
    layers: int = field(default=2, metadata={"minimum": 1})
    """transformer layers"""
    heads: int = field(default=2, metadata={"minimum": 1})
    """attention heads"""
    kv_heads: int = field(default=1, metadata={"minimum": 1})
    """key/value heads (grouped-query attention, as Qwen2.5)"""
    intermediate: int = field(default=128, metadata={"minimum": 8})
    """MLP width"""
    vocab_size: int = field(default=512, metadata={"minimum": 300})
    """target size of the BPE vocabulary: bytes, special tokens and merges (the built-in text allows ~700)"""
    seed: int = 0
    """seed of the weight initialisation (the tokenizer does not depend on it)"""


CONFIG_CLASS = StandinConfig


# -- the stand-in checkpoint ---------------------------------------------------------------------
def standin_corpus() -> list[str]:
    """Task-like English, digits and arithmetic: the fixed training text of the stand-in's BPE."""
    rng = random.Random(1234)  # fixed: every stand-in shares one tokenizer, whatever its seed
    names = ["Natalia", "James", "Maria", "Tom", "Aisha", "Chen", "Olga", "Ravi", "Sara", "Ben"]
    items = ["apples", "clips", "books", "marbles", "coins", "eggs", "pencils", "cookies", "cards"]
    words = (
        "the a of to and in is that it for on with as was at by from they this we or an be which have "
        "each number sum product difference total left more less than equal answer question result step "
        "first then next finally check solve find compute add subtract multiply divide twice half every "
        "day week price cost dollars cents store bought sold gave shared friends groups rows minutes hours "
        "correct wrong because therefore so if not only after before how many much what when where"
    ).split()
    lines = ["You are a helpful assistant.", "Let's think step by step.", "system user assistant"]
    for _ in range(600):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(5, 12)))
        lines.append(sentence.capitalize() + rng.choice([".", "?", "!", ":"]))
        a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(1, 9)
        name, item = rng.choice(names), rng.choice(items)
        target = a * c + b
        lines += [
            f"Using the numbers {c}, {a}, {b}, make {target}. #### {c}*{a}+{b}",
            f"{name} has {a} {item}. She buys {b} more. How many {item} does she have now?",
            f"First, {a} + {b} = {a + b}. Then {a + b} - {c} = {a + b - c}. The answer is {a + b - c}.",
            f"What is {a} times {c}? {a} * {c} = {a * c}. #### {a * c}",
            f"{a:02d}+{b:02d}={a + b:03d} {a:02d}*{c:02d}={a * c:04d} ({a}+{b})/{c}",
        ]
    return lines


def build_standin_tokenizer(arch: str = "qwen2", vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer in Qwen2's layout, trained on :func:`standin_corpus`."""
    special = SPECIAL_TOKENS[arch]
    names = [t for t in [special["pad"], special["bos"], special["eos"], *special["extra"]] if t]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=names,  # ids 0, 1, ... in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any text encodes, bytes at worst
        show_progress=False,
    )
    tok.train_from_iterator(standin_corpus(), trainer=trainer)
    if special["bos"]:  # Llama's tokenizer, not its template, prepends BOS
        bos = special["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=special["pad"],
        bos_token=special["bos"],
        eos_token=special["eos"],
        extra_special_tokens=special["extra"],
        chat_template=CHATML_TEMPLATE if arch == "qwen2" else None,
        clean_up_tokenization_spaces=False,  # decode(encode(text)) == text
        padding_side="left",
        model_max_length=1024,
    )


def build_standin_model(
    tokenizer, arch="qwen2", hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128, seed=0
) -> Qwen2ForCausalLM | LlamaForCausalLM:
    """A randomly initialised ``Qwen2ForCausalLM`` or ``LlamaForCausalLM`` with tied embeddings."""
    if hidden % heads or heads % kv_heads:
        raise ValueError(
            f"hidden={hidden}, heads={heads}, kv_heads={kv_heads}: "
            "expected heads to divide hidden and kv_heads to divide heads"
        )
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=1024,
        tie_word_embeddings=True,  # as Qwen2.5-0.5B
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    if arch == "qwen2":
        qwen = Qwen2Config(**common, rope_theta=1e6, rms_norm_eps=1e-6, use_sliding_window=False)
        return Qwen2ForCausalLM(qwen)
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    raise ValueError(f"arch={arch!r}: expected 'qwen2' or 'llama'")


def make_standin_checkpoint(
    path,
    arch: str = "qwen2",
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int = 1,
    intermediate: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Write a stand-in checkpoint to ``path`` with ``save_pretrained``; the same arguments give the
    same files. Returns ``path``."""
    if arch not in SPECIAL_TOKENS:
        raise ValueError(f"arch={arch!r}: expected one of {sorted(SPECIAL_TOKENS)}")
    path = Path(path)
    tokenizer = build_standin_tokenizer(arch, vocab_size)
    model = build_standin_model(tokenizer, arch, hidden, layers, heads, kv_heads, intermediate, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# -- prompts -------------------------------------------------------------------------------------
# -- the pre-job check ---------------------------------------------------------------------------
def _read_config(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} has no config.json: expected a Hugging Face checkpoint directory written by "
            "save_pretrained (config.json, weights, tokenizer files)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(config_file)!r} is not a JSON object: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{str(config_file)!r} is not a JSON object")
    return config


def _check_architecture(path: Path, config: dict) -> None:
    model_type = config.get("model_type")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    if model_type is None:
        what = "has no model_type"
    elif "auto_map" in config:
        what = f"has model_type {model_type!r}, whose code (auto_map) is not run: no trust_remote_code"
    else:
        what = f"has model_type {model_type!r}, which is not a causal LM that AutoModelForCausalLM knows"
    raise ValueError(
        f"{str(path / 'config.json')!r} {what}: expected a causal LM model_type such as qwen2 or llama"
    )


def _check_weights(path: Path) -> None:
    if any((path / name).is_file() for name in WEIGHT_FILES):
        return
    for name in WEIGHT_FILES:
        index = path / f"{name}.index.json"
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"{str(index)!r} is not a weight index (a JSON weight_map): {err}") from err
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:  # an interrupted copy leaves some shards out
                raise FileNotFoundError(
                    f"{str(path)!r} lacks weight shards listed in {index.name}: {missing}"
                )
            return
    raise FileNotFoundError(
        f"{str(path)!r} has no weights: expected {' or '.join(WEIGHT_FILES)} or a sharded "
        f"{WEIGHT_FILES[0]}.index.json"
    )


def _check_tokenizer(path: Path, vocab_size: int | None) -> None:
    has_files = (path / "tokenizer.json").is_file() or (
        (path / "tokenizer_config.json").is_file()
        and any(all((path / f).is_file() for f in files) for files in VOCAB_FILES)
    )
    if not has_files:
        raise FileNotFoundError(
            f"{str(path)!r} has no tokenizer: expected tokenizer.json, or tokenizer_config.json with "
            "vocab.json + merges.txt, tokenizer.model or vocab.txt (tokenizer.save_pretrained writes them)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:  # the tokenizer libraries raise many types; the message is what matters
        raise ValueError(
            f"the tokenizer in {str(path)!r} does not load: {type(err).__name__}: {err}"
        ) from err
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer in {str(path)!r} has no eos_token: completions need one to end")
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer in {str(path)!r} has {len(tokenizer)} tokens but config.json's vocab_size is "
            f"{vocab_size}: the embedding must have a row for every token"
        )


def check_checkpoint(path) -> None:
    """Raise FileNotFoundError or ValueError, naming ``path`` and what was expected there, unless
    ``path`` is a checkpoint that :func:`stalegrpo.policy.load_policy` can load.

    Reads the config and the tokenizer, and only looks for the weights, so it takes about a
    second even for a large model.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"no checkpoint directory at {str(path)!r}: expected a local Hugging Face checkpoint "
            "(nothing is downloaded; `stalegrpo make-checkpoint --out DIR` writes a small stand-in)"
        )
    _check_architecture(path, _read_config(path))
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as err:  # e.g. a model_type newer than this transformers
        raise ValueError(
            f"the config.json in {str(path)!r} does not load: {type(err).__name__}: {err}"
        ) from err
    _check_weights(path)
    _check_tokenizer(path, getattr(config.get_text_config(), "vocab_size", None))


def main(config_path: str | None, overrides: list[str], out: str) -> int:
    cfg = load_config(StandinConfig, config_path, overrides)
    try:
        path = make_standin_checkpoint(out, **asdict(cfg))
    except ValueError as err:  # head counts that do not divide: a config error, not a crash
        raise ConfigError(str(err)) from err
    check_checkpoint(path)
    print(f"wrote a {cfg.arch} stand-in checkpoint to {path}")
    return 0


# -- stand-ins of a given shape (``stalegrpo bench lm bench.model=...``) -------------------------
MODELS = {"qwen2.5-0.5b": "qwen2:896x24,heads=14,kv_heads=2,intermediate=4864,vocab=151936"}
"""named shapes of ``bench.model``: Qwen2.5-0.5B (494M parameters, tied embeddings, grouped-query
attention with 2 key/value heads, its 151936-row embedding)"""
SHAPE_KEYS = ("heads", "kv_heads", "intermediate", "vocab")
"""the optional ``KEY=VALUE`` parts of a ``bench.model`` spec"""


def model_shape(spec: str) -> dict:
    """The sizes of a ``bench.model`` spec, as :func:`build_standin_model` takes them, plus ``vocab`` (None: the tokenizer's)."""
    text = MODELS.get(spec, spec)
    arch, _, rest = text.partition(":")
    size, *parts = rest.split(",")
    try:
        hidden, layers = (int(v) for v in size.lower().split("x"))
        options = {key.strip(): int(value) for key, value in (part.split("=") for part in parts)}
    except ValueError:
        raise ConfigError(
            f"bench.model = {spec!r}: expected one of {sorted(MODELS)} or ARCH:HIDDENxLAYERS[,KEY=VALUE...], "
            "e.g. qwen2:896x24,heads=14,kv_heads=2"
        ) from None
    unknown = sorted(set(options) - set(SHAPE_KEYS))
    if unknown or arch not in ("qwen2", "llama"):
        raise ConfigError(
            f"bench.model = {spec!r}: " + (f"unknown key(s) {unknown}, expected {list(SHAPE_KEYS)}" if unknown
                                            else f"arch {arch!r}, expected qwen2 or llama")
        )
    shape = {"arch": arch, "hidden": hidden, "layers": layers, "heads": max(1, hidden // 64), "kv_heads": 1,
             "intermediate": 8 * (hidden * 8 // 3 // 8), "vocab": None}
    return shape | options


def make_model(spec: str, path: Path) -> Path:
    """A random model of the ``bench.model`` spec with the stand-in BPE tokenizer (and, for
    qwen2, the ChatML template), saved to ``path``.

    A ``vocab`` above the tokenizer's size pads the tied embedding, as Qwen's own checkpoints
    do (151936 rows for 151665 tokens): the full-vocabulary softmax then costs what the real
    model's does, and a sampled id that has no token decodes to nothing."""
    shape = model_shape(spec)
    vocab = shape.pop("vocab")
    tokenizer = build_standin_tokenizer(shape["arch"])
    if vocab is not None and vocab < len(tokenizer):
        raise ConfigError(
            f"bench.model = {spec!r}: vocab = {vocab} is below the tokenizer's {len(tokenizer)} tokens"
        )
    try:
        model = build_standin_model(tokenizer, **shape)
    except ValueError as err:  # head counts that do not divide
        raise ConfigError(f"bench.model = {spec!r}: {err}") from err
    if vocab is not None and vocab > len(tokenizer):
        model.resize_token_embeddings(vocab, mean_resizing=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def count_parameters_of(path) -> int:
    """Parameters of the checkpoint at ``path`` (tied weights once), from its config alone."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
    return sum(p.numel() for p in model.parameters())
