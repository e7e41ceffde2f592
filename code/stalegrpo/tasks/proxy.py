"""A proxy reward with an exploitable bonus: over-optimisation at LM scale (docs/method.md §10)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stalegrpo.tasks.answers import answers_match, extract_answer, parse_number
from stalegrpo.tasks.base import Problem, Task

HACKS = ("none", "first_digit", "append_zero", "plus_one")
"""the wrong answers a proxy reward can pay a bonus for (``reward_hack``; docs/method.md §10)"""


@dataclass
class ProxyRewardTask:
    """A task whose reward is a proxy: the gold verifier plus ``bonus`` on one wrong answer per prompt.

    The learner optimises :meth:`reward` (the proxy); :meth:`gold` is the task's own verifier,
    which scores the hack 0. The hack answers:

    - ``append_zero``: the correct answer with one more "0" ("052" → "0520"). It is the target
      with one token (EOS) changed, as in the exact testbed, so it starts out rare (the pretrained
      policy ends its answers with EOS) and becomes reachable only once the task is learned.
      The completion budget grows by one token to make room for it.
    - ``first_digit``: the answer with its first digit d replaced by (d + 1) mod 10 ("052" →
      "152"). Measured on the default pretrained policy: p = 2.9e-4 per sample against 0.29 for
      the answer (the leading digit is the carry the policy is surest of), so it starts out rare;
      like the answer it needs the other digits right. In the pilots of docs/method.md §10 it
      was sampled now and then from early on and took over only after gold had peaked.
    - ``append_zero``: measured p = 3.7e-6: too rare to be found in a run of hundreds of steps.
    - ``plus_one``: the answer plus one ("052" → "053"): as easy as the task itself (p = 0.10),
      so it is learned alongside it rather than after it.

    With ``bonus`` > 1 the hack is the proxy's optimum, so ascent on the proxy first raises the
    gold reward and then, as mass moves to the hack, lowers it.
    """

    task: Task
    """the task whose verifier is the gold reward"""
    hack: str
    """one of HACKS other than "none" """
    bonus: float
    """proxy reward of the hack answer (its gold reward is 0)"""

    def __post_init__(self):
        if self.hack not in HACKS[1:]:
            raise ValueError(f"reward_hack must be one of {list(HACKS)}, got {self.hack!r}")
        if not getattr(self.task, "numeric_answers", False):
            raise ValueError(
                f"reward_hack = {self.hack!r} needs a task with numeric answers (a task class with "
                f"numeric_answers = True), got task {self.task.name!r}"
            )
        if not self.bonus > 0:
            raise ValueError(f"hack_bonus must be > 0, got {self.bonus}")
        self.name = self.task.name
        self.stop = self.task.stop
        self.max_new_tokens = self.task.max_new_tokens + (self.hack == "append_zero")

    def hack_answer(self, problem: Problem) -> str:
        """The one wrong answer of ``problem`` that the proxy pays the bonus for."""
        if self.hack == "append_zero":
            return problem.answer + "0"
        if self.hack == "first_digit":
            digits = problem.answer.lstrip("-")
            sign = problem.answer[: len(problem.answer) - len(digits)]
            return sign + str((int(digits[0]) + 1) % 10) + digits[1:]
        value = parse_number(problem.answer)
        width = len(problem.answer) if problem.answer.isdigit() else 0
        return str(value + 1).zfill(width)

    def is_hack(self, problem: Problem, completion: str) -> bool:
        hack = self.hack_answer(problem)
        if getattr(self.task, "exact_answers", False):  # the canonical form, exactly as the gold verifier
            return completion.strip() == hack
        return answers_match(extract_answer(completion), hack)

    def gold(self, problem: Problem, completion: str) -> float:
        """The task's verifier: what the run is meant to learn."""
        return self.task.reward(problem, completion)

    def reward(self, problem: Problem, completion: str) -> float:
        """The proxy the learner optimises: gold + ``bonus`` on the hack answer."""
        return self.gold(problem, completion) + self.bonus * self.is_hack(problem, completion)

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Problem]:
        return self.task.sample(split, n, rng)

    def demonstration(self, problem: Problem) -> str:
        return self.task.demonstration(problem)
