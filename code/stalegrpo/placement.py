"""Where the processes of a run go (docs/method.md §5): the learner ranks, the actor engines and
the transport of the weights between them. One place, read by ``stalegrpo train`` (its check
before it starts), by the engines (:mod:`stalegrpo.engines`) and by the bench.

On CUDA each learner rank has a GPU. An ``async`` engine gets ``actor_devices`` GPUs of its own
after the learners', or, colocated, shares learner rank (e mod L)'s GPU: then the weights go by
CUDA IPC, since NCCL refuses two ranks of one group on one GPU. On the CPU every process shares
the cores and the weights go over gloo (or shared memory, ``weight_transport: ipc``).
"""

from __future__ import annotations

from stalegrpo.config import ConfigError


def colocated(cfg, cuda_devices: int) -> bool:
    """The async engines run on the learner ranks' GPUs (``colocate``; never on the CPU)."""
    if not cuda_devices or cfg.schedule != "async" or cfg.colocate is False:
        return False
    # auto: only hf engines, which take the weights by CUDA IPC (vLLM's workers cannot yet)
    return cfg.colocate is True or (cfg.actor == "hf" and cuda_devices < cfg.learners + cfg.actors * cfg.actor_devices)


def weight_transport(cfg, cuda_devices: int) -> str:
    """The transport ``weight_transport: auto`` resolves to (docs/method.md §5)."""
    if cfg.weight_transport != "auto":
        return cfg.weight_transport
    if colocated(cfg, cuda_devices):
        return "ipc"
    return "nccl" if cuda_devices else "gloo"


def check_placement(cfg, cuda_devices: int) -> None:
    """The placement fits the machine: on CUDA one device per learner rank plus actors ×
    actor_devices engine devices, or, colocated (:func:`colocated`), the learners' devices alone.
    ``actor_devices`` > 1 is vLLM tensor parallelism (on CPU its worker processes share the run's
    threads). The weight transport must be able to reach the engines."""
    if cfg.actor_devices != 1 and cfg.actor != "vllm":
        raise ConfigError(
            f"actor_devices = {cfg.actor_devices} is vLLM tensor parallelism; actor = {cfg.actor!r} uses 1 device"
        )
    engines = cfg.actors if cfg.schedule == "async" else 0
    transport = weight_transport(cfg, cuda_devices)
    if engines and transport == "ipc" and cfg.actor == "vllm":
        raise ConfigError(
            "weight_transport = 'ipc' is not available with actor = 'vllm' yet (its workers receive over "
            "nccl/gloo); colocated vLLM engines need it: use separate GPUs (colocate: false)"
        )
    if engines and cuda_devices and transport == "gloo":
        raise ConfigError("weight_transport = 'gloo' sends CPU tensors; on CUDA use nccl or ipc")
    if engines and not cuda_devices and transport == "nccl":
        raise ConfigError("weight_transport = 'nccl' needs CUDA devices; on the CPU use gloo or ipc")
    if colocated(cfg, cuda_devices):
        if transport == "nccl":
            raise ConfigError(
                "colocated engines share the learner's GPU, and NCCL refuses two ranks of one group on one GPU: "
                "use weight_transport = 'ipc' (or auto)"
            )
        if cfg.learners > cuda_devices:
            raise ConfigError(f"placement needs {cfg.learners} CUDA devices (learners = {cfg.learners}, engines "
                              f"colocated), this machine has {cuda_devices}")
        return
    if cuda_devices:
        needed = cfg.learners + engines * cfg.actor_devices
        if needed > cuda_devices:
            raise ConfigError(
                f"placement needs {needed} CUDA devices (learners = {cfg.learners} + actors = {cfg.actors} x "
                f"actor_devices = {cfg.actor_devices}), this machine has {cuda_devices}"
            )
