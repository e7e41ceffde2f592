"""The policy (docs/method.md §10): character tokenizer, small tied Llama, save/load, and the learner's
log-prob computation ``sequence_logprobs`` (positions skip left padding)."""

import pytest
import torch

from stalegrpo.policy import (
    build_model,
    build_tokenizer,
    count_parameters,
    encode_prompts,
    load_policy,
    sequence_logprobs,
)
from stalegrpo.tasks.arithmetic import ALPHABET


def test_tokenizer_round_trip_and_special_tokens():
    tok = build_tokenizer(ALPHABET)
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    for text in [ALPHABET, "07+45=52", "(1+2)*3=9", "12 , 3"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1  # one token per character
        assert tok.decode(ids, skip_special_tokens=True) == text
    ids, mask = encode_prompts(tok, ["1+2=", "12+34="])
    assert ids.shape == mask.shape == (2, 7) and mask.dtype == torch.bool
    assert ids[0, :2].tolist() == [tok.pad_token_id] * 2 and not mask[0, :2].any()  # left padding
    assert ids[0, 2] == tok.bos_token_id and mask[0, 2:].all() and mask[1].all()


def test_model_size_and_tied_embeddings():
    model = build_model(build_tokenizer(ALPHABET))
    assert 1e5 < count_parameters(model) < 1e6  # ~331k, as in docs/method.md §10
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_save_and_load_round_trip(tmp_path):
    tok = build_tokenizer(ALPHABET)
    model = build_model(tok, seed=3)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_policy(tmp_path)
    ids, _ = encode_prompts(loaded_tok, ["12+34=", "5*6="])
    assert torch.equal(ids, encode_prompts(tok, ["12+34=", "5*6="])[0])
    assert (
        loaded_tok.padding_side == "left" and loaded_tok.decode(ids[0], skip_special_tokens=True) == "12+34="
    )
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_policy(tmp_path / "nowhere")


def test_sequence_logprobs_ignore_left_padding_and_zero_the_padding():
    """A prompt padded on the left next to a longer one gets the same log-probs as alone."""
    tok = build_tokenizer(ALPHABET)
    model = build_model(tok, seed=1)
    completion = torch.tensor([[5, 6, tok.eos_token_id, tok.pad_token_id]] * 2)
    completion_mask = torch.tensor([[True, True, True, False]] * 2)
    ids, mask = encode_prompts(tok, ["1+2=", "12+34="])
    batch = sequence_logprobs(model, ids, mask, completion, completion_mask, temperature=0.7)
    ids1, mask1 = encode_prompts(tok, ["1+2="])
    alone = sequence_logprobs(model, ids1, mask1, completion[:1], completion_mask[:1], temperature=0.7)
    torch.testing.assert_close(batch[:1], alone, atol=1e-5, rtol=0)
    assert (batch[:, 3] == 0).all() and (batch[:, :3] < 0).all()
    assert not torch.allclose(batch[0], batch[1])  # the prompt matters
