"""Weights over torch.distributed: the learner's rank 0 broadcasts the flat weights and their
version to each actor engine over a private process group (docs/method.md §5).

``dist.new_group`` cannot include processes outside the learner's world, so each engine's group
is built by hand from the run's TCPStore under its own prefix: gloo on CPU, NCCL on CUDA. Rank 0
of the group is the learner's rank 0; the receivers are the processes that hold the engine's
model, one per device of the engine (the engine process itself, or each tensor-parallel worker of
a vLLM engine, :mod:`stalegrpo.actors.vllm_worker`). A receiver thread (:class:`GroupReceiver`)
takes every version into a staging buffer as it arrives, so the learner never waits while an
engine generates; the engine loads the staged weights between batches.

An engine sees its weights through the :class:`WeightReceiver` protocol, whichever the transport
and the backend (each backend builds its own, :mod:`stalegrpo.actors`).

On one host the weights can skip the network (``weight_transport: ipc``, :class:`IpcWeights`):
the engines read them from two buffers the learner shares with them, which is also the only
transport when engines share the learner's GPU (NCCL refuses two ranks of one group on one GPU).
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from typing import Protocol

import torch
import torch.distributed as dist

from stalegrpo.policy import state_from_flat, weights_checksum

TIMEOUT = datetime.timedelta(seconds=60)
"""longest wait of any store or process-group operation (start-up included)"""
STOP = -1
"""the version header that tells an engine's receiver to stop"""


class WeightReceiver(Protocol):
    """An engine's end of the weights: what the engine loop of :mod:`stalegrpo.engines` calls."""

    stopped: bool
    """the learner said stop, or is gone"""

    def wait_for(self, version: int) -> bool:
        """Block until a version ≥ ``version`` has arrived; False if the learner stopped."""
        ...

    def load_into(self, actor) -> float:
        """Load the newest weights into ``actor`` (a :class:`stalegrpo.rollout.Actor`, whose
        ``version`` it sets); their checksum
        (:func:`stalegrpo.policy.weights_checksum`), which the learner compares with its own."""
        ...


def weight_group(store, engine: int, rank: int, device: torch.device, size: int = 2):
    """The private process group of learner rank 0 (rank 0) and ``engine``'s receivers (ranks 1
    to size - 1, :func:`receivers`)."""
    prefixed = dist.PrefixStore(f"weights/{engine}/", store)
    if device.type == "cuda":
        return dist.ProcessGroupNCCL(prefixed, rank, size, dist.ProcessGroupNCCL.Options())
    return dist.ProcessGroupGloo(prefixed, rank, size, TIMEOUT)


def receivers(cfg) -> int:
    """Processes of one engine that receive the weights: one per device of the engine (a backend
    without tensor parallelism has ``actor_devices`` = 1, :mod:`stalegrpo.placement`)."""
    return cfg.actor_devices


class GroupReceiver:
    """A :class:`WeightReceiver`: a thread that receives every version the learner broadcasts
    over the engine's process group into a staging buffer."""

    def __init__(self, group, numel: int, device: torch.device):
        self.group, self.device = group, device
        self.staging = torch.empty(numel, device=device)
        self.version = -1
        self.stopped = False
        """the learner said stop, or is gone"""
        self.hold_at: int | None = None
        """while set, the staging buffer takes no version above it (vLLM's TP ranks load one version)"""
        self.changed = threading.Condition()
        threading.Thread(target=self._receive, args=(numel,), daemon=True).start()

    def _receive(self, numel: int) -> None:
        header = torch.zeros(1, dtype=torch.long, device=self.device)
        incoming = torch.empty(numel, device=self.device)
        try:
            while True:
                self.group.broadcast(header, 0).wait()
                if int(header) == STOP:
                    break
                self.group.broadcast(incoming, 0).wait()
                with self.changed:
                    self.changed.wait_for(lambda: self.hold_at is None or self.version < self.hold_at)
                    self.staging.copy_(incoming)
                    self.version = int(header)
                    self.changed.notify_all()
        except RuntimeError:  # the learner is gone: the engine's loop sees `stopped` and ends
            pass
        with self.changed:
            self.stopped = True
            self.changed.notify_all()

    def wait_for(self, version: int) -> bool:
        """Block until a version ≥ ``version`` has arrived; False if the learner stopped."""
        with self.changed:
            while self.version < version and not self.stopped:
                self.changed.wait(1.0)
            return self.version >= version

    def load_into(self, actor) -> float:
        """Copy the newest weights into the actor, tagged with their version; their checksum."""
        with self.changed:
            if actor.version != self.version:
                actor.load_weights(state_from_flat(actor.model, self.staging), self.version)
            return weights_checksum(self.staging)


# -- one host: the learner's weights handed over as shared tensors ------------------------------
IPC_WAIT_S = 30.0
"""longest wait of the learner for an engine to finish reading a buffer (a dead engine is skipped)"""


class EngineStalled(TimeoutError):
    """An engine kept a weight buffer marked for longer than :data:`IPC_WAIT_S`."""

    def __init__(self, engine: int, message: str):
        super().__init__(message)
        self.engine = engine


class IpcWeights:
    """The learner's side of ``weight_transport: ipc``: two flat weight buffers on the learner's
    device, shared with the engine processes (``torch.multiprocessing``: CUDA IPC on a GPU, shared
    memory on the CPU; one code path), and a small shared control table.

    Double buffering: the learner writes a new version into the buffer that does not hold the
    newest one, and waits only while a live engine is still copying out of that buffer. An engine
    marks the buffer it reads under a lock that is held for a few table writes, never during a
    copy; every wait is a poll that checks the other side is alive and gives up after
    :data:`IPC_WAIT_S`, so no one blocks on a peer that has died.

    Control table (int64, shared): [0] newest buffer (-1 none), [1] stop flag, [2:4] the version
    in each buffer (-1 while written), [4 + e] the buffer engine e is reading (-1 none).
    """

    def __init__(self, numel: int, device: torch.device, engines: int):
        import torch.multiprocessing as mp

        self.device = torch.device(device)
        self.buffers = [torch.zeros(numel, device=self.device) for _ in range(2)]
        if self.device.type == "cpu":
            for b in self.buffers:
                b.share_memory_()
        self.control = torch.full((4 + engines,), -1, dtype=torch.long, device="cpu").share_memory_()
        self.control[1] = 0
        self.lock = mp.get_context("spawn").Lock()

    def handle(self) -> tuple:
        """What an engine process needs to build its :class:`IpcReceiver` (picklable for spawn)."""
        return self.buffers, self.control, self.lock

    def publish(self, flat: torch.Tensor, version: int, alive) -> None:
        """Write ``version`` into the free buffer and make it the newest. ``alive(e)`` says whether
        engine e still runs; raises TimeoutError naming the engine that held the buffer too long."""
        c = self.control
        deadline = time.monotonic() + IPC_WAIT_S
        while True:
            with _held(self.lock):
                w = 1 - int(c[0]) if int(c[0]) >= 0 else 0
                readers = [e for e in range(len(c) - 4) if int(c[4 + e]) == w and alive(e)]
                if not readers:
                    c[2 + w] = -1  # no engine takes this buffer while it is written
                    break
            if time.monotonic() > deadline:
                raise EngineStalled(readers[0], f"actor engine {readers[0]} held weight buffer {w} for over "
                                                f"{IPC_WAIT_S:g} s")
            time.sleep(0.001)
        self.buffers[w].copy_(flat.detach().reshape(-1))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the copy is complete before an engine may read it
        with _held(self.lock):
            c[2 + w] = version
            c[0] = w

    def stop(self) -> None:
        self.control[1] = 1


class IpcReceiver:
    """The engine's side of :class:`IpcWeights`, a :class:`WeightReceiver`."""

    poll_s = 0.001

    def __init__(self, handle: tuple, engine: int, parent_pid: int):
        self.buffers, self.control, self.lock = handle
        self.engine, self.parent_pid = engine, parent_pid
        self.stopped = False

    @property
    def version(self) -> int:
        newest = int(self.control[0])
        return int(self.control[2 + newest]) if newest >= 0 else -1

    def _learner_gone(self) -> bool:
        return bool(self.control[1]) or os.getppid() != self.parent_pid

    def wait_for(self, version: int) -> bool:
        """Poll until a version ≥ ``version`` is published; False once the learner stops or dies."""
        while self.version < version:
            if self._learner_gone():
                self.stopped = True
                return False
            time.sleep(self.poll_s)
        return True

    def read(self, load) -> tuple[int, float]:
        """``load(flat, version)`` on the newest buffer, which stays marked as read meanwhile (the
        learner writes the other one); (its version, the checksum of its weights)."""
        c, mark = self.control, 4 + self.engine
        with _held(self.lock):
            slot = int(c[0])
            version = int(c[2 + slot])
            c[mark] = slot
        try:
            flat = self.buffers[slot]
            load(flat, version)
            return version, weights_checksum(flat)
        finally:
            c[mark] = -1

    def load_into(self, actor) -> float:
        """Copy the newest weights into the actor, tagged with their version; their checksum."""

        def load(flat, version):
            if actor.version != version:
                actor.load_weights(state_from_flat(actor.model, flat), version)

        return self.read(load)[1]


class _held:
    """``with _held(lock):`` a multiprocessing lock, acquired within :data:`IPC_WAIT_S` or an error
    (its holder died inside a few table writes)."""

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        if not self.lock.acquire(timeout=IPC_WAIT_S):
            raise TimeoutError(f"the weight table's lock was not released within {IPC_WAIT_S:g} s")

    def __exit__(self, *exc):
        self.lock.release()
