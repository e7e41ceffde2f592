"""The learner's data-parallel ranks (:class:`Ranks`), and the test hooks that stop a rank or a
run at a known step, so that kill, signal and resume tests need no polling."""

from __future__ import annotations

import os
import signal

import torch

TEST_SIGNAL_ENV = "STALEGRPO_TEST_SIGNAL_AFTER_CHECKPOINT"
"""test hook, ``STEP:SIGNAL`` (e.g. ``4:SIGKILL``): the run signals itself right after writing
checkpoint STEP, so kill and resume tests stop it at a known step without polling"""
TEST_KILL_RANK_ENV = "STALEGRPO_TEST_KILL_RANK_AT_STEP"
"""test hook, ``RANK:STEP``: that learner rank kills itself (SIGKILL) before that step"""


def signal_after_checkpoint(step: int) -> None:
    """The test hook of :data:`TEST_SIGNAL_ENV`."""
    spec = os.environ.get(TEST_SIGNAL_ENV)
    if spec and int(spec.split(":")[0]) == step:
        os.kill(os.getpid(), getattr(signal, spec.split(":")[1]))


class Ranks:
    """The learner's data-parallel ranks. Rank 0 alone talks to the actors, records, evaluates and
    probes; what it decides (the next batch, or stop) reaches the other ranks by broadcast."""

    def __init__(self):
        self.rank, self.size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        self.lead = self.rank == 0
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
        """this rank's device, DeepSpeed's choice (LOCAL_RANK), known before the learner exists"""

    def share(self, obj, device):
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
        return box[0]
