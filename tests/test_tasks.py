"""Tasks (docs/method.md §10): verifiers accept exactly the answer; splits are disjoint and deterministic."""

import numpy as np
import pytest

from stalegrpo.tasks import Problem, get_task


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


def test_bad_names_and_splits_are_errors():
    with pytest.raises(ValueError, match="countdown"):
        get_task("countdown")
    with pytest.raises(ValueError, match="split"):
        get_task("addition").sample("test", 1, np.random.default_rng(0))
