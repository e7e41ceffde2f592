"""The vLLM engine's end of the weight channel: a worker extension (docs/method.md §5).

vLLM runs the model in worker processes, one per tensor-parallel rank (with TP = 1 and
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` the one worker lives in the engine's own process). Weights
therefore have to reach the workers, not the process that holds the ``LLM`` object.
``LLM(worker_extension_cls="stalegrpo.actors.vllm_worker.WeightSyncExtension")`` mixes this class into
every worker, and ``LLM.collective_rpc(name, kwargs=...)`` calls one of its methods on all of them:

* :meth:`~WeightSyncExtension.join_weight_group`: each worker joins the engine's weight group
  with the learner's rank 0 (group rank 0; worker with TP rank r is group rank 1 + r) and starts
  a :class:`~stalegrpo.weights.GroupReceiver` thread that takes every version the learner
  broadcasts into a staging buffer at once, so the learner never waits while the engine
  generates.
* :meth:`~WeightSyncExtension.hold_weights` then :meth:`~WeightSyncExtension.load_held_weights`:
  all TP ranks must load the *same* version, but their receivers finish a broadcast at slightly
  different times. The hold freezes every staging buffer; the engine asks all workers to load
  the newest held version, and a worker that is one broadcast behind first receives up to it.
  The load is vLLM's ``reload_weights(weights_iterator=...)`` under the transformers parameter
  names: the model's own ``load_weights`` fuses qkv / gate-up and takes this rank's TP shard,
  between vLLM's layer-wise reload hooks (so the CPU backend's repacked kernels are rebuilt).
  The engine then calls ``LLM.reset_prefix_cache()`` (cached KV blocks hold old weights' keys).

* :meth:`~WeightSyncExtension.attach_ipc_weights` then :meth:`~WeightSyncExtension.load_ipc_weights`
  (``weight_transport: ipc``, engines colocated on the learner's GPU): the worker reads the
  learner's shared buffer (CUDA IPC; shared memory on the CPU) and reloads from it, the buffer
  marked as read meanwhile. The handle carries the tensors themselves, so the worker must be in
  the engine's process (TP = 1).

The engine's side of both is in :mod:`stalegrpo.actors.vllm` (``EngineWeights``, ``IpcEngineWeights``).

The same code runs on CPU (gloo or shared memory, in-process or worker processes) and on CUDA
(NCCL or CUDA IPC).
"""

from __future__ import annotations

import torch

from stalegrpo.policy import weights_checksum


class WeightSyncExtension:
    """Methods vLLM adds to each of its workers (``worker_extension_cls``)."""

    def join_weight_group(
        self, port: int, engine: int, layout: list[tuple[str, tuple]], tied: bool, cpu: bool = False
    ) -> int:
        """Join ``engine``'s weight group through the learner's store at ``port``; this worker's group rank.

        ``layout`` is the transformers model's ``(name, shape)`` per parameter, in the order of
        the flat vector the learner sends; ``tied``: the model ties ``lm_head`` to the embedding;
        ``cpu``: stage on the CPU over gloo even on CUDA (a sender on this worker's own GPU).
        """
        import torch.distributed as dist
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

        from stalegrpo.weights import TIMEOUT, GroupReceiver, weight_group

        on_cuda = torch.cuda.is_available() and not cpu
        device = torch.device("cuda", torch.cuda.current_device()) if on_cuda else torch.device("cpu")
        rank, size = 1 + get_tensor_model_parallel_rank(), 1 + get_tensor_model_parallel_world_size()
        self._weight_store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=TIMEOUT)
        group = weight_group(self._weight_store, engine, rank, device, size)
        self._layout, self._tied = layout, tied
        self._receiver = GroupReceiver(group, sum(torch.Size(s).numel() for _, s in layout), device)
        return rank

    def weights_version(self, at_least: int, timeout_s: float) -> tuple[int, bool]:
        """Wait up to ``timeout_s`` for a version ≥ ``at_least``; (newest version here, learner stopped)."""
        receiver = self._receiver
        with receiver.changed:
            receiver.changed.wait_for(lambda: receiver.version >= at_least or receiver.stopped, timeout_s)
            return receiver.version, receiver.stopped

    def hold_weights(self) -> int:
        """Freeze the staging buffer (incoming versions wait); the version it holds."""
        with self._receiver.changed:
            self._receiver.hold_at = self._receiver.version
            return self._receiver.version

    def load_held_weights(self, version: int) -> tuple[int, float]:
        """Receive up to ``version`` if behind, load it into the model, release the hold;
        (version, checksum of the loaded weights)."""
        receiver = self._receiver
        with receiver.changed:
            receiver.hold_at = version
            receiver.changed.notify_all()
            receiver.changed.wait_for(lambda: receiver.version >= version or receiver.stopped)
            if receiver.version != version:  # the learner stopped before sending it
                receiver.hold_at = None
                receiver.changed.notify_all()
                return receiver.version, float("nan")
            self._reload(receiver.staging)
            checksum = weights_checksum(receiver.staging)
            receiver.hold_at = None
            receiver.changed.notify_all()
            return version, checksum

    def attach_ipc_weights(self, handle: tuple, engine: int, parent_pid: int, layout: list[tuple[str, tuple]],
                           tied: bool) -> None:
        """Read the weights from the learner's shared buffers (``weight_transport: ipc``,
        :class:`~stalegrpo.weights.IpcWeights`): CUDA IPC tensors on a GPU, shared memory on the
        CPU. The handle holds the tensors themselves, so the worker must live in the engine's
        process (TP = 1, engine core in-process: :class:`IpcEngineWeights` checks it)."""
        from stalegrpo.weights import IpcReceiver

        self._ipc = IpcReceiver(handle, engine, parent_pid)
        self._layout, self._tied = layout, tied

    def load_ipc_weights(self) -> tuple[int, float]:
        """Load the newest shared version into the model; (its version, its checksum). The buffer
        stays marked as read until the reload has copied out of it."""
        return self._ipc.read(lambda flat, version: self._reload(flat))

    def _reload(self, flat: torch.Tensor) -> None:
        """``reload_weights`` from the flat vector, under the transformers parameter names."""
        offset, weights = 0, []
        for name, shape in self._layout:
            numel = torch.Size(shape).numel()
            weights.append((name, flat[offset : offset + numel].view(shape)))
            offset += numel
        if self._tied:
            # vLLM's reload rebuilds each layer apart, which unties lm_head from the embedding
            embedding = next(w for name, w in weights if name.endswith("embed_tokens.weight"))
            weights.append(("lm_head.weight", embedding))
        self.model_runner.reload_weights(weights_iterator=weights)
