"""Fixtures shared by several test modules."""

import pytest

from stalegrpo.checkpoints import make_standin_checkpoint


@pytest.fixture(scope="session")
def standin_checkpoint(tmp_path_factory):
    """A tiny random Qwen2 checkpoint with a BPE tokenizer and the ChatML template, in place of a
    downloaded Qwen2.5-Instruct (docs/method.md §10; nothing comes from a model hub)."""
    return make_standin_checkpoint(tmp_path_factory.mktemp("standin_qwen2"), arch="qwen2")


@pytest.fixture(scope="session")
def standin_llama_checkpoint(tmp_path_factory):
    """The Llama-3-base-like stand-in: BPE tokenizer that prepends BOS, no pad token, no chat template."""
    return make_standin_checkpoint(tmp_path_factory.mktemp("standin_llama"), arch="llama")
