"""Countdown: make a target from given numbers with + - * / and parentheses, each number at most
once. The verifier parses the expression with a small grammar (never ``eval``) and evaluates it
exactly (`evaluate_expression`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

import numpy as np

from stalegrpo.tasks.answers import marked_answer, parse_number
from stalegrpo.tasks.base import Problem, _check_split, heldout_fraction_of

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
    found, expression = marked_answer(completion)
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
