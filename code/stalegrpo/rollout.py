"""The contract between actors and the learner: a :class:`Rollout` and the :class:`Actor` protocol.

Every actor backend (:mod:`stalegrpo.actors`: ``hf``, ``vllm``) implements :class:`Actor` and
returns a :class:`Rollout`; the learner, the schedules and the engines see only these two, so a
backend can be added without touching them (docs/method.md §1-§2).

A rollout holds B problems × G completions, rows of one group contiguous, with the behavior
log-prob log μ(y_t | x, y_<t) of every sampled token at the sampling temperature, the reward of
every completion from the task's verifier, and the behavior version v of every sample.

Every tensor of a rollout lives on the CPU, whatever device generated it: a rollout is a small
record that is scored, queued between processes, concatenated and written to tables on the host.
The learner moves the rows it trains on to its device (``Rollout.to``). Code that makes a
tensor names its device; ``tests/test_devices.py`` runs the actor, the learner step and the
probe under ``torch.device("meta")`` so that a tensor made without one fails there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch

from stalegrpo.tasks.base import Problem, Task, gold_reward


@dataclass
class Rollout:
    """A batch of B problems × G completions sampled from one or more behavior versions."""

    problems: list[Problem]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    behavior_logprobs: torch.Tensor
    rewards: torch.Tensor
    group: torch.Tensor
    version: torch.Tensor
    gen_seconds: float
    engine: torch.Tensor | None = None
    """[N] the actor engine that generated each sample (-1: the learner's own process)"""
    weights_checksum: float | None = None
    """checksum of the weights the batch was generated with (:func:`stalegrpo.policy.weights_checksum`)"""
    gold_rewards: torch.Tensor | None = None
    """[N] the gold verifier's reward of every sample; equal to ``rewards`` unless the task's reward
    is a proxy (:class:`stalegrpo.tasks.ProxyRewardTask`)"""

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def texts(self, tokenizer) -> list[str]:
        """The completions as text (up to EOS, special tokens dropped)."""
        return [
            tokenizer.decode(ids[mask], skip_special_tokens=True)
            for ids, mask in zip(self.completion_ids, self.completion_mask)
        ]

    def cut_at_stop(self, tokenizer, stop: tuple[str, ...]) -> None:
        """End each completion at the token that completes a stop string (it is kept, as EOS is).

        Sampling on and then cutting gives the same distribution of completions as stopping: the
        tokens up to the cut were drawn exactly as they would have been. The cut tokens leave the
        mask, so they earn no reward and carry no log-prob into the learner.
        """
        if not stop:
            return
        for row in range(len(self)):
            ids = self.completion_ids[row][self.completion_mask[row]].tolist()

            def stopped(n: int) -> bool:  # the first n tokens hold a stop string (monotone in n)
                text = tokenizer.decode(ids[:n], skip_special_tokens=True)
                return any(s in text for s in stop)

            if not ids or not stopped(len(ids)):
                continue
            low, high = 1, len(ids)  # the smallest n with stopped(n), by bisection
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if stopped(middle) else (middle + 1, high)
            self.completion_mask[row, low:] = False

    def score(self, tokenizer, task) -> None:
        """Cut the completions at the task's stop strings, then reward them: ``rewards`` is what the
        learner optimises (the task's reward), ``gold_rewards`` what the task's verifier says."""
        self.cut_at_stop(tokenizer, getattr(task, "stop", ()))
        pairs = [(self.problems[g], text) for g, text in zip(self.group.tolist(), self.texts(tokenizer))]
        self.rewards = torch.tensor([task.reward(p, text) for p, text in pairs], dtype=torch.float32, device="cpu")
        # the verifier runs again only where the reward is a proxy (gold_reward is the reward otherwise)
        is_proxy = getattr(task, "gold", None) is not None
        self.gold_rewards = (
            torch.tensor([gold_reward(task, p, text) for p, text in pairs], dtype=torch.float32, device="cpu")
            if is_proxy
            else self.rewards
        )

    def to(self, device) -> Rollout:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Rollout(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in moved.items()})

    @staticmethod
    def cat(rollouts: list[Rollout], pad_token_id: int = 0) -> Rollout:
        """One rollout from several: prompts re-padded on the left, completions on the right."""
        lp = max(r.prompt_ids.shape[1] for r in rollouts)
        lc = max(r.completion_ids.shape[1] for r in rollouts)

        def pad(x, width, left, value):
            extra = width - x.shape[1]
            return torch.nn.functional.pad(x, (extra, 0) if left else (0, extra), value=value)

        offsets, total = [], 0
        for r in rollouts:
            offsets.append(total)
            total += len(r.problems)
        return Rollout(
            problems=[p for r in rollouts for p in r.problems],
            prompt_ids=torch.cat([pad(r.prompt_ids, lp, True, pad_token_id) for r in rollouts]),
            prompt_mask=torch.cat([pad(r.prompt_mask, lp, True, False) for r in rollouts]),
            completion_ids=torch.cat([pad(r.completion_ids, lc, False, pad_token_id) for r in rollouts]),
            completion_mask=torch.cat([pad(r.completion_mask, lc, False, False) for r in rollouts]),
            behavior_logprobs=torch.cat([pad(r.behavior_logprobs, lc, False, 0.0) for r in rollouts]),
            rewards=torch.cat([r.rewards for r in rollouts]),
            group=torch.cat([r.group + o for r, o in zip(rollouts, offsets)]),
            version=torch.cat([r.version for r in rollouts]),
            gen_seconds=sum(r.gen_seconds for r in rollouts),
            engine=torch.cat([r.engine for r in rollouts]) if all(r.engine is not None for r in rollouts) else None,
            gold_rewards=torch.cat([r.gold_rewards for r in rollouts])
            if all(r.gold_rewards is not None for r in rollouts)
            else None,
        )


class Actor(Protocol):
    """What the learner's process and the engines use of an actor, whatever its backend."""

    version: int
    """the behavior version v of the weights it holds; every sample it generates carries it
    (-1 before the first weights of a run)"""
    model: torch.nn.Module
    """a transformers model in step with the actor's weights: it names and shapes the parameters
    (state dicts are built from it, :func:`stalegrpo.policy.state_from_flat`)"""
    tokenizer: object
    """the tokenizer that encodes the prompts and decodes the completions for the verifier"""
    task: Task
    """the task whose verifier rewards the completions (:meth:`Rollout.score`)"""
    device: torch.device
    """where it generates"""
    weight_sync_s: float
    """seconds the last :meth:`load_weights` took"""

    def generate(
        self, problems: list[Problem], group_size: int, temperature: float = 1.0, seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> Rollout:
        """G = ``group_size`` samples per problem (rows of a group contiguous), scored, on the CPU."""
        ...

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Take the learner's weights (names of ``model.named_parameters()``, a ``module.`` prefix
        and a missing tied ``lm_head.weight`` accepted); later samples carry ``version``."""
        ...

    def close(self) -> None:
        """Release what the actor holds beyond this process's memory (a vLLM engine's workers)."""
        ...


def copy_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.nn.Parameter]:
    """Copy a learner state dict into ``model``'s parameters in place; returns them by name.

    Accepts a ``module.``-prefixed state dict (DDP/DeepSpeed wrappers) and one without the tied
    ``lm_head.weight`` (tied weights appear once in ``named_parameters``).
    """
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    if missing:
        raise KeyError(f"load_weights: state dict lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])
    return params
