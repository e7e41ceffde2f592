"""The ``vllm`` actor backend: μ = π_{θ_v} sampled by a vLLM engine, with behavior log-probs.

docs/method.md §1-§2 and §5: the same contract as the ``hf`` actor (:class:`stalegrpo.rollout.Actor`,
:class:`stalegrpo.rollout.Rollout`): G completions per prompt, the log-prob log μ(y_t | x, y_<t)
of every sampled token at the sampling temperature, the behavior version v of every sample, and
rewards from the task's verifier. The learner recomputes π_θ with
:func:`stalegrpo.policy.sequence_logprobs`; vLLM feeds each prompt unpadded with positions
0, 1, ..., which is exactly ``cumsum(mask) - 1`` on the left-padded batch, so the two agree to
float rounding (tested to 1e-4 in fp32, measured ~1e-6).

Weights change after every learner step (§5), and the engine must follow them exactly:

* :meth:`VLLMActor.load_weights` reloads a state dict in place with vLLM's
  ``reload_weights`` worker method through ``LLM.collective_rpc``. It runs the model's own
  ``load_weights`` (HF names → fused qkv / gate-up layers) between vLLM's layer-wise reload
  hooks, so backends that repack weights after loading (the CPU backend's oneDNN linear layers)
  repack again. Calling ``model.load_weights`` directly skips that and leaves stale kernels.
* It then resets the prefix cache: cached KV blocks are keyed by token ids only, so without a
  reset a prompt seen before would be continued from keys and values of old weights. Prefix
  caching stays on because on long prompts (GSM8K-like) it shares each prompt's KV across its G
  samples; for the short prompts of the CPU default it never hits (blocks are 32 tokens).
* The seconds spent are kept in ``weight_sync_s`` (the §3 column of the same name).

The engine runs in the calling process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so in the async
schedule it lives in the actor process that constructs the actor, and a state dict reaches it
without serialisation. On CPU the vLLM worker replaces ``torch.set_num_threads`` by a no-op for
the whole process once the engine exists: set the thread count before constructing the actor.

In the ``async`` schedule the actor is an engine process of :mod:`stalegrpo.engines`, built with
``worker_extension_cls`` = :class:`stalegrpo.actors.vllm_worker.WeightSyncExtension` and
``tensor_parallel_size`` = ``actor_devices``: then the weights reach vLLM's workers over
torch.distributed and are reloaded there, which also works with TP > 1 (worker processes;
tested on CPU with TP = 2). :meth:`VLLMActor.load_weights` is the in-process path of the
``fixed`` schedule. On CUDA the engine takes ``gpu_memory_utilization`` instead of the CPU
KV-cache size.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np
import torch

from stalegrpo.placement import gpu_memory_utilization
from stalegrpo.policy import encode_prompts, flat_params, load_policy, resolve_dtype
from stalegrpo.rollout import Rollout, copy_weights
from stalegrpo.tasks.base import Problem, Task
from stalegrpo.weights import TIMEOUT, IpcReceiver, weight_group

ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine core in this process: weights pass by reference
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the default (0 = auto) asks for more than a laptop has
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # do not pin threads on a shared machine
    "VLLM_LOGGING_LEVEL": "WARNING",
}
"""environment vLLM reads at import; set only where the user has not set it"""
for _key, _value in ENGINE_ENV.items():
    os.environ.setdefault(_key, _value)


WORKER_EXTENSION = "stalegrpo.actors.vllm_worker.WeightSyncExtension"
"""the worker extension of every engine that takes weights in its workers (``worker_extension_cls``)"""

CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""head dims vLLM 0.32's CPU attention kernel has (``CPUAttentionBackend.get_supported_head_sizes``)"""


EXPECTED_WARNINGS = {
    # the rotary embedding's cos/sin cache is no weight; vLLM keeps it on each reload
    "vllm.model_executor.model_loader.reload.layerwise": "RotaryEmbedding: Failed to load weights",
    # with skip_tokenizer_init there is no tokenizer, hence no chat template to warm up
    "vllm.renderers.base": "Chat template warmup failed",
}
"""logger name → start of a warning that is expected here and would read as an error in every log"""


class _QuietExpectedWarnings(logging.Filter):
    """Drops the :data:`EXPECTED_WARNINGS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(EXPECTED_WARNINGS.get(record.name, "\0"))

    @classmethod
    def install(cls) -> None:
        for name in EXPECTED_WARNINGS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())


class _LocalWeightChannel:
    """Weights from this process to its own vLLM engine's workers, over a private gloo group: for
    an engine core in a child process (see :meth:`VLLMActor._start`), whose RPC cannot carry
    tensors to the workers. The same receivers as the actor engines' (:mod:`stalegrpo.actors.vllm_worker`)."""

    def __init__(self, actor: VLLMActor):
        import threading

        import torch.distributed as dist

        self.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
        joined = {}
        # the workers' rendezvous blocks until this side's group exists: join from a thread
        joiner = threading.Thread(target=lambda: joined.setdefault("receivers", EngineWeights(actor, self.store.port, 0, cpu=True)))
        joiner.start()
        size = 1 + actor.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size
        self.group = weight_group(self.store, 0, 0, torch.device("cpu"), size)
        joiner.join()
        self.receivers = joined["receivers"]

    def send(self, flat: torch.Tensor, version: int) -> None:
        self.group.broadcast(torch.tensor([version], device="cpu"), 0).wait()
        self.group.broadcast(flat.detach().float().cpu().contiguous(), 0).wait()


def _in_learner_world() -> bool:
    """This process is one rank of a torch.distributed world of several (a learner with L > 1)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VLLMActor:
    """The ``vllm`` backend of :class:`stalegrpo.rollout.Actor`.

    ``model_path_or_model`` is a ``save_pretrained`` directory or a transformers model, which is
    then saved to a temporary directory for the engine. ``self.model`` is the transformers model
    kept in step with the engine's weights: it names and shapes the parameters (the training
    loop builds state dicts from it) and lets tests recompute log-probs at the actor's version.
    ``dtype`` is the engine's precision ("auto", "float32" or "bfloat16", resolved against
    ``device`` by :func:`stalegrpo.policy.resolve_dtype`; None: the model's). Extra keyword
    arguments go to ``vllm.LLM``.
    """

    def __init__(
        self, model_path_or_model, tokenizer, task: Task, device="cpu", version: int = 0, template="auto",
        system=None, dtype=None, **engine_kwargs
    ):
        self._remove_tmpdir = lambda: None
        if isinstance(model_path_or_model, (str, os.PathLike)):
            path = Path(model_path_or_model)
            self.model, saved_tokenizer = load_policy(path)
            tokenizer = tokenizer or saved_tokenizer
        else:
            self.model = model_path_or_model
            path = Path(tempfile.mkdtemp(prefix="stalegrpo-vllm-"))
            self._remove_tmpdir = weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)
            self.model.save_pretrained(path)
            tokenizer.save_pretrained(path)
        self.model.eval()
        self.tokenizer = tokenizer
        self.template, self.system = template, system
        """prompt format (:func:`stalegrpo.policy.encode_prompts`)"""
        self.task = task
        self.device = torch.device(device)
        self.version = version
        self.weight_sync_s = 0.0
        """seconds the last :meth:`load_weights` took (reload plus prefix-cache reset)"""
        # test hooks: skipping either step must make behavior log-probs wrong (tests/test_actors_vllm.py)
        self._skip_reload = False
        self._skip_cache_reset = False

        config = self.model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if self.device.type == "cpu" and head_dim not in CPU_HEAD_DIMS:
            raise ValueError(
                f"vLLM's CPU attention supports head dims {CPU_HEAD_DIMS}; this model has {head_dim} "
                f"(hidden {config.hidden_size} / {config.num_attention_heads} heads): use the hf actor"
            )
        dtype = next(self.model.parameters()).dtype if dtype is None else resolve_dtype(dtype, self.device)
        options = {
            "model": str(path),
            "dtype": str(dtype).removeprefix("torch."),
            "enforce_eager": True,  # no graph capture: start-up in seconds
            "seed": 0,
            # log μ after temperature, as the learner's ratio needs (the default is the raw softmax)
            "logprobs_mode": "processed_logprobs",
            "skip_tokenizer_init": True,  # token ids in and out; texts come from our tokenizer
            "generation_config": "vllm",  # ignore sampling defaults saved with the model
            "enable_prefix_caching": True,
        }
        if self.device.type == "cpu":
            options["block_size"] = 32  # the CPU attention backend needs a multiple of 32
        else:  # the fixed schedule's engine shares the learner's GPU (gpu_memory_utilization overrides)
            options["gpu_memory_utilization"] = 0.3
        if self.device.type == "cpu":  # a GPU share means nothing to the CPU backend's fixed KV cache
            engine_kwargs.pop("gpu_memory_utilization", None)
        _QuietExpectedWarnings.install()
        start = time.perf_counter()
        # vLLM seeds the global torch/numpy/random generators of the process it runs in; the
        # learner shares this process in the fixed schedule, so its random state is kept
        rng_states = torch.get_rng_state(), np.random.get_state(), random.getstate()
        self.llm = self._start(options | engine_kwargs)
        # an engine core in a child process gets the weights over its own gloo group
        self._channel = _LocalWeightChannel(self) if _in_learner_world() else None
        torch.set_rng_state(rng_states[0]), np.random.set_state(rng_states[1]), random.setstate(rng_states[2])
        # the first batch takes seconds (kernel set-up); pay it here, not in the first step's gen_s
        self.generate(task.sample("train", 2, np.random.default_rng(0)), 2, seed=0)
        self.startup_s = time.perf_counter() - start
        """seconds the engine took to start and warm up"""

    @staticmethod
    def _start(options: dict):
        """``vllm.LLM(**options)``; in its own process when this one is a rank of a learner world.

        vLLM sets up torch.distributed for its workers and takes an existing default group as its
        own: inside learner rank 0 of L > 1 it would build its groups over the learners' world and
        wait for ranks that never join. Its engine core then runs in a child process instead, and
        weights reach it serialised through ``collective_rpc`` (the ``fixed`` schedule's path).
        """
        from vllm import LLM  # imported here: vLLM is an optional dependency

        in_world = _in_learner_world()
        previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
        if in_world:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
            options.setdefault("worker_extension_cls", WORKER_EXTENSION)
        try:
            return LLM(**options)
        finally:
            if previous is not None:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = previous

    def generate(
        self,
        problems: list[Problem],
        group_size: int,
        temperature: float = 1.0,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> Rollout:
        """G samples per problem; rows of a group contiguous, as in the ``hf`` actor.

        With a ``seed``, prompt i gets its own seed from ``numpy.random.SeedSequence(seed)`` and
        vLLM gives its j-th sample that seed + j, so a batch is reproducible and independent of
        the engine's scheduling. ``temperature = 0`` is greedy, with untempered log-probs.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, [p.prompt for p in problems], self.template, self.system)
        seeds = [None] * len(problems)
        if seed is not None:
            seeds = np.random.SeedSequence(seed).generate_state(len(problems)).tolist()
        # vLLM takes n > 1 only when sampling; greedy repeats each prompt instead
        n_per_request, repeats = (1, group_size) if temperature == 0 else (group_size, 1)
        params = [
            SamplingParams(
                n=n_per_request,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_tokens=max_new_tokens or self.task.max_new_tokens,
                stop_token_ids=[self.tokenizer.eos_token_id],
                logprobs=0,  # only the sampled token's log-prob
                seed=s,
                detokenize=False,
            )
            for s in seeds
            for _ in range(repeats)
        ]
        prompts = [
            TokensPrompt(prompt_token_ids=ids[mask].tolist())
            for ids, mask in zip(prompt_ids, prompt_mask)
            for _ in range(repeats)
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        # one row per sample, in request order, then by sample index: a group's rows are contiguous
        samples = [c for out in outputs for c in sorted(out.outputs, key=lambda c: c.index)]

        width = max(len(c.token_ids) for c in samples)
        n = len(problems) * group_size
        cpu = torch.device("cpu")  # a rollout lives on the CPU (stalegrpo.rollout)
        completion_ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long, device=cpu)
        completion_mask = torch.zeros(n, width, dtype=torch.bool, device=cpu)
        logprobs = torch.zeros(n, width, device=cpu)
        for row, c in enumerate(samples):
            length = len(c.token_ids)
            completion_ids[row, :length] = torch.tensor(c.token_ids, device=cpu)
            completion_mask[row, :length] = True
            logprobs[row, :length] = torch.tensor(
                [step[tok].logprob for step, tok in zip(c.logprobs, c.token_ids)], device=cpu
            )

        group_index = torch.arange(len(problems), device=cpu).repeat_interleave(group_size)
        rollout = Rollout(
            problems=list(problems),
            prompt_ids=prompt_ids.repeat_interleave(group_size, 0),
            prompt_mask=prompt_mask.repeat_interleave(group_size, 0),
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            behavior_logprobs=logprobs,
            rewards=torch.zeros(n, device=cpu),
            group=group_index,
            version=torch.full((n,), self.version, dtype=torch.long, device=cpu),
            gen_seconds=0.0,
        )
        rollout.score(self.tokenizer, self.task)
        rollout.gen_seconds = time.perf_counter() - start
        return rollout

    @torch.no_grad()
    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Reload the learner's weights into the engine in place; later samples carry ``version``.

        Accepts the names of the transformers model's ``named_parameters`` (a ``module.``
        prefix from DeepSpeed is dropped; the tied ``lm_head.weight`` may be absent).
        """
        start = time.perf_counter()
        params = copy_weights(self.model, state_dict)
        if not self._skip_reload:
            weights = [(name, p.detach()) for name, p in params.items()]
            if self.model.config.tie_word_embeddings:
                # vLLM's reload rebuilds each layer apart, which unties lm_head from the
                # embedding; without its own copy lm_head would keep the old weights
                weights.append(("lm_head.weight", self.model.get_input_embeddings().weight.detach()))
            if self._channel is None:
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            else:
                self._channel.send(flat_params(self.model), version)
                # exactly the version sent: its receipt may still be under way in the worker
                self._channel.receivers.load_into(self, version)
        if not self._skip_cache_reset and not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?)")
        self.version = int(version)
        self.weight_sync_s = time.perf_counter() - start

    def close(self) -> None:
        """Shut the engine (and its worker processes) down; remove the temporary checkpoint."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        self._remove_tmpdir()


# -- the engine's side of the workers' weight receivers ----------------------------------------
class EngineWeights:
    """The engine's view of its workers' receivers, with :class:`~stalegrpo.weights.WeightReceiver`'s
    interface (``stopped``, ``wait_for``, ``load_into``), for a :class:`VLLMActor` built with ``worker_extension_cls`` = :class:`WeightSyncExtension`."""

    poll_s = 0.5

    def __init__(self, actor, port: int, engine: int, cpu: bool = False):
        self.llm, self.stopped = actor.llm, False
        model = actor.model
        layout = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
        kwargs = {"port": port, "engine": engine, "layout": layout, "tied": bool(model.config.tie_word_embeddings), "cpu": cpu}
        # returns once the learner's rank 0 has joined the group too
        self.llm.collective_rpc("join_weight_group", kwargs=kwargs)

    def wait_for(self, version: int) -> bool:
        """Block until every worker holds a version ≥ ``version``; False if the learner stopped."""
        while True:
            answers = self.llm.collective_rpc("weights_version", kwargs={"at_least": version, "timeout_s": self.poll_s})
            if any(stopped for _, stopped in answers):
                self.stopped = True
                return False
            if min(v for v, _ in answers) >= version:
                return True

    def load_into(self, actor, version: int | None = None) -> float:
        """Load ``version`` (None: the newest every worker can reach) into all workers, reset the
        prefix cache; the checksum of the loaded weights. A worker waits for ``version`` to arrive."""
        target = max(self.llm.collective_rpc("hold_weights")) if version is None else version
        answers = self.llm.collective_rpc("load_held_weights", kwargs={"version": target})
        if any(v != target for v, _ in answers):
            self.stopped = True
            return float("nan")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?)")
        actor.version = target
        return answers[0][1]


class IpcEngineWeights:
    """A vLLM engine's weights by ``weight_transport: ipc``, with the receivers' interface
    (``stopped``, ``wait_for``, ``load_into``): the engine polls the shared control table for a
    new version, then its worker reloads from the shared buffer (:meth:`WeightSyncExtension.load_ipc_weights`)
    and the engine resets the prefix cache. For one GPU shared with the learner (colocated)."""

    def __init__(self, actor, handle: tuple, engine: int, parent_pid: int):
        tp = actor.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size
        if tp != 1 or os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "0":
            raise RuntimeError(
                "weight_transport = 'ipc' with actor = 'vllm' needs the worker in the engine's process: "
                f"actor_devices = 1 (here {tp}) and VLLM_ENABLE_V1_MULTIPROCESSING=0 (here "
                f"{os.environ.get('VLLM_ENABLE_V1_MULTIPROCESSING')!r})"
            )
        self.llm = actor.llm
        self.poller = IpcReceiver(handle, engine, parent_pid)
        model = actor.model
        layout = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
        kwargs = {"handle": handle, "engine": engine, "parent_pid": parent_pid, "layout": layout,
                  "tied": bool(model.config.tie_word_embeddings)}
        self.llm.collective_rpc("attach_ipc_weights", kwargs=kwargs)

    @property
    def stopped(self) -> bool:
        return self.poller.stopped

    def wait_for(self, version: int) -> bool:
        """Poll until a version ≥ ``version`` is shared; False once the learner stops or dies."""
        return self.poller.wait_for(version)

    def load_into(self, actor) -> float:
        """Reload the newest shared version (unless the engine has it), reset the prefix cache;
        the checksum of the weights loaded."""
        if actor.version == self.poller.version:
            return self._checksum
        (version, self._checksum), = self.llm.collective_rpc("load_ipc_weights")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?)")
        actor.version = version
        return self._checksum


# -- the backend's functions (stalegrpo.actors) -------------------------------------------------
def make(model_path_or_model, tokenizer, task: Task, device="cpu", **options) -> VLLMActor:
    """A :class:`VLLMActor` over a model object or a ``save_pretrained`` directory."""
    return VLLMActor(model_path_or_model, tokenizer, task, device=device, **options)


def options(cfg) -> dict:
    """This backend's options from a train config: ``gpu_memory_utilization`` where it is set (on
    CUDA; the CPU backend drops it)."""
    return {} if cfg.gpu_memory_utilization is None else {"gpu_memory_utilization": cfg.gpu_memory_utilization}


def engine_actor(cfg, model, tokenizer, task: Task, device, options: dict) -> VLLMActor:
    """An async engine's actor: a vLLM engine over ``actor_devices`` devices (tensor parallel),
    whose workers take the weights themselves (:class:`WeightSyncExtension`), with its share of
    the GPU's memory (:func:`stalegrpo.placement.gpu_memory_utilization`)."""
    memory = {}
    if device.type == "cuda":
        memory["gpu_memory_utilization"] = gpu_memory_utilization(cfg, torch.cuda.device_count())
    return VLLMActor(
        model, tokenizer, task, device=device, tensor_parallel_size=cfg.actor_devices,
        worker_extension_cls=WORKER_EXTENSION, **(options | memory),
    )


def engine_receiver(actor: VLLMActor, cfg, store, engine: int, device, ipc, parent_pid: int):
    """The engine's workers receive the weights: each reads the learner's shared buffer (``ipc``,
    TP = 1) or joins the engine's process group through the run's ``store`` (TP > 1 runs worker
    processes)."""
    if ipc is not None:
        return IpcEngineWeights(actor, ipc, engine, parent_pid)
    return EngineWeights(actor, store.port, engine)
