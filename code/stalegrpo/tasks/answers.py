r"""Final answers in free text: `extract_answer` ("#### 42", "\boxed{42}", else the whole text),
`parse_number` and `answers_match` (exact, as numbers when both are numbers)."""

from __future__ import annotations

import re
from fractions import Fraction

_BOXED = "\\boxed{"


def marked_answer(text: str) -> tuple[bool, str | None]:
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
    found, answer = marked_answer(text)
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
