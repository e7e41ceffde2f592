"""``stalegrpo pretrain`` (docs/method.md §10) end to end at a tiny budget: a loadable checkpoint and
its summary; a checkpoint given with ``model=PATH`` is only re-evaluated at steps=0; bad keys exit 2."""

import json
from pathlib import Path

import torch

from stalegrpo.cli import main as cli
from stalegrpo.policy import load_policy

CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "pretrain.yaml")
TINY = ["steps=6", "batch_size=8", "eval_every=3", "eval_problems=8", "final_eval_problems=16", "threads=1"]


def test_pretrain_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "base"
    assert cli(["pretrain", CONFIG, *TINY, "--out", str(out)]) == 0
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["steps"] == 6 and [h["step"] for h in summary["history"]] == [3, 6]
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


def test_bad_config_key_exits_2_naming_it(tmp_path, capsys):
    assert cli(["pretrain", "stepz=5", "--out", str(tmp_path)]) == 2
    assert "stepz" in capsys.readouterr().err
    assert cli(["pretrain", "task=countdown", "--out", str(tmp_path)]) == 2
    assert "task" in capsys.readouterr().err
