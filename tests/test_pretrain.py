"""``stalegrpo pretrain`` (docs/method.md §10) end to end at a tiny budget: a loadable checkpoint and
its summary; a checkpoint given with ``model=PATH`` is only re-evaluated at steps=0; bad keys exit 2.
The character addition path is as it was; a local stand-in Qwen2 learns a jsonl task and
countdown, its prompts formatted exactly as the actors format them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stalegrpo.actors import make_actor
from stalegrpo.cli import main as cli
from stalegrpo.policy import build_tokenizer, load_policy
from stalegrpo.pretrain import PretrainConfig, build_task, heldout_eval_set, supervised_batch
from stalegrpo.tasks import get_task, write_toy_gsm8k
from stalegrpo.tasks.arithmetic import ALPHABET

CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "pretrain.yaml")
TINY = ["steps=6", "batch_size=8", "eval_every=3", "eval_problems=8", "final_eval_problems=16", "threads=1"]
# the losses of the TINY run and the tokens of supervised_batch, stored from the code before tasks
# had demonstrations and prompts had templates: the character addition path must not change
TINY_LOSSES = [2.974170207977295, 2.659634828567505]
ADDITION_IDS = [
    [1, 4, 11, 14, 8, 9, 18, 4, 9, 6, 2],  # <bos> 07+45= 052 <eos>
    [1, 13, 13, 14, 13, 13, 18, 5, 13, 12, 2],  # <bos> 99+99= 198 <eos>
    [1, 4, 4, 14, 4, 7, 18, 4, 4, 7, 2],  # <bos> 00+03= 003 <eos>
]


def test_pretrain_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "base"
    assert cli(["pretrain", CONFIG, *TINY, "--out", str(out)]) == 0
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["steps"] == 6 and [h["step"] for h in summary["history"]] == [3, 6]
    assert [h["loss"] for h in summary["history"]] == pytest.approx(TINY_LOSSES, rel=1e-5)
    assert 1e5 < summary["parameters"] < 1e6 and summary["heldout_problems"] == 16
    for key in ("heldout_greedy_accuracy", "heldout_sampled_accuracy"):
        assert 0 <= summary[key] <= 1
    model, tokenizer = load_policy(out)
    assert tokenizer.decode(tokenizer("12+34=")["input_ids"], skip_special_tokens=True) == "12+34="

    # --model PATH (the same as model=PATH) with steps=0: the same weights, evaluated and saved again
    again = tmp_path / "again"
    assert (
        cli(
            [
                "pretrain",
                "steps=0",
                "final_eval_problems=16",
                "threads=1",
                "--out",
                str(again),
                "--model",
                str(out),
            ]
        )
        == 0
    )
    reloaded, _ = load_policy(again)
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()):
        assert torch.equal(a, b)
    assert json.loads((again / "pretrain.json").read_text())["steps"] == 0


def test_character_addition_batch_is_unchanged():
    task = get_task("addition")
    problems = [task.problem(7, 45), task.problem(99, 99), task.problem(0, 3)]
    for template in ("auto", "plain"):  # the character tokenizer has no chat template
        input_ids, mask, labels = supervised_batch(build_tokenizer(ALPHABET), task, problems, template)
        assert input_ids.tolist() == ADDITION_IDS and mask.all()
        assert labels.tolist() == [[-100] * 7 + ids[7:] for ids in ADDITION_IDS]


def toy_gsm8k(tmp_path, n=200) -> str:
    return str(write_toy_gsm8k(tmp_path / "toy.jsonl", n))


def test_batches_format_prompts_as_the_actors_do(tmp_path, standin_checkpoint, standin_llama_checkpoint):
    task = get_task("jsonl", path=toy_gsm8k(tmp_path), max_new_tokens=16)
    problems = task.all_problems("train")[:4]
    assert len({len(p.prompt) for p in problems}) > 1  # rows of different lengths
    for checkpoint in (standin_checkpoint, standin_llama_checkpoint):
        model, tokenizer = load_policy(checkpoint)
        system = "Be brief." if checkpoint == standin_checkpoint else None
        input_ids, mask, labels = supervised_batch(tokenizer, task, problems, system=system)
        prompt_ids, prompt_mask = make_actor("hf", model, tokenizer, task, system=system).encode(problems, 1)
        for i, p in enumerate(problems):
            prompt = prompt_ids[i][prompt_mask[i]].tolist()  # the actor's, without its left padding
            target = labels[i][labels[i] != -100].tolist()
            assert input_ids[i, : mask[i].sum()].tolist() == prompt + target  # right-padded after
            assert labels[i, : len(prompt) + len(target)].tolist() == [-100] * len(prompt) + target
            assert target[-1] == tokenizer.eos_token_id
            assert tokenizer.decode(target[:-1]) == task.demonstration(p)
            text = tokenizer.decode(prompt)
            if checkpoint == standin_checkpoint:  # ChatML: the assistant turn opens before the labels
                assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
                assert text.endswith("<|im_start|>assistant\n") and tokenizer.eos_token == "<|im_end|>"
            else:  # no template: the plain prompt after the tokenizer's BOS
                assert text == "<|begin_of_text|>" + p.prompt
        assert (input_ids[~mask.bool()] == tokenizer.pad_token_id).all()


def test_heldout_eval_set_of_a_jsonl_task_is_all_its_records(tmp_path):
    task = get_task("jsonl", path=toy_gsm8k(tmp_path), heldout_fraction=0.2)
    heldout = task.all_problems("heldout")
    assert heldout_eval_set(task, 1000, seed=0) == heldout
    assert len(heldout_eval_set(task, 5, seed=0)) == 5


def standin_run(tmp_path, checkpoint, *overrides):
    out = tmp_path / "out"
    base = ["target_accuracy=null", "warmup=5", "threads=1", f"model={checkpoint}"]
    assert cli(["pretrain", *base, *overrides, "--out", str(out)]) == 0
    model, tokenizer = load_policy(out)  # a loadable checkpoint of the same family
    assert tokenizer.chat_template is not None and model.config.model_type == "qwen2"
    return json.loads((out / "pretrain.json").read_text())


def test_standin_qwen2_learns_a_jsonl_task(tmp_path, standin_checkpoint):
    data = toy_gsm8k(tmp_path)
    summary = standin_run(
        tmp_path,
        standin_checkpoint,
        "task=jsonl",
        f"task_options={{path: {data}, max_new_tokens: 12}}",
        "steps=60",
        "batch_size=16",
        "eta=3e-3",
        "eval_every=20",
        "eval_problems=8",
    )
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]  # ~3.3 to ~0.9
    assert summary["config"]["task_options"]["path"] == data
    # all held-out records (a tenth of the 200 questions, by hash) are evaluated
    assert 10 < summary["heldout_problems"] < 30
    for key in ("heldout_greedy_accuracy", "heldout_sampled_accuracy"):
        assert 0 <= summary[key] <= 1


def test_standin_qwen2_pretrains_on_countdown(tmp_path, standin_checkpoint):
    options = "task_options={numbers: 3, max_number: 5, max_target: 10, max_new_tokens: 8}"
    summary = standin_run(
        tmp_path,
        standin_checkpoint,
        "task=countdown",
        options,
        "steps=4",
        "batch_size=4",
        "eval_every=2",
        "eval_problems=4",
        "final_eval_problems=8",
    )
    assert summary["steps"] == 4 and summary["heldout_problems"] == 8


def test_bad_config_key_exits_2_naming_it(tmp_path, capsys):
    assert cli(["pretrain", "stepz=5", "--out", str(tmp_path)]) == 2
    assert "stepz" in capsys.readouterr().err
    assert cli(["pretrain", "task=sudoku", "--out", str(tmp_path)]) == 2
    assert "task" in capsys.readouterr().err
    assert cli(["pretrain", "task=jsonl", "--out", str(tmp_path / "x")]) == 2  # no path
    assert "task_options" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli(["pretrain", "task_options={digitz: 3}", "--out", str(tmp_path)]) == 2
    assert "digitz" in capsys.readouterr().err
    # a fresh model's character tokenizer takes the task's alphabet; countdown has none
    assert cli(["pretrain", "task=countdown", "--out", str(tmp_path / "y")]) == 2
    assert "no character alphabet" in capsys.readouterr().err and not (tmp_path / "y").exists()
    # the character tokenizer has no chat template to format prompts with
    assert cli(["pretrain", "prompt_template=chat", "steps=0", "--out", str(tmp_path)]) == 2
    assert "chat template" in capsys.readouterr().err


def test_heldout_fraction_reaches_every_task(tmp_path):
    cfg = PretrainConfig(task="jsonl", heldout_fraction=0.3, task_options={"path": toy_gsm8k(tmp_path)})
    assert build_task(cfg).heldout_fraction == 0.3
    cfg = PretrainConfig(task="countdown", heldout_fraction=0.3, task_options={"heldout_fraction": 0.2})
    assert build_task(cfg).heldout_fraction == 0.2  # the task's own option wins
    task = build_task(PretrainConfig(digits=1))
    assert task.digits == 1 and task.heldout_fraction == 0.1
    assert len(heldout_eval_set(task, 1000, seed=0)) == len(task.all_problems("heldout"))
    assert np.isclose(len(task.all_problems("heldout")) / 100, 0.1, atol=0.06)
