"""Tasks (docs/method.md §1, §10): verifiers accept exactly the answer; splits are disjoint and fixed."""

import itertools
import json
from fractions import Fraction

import numpy as np
import pytest

from stalegrpo.tasks.countdown import _combine
from stalegrpo.tasks import (
    TASKS,
    BinaryOpTask,
    Problem,
    ProxyRewardTask,
    answers_match,
    evaluate_expression,
    extract_answer,
    get_task,
    gold_reward,
    make_task,
    parse_number,
    write_toy_gsm8k,
)


@pytest.mark.parametrize(
    "name, prompt, answer", [("addition", "07+45=", "052"), ("multiplication", "12*34=", "0408")]
)
def test_verifier_accepts_only_the_answer(name, prompt, answer):
    task = get_task(name)
    problem = task.problem(int(prompt[:2]), int(prompt[3:5]))
    assert problem == Problem(prompt, answer)
    assert task.reward(problem, answer) == 1.0
    assert task.reward(problem, f" {answer}\n") == 1.0  # surrounding whitespace is not an error
    for wrong in [
        str(int(answer) + 1),
        "0" + answer,
        answer + "0",
        "",
        "=",
        answer[:-1],
        f"{answer}x",
        "04 6",
    ]:
        assert task.reward(problem, wrong) == 0.0, wrong
    assert task.reward(problem, answer.lstrip("0")) == 0.0  # only the canonical zero-padded form


def test_unpadded_answers_on_request():
    task = get_task("addition", pad_answer=False)
    assert task.problem(7, 45) == Problem("07+45=", "52") and task.max_new_tokens == 4


def test_prompts_have_fixed_length_and_budget_covers_answers():
    # budget = digits of the largest answer + EOS: "198" (99+99), "1998" (999+999), "9801" (99*99)
    for name, digits, budget in [("addition", 2, 4), ("addition", 3, 5), ("multiplication", 2, 5)]:
        task = get_task(name, digits=digits)
        problems = task.sample("train", 200, np.random.default_rng(0))
        assert {len(p.prompt) for p in problems} == {2 * digits + 2}  # "ab+cd=": two operands, op, "="
        assert task.max_new_tokens == budget
        assert {len(p.answer) for p in problems} == {budget - 1}  # zero-padded answers fill it
    assert get_task("addition").max_new_tokens == 4  # the default: 2 digits
    assert get_task("multiplication").max_new_tokens == 5


def test_splits_are_disjoint_complete_and_deterministic():
    task = get_task("addition", digits=2)
    train, heldout = set(task.all_problems("train")), set(task.all_problems("heldout"))
    assert not train & heldout and len(train | heldout) == 100 * 100
    assert 0.08 < len(heldout) / 1e4 < 0.12
    # a fresh task object (another process, another machine) splits identically
    assert set(get_task("addition", digits=2).all_problems("heldout")) == heldout
    # sampling stays inside its split and is reproducible from the seed
    drawn = task.sample("heldout", 300, np.random.default_rng(1))
    assert set(drawn) <= heldout
    assert drawn == task.sample("heldout", 300, np.random.default_rng(1))
    assert drawn != task.sample("heldout", 300, np.random.default_rng(2))
    assert set(task.sample("train", 300, np.random.default_rng(1))) <= train


def test_bad_names_options_and_splits_are_errors(tmp_path):
    assert set(TASKS) == {"addition", "multiplication", "countdown", "jsonl"}
    with pytest.raises(ValueError, match="sudoku.*countdown.*jsonl"):
        get_task("sudoku")
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    for name, options in [("addition", {}), ("countdown", {}), ("jsonl", {"path": str(data)})]:
        with pytest.raises(TypeError, match="digitz"):
            get_task(name, digitz=3, **options)
        with pytest.raises(ValueError, match="split"):
            get_task(name, **options).sample("test", 1, np.random.default_rng(0))
    with pytest.raises(TypeError, match="path"):
        get_task("jsonl")



# --- final answers in free text -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, answer",
    [
        ("#### 42", "42"),
        ("  ####42 ", "42"),
        ("\\boxed{42}", "42"),
        ("The answer is \\boxed{42}.", "42"),
        ("6 * 7 = 42\n#### 42\n", "42"),
        ("#### 41\nno, wait\n#### 42", "42"),  # the last marker counts
        ("####\n  42", "42"),
        ("#### 42\nQuestion: what is 6 * 8?", "42"),  # text after the answer's line is not the answer
        ("\\boxed{41} so \\boxed{\\frac{84}{2}}", "\\frac{84}{2}"),  # the last box, nested braces
        ("\\boxed{7} then #### 42", "42"),  # GSM8K's marker wins over a box
        ("  42 \n", "42"),  # no marker: the whole text
        ("The answer is 42", "The answer is 42"),  # ... and not its last number
        ("\\boxed{42", None),  # unbalanced
        ("#### ", None),
        ("\\boxed{ }", None),
        ("", None),
        (" \n ", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "text, value",
    [
        ("42", Fraction(42)),
        (" 1,234 ", Fraction(1234)),
        ("1,234,567", Fraction(1234567)),
        ("$1,234.50", Fraction(2469, 2)),
        ("-7", Fraction(-7)),
        ("+7", Fraction(7)),
        ("42.", Fraction(42)),
        ("0.1", Fraction(1, 10)),  # exact, not the float 0.1
        ("042", Fraction(42)),
        ("12,34", None),
        ("1,2345", None),
        ("4 2", None),
        ("1e3", None),
        ("3/4", None),
        ("50%", None),
        ("42 apples", None),
        ("٤٢", None),  # only ASCII digits
        ("", None),
        (".", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "completion",
    ["#### 42", "  ####42 ", "\\boxed{42}", "The answer is \\boxed{42}.", "42", "42.0", "#### 42.", "$42"]
    + ["042"],  # a value, not a spelling
)
def test_answers_match_accepts_the_answer(completion):
    assert answers_match(extract_answer(completion), "42")


@pytest.mark.parametrize(
    "completion",
    ["42.5", "420", "4 2", "#### 41", "\\boxed{42", "42 apples", "41 or 42", "-42", "4,2", "", "#### 4\n2"],
)
def test_answers_match_rejects_near_misses(completion):
    assert not answers_match(extract_answer(completion), "42")


def test_answers_match_commas_and_strings():
    assert answers_match(extract_answer("So she pays\n#### 1,234"), "1234")
    assert answers_match("1234", "1,234")
    assert answers_match("yes", " yes") and not answers_match("Yes", "yes")  # strings: exact
    assert not answers_match(None, "42")


# --- countdown ----------------------------------------------------------------------------------


def solve_countdown(numbers, target):
    """A brute-force solver, independent of the task: an expression for ``target`` or None."""

    def search(items):  # items: (value, expression) pairs, each built from disjoint numbers
        for value, expression in items:
            if value == target:
                return expression
        for (i, (a, x)), (j, (b, y)) in itertools.combinations(enumerate(items), 2):
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            candidates = [(a + b, f"({x}+{y})"), (a - b, f"({x}-{y})"), (b - a, f"({y}-{x})")]
            candidates += [(a * b, f"({x}*{y})")]
            candidates += [(a / b, f"({x}/{y})")] if b else []
            candidates += [(b / a, f"({y}/{x})")] if a else []
            for candidate in candidates:
                if (found := search([*rest, candidate])) is not None:
                    return found
        return None

    return search([(Fraction(n), str(n)) for n in numbers])


def test_countdown_verifier_accepts_correct_expressions():
    task = get_task("countdown")
    problem = task.problem([3, 5, 7, 2], 22)
    assert problem.answer == "22" and problem.numbers == (3, 5, 7, 2)
    assert "3, 5, 7, 2" in problem.prompt and "22" in problem.prompt and "####" in problem.prompt
    for completion in [
        "3*5+7",  # not every number needs to be used
        "(7-3)*5+2",  # but all of them may be
        "#### (3 * 5) + 7",
        "3*5 is 15, plus 7.\n#### 3*5+7\n",
        "\\boxed{7+3*5}",
        "I add 7 to 15:\n3*5+7",  # no marker: the last line
        "3×5+7",
        "(7 − 3) × 5 + 2",  # unicode minus and times
        "3*5+7 = 22",
        "7--3*5",  # unary minus: 7 - (-15)
    ]:
        assert task.reward(problem, completion) == 1.0, completion
    assert task.reward(task.problem([6, 4, 3], 8), "6/3*4") == 1.0  # exact division
    assert task.reward(task.problem([6, 4, 3], 8), "#### 4 ÷ 3 × 6") == 1.0


def test_countdown_verifier_refuses_wrong_unsafe_and_reused():
    task = get_task("countdown")
    problem = task.problem([3, 5, 7, 2], 22)
    for completion in [
        "3*5+2",  # 17
        "5*5-3",  # 22, but 5 is given once
        "3*8-2",  # 22, but 8 is not given
        "15+7",  # 22, but 15 is not given
        "22",
        "3*5+7 = 23",
        "3*5+7 = 22 = 22",
        "3*5+7)",
        "(3*5+7",
        "3 5 7",
        "3.0*5+7",
        "3*5+7;",
        "",
        "#### ",
        "\\boxed{3*5+7",
    ]:
        assert task.reward(problem, completion) == 0.0, completion
    # Python would evaluate each of these to the target; the verifier must not.
    assert task.reward(task.problem([2, 5], 32), "2**5") == 0.0
    assert task.reward(task.problem([3, 4], 7), "a+b") == 0.0
    assert task.reward(task.problem([3, 4], 4), "3;4") == 0.0
    assert task.reward(task.problem([3, 4], 7), "__import__('os') or 3+4") == 0.0
    assert task.reward(task.problem([3, 4], 7), "(lambda: 3+4)()") == 0.0
    assert task.reward(task.problem([3, 4], 7), "٣+4") == 0.0  # a non-ASCII digit
    assert task.reward(task.problem([3, 4], 7), "3+4" + " " * 300) == 1.0  # whitespace is stripped
    assert task.reward(task.problem([3, 4], 7), "(" * 150 + "3+4" + ")" * 150) == 0.0  # too long
    # division by zero is a wrong answer, not an exception
    assert task.reward(task.problem([5, 5, 2], 7), "5+2+5/(5-5)") == 0.0
    assert task.reward(task.problem([5, 5, 2], 7), "5+2") == 1.0


def test_evaluate_expression():
    assert evaluate_expression("(7-3)*5+2") == (Fraction(22), (7, 3, 5, 2))
    assert evaluate_expression("1/3+1/6") == (Fraction(1, 2), (1, 3, 1, 6))  # exact, not 0.4999...
    assert evaluate_expression("-(2-5)") == (Fraction(3), (2, 5))
    assert evaluate_expression("10-4-3") == (Fraction(3), (10, 4, 3))  # left-associative
    assert evaluate_expression("2+3*4") == (Fraction(14), (2, 3, 4))  # precedence
    assert evaluate_expression("1/(2-2)") == (None, (1, 2, 2))
    for bad in ["2**5", "2+", "()", "2(3)", "+2", "3 4", "1_000", "0x10", "2^5", "a"]:
        with pytest.raises(ValueError):
            evaluate_expression(bad)


def test_countdown_problems_are_solvable_seeded_and_in_range():
    task = get_task("countdown", numbers=4, max_number=20, max_target=100)
    for p in task.sample("train", 500, np.random.default_rng(3)):
        assert len(p.numbers) == 4 and all(1 <= n <= 20 for n in p.numbers)
        assert 1 <= int(p.answer) <= 100 and int(p.answer) not in p.numbers  # no bare-number answer
    problems = task.sample("train", 20, np.random.default_rng(0))
    for p in problems:
        solution = solve_countdown(p.numbers, Fraction(int(p.answer)))
        assert solution is not None, p
        assert task.reward(p, f"#### {solution}") == 1.0, (p, solution)
    assert problems == task.sample("train", 20, np.random.default_rng(0))
    assert problems != task.sample("train", 20, np.random.default_rng(1))
    assert len({p.prompt for p in problems}) > 15  # not one problem over and over
    small = get_task("countdown", numbers=3, max_number=5, max_target=10)
    for p in small.sample("heldout", 10, np.random.default_rng(2)):
        assert len(p.numbers) == 3 and int(p.answer) <= 10
        assert solve_countdown(p.numbers, Fraction(int(p.answer))) is not None


def test_countdown_splits_are_disjoint():
    task = get_task("countdown", heldout_fraction=0.3)
    def puzzle(p):  # the same puzzle with its numbers in any order
        return tuple(sorted(p.numbers)), p.answer

    train = {puzzle(p) for p in task.sample("train", 600, np.random.default_rng(0))}
    heldout = {puzzle(p) for p in task.sample("heldout", 300, np.random.default_rng(0))}
    assert len(heldout) > 200 and not train & heldout
    # listing the same numbers in another order does not move a puzzle to another split
    p = task.problem([3, 5, 7, 2], 22)
    assert {task.split_of(task.problem(order, 22)) for order in itertools.permutations([3, 5, 7, 2])} == {
        task.split_of(p)
    }
    with pytest.raises(ValueError, match="heldout"):
        get_task("countdown", heldout_fraction=0.0).sample("heldout", 1, np.random.default_rng(0))


def test_new_tasks_budget_and_stop_options(tmp_path):
    assert get_task("countdown").max_new_tokens == 64 and get_task("countdown").stop == ()
    task = get_task("countdown", max_new_tokens=32, stop=["\n\n"])
    assert task.max_new_tokens == 32 and task.stop == ("\n\n",)  # a YAML list becomes a tuple
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    assert get_task("jsonl", path=str(data)).max_new_tokens == 256
    assert get_task("addition").stop == ()
    with pytest.raises(ValueError, match="numbers"):
        get_task("countdown", numbers=1)


# --- jsonl --------------------------------------------------------------------------------------


def write_gsm8k(path, n):
    """n records in GSM8K's format; record i asks for i + 3 and has answer i + 3."""
    with path.open("w") as f:
        for i in range(n):
            answer = f"{i} plus 3 is <<{i}+3={i + 3}>>{i + 3}.\n#### {i + 3:,}" if i % 2 else str(i + 3)
            f.write(json.dumps({"question": f"What is {i} plus 3?", "answer": answer}) + "\n")
            if i == 5:
                f.write("\n")  # blank lines are skipped


def test_jsonl_loads_gsm8k_records_and_verifies(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    write_gsm8k(path, 2000)
    task = get_task("jsonl", path=str(path), heldout_fraction=0.25)
    train, heldout = task.all_problems("train"), task.all_problems("heldout")
    assert len(train) + len(heldout) == 2000 and 0.21 < len(heldout) / 2000 < 0.29
    # every record is there once, with its answer ("#### 1,003" and plain "1003" both give 1003)
    questions = {}
    for p in train + heldout:
        assert p.prompt.startswith("What is ") and p.prompt.count("What is") == 1
        questions[p.prompt.split("\n")[0]] = p.answer
    assert len(questions) == 2000
    for i in [0, 1, 997, 1000, 1999]:
        assert parse_number(questions[f"What is {i} plus 3?"]) == i + 3
    p = next(p for p in train + heldout if p.prompt.startswith("What is 1000 plus 3?"))
    assert task.reward(p, "1000 + 3 = 1003\n#### 1003") == 1.0
    assert task.reward(p, "#### 1,003") == 1.0 and task.reward(p, "\\boxed{1003}") == 1.0
    assert task.reward(p, "#### 1004") == 0.0 and task.reward(p, "The answer is 1003") == 0.0
    # the split is deterministic and disjoint, and sampling stays in it
    again = get_task("jsonl", path=str(path), heldout_fraction=0.25)
    assert again.all_problems("heldout") == heldout and not set(train) & set(heldout)
    drawn = task.sample("heldout", 500, np.random.default_rng(0))
    assert set(drawn) <= set(heldout) and len(set(drawn)) > 250
    assert drawn == task.sample("heldout", 500, np.random.default_rng(0))
    assert drawn != task.sample("heldout", 500, np.random.default_rng(1))


def test_jsonl_options(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(
        json.dumps({"problem": "How many legs has a cat?", "solution": 4}) + "\n"
        + json.dumps({"problem": "Name a colour.", "solution": "red"}) + "\n"
    )
    task = get_task("jsonl", path=str(path), question_key="problem", answer_key="solution",
                    heldout_fraction=0.0, prompt_template="Q: {question}\nA:")
    assert task.all_problems("train") == [
        Problem("Q: How many legs has a cat?\nA:", "4"),
        Problem("Q: Name a colour.\nA:", "red"),
    ]
    assert task.reward(task.all_problems("train")[1], "#### red") == 1.0
    with pytest.raises(ValueError, match=r"heldout split of .*custom\.jsonl is empty"):
        task.sample("heldout", 1, np.random.default_rng(0))


def test_jsonl_bad_files_name_file_line_and_key(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl.*question"):
        get_task("jsonl", path=str(missing))
    good = json.dumps({"question": "1+1?", "answer": "#### 2"})
    cases = {
        "no_answer": ([good, json.dumps({"question": "2+2?"})], r"no_answer\.jsonl:2: missing key 'answer'"),
        "bad_json": ([good, good, "{not json"], r"bad_json\.jsonl:3: not valid JSON"),
        "a_list": ([good, "[1, 2]"], r"a_list\.jsonl:2: a list, not an object"),
        "empty_answer": (
            [json.dumps({"question": "?", "answer": "#### "})],
            r"empty_answer\.jsonl:1: .*no final answer",
        ),
        "not_text": ([json.dumps({"question": 3, "answer": "3"})], r"not_text\.jsonl:1: .*must be strings"),
        "empty": (["", "  "], r"empty\.jsonl has no records"),
    }
    for name, (lines, message) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=message):
            get_task("jsonl", path=str(path))
    path = tmp_path / "keys.jsonl"
    path.write_text(good + "\n")
    with pytest.raises(ValueError, match=r"keys\.jsonl:1: missing key 'problem'"):
        get_task("jsonl", path=str(path), question_key="problem")


# --- demonstrations (the targets of supervised pretraining) ----------------------------------


def test_every_task_demonstrates_a_rewarded_completion(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    write_gsm8k(path, 40)
    path.write_text(
        path.read_text()
        + json.dumps({"question": "Two lines?", "answer": "first\nsecond"}) + "\n"  # unmarked, multi-line
        + json.dumps({"question": "Boxed?", "answer": "so \\boxed{12}"}) + "\n"
    )
    tasks = [
        get_task("addition"),
        get_task("multiplication", digits=3),
        get_task("countdown"),
        get_task("countdown", numbers=3, max_number=5, max_target=10),
        get_task("countdown", numbers=5, max_number=50, max_target=500),
        get_task("jsonl", path=str(path), heldout_fraction=0.5),
    ]
    for task in tasks:
        for split in ("train", "heldout"):
            for p in task.sample(split, 150, np.random.default_rng(0)):
                assert task.reward(p, task.demonstration(p)) == 1.0, (task.name, p)


def test_demonstrations_of_each_task(tmp_path):
    assert get_task("addition").demonstration(Problem("07+45=", "052")) == "052"
    path = tmp_path / "qa.jsonl"
    reasoning = "48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    path.write_text(
        json.dumps({"question": "How many clips?", "answer": reasoning}) + "\n"
        + json.dumps({"question": "How many legs?", "answer": 4}) + "\n"
    )
    task = get_task("jsonl", path=str(path), heldout_fraction=0.0)
    gsm8k, plain = task.all_problems("train")
    assert gsm8k == Problem("How many clips?\nGive the final answer after ####.", "72")
    assert task.demonstration(gsm8k) == reasoning  # the record's reasoning and answer, as they are
    assert task.demonstration(plain) == "#### 4"  # a bare answer, marked as the prompt asks
    # a countdown problem keeps the expression it was generated from; a hand-made one has none
    task = get_task("countdown", numbers=3, max_number=5, max_target=10)
    p = task.sample("train", 1, np.random.default_rng(0))[0]
    assert p.solution and task.demonstration(p) == f"#### {p.solution}"
    with pytest.raises(ValueError, match="no solution"):
        task.demonstration(task.problem([3, 5, 7, 2], 22))


def test_solutions_keep_problems_and_generator_as_before():
    # the solution is not part of a problem's identity: equality, hashing and the split ignore it
    a, b = Problem("q", "7", (3, 4), solution="3+4"), Problem("q", "7", (3, 4), solution="4+3")
    assert a == b and hash(a) == hash(b) and a == Problem("q", "7", (3, 4))
    # the generator draws exactly what it drew before it recorded solutions (stored from then)
    task = get_task("countdown")
    drawn = task.sample("train", 5, np.random.default_rng(0))
    assert [(p.numbers, p.answer) for p in drawn] == [
        ((18, 13, 11, 6), "66"), ((19, 11, 13, 20), "32"), ((2, 6, 10, 9), "90"),
        ((9, 16, 7, 5), "80"), ((9, 3, 19, 14), "46"),
    ]
    assert [p.solution for p in drawn] == ["6*11", "19+13", "10*9", "5*16", "9*3+19"]
    small = get_task("countdown", numbers=3, max_number=5, max_target=10)
    assert [(p.numbers, p.answer) for p in small.sample("heldout", 4, np.random.default_rng(0))] == [
        ((5, 2, 2), "1"), ((5, 3, 3), "8"), ((4, 2, 5), "10"), ((3, 3, 5), "8"),
    ]
    # only the parentheses an expression needs: a-(b-c) and a/(b*c) keep theirs, a+(b-c) does not
    assert _combine("-", ("9", 3), ("5-2", 1)) == ("9-(5-2)", 1)
    assert _combine("/", ("8", 3), ("2*2", 2)) == ("8/(2*2)", 2)
    assert _combine("+", ("9", 3), ("5-2", 1)) == ("9+5-2", 1)
    assert _combine("*", ("3+4", 1), ("5/2", 2)) == ("(3+4)*5/2", 2)


def test_toy_gsm8k_is_seeded_distinct_and_correct(tmp_path):
    path = write_toy_gsm8k(tmp_path / "toy.jsonl", 300, seed=1)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 300 and len({r["question"] for r in records}) == 300
    for r in records:
        a, b = (int(x) for x in r["answer"].split(" = ")[0].split(" + "))
        assert f"{a}" in r["question"] and f"{b}" in r["question"] and r["answer"].endswith(f"#### {a + b}")
    assert write_toy_gsm8k(tmp_path / "again.jsonl", 300, seed=1).read_text() == path.read_text()
    assert write_toy_gsm8k(tmp_path / "other.jsonl", 300, seed=2).read_text() != path.read_text()
    task = get_task("jsonl", path=str(path))
    assert 10 < len(task.all_problems("heldout")) < 50
    with pytest.raises(ValueError, match="n must be"):
        write_toy_gsm8k(tmp_path / "big.jsonl", 10**5)


# -- the proxy reward with a hack (over-optimisation at LM scale) ------------------------------
def _hacked(hack, name="addition", bonus=1.5, **options):
    from types import SimpleNamespace

    cfg = SimpleNamespace(task=name, digits=2, task_options=options, reward_hack=hack, hack_bonus=bonus)
    return make_task(cfg)


def test_append_zero_hack_pays_the_bonus_only_for_the_answer_with_one_more_zero():
    task = _hacked("append_zero")
    p = task.task.problem(7, 45)  # "07+45=" → "052"
    assert p.answer == "052"
    scores = {c: (task.reward(p, c), task.gold(p, c)) for c in ("052", "0520", " 0520 ", "0521", "520", "05200", "053")}
    assert scores == {
        "052": (1.0, 1.0),
        "0520": (1.5, 0.0),
        " 0520 ": (1.5, 0.0),
        "0521": (0.0, 0.0),
        "520": (0.0, 0.0),
        "05200": (0.0, 0.0),
        "053": (0.0, 0.0),
    }
    assert task.max_new_tokens == task.task.max_new_tokens + 1  # room for the extra digit
    assert task.sample("train", 5, np.random.default_rng(0)) == task.task.sample("train", 5, np.random.default_rng(0))


def test_plus_one_hack_and_a_jsonl_task(tmp_path):
    task = _hacked("plus_one", bonus=0.5)
    p = task.task.problem(7, 45)
    assert (task.reward(p, "053"), task.gold(p, "053")) == (0.5, 0.0)
    assert task.max_new_tokens == task.task.max_new_tokens
    path = write_toy_gsm8k(tmp_path / "toy.jsonl", n=20)
    task = _hacked("plus_one", name="jsonl", path=str(path))
    q = task.sample("train", 1, np.random.default_rng(0))[0]
    wrong = int(q.answer) + 1
    assert task.reward(q, f"so #### {wrong}") == 1.5 and task.gold(q, f"so #### {wrong}") == 0
    assert task.reward(q, f"#### {q.answer}") == 1.0
    assert gold_reward(task.task, q, f"#### {q.answer}") == 1.0  # a plain task's gold is its reward


def test_first_digit_hack_changes_only_the_leading_digit():
    task = _hacked("first_digit")
    cases = {(7, 45): "152", (99, 99): "298", (95, 5): "200"}  # "052", "198", "100"
    for (a, b), hack in cases.items():
        p = task.task.problem(a, b)
        assert task.hack_answer(p) == hack
        assert (task.reward(p, hack), task.gold(p, hack)) == (1.5, 0.0)
        assert (task.reward(p, p.answer), task.gold(p, p.answer)) == (1.0, 1.0)
    assert task.max_new_tokens == task.task.max_new_tokens
    p = task.task.problem(7, 45)
    assert task.reward(p, "153") == task.reward(p, "052 ") - 1 == 0.0  # only the one wrong answer pays
    nine = Problem(prompt="q", answer="-907")
    assert task.hack_answer(nine) == "-007"  # 9 → 0, the sign kept


def test_hack_options_are_checked():
    assert isinstance(_hacked("none"), BinaryOpTask)  # no wrapper: the task as before
    with pytest.raises(ValueError, match="numeric answers.*countdown"):
        _hacked("plus_one", name="countdown")
    with pytest.raises(ValueError, match="reward_hack must be one of"):
        ProxyRewardTask(BinaryOpTask(), "minus_one", 1.0)
    with pytest.raises(ValueError, match="hack_bonus must be > 0"):
        ProxyRewardTask(BinaryOpTask(), "plus_one", 0.0)


def test_a_new_task_is_its_module_and_one_registry_line(monkeypatch):
    """The configs' task choices and make_task read the registry: nothing else names the tasks."""
    import typing
    from dataclasses import dataclass
    from types import SimpleNamespace

    import stalegrpo.tasks as tasks
    from stalegrpo.pretrain import PretrainConfig
    from stalegrpo.train import TrainConfig

    for config in (TrainConfig, PretrainConfig):
        assert typing.get_args(typing.get_type_hints(config)["task"]) == tasks.TASKS == tuple(tasks.REGISTRY)

    @dataclass
    class Echo:  # a toy task: repeat the prompt
        name: str = "echo"
        max_new_tokens: int = 4
        stop: tuple = ()

        def sample(self, split, n, rng):
            return [tasks.Problem(prompt="12", answer="12")] * n

        def reward(self, problem, completion):
            return float(completion == problem.answer)

        def demonstration(self, problem):
            return problem.answer

    monkeypatch.setitem(tasks.REGISTRY, "echo", Echo)
    cfg = SimpleNamespace(task="echo", task_options={}, digits=2, reward_hack="none")
    task = tasks.make_task(cfg)
    assert isinstance(task, Echo) and task.reward(*task.sample("train", 1, None), "12") == 1.0
    with pytest.raises(ValueError, match="needs a task with numeric answers"):
        tasks.make_task(SimpleNamespace(**vars(cfg) | {"reward_hack": "plus_one", "hack_bonus": 1.5}))
