"""What every task is: a :class:`Problem`, the :class:`Task` protocol, and the hash that puts each
problem in one split (train or held-out), the same on every machine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Problem:
    """One prompt and its reference answer."""

    prompt: str
    """the text the policy continues, e.g. "12+34=" """
    answer: str
    """the answer the verifier accepts, e.g. "46" """
    numbers: tuple[int, ...] = ()
    """countdown: the numbers the expression may use, in prompt order (empty for other tasks)"""
    solution: str = field(default="", compare=False)
    """a worked solution: countdown's generating expression, a jsonl record's answer text (else
    empty); not part of the problem's identity, so equality, hashing and splits ignore it"""


class Task(Protocol):
    """A task: its problems, by split, and their verifier. Optional class attributes a task may
    set: ``numeric_answers`` (True: the proxy rewards of :mod:`stalegrpo.tasks.proxy` apply) and
    ``alphabet`` (the characters of a fresh model's character tokenizer, ``stalegrpo pretrain``
    without ``model``)."""

    name: str
    max_new_tokens: int
    stop: tuple[str, ...]

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Problem]: ...

    def reward(self, problem: Problem, completion: str) -> float: ...

    def demonstration(self, problem: Problem) -> str: ...


def heldout_fraction_of(prompt: str, task_name: str) -> float:
    """A deterministic number in [0, 1) for a prompt; below ``heldout_fraction`` means held out.

    A cryptographic hash (not Python's salted ``hash``) keeps the split identical across
    processes and machines.
    """
    digest = hashlib.blake2b(f"{task_name}:{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def gold_reward(task: Task, problem: Problem, completion: str) -> float:
    """The gold reward of a completion: the verifier of a proxy-reward task, else the reward."""
    gold = getattr(task, "gold", None)
    return gold(problem, completion) if gold is not None else task.reward(problem, completion)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
