r"""Tasks with verifiable rewards: seeded problems, their verifiers, and final-answer extraction.

A task is the environment of GRPO (docs/method.md §1): it draws prompts x, and its verifier gives
each completion y a reward r in [0, 1]. The default testbed of docs/method.md §10 is multi-digit
addition with zero-padded, fixed-length prompts and answers ("07+45=" → "052"); multiplication is
the harder task. Every problem belongs to exactly one split, decided by a hash of the problem, so
the train and held-out splits are disjoint and the same on every machine and in every run.

The tasks, one module each, registered in :data:`REGISTRY` (a new task is its module plus one
line there; the configs' ``task`` choices and the CLI help come from it):

- ``addition``, ``multiplication`` (`BinaryOpTask`): for the character-level policy; the
  completion must be exactly the canonical answer.
- ``countdown`` (`CountdownTask`): reach a target from given numbers with + - * / and parentheses,
  each number at most once. Problems are generated from a solution, so every one is solvable. The
  verifier parses the expression with a small grammar (never ``eval``) and evaluates it exactly.
- ``jsonl`` (`JsonlTask`): question/answer records from a local file in GSM8K's format; the reward
  is 1 if the completion's final answer equals the reference.

The last two are for pretrained checkpoints whose completions are free text. `extract_answer`
finds the final answer in such text ("#### 42", "\boxed{42}", else the whole text), and
`answers_match` compares two answers exactly, as numbers when both are numbers.

Every task also demonstrates each problem (`Task.demonstration`): a completion that its verifier
rewards with 1, which supervised pretraining (``stalegrpo pretrain``) trains on: the binary-op
answer, a countdown problem's generating expression after "####", a jsonl record's own answer.
`write_toy_gsm8k` writes a toy GSM8K (one-digit additions in English) for the jsonl task.

Interface::

    @dataclass(frozen=True)
    class Problem:
        prompt: str                    # e.g. "12+34="
        answer: str                    # e.g. "46"
        numbers: tuple[int, ...] = ()  # countdown: the numbers the expression may use
        solution: str = ""             # a worked completion (countdown, jsonl); not compared
    class Task(Protocol):
        name: str
        max_new_tokens: int                      # completion budget incl. EOS
        stop: tuple[str, ...]                    # stop strings for the sampler, () for none
        def sample(self, split, n, rng) -> list[Problem]   # split in {"train","heldout"}, disjoint
        def reward(self, problem, completion) -> float     # the verifier, in [0, 1]
        def demonstration(self, problem) -> str            # a completion with reward 1 (SFT target)
    REGISTRY: dict[str, Callable[..., Task]]   # name -> factory of the task's options
    def get_task(name: str, **options) -> Task  # name in TASKS (REGISTRY's names); unknown options: TypeError
    def write_toy_gsm8k(path, n=1000, seed=0) -> Path  # one-digit additions in English, GSM8K format
    class ProxyRewardTask(task, hack, bonus)  # reward = gold + bonus on one wrong answer per prompt
    def gold_reward(task, problem, completion) -> float  # the verifier (= reward without a hack)
    def extract_answer(text: str) -> str | None           # "#### 42" / "\boxed{42}" / whole text
    def answers_match(extracted: str | None, reference: str) -> bool
    def parse_number(text: str) -> Fraction | None         # "1,234" → 1234, "$3.50" → 7/2
    def evaluate_expression(text: str) -> tuple[Fraction | None, tuple[int, ...]]  # countdown

Modules: :mod:`~stalegrpo.tasks.base` (Problem, Task, splits), :mod:`~stalegrpo.tasks.answers`
(answer parsing), :mod:`~stalegrpo.tasks.arithmetic`, :mod:`~stalegrpo.tasks.countdown`,
:mod:`~stalegrpo.tasks.jsonl`, :mod:`~stalegrpo.tasks.proxy` (the proxy reward).
"""


from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from stalegrpo.tasks.answers import answers_match, extract_answer, parse_number
from stalegrpo.tasks.arithmetic import OPERATORS, BinaryOpTask
from stalegrpo.tasks.base import SPLITS, Problem, Task, gold_reward, heldout_fraction_of
from stalegrpo.tasks.countdown import MAX_EXPRESSION_CHARS, CountdownTask, evaluate_expression
from stalegrpo.tasks.jsonl import JsonlTask, write_toy_gsm8k
from stalegrpo.tasks.proxy import HACKS, ProxyRewardTask

REGISTRY: dict[str, Callable[..., Task]] = {
    "addition": partial(BinaryOpTask, name="addition"),
    "multiplication": partial(BinaryOpTask, name="multiplication"),
    "countdown": CountdownTask,
    "jsonl": JsonlTask,
}
"""every task by name: a factory that takes the task's options (``task_options``)"""

TASKS = tuple(REGISTRY)
"""the task names, in the configs' ``task`` choices"""

__all__ = [
    "HACKS", "MAX_EXPRESSION_CHARS", "OPERATORS", "REGISTRY", "SPLITS", "TASKS", "BinaryOpTask",
    "CountdownTask", "JsonlTask", "Problem", "ProxyRewardTask", "Task", "answers_match",
    "evaluate_expression", "extract_answer", "get_task", "gold_reward", "heldout_fraction_of",
    "make_task", "parse_number", "write_toy_gsm8k",
]


def get_task(name: str, **options) -> Task:
    """The task called ``name`` with its options (e.g. ``digits=3``, ``numbers=5``, ``path=...``).

    An option the task does not have is a TypeError that names it.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")
    return REGISTRY[name](**options)


def make_task(cfg) -> Task:
    """The task of a run's config: ``cfg.task`` with ``cfg.task_options``; the binary-op tasks also
    take ``cfg.digits`` (unless the options set it). With ``cfg.reward_hack`` other than "none"
    the reward is the proxy of :class:`ProxyRewardTask` (``cfg.hack_bonus``)."""
    options = dict(cfg.task_options)
    if "digits" in inspect.signature(REGISTRY[cfg.task]).parameters:  # the binary-op tasks
        options.setdefault("digits", cfg.digits)
    try:
        task = get_task(cfg.task, **options)
    except TypeError as err:
        raise ValueError(f"task_options for task {cfg.task!r}: {err}") from err
    hack = getattr(cfg, "reward_hack", "none")
    return task if hack == "none" else ProxyRewardTask(task, hack, cfg.hack_bonus)
