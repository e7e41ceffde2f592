"""Where the processes of a run go (docs/method.md §5): the learner ranks, the actor engines and
the transport of the weights between them. One place, read by ``stalegrpo train`` (its check
before it starts), by the engines (:mod:`stalegrpo.engines`), by the bench and by the workflow,
which asks SLURM for :func:`gpus_needed` GPUs per job (``rules/common.smk``).

On CUDA each learner rank has a GPU. An ``async`` engine gets ``actor_devices`` GPUs of its own
after the learners', or, colocated, shares learner rank (e mod L)'s GPU: then the weights go by
CUDA IPC, since NCCL refuses two ranks of one group on one GPU. A colocated vLLM engine has
TP = 1 and takes ``gpu_memory_utilization`` of the GPU, measured before the learner allocates.
On the CPU every process shares the cores and the weights go over gloo (or shared memory,
``weight_transport: ipc``).
"""

from __future__ import annotations

from stalegrpo.actors.registry import BACKENDS
from stalegrpo.config import ConfigError

ENGINE_DEVICE_ENV = "STALEGRPO_ENGINE_DEVICE"
"""set by :func:`engine_env` for a colocated engine: the CUDA device it works on"""


def engines_colocated(
    schedule: str, learners: int, actors: int, actor_devices: int, colocate, gpus: int | None
) -> bool:
    """Whether the async engines share the learner ranks' GPUs: ``colocate`` true, or ``auto``
    where L + E·d does not fit on ``gpus`` (None: unknown, so never) and d = 1 (a vLLM engine with
    tensor parallelism needs GPUs of its own). The rule that :func:`colocated` applies to a run and
    the workflow (``rules/common.smk``) to a job's GPU request."""
    if schedule != "async" or colocate is False:
        return False
    if colocate is True:
        return True
    return gpus is not None and gpus < learners + actors * actor_devices and actor_devices == 1


def gpus_needed(
    schedule: str, learners: int, actors: int, actor_devices: int, colocate, gpus: int | None
) -> int:
    """CUDA devices a run takes: one per learner rank, plus ``actor_devices`` per async engine
    unless the engines are colocated (:func:`engines_colocated`)."""
    if schedule != "async" or engines_colocated(schedule, learners, actors, actor_devices, colocate, gpus):
        return learners
    return learners + actors * actor_devices


def colocated(cfg, cuda_devices: int) -> bool:
    """The async engines of ``cfg`` run on the learner ranks' GPUs on this machine (never on the CPU)."""
    return cuda_devices > 0 and engines_colocated(
        cfg.schedule, cfg.learners, cfg.actors, cfg.actor_devices, cfg.colocate, cuda_devices
    )


def threads_per_process(cfg) -> int:
    """CPU threads of each process of a run: its ``threads`` shared by the L learner ranks and the
    ``async`` schedule's engines."""
    engines = cfg.actors if cfg.schedule == "async" else 0
    return max(1, cfg.threads // (cfg.learners + engines))


def engine_env(cfg, engine: int, cuda_devices: int) -> dict:
    """The environment that pins async ``engine`` to its devices, and its CPU threads.

    On its own GPUs an engine sees only them (``CUDA_VISIBLE_DEVICES``: the ``actor_devices``
    after the learner ranks' devices 0 to L - 1 and the engines before it). Colocated, it sees
    what the learner sees and works on learner rank (engine mod L)'s GPU
    (:data:`ENGINE_DEVICE_ENV`), so that the CUDA IPC buffers of rank 0 open on the same device
    numbers in both processes."""
    env = {"OMP_NUM_THREADS": str(threads_per_process(cfg))}
    if colocated(cfg, cuda_devices):
        env[ENGINE_DEVICE_ENV] = str(engine % cfg.learners)
    elif cuda_devices:
        first = cfg.learners + engine * cfg.actor_devices
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + i) for i in range(cfg.actor_devices))
    return env


def gpu_memory_utilization(cfg, cuda_devices: int) -> float:
    """The share of its GPU's memory a vLLM engine takes (``gpu_memory_utilization``; None: 0.85 on
    GPUs of its own, colocated 0.3 divided among the engines on one GPU)."""
    if cfg.gpu_memory_utilization is not None:
        return cfg.gpu_memory_utilization
    if colocated(cfg, cuda_devices):
        return 0.3 / -(-cfg.actors // cfg.learners)
    return 0.85


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
    ``actor_devices`` > 1 is tensor parallelism (vLLM's; on CPU its worker processes share the run's
    threads), for a backend that has it (:data:`stalegrpo.actors.BACKENDS`). The weight transport must
    be able to reach the engines."""
    if cfg.actor_devices != 1 and not BACKENDS[cfg.actor].tensor_parallel:
        parallel = [name for name, b in BACKENDS.items() if b.tensor_parallel]
        raise ConfigError(
            f"actor_devices = {cfg.actor_devices} is tensor parallelism (actor: {parallel}); "
            f"actor = {cfg.actor!r} uses 1 device"
        )
    engines = cfg.actors if cfg.schedule == "async" else 0
    transport = weight_transport(cfg, cuda_devices)
    if engines and transport == "ipc" and cfg.actor_devices != 1:
        raise ConfigError(
            f"weight_transport = 'ipc' needs actor_devices = 1 (the engine's process reads the shared "
            f"tensors), not {cfg.actor_devices}: use nccl or gloo, or colocate: false"
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
            raise ConfigError(
                f"placement needs {cfg.learners} CUDA devices (learners = {cfg.learners}, engines "
                f"colocated), this machine has {cuda_devices}"
            )
        return
    if cuda_devices:
        needed = gpus_needed(
            cfg.schedule, cfg.learners, cfg.actors, cfg.actor_devices, cfg.colocate, cuda_devices
        )
        if needed > cuda_devices:
            raise ConfigError(
                f"placement needs {needed} CUDA devices (learners = {cfg.learners} + actors = {cfg.actors} x "
                f"actor_devices = {cfg.actor_devices}), this machine has {cuda_devices}"
            )
