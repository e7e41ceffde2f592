"""Weights over torch.distributed: the learner's rank 0 broadcasts the flat weights and their
version to each actor engine over a private process group (docs/method.md §5).

``dist.new_group`` cannot include processes outside the learner's world, so each engine's group
is built by hand from the run's TCPStore under its own prefix: gloo on CPU, NCCL on CUDA. Rank 0
of the group is the learner's rank 0; the receivers are the engine process (``hf``) or each of
its tensor-parallel workers (``vllm``, :mod:`stalegrpo.vllm_worker`). A receiver thread takes
every version into a staging buffer as it arrives, so the learner never waits while an engine
generates; the engine loads the staged weights between batches.
"""

from __future__ import annotations

import datetime
import threading

import torch
import torch.distributed as dist

from stalegrpo.policy import state_from_flat, weights_checksum

TIMEOUT = datetime.timedelta(seconds=60)
"""longest wait of any store or process-group operation (start-up included)"""
STOP = -1
"""the version header that tells an engine's receiver to stop"""


def weight_group(store, engine: int, rank: int, device: torch.device, size: int = 2):
    """The private process group of learner rank 0 (rank 0) and ``engine``'s receivers (ranks 1
    to size - 1: the engine process for ``hf``, its tensor-parallel workers for ``vllm``)."""
    prefixed = dist.PrefixStore(f"weights/{engine}/", store)
    if device.type == "cuda":
        return dist.ProcessGroupNCCL(prefixed, rank, size, dist.ProcessGroupNCCL.Options())
    return dist.ProcessGroupGloo(prefixed, rank, size, TIMEOUT)


def receivers(cfg) -> int:
    """Processes of one engine that receive the weights: each vLLM worker, else the engine."""
    return cfg.actor_devices if cfg.actor == "vllm" else 1


class WeightReceiver:
    """A thread that receives every version the learner broadcasts into a staging buffer."""

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
