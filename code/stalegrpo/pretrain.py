"""Pretraining of the base policy π_{θ_0}: supervised next-token learning of a task's demonstrations.

docs/method.md §10: the default run pretrains a small character-level Llama on the task itself,
on the train split, until its held-out accuracy is clearly above 0 and clearly below 1, so that
GRPO has room to improve it and to collapse it. The budget is a target, not a step count: every
``eval_every`` steps the held-out sampled (temperature 1) accuracy is measured on
``eval_problems`` problems, and pretraining stops at the first evaluation that reaches
``target_accuracy`` (or at ``steps``). The final greedy and sampled held-out accuracies, on up to
``final_eval_problems`` held-out problems, go to OUT/pretrain.json next to the checkpoint
(``save_pretrained``: model + tokenizer, loadable with :func:`stalegrpo.policy.load_policy`).

Any task of :mod:`stalegrpo.tasks` (``task``, ``task_options``) and any local checkpoint
(``model=PATH``) work: each step trains on ``prompt → task.demonstration(problem) + EOS`` for a
fresh batch of train problems (the binary-op answer, countdown's generating expression, a jsonl
record's worked answer), with the prompt formatted exactly as the actors format it
(``prompt_template``, ``system_prompt``: the tokenizer's chat template, or plain text), so that GRPO
samples from the policy in the format it was pretrained in. Keep those keys, and the split's
``heldout_fraction``, equal to the GRPO run's. A fresh model gets a character tokenizer over the
task's ``alphabet`` (the binary-op tasks have one); the text tasks (countdown, jsonl) have none
and start from ``model=PATH``; with
``steps=0`` a checkpoint is only evaluated and re-saved (paper scale).

Measured on the shared 2-core machine, character Llama (seeds 0-3, defaults): the target was
reached after 275-450 steps, with final held-out sampled accuracy 0.17-0.26 and greedy 0.37-0.50
(the same numbers on 1 or 2 threads). Wall time was 11 s (450 steps, 2 threads, idle machine) to
90 s (1 thread, busy machine); 2 threads on an oversubscribed machine took 340 s, so use threads=1
when the cores are shared. At η = 3e-3 the plateau before the jump lasted 150-1050 steps; at 6e-3
it did not end within 1200.

Measured likewise, the default stand-in Qwen2 (:func:`stalegrpo.checkpoints.make_standin_checkpoint`:
107k parameters, ChatML template, default system prompt), η = 3e-3, warm-up 20, 1 thread, task
option ``max_new_tokens: 16``; seconds are training time on a machine with load 1.2-3.5:

- jsonl on :func:`stalegrpo.tasks.write_toy_gsm8k` (1000 one-digit additions in English, 83 held
  out), batch 32, ``target_accuracy=0.2`` with ``eval_every=25`` and ``eval_problems=128``: stopped
  after 200-225 steps (seeds 0-2), final held-out sampled accuracy 0.11-0.25 and greedy 0.33-0.39,
  in 30-32 s (37-40 s wall with the final evaluation). 300 steps overshoot: sampled 0.61.
- countdown with ``numbers: 3, max_number: 5, max_target: 10`` (23 distinct held-out puzzles), batch
  16, 600 steps, no target: final sampled accuracy 0.09-0.15 and greedy 0.25-0.34 (seeds 0-1) on
  500 held-out problems, in 51-99 s (64-118 s wall). A random two-number expression of the given
  numbers solves 0.10 of these puzzles, so the sampled policy has learnt mainly the format. At
  batch 32, 300 steps: sampled 0.03, greedy 0.17 (44 s); at η = 1e-2 sampled 0.01, greedy 0.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar, Literal

import numpy as np
import torch

from stalegrpo.actors import make_actor
from stalegrpo.config import ConfigError, load_config, to_dict
from stalegrpo.policy import (
    build_model,
    build_tokenizer,
    count_parameters,
    format_prompts,
    load_policy,
    prompt_format,
    resolve_template,
)
from stalegrpo.tasks import TASKS, make_task


@dataclass
class PretrainConfig:
    """Configuration of ``stalegrpo pretrain``."""

    RENAMED: ClassVar[dict[str, str]] = {"lr": "eta"}

    task: Literal[TASKS] = "addition"
    """the task whose demonstrations the policy learns (stalegrpo.tasks)"""
    digits: int = field(default=2, metadata={"minimum": 1})
    """digits of each operand (addition, multiplication)"""
    heldout_fraction: float = field(default=0.1, metadata={"exclusiveMinimum": 0, "maximum": 0.5})
    """fraction of all problems held out, for every task (task_options.heldout_fraction wins)"""
    task_options: dict = field(default_factory=dict)
    """the task's other options, e.g. {numbers: 3, max_number: 5} for countdown or
    {path: data/gsm8k.jsonl} for jsonl (stalegrpo.tasks); as in the train config"""
    prompt_template: Literal["auto", "chat", "plain"] = "auto"
    """prompt format (as the actors'): the chat template, the text as is, or chat where there is a template"""
    system_prompt: str | None = None
    """system message of chat prompts (null: the template's default)"""
    model: str | None = None
    """a local HF checkpoint directory to start from instead of a fresh model (nothing is downloaded)"""
    hidden: int = field(default=128, metadata={"minimum": 8})
    """hidden size of a fresh model"""
    layers: int = field(default=2, metadata={"minimum": 1})
    """transformer layers of a fresh model"""
    heads: int = field(default=4, metadata={"minimum": 1})
    """attention heads of a fresh model"""
    intermediate: int = field(default=256, metadata={"minimum": 8})
    """MLP width of a fresh model"""
    steps: int = field(default=3000, metadata={"minimum": 0})
    """maximum number of optimizer steps (0: evaluate and save only)"""
    batch_size: int = field(default=64, metadata={"minimum": 1})
    """problems per step, drawn fresh from the train split"""
    eta: float = field(default=1.5e-3, metadata={"exclusiveMinimum": 0})
    """AdamW learning rate after warm-up"""
    weight_decay: float = field(default=0.0, metadata={"minimum": 0})
    """AdamW weight decay"""
    beta2: float = field(default=0.95, metadata={"minimum": 0, "exclusiveMaximum": 1})
    """AdamW second-moment decay (0.95 tolerates the loss spikes of this tiny model better than 0.999)"""
    grad_clip: float = field(default=1.0, metadata={"exclusiveMinimum": 0})
    """gradient-norm clipping radius"""
    warmup: int = field(default=20, metadata={"minimum": 0})
    """linear learning-rate warm-up steps"""
    target_accuracy: float | None = field(default=0.2, metadata={"maximum": 1})
    """stop at the first evaluation whose held-out sampled accuracy reaches this (null: run all steps)"""
    eval_every: int = field(default=25, metadata={"minimum": 1})
    """steps between held-out evaluations"""
    eval_problems: int = field(default=256, metadata={"minimum": 1})
    """held-out problems per periodic evaluation"""
    final_eval_problems: int = field(default=1000, metadata={"minimum": 1})
    """held-out problems of the final evaluation"""
    temperature: float = field(default=1.0, metadata={"exclusiveMinimum": 0})
    """sampling temperature of the sampled accuracy (the RL actors' default)"""
    seed: int = 0
    """seed of the initialisation, the data and the evaluations"""
    threads: int | None = field(default=None, metadata={"minimum": 1})
    """torch CPU threads (null: all cores)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the model trains: auto is CUDA when torch sees a GPU, else the CPU"""


CONFIG_CLASS = PretrainConfig


def build_task(cfg: PretrainConfig):
    """The task of ``cfg`` (:func:`stalegrpo.tasks.make_task`), ``heldout_fraction`` included.

    Every task has a ``heldout_fraction``; it must equal the one the GRPO run's task uses (there the
    task's default 0.1 unless its task_options say otherwise), or pretraining would learn GRPO's
    held-out problems.
    """
    options = {"heldout_fraction": cfg.heldout_fraction, **cfg.task_options}
    try:
        return make_task(SimpleNamespace(task=cfg.task, digits=cfg.digits, task_options=options))
    except (OSError, ValueError) as err:
        raise ConfigError(f"task / task_options: {err}") from err


def supervised_batch(tokenizer, task, problems, template: str = "auto", system: str | None = None):
    """Right-padded ``prompt demonstration EOS`` sequences with labels only on ``demonstration EOS``.

    The prompt tokens are exactly the actors' (:func:`stalegrpo.policy.encode_prompts`): the chat
    template's text without the tokenizer's special tokens, or plain text with them (the character
    policy's BOS). The demonstration (``task.demonstration``) is encoded on its own, as the actor
    decodes a completion apart from its prompt, and ends in the tokenizer's EOS, where sampling stops.
    """
    plain = resolve_template(tokenizer, template) == "plain"
    texts = format_prompts(tokenizer, [p.prompt for p in problems], template, system)
    rows = []
    for text, p in zip(texts, problems):
        prompt = tokenizer(text, add_special_tokens=plain)["input_ids"]
        target = tokenizer(task.demonstration(p), add_special_tokens=False)["input_ids"]
        target = target + [tokenizer.eos_token_id]
        rows.append((prompt + target, [-100] * len(prompt) + target))
    width = max(len(ids) for ids, _ in rows)
    cpu = torch.device("cpu")  # built on the host; the training loop moves it to its device
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, device=cpu)
    labels = torch.full((len(rows), width), -100, device=cpu)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=cpu)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, device=cpu)
        labels[i, : len(lab)] = torch.tensor(lab, device=cpu)
        mask[i, : len(ids)] = 1
    return input_ids, mask, labels


def accuracy(actor, problems, temperature: float, seed: int) -> float:
    """Mean reward of one completion per problem (temperature 0: greedy)."""
    actor.model.eval()
    rollout = actor.generate(problems, 1, temperature=temperature, seed=seed)
    return float(rollout.rewards.mean())


def heldout_eval_set(task, n: int, seed: int):
    """Up to ``n`` held-out problems: all of them when the split is small, else a seeded sample."""
    # jsonl holds its records in memory; a binary-op task would enumerate 10^(2 digits) problems
    if hasattr(task, "all_problems") and 10 ** (2 * getattr(task, "digits", 0)) <= 10**6:
        problems = task.all_problems("heldout")
        if len(problems) <= n:
            return problems
        rng = np.random.default_rng(seed)
        return [problems[i] for i in rng.choice(len(problems), n, replace=False)]
    return task.sample("heldout", n, np.random.default_rng(seed))


def pretrain_device(cfg: PretrainConfig) -> torch.device:
    """CUDA when it is there (``device: auto``), else the CPU; ``device: cuda`` without a GPU is an error."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA device (use device: auto or cpu)")
    return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")


def main(config_path: str | None, overrides: list[str], out: str) -> int:
    cfg = load_config(PretrainConfig, config_path, overrides)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    task = build_task(cfg)
    out_dir = Path(out)
    if cfg.model is not None:
        model, tokenizer = load_policy(cfg.model)
    else:
        alphabet = getattr(task, "alphabet", None)
        if alphabet is None:
            raise ConfigError(
                f"task {cfg.task!r} has no character alphabet for a fresh model's tokenizer: give model=PATH "
                "(a checkpoint with its own tokenizer)"
            )
        tokenizer = build_tokenizer(alphabet)
        model = build_model(tokenizer, cfg.hidden, cfg.layers, cfg.heads, cfg.intermediate, seed=cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt_options = prompt_format(cfg)
    try:
        resolve_template(tokenizer, cfg.prompt_template)
    except ValueError as err:  # template=chat for a tokenizer without one
        raise ConfigError(f"prompt_template: {err}") from err
    device = pretrain_device(cfg)
    print(f"pretraining on {device}", flush=True)
    model.to(device)
    actor = make_actor("hf", model, tokenizer, task, device=device, **prompt_options)
    rng = np.random.default_rng(cfg.seed)
    eval_problems = task.sample("heldout", cfg.eval_problems, np.random.default_rng(cfg.seed + 1))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.eta, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay
    )
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / (cfg.warmup + 1)))

    history, step, start = [], 0, time.perf_counter()
    reached = False
    while step < cfg.steps and not reached:
        model.train()
        problems = task.sample("train", cfg.batch_size, rng)
        input_ids, mask, labels = (
            x.to(device) for x in supervised_batch(tokenizer, task, problems, **prompt_options)
        )
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        warmup.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            sampled = accuracy(actor, eval_problems, cfg.temperature, seed=cfg.seed + step)
            history.append({"step": step, "loss": loss.item(), "sampled_accuracy": sampled})
            print(
                f"step {step:5d}  loss {loss.item():.4f}  held-out sampled accuracy {sampled:.3f}", flush=True
            )
            reached = cfg.target_accuracy is not None and sampled >= cfg.target_accuracy
    train_seconds = time.perf_counter() - start

    final = heldout_eval_set(task, cfg.final_eval_problems, cfg.seed + 2)
    summary = {
        "config": to_dict(cfg),
        "parameters": count_parameters(model),
        "steps": step,
        "train_seconds": train_seconds,
        "target_reached": reached,
        "heldout_problems": len(final),
        "heldout_greedy_accuracy": accuracy(actor, final, 0.0, seed=cfg.seed),
        "heldout_sampled_accuracy": accuracy(actor, final, cfg.temperature, seed=cfg.seed),
        "history": history,
    }
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
    print(
        f"pretrained {summary['parameters']} parameters for {step} steps in {train_seconds:.1f} s; "
        f"held-out accuracy greedy {summary['heldout_greedy_accuracy']:.3f}, "
        f"sampled {summary['heldout_sampled_accuracy']:.3f}; saved to {out_dir}"
    )
    if cfg.target_accuracy is not None and cfg.steps > 0 and not reached:
        print(f"warning: target accuracy {cfg.target_accuracy} not reached in {cfg.steps} steps")
    return 0
