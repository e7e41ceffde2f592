"""The actor backends by name, and what the rest of the package knows of each without importing
it (the placement check, :mod:`stalegrpo.placement`, and the engines, :mod:`stalegrpo.engines`).
A new backend is its module plus one line here (:mod:`stalegrpo.actors`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """What the rest of the package knows of a backend without importing it."""

    module: str
    """the module that implements it"""
    tensor_parallel: bool = False
    """an engine may span ``actor_devices`` > 1 devices (each of its workers receives the weights)"""
    sizes_memory_at_start: bool = False
    """the engine sizes its memory from what it finds free when it starts (vLLM's KV cache): the
    learner waits until every such engine has started before it allocates"""


BACKENDS = {
    "hf": Backend("stalegrpo.actors.hf"),
    "vllm": Backend("stalegrpo.actors.vllm", tensor_parallel=True, sizes_memory_at_start=True),
}
"""the actor backends by name, the choices of the train key ``actor``"""
NAMES = tuple(BACKENDS)
