"""Question/answer records from a local JSON-lines file in GSM8K's format (`JsonlTask`), and a toy
GSM8K to try it with (`write_toy_gsm8k`)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from stalegrpo.tasks.answers import answers_match, extract_answer, marked_answer
from stalegrpo.tasks.base import SPLITS, Problem, _check_split, heldout_fraction_of

@dataclass
class JsonlTask:
    """Question/answer records from a local JSON-lines file in GSM8K's format.

    Each non-empty line is an object such as ``{"question": "...", "answer": "...\\n#### 72"}``.
    The reference answer is what `extract_answer` finds in the record's answer ("72" here, and a
    plain "72" works too), so GSM8K's files work as they are. A record's split is decided by a
    hash of its question, so repeated questions stay in one split. The reward is 1 if the
    completion's extracted answer matches the reference (`answers_match`). The record's answer
    text is the problem's ``solution``: GSM8K's reasoning and "#### 72" is the usual supervised
    target, and a bare "72" is demonstrated as "#### 72", as the prompt asks.
    """

    path: str
    """the JSON-lines file (required)"""
    name: str = field(default="jsonl", init=False)
    """task name (fixed)"""
    heldout_fraction: float = 0.1
    """fraction of the records that are held out (by hash of the question)"""
    question_key: str = "question"
    """the key of a record's question"""
    answer_key: str = "answer"
    """the key of a record's answer"""
    prompt_template: str = "{question}\nGive the final answer after ####."
    """the prompt; "{question}" stands for the record's question"""
    max_new_tokens: int = 256
    """completion budget in tokens, EOS included"""
    stop: tuple[str, ...] = ()
    """stop strings for the sampler (none by default)"""
    problems: dict[str, list[Problem]] = field(init=False, repr=False, compare=False)
    """the records of each split, in file order"""

    numeric_answers: ClassVar[bool] = True
    """GSM8K-style answers are numbers, so a proxy reward can pay for a wrong one"""

    def __post_init__(self):
        if "{question}" not in self.prompt_template:
            raise ValueError(
                f"jsonl: prompt_template must contain '{{question}}', got {self.prompt_template!r}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"jsonl: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self.stop = tuple(self.stop)
        self.problems = {split: [] for split in SPLITS}
        path = Path(self.path)
        expected = (
            f"expected one JSON object per line with a string {self.question_key!r} and an "
            f"{self.answer_key!r} (GSM8K format: 'reasoning\\n#### 72', or just '72')"
        )
        if not path.is_file():
            raise FileNotFoundError(f"jsonl task: no file {path}; {expected}")
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    self._add(line, f"{path}:{number}", expected)
        if not any(self.problems.values()):
            raise ValueError(f"jsonl task: {path} has no records; {expected}")

    def _add(self, line: str, where: str, expected: str) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg}); {expected}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: a {type(record).__name__}, not an object; {expected}")
        for key in (self.question_key, self.answer_key):
            if key not in record:
                raise ValueError(f"{where}: missing key {key!r} (keys: {sorted(record)}); {expected}")
        question, answer = record[self.question_key], record[self.answer_key]
        # JSON numbers are fine as answers ({"answer": 72}); booleans and the rest are not.
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ValueError(f"{where}: {self.question_key!r} and {self.answer_key!r} must be strings")
        reference = extract_answer(answer)
        if reference is None:
            raise ValueError(f"{where}: {self.answer_key!r} gives no final answer ({answer!r})")
        prompt = self.prompt_template.replace("{question}", question)
        split = "heldout" if heldout_fraction_of(question, self.name) < self.heldout_fraction else "train"
        self.problems[split].append(Problem(prompt=prompt, answer=reference, solution=answer))

    def all_problems(self, split: str) -> list[Problem]:
        """Every record of a split, in file order (for exhaustive evaluation)."""
        _check_split(split)
        return list(self.problems[split])

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Problem]:
        """``n`` records of ``split``, drawn uniformly with replacement."""
        _check_split(split)
        problems = self.problems[split]
        if not problems:
            total = sum(len(p) for p in self.problems.values())
            raise ValueError(
                f"jsonl task: the {split} split of {self.path} is empty "
                f"({total} records, heldout_fraction={self.heldout_fraction})"
            )
        return [problems[i] for i in rng.integers(0, len(problems), size=n).tolist()]

    def reward(self, problem: Problem, completion: str) -> float:
        """1 if the completion's final answer matches the reference, else 0."""
        return float(answers_match(extract_answer(completion), problem.answer))

    def demonstration(self, problem: Problem) -> str:
        """The record's answer text if it marks its final answer, else "#### " + the reference."""
        text = problem.solution or problem.answer
        # an unmarked multi-line reference is the whole text, which "####" would cut to one line
        if marked_answer(text)[0] or "\n" in problem.answer:
            return text
        return f"#### {problem.answer}"


_TOY_QUESTIONS = (
    "What is {a} + {b}?",
    "What is {a} plus {b}?",
    "Add {a} and {b}.",
    "What is the sum of {a} and {b}?",
    "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
)
_TOY_NAMES = ("Natalia", "James", "Maria", "Tom", "Aisha", "Chen", "Olga", "Ravi", "Sara", "Ben")
_TOY_ITEMS = ("apples", "clips", "books", "marbles", "coins", "eggs", "pencils", "cookies", "cards")


def write_toy_gsm8k(path, n: int = 1000, seed: int = 0) -> Path:
    """Write ``n`` distinct one-digit additions phrased in English to ``path`` in GSM8K's format
    (``{"question": "Add 7 and 6.", "answer": "7 + 6 = 13\\n#### 13"}``); returns ``path``.

    A toy GSM8K for the jsonl task, so that the paper's path (a chat checkpoint, supervised
    pretraining on worked answers, GRPO on free text) runs at CPU scale without downloads. Every
    sum appears in several phrasings, so a held-out question asks a sum that training has seen in
    other words. The same ``n`` and ``seed`` give the same file.
    """
    rng = random.Random(seed)
    most = 4 * 100 + len(_TOY_NAMES) * len(_TOY_ITEMS) * 100  # the distinct questions there are
    if not 1 <= n <= most:
        raise ValueError(f"write_toy_gsm8k: n must be in [1, {most}], got {n}")
    questions: dict[str, tuple[int, int]] = {}
    while len(questions) < n:
        a, b = rng.randrange(10), rng.randrange(10)
        template = rng.choice(_TOY_QUESTIONS)
        question = template.format(a=a, b=b, name=rng.choice(_TOY_NAMES), item=rng.choice(_TOY_ITEMS))
        questions.setdefault(question, (a, b))
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for question, (a, b) in questions.items():
            answer = f"{a} + {b} = {a + b}\n#### {a + b}"
            f.write(json.dumps({"question": question, "answer": answer}) + "\n")
    return path
