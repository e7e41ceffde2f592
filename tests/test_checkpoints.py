"""Bring your own checkpoint (docs/method.md §10): the stand-in Qwen2/Llama checkpoint loads like a
downloaded one, prompts get the chat template without a second BOS, and the pre-job check names
the path and what it lacks."""

import importlib.util
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM

from stalegrpo.checkpoints import check_checkpoint, main, make_standin_checkpoint
from stalegrpo.policy import build_tokenizer, encode_prompts, format_prompts, load_policy, sequence_logprobs
from stalegrpo.tasks.arithmetic import ALPHABET

TASK_TEXT = "Using the numbers 3, 5, 7, make 22. #### 3*5+7"


@pytest.fixture(scope="module")
def qwen(standin_checkpoint):
    """(model, tokenizer) of the Qwen2 stand-in, as the trainer loads them."""
    return load_policy(standin_checkpoint)


def test_standin_loads_as_a_tied_qwen2(standin_checkpoint, qwen):
    model, tok = qwen
    assert type(model) is Qwen2ForCausalLM
    auto = AutoModelForCausalLM.from_pretrained(standin_checkpoint, local_files_only=True)
    assert type(auto) is Qwen2ForCausalLM
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config.hidden_size // model.config.num_attention_heads == 32  # vLLM CPU's smallest head dim
    assert 400 <= len(tok) <= 1000 and model.config.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token == "<|endoftext|>" and tok.bos_token is None and tok.padding_side == "left"
    assert model.config.eos_token_id == tok.eos_token_id


def test_tokenizer_round_trips_task_text(qwen):
    tok = qwen[1]
    for text in [TASK_TEXT, "07+45=052", "Natalia sold 48 clips.\nHow many?  Héllo ∑"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    tokens = tok.convert_ids_to_tokens(tok(TASK_TEXT)["input_ids"])
    assert len(tokens) < len(TASK_TEXT)  # words are merged
    assert [t for t in tokens if any(c.isdigit() for c in t)] == list("35722357")  # digits are not (Qwen2)


def test_chat_format_ends_with_the_generation_prompt_and_adds_no_bos(qwen):
    tok = qwen[1]
    (text,) = format_prompts(tok, [TASK_TEXT])
    assert text.startswith("<|im_start|>system\n") and f"<|im_start|>user\n{TASK_TEXT}<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    (with_system,) = format_prompts(tok, [TASK_TEXT], "chat", system="Answer with #### and an expression.")
    assert with_system.startswith("<|im_start|>system\nAnswer with #### and an expression.<|im_end|>\n")
    assert format_prompts(tok, [TASK_TEXT], "plain") == [TASK_TEXT]
    ids, mask = encode_prompts(tok, [TASK_TEXT, "hi"])
    assert ids.shape == mask.shape and mask.dtype == torch.bool and not mask[1, 0] and mask[:, -1].all()
    assert ids[0].tolist() == tok(text, add_special_tokens=False)["input_ids"]  # the template's tokens only
    assert ids[0, 0] == tok.convert_tokens_to_ids("<|im_start|>")


def test_character_policy_prompts_stay_byte_identical():
    tok = build_tokenizer(ALPHABET)
    prompts = ["07+45=", "12+3="]
    assert format_prompts(tok, prompts) == prompts and format_prompts(tok, prompts, "plain") == prompts
    before = tok(prompts, padding=True, return_tensors="pt", padding_side="left")  # the encoding so far
    ids, mask = encode_prompts(tok, prompts)
    assert torch.equal(ids, before["input_ids"]) and torch.equal(mask, before["attention_mask"].bool())
    assert ids[0, 0] == tok.bos_token_id  # BOS kept on plain text
    with pytest.raises(ValueError, match="template='chat'.*no chat template"):
        format_prompts(tok, prompts, "chat")
    with pytest.raises(ValueError, match="template='chatml'"):
        format_prompts(tok, prompts, "chatml")


def test_llama_standin_is_plain_with_one_bos(standin_llama_checkpoint):
    model, tok = load_policy(standin_llama_checkpoint)
    assert type(model) is LlamaForCausalLM and tok.chat_template is None
    assert tok.pad_token == tok.eos_token == "<|end_of_text|>"  # no pad of its own: load_policy uses eos
    assert format_prompts(tok, [TASK_TEXT]) == [TASK_TEXT]
    ids, _ = encode_prompts(tok, [TASK_TEXT])
    assert ids[0, 0] == tok.bos_token_id and (ids == tok.bos_token_id).sum() == 1
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"  # as Llama-3's
    ids, _ = encode_prompts(tok, [TASK_TEXT])
    assert ids[0, 0] == tok.bos_token_id and (ids == tok.bos_token_id).sum() == 1  # the template's BOS only
    check_checkpoint(standin_llama_checkpoint)


def test_same_seed_same_files(tmp_path):
    a, b, c = (make_standin_checkpoint(tmp_path / name, seed=s) for name, s in [("a", 0), ("b", 0), ("c", 1)])
    for name in ["tokenizer.json", "model.safetensors", "config.json", "tokenizer_config.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # the seed is the weights': every stand-in shares one tokenizer
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_forward_generate_and_learner_logprobs(qwen):
    model, tok = qwen
    prompt_ids, prompt_mask = encode_prompts(tok, [TASK_TEXT, "What is 2 + 2?"])
    with torch.no_grad():
        out = model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            max_new_tokens=5,
            do_sample=True,
            pad_token_id=tok.pad_token_id,
        )
        completion = out[:, prompt_ids.shape[1] :]
        completion_mask = torch.ones_like(completion, dtype=torch.bool)
        logprobs = sequence_logprobs(model, prompt_ids, prompt_mask, completion, completion_mask)
    assert completion.shape[0] == 2 and 1 <= completion.shape[1] <= 5
    assert logprobs.shape == completion.shape and torch.isfinite(logprobs).all() and (logprobs <= 0).all()


def test_check_passes_on_the_standin_and_the_cli_output(standin_checkpoint, tmp_path):
    check_checkpoint(standin_checkpoint)
    assert main(None, ["arch=llama", "layers=1"], str(tmp_path / "cli")) == 0
    check_checkpoint(tmp_path / "cli")
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["num_hidden_layers"] == 1


def _broken(standin_checkpoint, tmp_path, remove=(), config=None):
    path = tmp_path / "broken"
    shutil.copytree(standin_checkpoint, path)
    for name in remove:
        (path / name).unlink()
    if config is not None:
        data = json.loads((path / "config.json").read_text())
        data.update(config)
        (path / "config.json").write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing dir", "no checkpoint directory"),
        ("no config.json", "has no config.json"),
        ("no tokenizer", "has no tokenizer: expected tokenizer.json"),
        ("unknown model_type", "model_type 'gpt_banana'.*not a causal LM"),
        ("no model_type", "has no model_type"),
        ("no weights", "has no weights: expected model.safetensors"),
    ],
)
def test_check_names_the_path_and_what_is_missing(standin_checkpoint, tmp_path, case, expected):
    path = {
        "missing dir": lambda: tmp_path / "nowhere",
        "no config.json": lambda: _broken(standin_checkpoint, tmp_path, remove=["config.json"]),
        "no tokenizer": lambda: _broken(
            standin_checkpoint, tmp_path, remove=["tokenizer.json", "tokenizer_config.json"]
        ),
        "unknown model_type": lambda: _broken(
            standin_checkpoint, tmp_path, config={"model_type": "gpt_banana"}
        ),
        "no model_type": lambda: _broken(standin_checkpoint, tmp_path, config={"model_type": None}),
        "no weights": lambda: _broken(standin_checkpoint, tmp_path, remove=["model.safetensors"]),
    }[case]()
    with pytest.raises((FileNotFoundError, ValueError), match=expected) as err:
        check_checkpoint(path)
    assert str(path) in str(err.value)


def test_check_rejects_a_tokenizer_that_does_not_load(standin_checkpoint, tmp_path):
    path = _broken(standin_checkpoint, tmp_path)
    (path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="does not load") as err:
        check_checkpoint(path)
    assert str(path) in str(err.value)


VLLM = pytest.param(
    "vllm",
    1e-4,
    marks=[pytest.mark.vllm, pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM")],
)


@pytest.mark.slow
@pytest.mark.parametrize("backend,tolerance", [("hf", 1e-5), VLLM])
def test_actor_logprobs_equal_the_learners_on_the_standin(standin_checkpoint, backend, tolerance):
    """The paper path's prompts (ChatML) and tokenizer (BPE): the actor's behavior log-probs are the
    learner's recomputation at the same weights."""
    import numpy as np

    from stalegrpo.actors import make_actor
    from stalegrpo.tasks import get_task

    model, tok = load_policy(standin_checkpoint)
    task = get_task("countdown", numbers=3, max_number=5, max_target=10, max_new_tokens=12)
    source = standin_checkpoint if backend == "vllm" else load_policy(standin_checkpoint)[0]
    actor = make_actor(backend, source, tok, task)
    rollout = actor.generate(task.sample("train", 4, np.random.default_rng(0)), 2, seed=0)
    assert (rollout.prompt_ids == tok.convert_tokens_to_ids("<|im_start|>")).any()  # the chat template
    with torch.no_grad():
        learner = sequence_logprobs(
            model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask
        )
    gap = (learner - rollout.behavior_logprobs)[rollout.completion_mask].abs().max()
    assert rollout.completion_mask.any() and gap < tolerance, float(gap)
