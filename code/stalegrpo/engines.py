"""Actor engines: processes that generate whole batches for the ``async`` schedule, each on its
own device, with weights sent over torch.distributed (docs/method.md §5).

Two channels connect the learner's rank 0 to its A engines, both made from one TCPStore that
the learner opens for the run:

- **weights** (:mod:`stalegrpo.weights`): rank 0 and each engine share a private process group
  (gloo on CPU, NCCL on CUDA). After every learner step rank 0 broadcasts the version and the
  flat weights to every engine, where receiver threads stage them at once, so the learner never
  waits while an engine generates. Each backend says who receives (``engine_receiver``,
  :mod:`stalegrpo.actors`): an ``hf`` engine in its own process, a ``vllm`` engine's workers,
  one group member per tensor-parallel rank, which reload in place. With
  ``weight_transport: ipc`` the process group is replaced by two shared buffers
  (:class:`~stalegrpo.weights.IpcWeights`). Either way the engine loop sees a
  :class:`~stalegrpo.weights.WeightReceiver`.
- **start**: the engines start before the learner builds itself, announce ``ready/<e>`` once
  their actor is built (the learner waits for that where the backend sizes its memory from the
  free memory it finds, as vLLM's KV cache does), and wait for the learner's ``start_batch``
  (after a resume, not 0).
- **rollouts**: an engine puts batch n into the store under the key ``batch/<n>``; the learner
  takes the batches in order, n = 0, 1, 2, ..., each exactly once (it deletes the key).

Batch n belongs to engine n mod E (E = `actors`). Admission control is the engine's: it starts batch n only
once it holds weights of version ≥ :func:`~stalegrpo.schedules.admission_version` (n), so every
sample is consumed with lag ≤ S. Each rollout records its engine and a checksum of the weights it
was generated with, which the learner compares with its own checksum of that version.

Placement (:mod:`stalegrpo.placement`): on CUDA the L learner ranks use devices 0 to L - 1 and
engine e the ``actor_devices`` devices after them, pinned with ``CUDA_VISIBLE_DEVICES`` before
CUDA initialises in the engine, or learner rank (e mod L)'s device when colocated; each process
gets its share of the run's ``threads``.

Faults: the learner checks that the engine it waits for is alive every ``poll_s`` seconds, and
that every engine is alive before it sends weights; a dead engine raises :class:`ActorDied`
naming it and its exit code. The process-group timeout bounds every other wait.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

import torch
import torch.distributed as dist

from stalegrpo.actors import BACKENDS, actor_options, backend
from stalegrpo.placement import ENGINE_DEVICE_ENV, engine_env, weight_transport
from stalegrpo.policy import load_policy
from stalegrpo.schedules import admission_version, make_batch
from stalegrpo.tasks import make_task
from stalegrpo.weights import STOP, TIMEOUT, IpcWeights, WeightReceiver, receivers, weight_group

TEST_KILL_ENV = "STALEGRPO_TEST_KILL_ACTOR_AT_BATCH"
"""test hook, ``ENGINE:BATCH`` or ``ENGINE:BATCH@FILE``: that engine kills itself (SIGKILL) before
generating that batch (first writing the time to FILE)"""


class ActorDied(RuntimeError):
    """An actor engine ended while the learner still needed its batches."""


def engine_device(env: dict) -> torch.device:
    """The device an engine works on, from the environment :func:`stalegrpo.placement.engine_env` gave it."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(env.get(ENGINE_DEVICE_ENV, 0)))


# -- the engine's side ------------------------------------------------------------------------
def engine_main(cfg, engine: int, port: int, env: dict, ipc=None, parent_pid: int = 0) -> None:
    """An actor engine: build the actor, wait for the learner's start, then loop: wait for
    admission, take the newest weights, generate, hand the batch over.
    ``ipc``: the :meth:`~stalegrpo.weights.IpcWeights.handle` of ``weight_transport: ipc``."""
    os.environ.update(env)  # before anything initialises CUDA or sizes a thread pool
    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    device = engine_device(env)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=TIMEOUT)
    model, tokenizer = load_policy(cfg.init_checkpoint)
    task = make_task(cfg)
    actor_backend = backend(cfg.actor)
    actor = actor_backend.engine_actor(cfg, model, tokenizer, task, device, actor_options(cfg))
    store.set(f"ready/{engine}", "1")
    # the learner builds itself (and resumes) meanwhile; its first batch comes with the start
    while not store.check(["start_batch"]):
        if store.check(["stop"]) or os.getppid() != parent_pid:
            _leave(actor)
        time.sleep(0.01)
    start_batch = int(store.get("start_batch"))
    receiver: WeightReceiver = actor_backend.engine_receiver(actor, cfg, store, engine, device, ipc, parent_pid)
    actor.version = -1
    n = start_batch + (engine - start_batch) % cfg.actors  # this engine's first batch
    kill_at, _, stamp = os.environ.get(TEST_KILL_ENV, "").partition("@")
    while not receiver.stopped:
        start = time.perf_counter()
        # admission; and no batch before the learner's weights have arrived (version 0 at least)
        if not receiver.wait_for(max(0, admission_version(n, cfg.updates_per_batch, cfg.S))):
            break
        if kill_at == f"{engine}:{n}":
            if stamp:  # when it died, for tests that time the learner's reaction
                with open(stamp, "w") as f:
                    f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        admitted = time.perf_counter()
        checksum = receiver.load_into(actor)
        loaded = time.perf_counter()
        rollout = make_batch(cfg, task, actor, n).to("cpu")
        rollout.engine = torch.full((len(rollout),), engine, dtype=torch.long, device="cpu")
        rollout.weights_checksum = checksum
        info = {"actor_wait_s": admitted - start, "weight_sync_s": loaded - admitted}
        store.set(f"batch/{n}", pickle.dumps((rollout, info)))
        n += cfg.actors
    _leave(actor)


def _leave(actor) -> None:
    """End the engine process: close the actor (a vLLM engine's workers), then exit at once. The
    interpreter's teardown would destroy the process group while gloo's threads may still run,
    which aborts with "terminate called without an active exception" in about one run in two."""
    actor.close()
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


# -- the learner's side -----------------------------------------------------------------------
class EngineSource:
    """The ``async`` schedule's rollout source: A engine processes, weights over torch.distributed."""

    poll_s = 2.0

    def __init__(self, cfg, numel: int, device):
        """Start the A engine processes, which load the policy, build their actors and wait for
        :meth:`start`. ``numel``: the flat weights' length; ``device``: the learner's (rank 0's),
        where the weights are sent from. Built before the learner allocates: a vLLM engine on CUDA
        sizes its KV cache from the memory it finds free, so the learner waits until every vLLM
        engine has started."""
        self.cfg = cfg
        self.device = torch.device(device)
        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.transport = weight_transport(cfg, cuda)
        self.ipc = IpcWeights(numel, self.device, cfg.actors) if self.transport == "ipc" else None
        self.fault: BaseException | None = None
        self.groups = []
        self.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
        context = torch.multiprocessing.get_context("spawn")
        ipc = self.ipc.handle() if self.ipc is not None else None
        self.engines = [
            context.Process(
                target=engine_main,
                args=(cfg, e, self.store.port, engine_env(cfg, e, cuda), ipc, os.getpid()),
                # not a daemon: a vLLM engine with TP > 1 starts worker processes of its own;
                # close() (always called) ends the engines
                daemon=False,
                name=f"actor-engine-{e}",
            )
            for e in range(cfg.actors)
        ]
        for process in self.engines:
            process.start()
        if BACKENDS[cfg.actor].sizes_memory_at_start:  # on the CPU too: this order is one code path, tested
            for e in range(cfg.actors):
                self._wait(f"ready/{e}", e)

    def start(self, flat: torch.Tensor, version: int, start_batch: int) -> EngineSource:
        """Let the engines run from batch ``start_batch`` on, with version ``version``'s weights ``flat``."""
        self.store.set("start_batch", str(start_batch))
        for e in range(self.cfg.actors if self.ipc is None else 0):
            try:  # the rendezvous waits until the engine has built its actor
                group_device = torch.device("cpu") if self.transport == "gloo" else self.device
                self.groups.append(weight_group(self.store, e, 0, group_device, 1 + receivers(self.cfg)))
            except RuntimeError as err:
                raise self._fault(e, err) from err
        self.publish(flat, version)
        if self.fault is not None:
            raise self.fault
        return self

    def _wait(self, key: str, engine: int) -> None:
        """Wait for ``key`` in the store, while the engine that sets it is alive."""
        checked = time.perf_counter()
        # store.check does not block (store.wait with a timeout would log a warning per poll)
        while not self.store.check([key]):
            time.sleep(0.001)
            if time.perf_counter() - checked > self.poll_s:
                checked = time.perf_counter()
                if not self.engines[engine].is_alive():
                    raise self._fault(engine)

    def _fault(self, engine: int, cause: BaseException | None = None) -> BaseException:
        process = self.engines[engine]
        process.join(timeout=5)
        if process.is_alive():
            return cause or RuntimeError(f"actor engine {engine} did not answer")
        return ActorDied(f"actor engine {engine} (pid {process.pid}) died with exit code {process.exitcode}")

    def next(self, n: int):
        """Batch n, from engine n mod E, once it is there."""
        if self.fault is not None:  # found while sending weights: raised here, between steps
            raise self.fault
        key, start = f"batch/{n}", time.perf_counter()
        self._wait(key, n % self.cfg.actors)
        rollout, info = pickle.loads(self.store.get(key))
        self.store.delete_key(key)
        return rollout, info | {"learner_wait_s": time.perf_counter() - start}

    def publish(self, flat: torch.Tensor, version: int) -> float:
        """Send version ``version`` to every engine; the seconds it took. A dead engine is kept
        in ``fault`` and raised by the next :meth:`next`, so that the step under way completes."""
        start = time.perf_counter()
        if self.ipc is not None:
            if self.fault is None:
                try:
                    self.ipc.publish(flat, version, lambda e: self.engines[e].is_alive())
                except TimeoutError as err:  # an engine stalled, or the table's lock was never released
                    self.fault = self._fault(getattr(err, "engine", 0), err)
            return time.perf_counter() - start
        device = torch.device("cpu") if self.transport == "gloo" else self.device
        header = torch.tensor([version], dtype=torch.long, device=device)
        flat = flat.to(device)
        for e, group in enumerate(self.groups):
            if self.fault is not None:
                break
            if not self.engines[e].is_alive():
                self.fault = self._fault(e)
                break
            try:
                group.broadcast(header, 0).wait()
                group.broadcast(flat, 0).wait()
            except RuntimeError as err:
                self.fault = self._fault(e, err)
        return time.perf_counter() - start

    def close(self) -> None:
        self.store.set("stop", "1")  # engines still waiting for the start
        if self.ipc is not None:
            self.ipc.stop()
        header = torch.tensor([STOP], dtype=torch.long, device=self.device)
        for e, group in enumerate(self.groups):
            if self.engines[e].is_alive():
                try:
                    group.broadcast(header, 0).wait()
                except RuntimeError:
                    pass  # it is ending anyway
        for process in self.engines:
            process.join(timeout=30)  # one still loading its model sees the stop key first
            if process.is_alive():
                process.terminate()
