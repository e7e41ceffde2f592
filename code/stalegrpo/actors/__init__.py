"""Actor backends, side by side, and their factory (docs/method.md §1-§2 and §5).

An actor samples G completions per prompt from the behavior policy μ = π_{θ_v} and records, for
every sampled token, log μ(y_t | x, y_<t) at the sampling temperature and the behavior version v.
Every backend implements :class:`stalegrpo.rollout.Actor` and returns a
:class:`stalegrpo.rollout.Rollout`; in the ``async`` schedule its engine takes the learner's
weights through a :class:`stalegrpo.weights.WeightReceiver`. The learner, the schedules and the
engines see only these, and :func:`make_actor` builds a backend by name:

- ``hf`` (:mod:`stalegrpo.actors.hf`): a KV-cache sampling loop over a transformers model, eager
  or compiled, fp32 or bf16, on the CPU or CUDA;
- ``vllm`` (:mod:`stalegrpo.actors.vllm`, with the worker extension
  :mod:`stalegrpo.actors.vllm_worker`): a vLLM engine, with tensor parallelism over
  ``actor_devices``; vLLM is an optional dependency.

A backend is one module that defines

- ``make(model_path_or_model, tokenizer, task, device, **options) -> Actor``;
- ``options(cfg) -> dict``: its own keyword arguments of ``make`` from a train config;
- ``engine_actor(cfg, model, tokenizer, task, device) -> Actor``: the actor of an async engine;
- ``engine_receiver(actor, cfg, store, engine, device, ipc, parent_pid) -> WeightReceiver``: how
  that engine takes each new version (over the run's process group through ``store``, or from
  the learner's shared buffers ``ipc``);

and one :class:`~stalegrpo.actors.registry.Backend` line in :data:`~stalegrpo.actors.registry.BACKENDS`, which holds what the placement check and the
engines must know before the module is imported. Adding a backend touches nothing else.
"""

from __future__ import annotations

import importlib

from stalegrpo.actors.registry import BACKENDS, NAMES, Backend

__all__ = ["BACKENDS", "NAMES", "Backend", "actor_options", "backend", "make_actor"]


def backend(name: str):
    """The module of the backend ``name`` (imported on first use: vLLM is optional)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown actor backend {name!r}; choose from {list(NAMES)}")
    return importlib.import_module(BACKENDS[name].module)


def make_actor(name: str, model_path_or_model, tokenizer, task, device="cpu", **options):
    """An actor of backend ``name`` over a model object or a local checkpoint directory
    (``tokenizer`` None: the checkpoint's). ``options`` are the backend's; a behavior actor of a
    training run gets them from :func:`actor_options`."""
    return backend(name).make(model_path_or_model, tokenizer, task, device=device, **options)


def actor_options(cfg, name: str | None = None) -> dict:
    """The :func:`make_actor` options of a behavior actor of the train config ``cfg`` (backend
    ``name``, default ``cfg.actor``): the prompt format, the sampling precision (``actor_dtype``,
    resolved against the actor's device by the actor) and the backend's own options.

    Evaluation and the bias probe do not use these: their scratch actor samples in fp32 eagerly.
    """
    from stalegrpo.policy import prompt_format

    name = name or cfg.actor
    return prompt_format(cfg) | {"dtype": cfg.actor_dtype} | backend(name).options(cfg)
