r"""Tasks with verifiable rewards: seeded problems, their verifiers, and final-answer extraction.

A task is the environment of GRPO (docs/method.md §1): it draws prompts x, and its verifier gives
each completion y a reward r in [0, 1]. The default testbed of docs/method.md §10 is multi-digit
addition with zero-padded, fixed-length prompts and answers ("07+45=" → "052"); multiplication is
the harder task. Every problem belongs to exactly one split, decided by a hash of the problem, so
the train and held-out splits are disjoint and the same on every machine and in every run.

The tasks:

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
    def get_task(name: str, **options) -> Task  # name in TASKS: "addition", "multiplication",
                                                # "countdown", "jsonl"; unknown options: TypeError
    def write_toy_gsm8k(path, n=1000, seed=0) -> Path  # one-digit additions in English, GSM8K format
    class ProxyRewardTask(task, hack, bonus)  # reward = gold + bonus on one wrong answer per prompt
    def gold_reward(task, problem, completion) -> float  # the verifier (= reward without a hack)
    def extract_answer(text: str) -> str | None           # "#### 42" / "\boxed{42}" / whole text
    def answers_match(extracted: str | None, reference: str) -> bool
    def parse_number(text: str) -> Fraction | None         # "1,234" → 1234, "$3.50" → 7/2
    def evaluate_expression(text: str) -> tuple[Fraction | None, tuple[int, ...]]  # countdown
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import ClassVar, Protocol

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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# ---------------------------------------------------------------------------------------------
# Final answers in free text
# ---------------------------------------------------------------------------------------------

_BOXED = "\\boxed{"


def _marked(text: str) -> tuple[bool, str | None]:
    r"""(whether ``text`` marks an answer, the marked answer or None).

    "####" wins over "\boxed{": GSM8K's marker is what the prompts ask for, and a model that
    boxes an intermediate result and then writes "#### 42" means 42.
    """
    if "####" in text:
        # The first non-empty line after the last marker: "#### 42", "####42 " and "####\n42".
        rest = text.rsplit("####", 1)[1].strip()
        return True, rest.splitlines()[0].strip() if rest else None
    start = text.rfind(_BOXED)
    if start < 0:
        return False, None
    depth, begin = 1, start + len(_BOXED)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return True, text[begin:i].strip() or None
    return True, None  # unbalanced: "\boxed{42" is a truncated answer, not an answer


def extract_answer(text: str) -> str | None:
    r"""The final answer in decoded model text, or None if the text gives none.

    In order: the first non-empty line after the last "####" (GSM8K); else the content of the last
    "\boxed{...}" with balanced braces (None if unbalanced); else the whole text. The result is
    stripped, and an empty one is None. The fallback is the whole text and not, say, its last
    number: a last-number rule would reward hedges such as "41, or maybe 42" and would read an
    answer out of any stray number, while a bare "42" is still accepted.
    """
    found, answer = _marked(text)
    if found:
        return answer
    return text.strip() or None


# Optional sign and "$"; digits, with commas only as thousands separators ("1,234", not
# "12,34"); an optional decimal part; an optional full stop ending the sentence ("42.").
_NUMBER = re.compile(r"(?P<sign>[+-]?)\$?(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?P<frac>\.[0-9]+)?\.?")


def parse_number(text: str) -> Fraction | None:
    """The exact value of a plain decimal number ("1,234", "-$3.50", "42."), or None.

    Only ASCII digits count, and nothing else may be in the text: "4 2", "42 apples", "1e3",
    "3/4" and "50%" are not numbers. Leading zeros do not change a value ("042" is 42): the value
    is the answer, not its spelling (the binary-op tasks, which do insist on one spelling, do not
    use this).
    """
    m = _NUMBER.fullmatch(text.strip())
    if m is None:
        return None
    value = Fraction(m["int"].replace(",", "") + (m["frac"] or ""))
    return -value if m["sign"] == "-" else value


def answers_match(extracted: str | None, reference: str) -> bool:
    """Whether an extracted answer equals the reference: exactly as numbers if both are numbers
    (so "42.0" and "1,234" match "42" and "1234"; "42.5" and "420" do not), else as stripped
    strings. No tolerance: the references are exact, and a tolerance would be one more knob."""
    if extracted is None:
        return False
    a, b = parse_number(extracted), parse_number(reference)
    if a is not None and b is not None:
        return a == b
    return extracted.strip() == reference.strip()


# ---------------------------------------------------------------------------------------------
# Countdown: arithmetic expressions, parsed and evaluated exactly
# ---------------------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 200
"""longer expressions are refused: it bounds the parser's recursion and the literals' size"""

# The unicode signs a model may write for the ASCII operators.
_ASCII_OPERATORS = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_EXPRESSION_TOKEN = re.compile(r"\s*(?:([0-9]+)|([-+*/()]))")

# A parsed expression: a literal, ("neg", operand) or (operator, left, right).
Node = int | tuple


class _Parser:
    """Recursive descent over the grammar

        expression := term (("+" | "-") term)*
        term       := factor (("*" | "/") factor)*
        factor     := NUMBER | "(" expression ")" | "-" factor

    Anything else is a ValueError, so "2**5", "a+b" and "__import__('os')" never evaluate.
    """

    def __init__(self, tokens: list[int | str]):
        self.tokens, self.i = tokens, 0
        self.numbers: list[int] = []

    def peek(self) -> int | str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> int | str | None:
        token = self.peek()
        self.i += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = (self.take(), node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            node = (self.take(), node, self.factor())
        return node

    def factor(self) -> Node:
        token = self.take()
        if isinstance(token, int):
            self.numbers.append(token)
            return token
        if token == "-":
            return ("neg", self.factor())
        if token == "(":
            node = self.expression()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            return node
        raise ValueError(f"expected a number, '(' or '-', got {token!r}")


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction:
    """``a op b``, exactly; ZeroDivisionError for a / 0."""
    if op == "/":
        return a / b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _evaluate(node: Node) -> Fraction:
    if isinstance(node, int):
        return Fraction(node)
    if node[0] == "neg":
        return -_evaluate(node[1])
    return _apply(node[0], _evaluate(node[1]), _evaluate(node[2]))


def evaluate_expression(text: str) -> tuple[Fraction | None, tuple[int, ...]]:
    """The exact value of an arithmetic expression and the numbers it uses, in order.

    The expression has non-negative integer literals, + - * / (× ÷ and − too), parentheses and
    unary minus. Anything else raises ValueError: other characters (letters, "_", ";", "."),
    "**", unbalanced parentheses, or text longer than ``MAX_EXPRESSION_CHARS``. The value is None
    if the expression divides by zero.
    """
    text = text.translate(_ASCII_OPERATORS).strip()
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens: list[int | str] = []
    position = 0
    while position < len(text):
        m = _EXPRESSION_TOKEN.match(text, position)
        if m is None:
            raise ValueError(f"unexpected character {text[position:].lstrip()[:1]!r}")
        tokens.append(int(m[1]) if m[1] is not None else m[2])
        position = m.end()
    parser = _Parser(tokens)
    node = parser.expression()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r} after the expression")
    try:
        value = _evaluate(node)
    except ZeroDivisionError:
        value = None
    return value, tuple(parser.numbers)


def _countdown_expression(completion: str) -> str | None:
    """The expression a countdown completion gives: marked as in `extract_answer`, else its last
    non-empty line (a completion may show its working on the lines before)."""
    found, expression = _marked(completion)
    if found:
        return expression
    lines = [line for line in completion.splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


_COUNTDOWN_OPERATORS = ("+", "-", "*", "/")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
"""binding strength of each operator; a literal binds tightest (3)"""


def _combine(op: str, left: tuple[str, int], right: tuple[str, int]) -> tuple[str, int]:
    """The text ``left op right`` with only the parentheses it needs, and its precedence.

    The right operand also needs them at equal precedence under "-" and "/" (a-(b-c), a/(b*c)),
    not under "+" and "*", which exact arithmetic makes associative: a+(b-c) = a+b-c.
    """
    (x, px), (y, py), p = left, right, _PRECEDENCE[op]
    x = f"({x})" if px < p else x
    y = f"({y})" if py < p or (py == p and op in "-/") else y
    return f"{x}{op}{y}", p


@dataclass
class CountdownTask:
    """Make a target from given numbers with + - * / and parentheses, each number at most once.

    A problem is generated from its solution: draw ``numbers`` numbers, combine a random subset of
    at least two of them with random operators in a random order (exact `Fraction` arithmetic),
    and keep the result as the target if it is an integer in [1, ``max_target``] that is not
    itself one of the numbers (else draw again). So every problem is solvable, and no bare number
    solves one; the combination, with only the parentheses it needs, is the problem's
    ``solution`` and, after "####" as the prompt asks, its demonstration. The reward is 1 if the
    completion's expression uses only given numbers, each at most as often as given, and equals
    the target exactly; an expression may end in "= target".
    The split hashes the sorted numbers and the target, so the same puzzle listed in another
    order is in the same split.
    """

    name: str = field(default="countdown", init=False)
    """task name (fixed)"""
    numbers: int = 4
    """how many numbers each problem gives"""
    max_number: int = 20
    """the numbers are drawn uniformly from 1..max_number"""
    max_target: int = 100
    """the largest target; the smallest is 1"""
    heldout_fraction: float = 0.1
    """fraction of all problems that are held out (by hash)"""
    max_new_tokens: int = 64
    """completion budget in tokens, EOS included"""
    stop: tuple[str, ...] = ()
    """stop strings for the sampler (none by default)"""

    max_draws: ClassVar[int] = 10_000
    """draws of numbers and operators per problem before generation gives up"""

    def __post_init__(self):
        for option, least in [("numbers", 2), ("max_number", 1), ("max_target", 1), ("max_new_tokens", 1)]:
            if getattr(self, option) < least:
                raise ValueError(f"countdown: {option} must be >= {least}, got {getattr(self, option)}")
        if not 0 <= self.heldout_fraction <= 1:
            raise ValueError(f"countdown: heldout_fraction must be in [0, 1], got {self.heldout_fraction}")
        self.stop = tuple(self.stop)

    def problem(self, numbers: Sequence[int], target: int, solution: str = "") -> Problem:
        listed = ", ".join(str(x) for x in numbers)
        prompt = (
            f"Using the numbers {listed}, make {target}. Use + - * / and parentheses; "
            "each number at most once. Give the expression after ####."
        )
        numbers = tuple(int(x) for x in numbers)
        return Problem(prompt=prompt, answer=str(target), numbers=numbers, solution=solution)

    def generate(self, rng: np.random.Generator) -> Problem:
        """One problem, of either split."""
        for _ in range(self.max_draws):
            numbers = rng.integers(1, self.max_number + 1, size=self.numbers).tolist()
            used = rng.permutation(self.numbers)[: rng.integers(2, self.numbers + 1)]
            values = [Fraction(numbers[i]) for i in used]
            texts = [(str(numbers[i]), 3) for i in used]  # (expression, precedence) of each value
            while len(values) > 1:
                i, j = rng.choice(len(values), size=2, replace=False).tolist()
                a, b = values[i], values[j]
                op = _COUNTDOWN_OPERATORS[rng.integers(len(_COUNTDOWN_OPERATORS))]
                if op == "/" and b == 0:
                    break
                values = [v for k, v in enumerate(values) if k not in (i, j)] + [_apply(op, a, b)]
                merged = _combine(op, texts[i], texts[j])
                texts = [t for k, t in enumerate(texts) if k not in (i, j)] + [merged]
            target = values[0]
            if len(values) == 1 and target.denominator == 1 and 1 <= target <= self.max_target:
                if int(target) not in numbers:
                    return self.problem(numbers, int(target), solution=texts[0][0])
        raise RuntimeError(
            f"countdown: no target in [1, {self.max_target}] after {self.max_draws} draws; "
            f"raise max_target or change max_number ({self.max_number})"
        )

    def split_of(self, problem: Problem) -> str:
        key = f"{sorted(problem.numbers)}->{problem.answer}"
        return "heldout" if heldout_fraction_of(key, self.name) < self.heldout_fraction else "train"

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Problem]:
        """``n`` generated problems of ``split``, by rejection."""
        _check_split(split)
        if self.heldout_fraction == (0.0 if split == "heldout" else 1.0):
            raise ValueError(
                f"countdown: the {split} split is empty (heldout_fraction={self.heldout_fraction})"
            )
        out: list[Problem] = []
        while len(out) < n:
            problem = self.generate(rng)
            if self.split_of(problem) == split:
                out.append(problem)
        return out

    def reward(self, problem: Problem, completion: str) -> float:
        """1 if the completion's expression uses only the given numbers and equals the target."""
        expression = _countdown_expression(completion)
        if expression is None:
            return 0.0
        target = Fraction(int(problem.answer))
        lhs, equals, rhs = expression.partition("=")
        if equals:  # "3*5+7 = 22": the right side must be the target itself
            if parse_number(rhs) != target:
                return 0.0
            expression = lhs
        try:
            value, used = evaluate_expression(expression)
        except ValueError:
            return 0.0
        if Counter(used) - Counter(problem.numbers):  # a number not given, or used too often
            return 0.0
        return float(value == target)

    def demonstration(self, problem: Problem) -> str:
        """``"#### " + solution``: the generating expression, marked as the prompt asks."""
        if not problem.solution:
            raise ValueError(
                f"countdown: no solution recorded for {problem.prompt!r} (only generated problems have one)"
            )
        return f"#### {problem.solution}"


# ---------------------------------------------------------------------------------------------
# Question/answer records from a local file
# ---------------------------------------------------------------------------------------------


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
        if _marked(text)[0] or "\n" in problem.answer:
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


# ---------------------------------------------------------------------------------------------
# Binary operations for the character-level policy
# ---------------------------------------------------------------------------------------------


@dataclass
class BinaryOpTask:
    """``a OP b =`` with both operands zero-padded to ``digits`` digits; the reward is exact match.

    Zero padding makes all prompts the same length, so a batch needs no prompt padding and
    position ids are the same for every row. With ``pad_answer`` the answer is zero-padded too, to
    the width of the largest answer: each answer digit then sits at a fixed position, which the
    small model learns several times faster (measured: 2-digit addition reached 20% held-out
    sampled accuracy in ~250 pretraining steps instead of 850-2900). The verifier accepts only
    this canonical form.
    """

    name: str = "addition"
    """task name: "addition" or "multiplication" """
    digits: int = 2
    """digits of each operand"""
    heldout_fraction: float = 0.1
    """fraction of all problems that are held out (by prompt hash)"""
    pad_answer: bool = True
    """zero-pad answers to a fixed width ("052" rather than "52")"""
    stop: ClassVar[tuple[str, ...]] = ()
    """no stop strings: a completion ends at EOS or at the budget"""

    def __post_init__(self):
        if self.name not in OPERATORS:
            raise ValueError(f"unknown binary-op task {self.name!r}; choose from {sorted(OPERATORS)}")
        if self.digits < 1:
            raise ValueError(f"digits must be >= 1, got {self.digits}")
        self.symbol, self.op = OPERATORS[self.name]
        self.answer_width = len(str(self.op(10**self.digits - 1, 10**self.digits - 1)))
        self.max_new_tokens = self.answer_width + 1  # the answer's digits plus EOS

    def problem(self, a: int, b: int) -> Problem:
        d, answer = self.digits, str(self.op(a, b))
        if self.pad_answer:
            answer = answer.zfill(self.answer_width)
        return Problem(prompt=f"{a:0{d}d}{self.symbol}{b:0{d}d}=", answer=answer)

    def split_of(self, problem: Problem) -> str:
        return (
            "heldout" if heldout_fraction_of(problem.prompt, self.name) < self.heldout_fraction else "train"
        )

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Problem]:
        """``n`` problems drawn uniformly from ``split`` (with replacement), by rejection."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        out: list[Problem] = []
        while len(out) < n:
            a, b = rng.integers(0, 10**self.digits, size=(2, 2 * (n - len(out)) + 8))
            for x, y in zip(a.tolist(), b.tolist()):
                p = self.problem(x, y)
                if self.split_of(p) == split:
                    out.append(p)
                    if len(out) == n:
                        break
        return out

    def all_problems(self, split: str) -> list[Problem]:
        """Every problem of a split, in a fixed order (for exhaustive evaluation of small tasks)."""
        n = 10**self.digits
        return [p for a in range(n) for b in range(n) if self.split_of(p := self.problem(a, b)) == split]

    def reward(self, problem: Problem, completion: str) -> float:
        """1 if the completion is exactly the answer (surrounding whitespace ignored), else 0."""
        return float(completion.strip() == problem.answer)

    def demonstration(self, problem: Problem) -> str:
        """The canonical answer itself (the character policy's completion has no marker)."""
        return problem.answer


OPERATORS = {
    "addition": ("+", lambda a, b: a + b),
    "multiplication": ("*", lambda a, b: a * b),
}

TASKS = (*OPERATORS, "countdown", "jsonl")


def get_task(name: str, **options) -> Task:
    """The task called ``name`` with its options (e.g. ``digits=3``, ``numbers=5``, ``path=...``).

    An option the task does not have is a TypeError that names it.
    """
    if name in OPERATORS:
        return BinaryOpTask(name=name, **options)
    if name == "countdown":
        return CountdownTask(**options)
    if name == "jsonl":
        return JsonlTask(**options)
    raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")


# ---------------------------------------------------------------------------------------------
# A proxy reward with an exploitable bonus (over-optimisation at LM scale)
# ---------------------------------------------------------------------------------------------

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
        if self.task.name not in (*OPERATORS, "jsonl"):
            raise ValueError(
                f"reward_hack = {self.hack!r} needs a task with numeric answers "
                f"({list(OPERATORS)} or 'jsonl'), got task {self.task.name!r}"
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
        if isinstance(self.task, BinaryOpTask):  # the canonical form, exactly as the gold verifier
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


def gold_reward(task: Task, problem: Problem, completion: str) -> float:
    """The gold reward of a completion: the verifier of a proxy-reward task, else the reward."""
    gold = getattr(task, "gold", None)
    return gold(problem, completion) if gold is not None else task.reward(problem, completion)


def make_task(cfg) -> Task:
    """The task of a run's config: ``cfg.task`` with ``cfg.task_options``; the binary-op tasks also
    take ``cfg.digits`` (unless the options set it). With ``cfg.reward_hack`` other than "none"
    the reward is the proxy of :class:`ProxyRewardTask` (``cfg.hack_bonus``)."""
    options = dict(cfg.task_options)
    if cfg.task in OPERATORS:
        options.setdefault("digits", cfg.digits)
    try:
        task = get_task(cfg.task, **options)
    except TypeError as err:
        raise ValueError(f"task_options for task {cfg.task!r}: {err}") from err
    hack = getattr(cfg, "reward_hack", "none")
    return task if hack == "none" else ProxyRewardTask(task, hack, cfg.hack_bonus)
