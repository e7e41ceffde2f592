"""The GRPO learner: one DeepSpeed engine that takes one optimizer step per minibatch
(docs/method.md §2, §3, §6).

Each step k consumes a minibatch of samples with behavior versions v (lag s = k - v), recomputes
log π_{θ_k} of the sampled tokens with :func:`stalegrpo.policy.token_logprobs` (the computation
the actor's log-probs are checked against; from the hidden states, a chunk of logits at a time),
one micro-batch of ``micro_batch_size`` sequences at a time with the gradient accumulated over
them (the result does not depend on the size; memory does), and maximises the surrogate of
:mod:`stalegrpo.objectives` (``behavior``, ``recompute``, ``decoupled`` or ``tis``) minus an
optional β·KL(π_θ‖π_ref) (k3). Before the update it measures what §3 asks for at θ_k: the
normalised ESS of the sequence and token weights exp(log π_{θ_k} - log μ), kl_behavior =
KL(μ‖π_{θ_k}), kl_ref = KL(μ‖π_ref), mismatch_kl (on the lag-0 samples, whose μ is the same version as the
learner), entropy, clip fractions, the gradient norm before clipping, the cosine with the
previous step's gradient and the update norm ‖θ_{k+1} - θ_k‖.

The learning rate of step k follows §6: ``constant`` η_0, ``ess`` η_0·min(1, ESS_k)^{1/2} or
``staleness`` η_0 / max(1, mean lag), all times a shared linear warm-up.

DeepSpeed runs the same code on CPU (gloo) and CUDA (NCCL); the ZeRO stage and the precision come
from a JSON file under config/deepspeed/. Its ``"bf16": {"enabled": "auto"}`` means bf16 when the
learner runs on CUDA and fp32 on CPU (where bf16 is several times slower); ``true`` or ``false``
is taken as written. Collectives between learner ranks wait at most ``collective_timeout_s``, so
a rank that dies ends the others with :class:`LearnerRankLost` instead of a hang. A single-process run sets the launcher's environment itself, with a
free port, so several runs can share a machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import socket
from pathlib import Path

import torch

from stalegrpo.objectives import aggregate, aggregate_count, group_advantages, k3_kl, token_surrogate
from stalegrpo.policy import flat_params, token_logprobs

REPO_ROOT = Path(__file__).resolve().parents[2]


def setup_distributed_env() -> None:
    """Environment of a one-process DeepSpeed job, unless a launcher already set it."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    # a free port, so that runs side by side do not collide; a port this code picked in a parent
    # process (inherited through the environment) is not a launcher's and is picked anew
    if "MASTER_PORT" not in os.environ or os.environ["MASTER_PORT"] == os.environ.get(
        "STALEGRPO_PICKED_PORT"
    ):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = os.environ["STALEGRPO_PICKED_PORT"] = str(s.getsockname()[1])
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, value)


def resolve_path(path: str | Path) -> Path:
    """``path`` as given, or relative to the repository root (so configs work from any cwd)."""
    path = Path(path)
    return path if path.exists() or path.is_absolute() else REPO_ROOT / path


class LearnerRankLost(RuntimeError):
    """A collective between learner ranks failed or timed out: another rank has (most likely) died."""


def is_collective_failure(err: BaseException) -> bool:
    """``err`` comes from a collective whose peers are gone (gloo: closed connection; NCCL: timeout)."""
    import torch.distributed as dist

    text = str(err)
    return isinstance(err, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "gloo", "NCCL")
    )


def resolve_precision(ds_config: dict, cuda: bool) -> dict:
    """``ds_config`` with ``bf16.enabled: "auto"`` made concrete: bf16 on CUDA, fp32 on CPU."""
    bf16 = ds_config.get("bf16", {})
    if bf16.get("enabled") == "auto":
        ds_config = ds_config | {"bf16": bf16 | {"enabled": cuda}}
    return ds_config


def deepspeed_engine(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, config_path, grad_clip: float, timeout_s: float = 300
):
    """A DeepSpeed engine over ``model`` with the ZeRO stage and precision of the JSON at
    ``config_path``; collectives between ranks time out after ``timeout_s``."""
    setup_distributed_env()
    import deepspeed

    if not torch.cuda.is_available():
        # DeepSpeed's shared-memory allreduce for CPU ranks costs a ~60 s C++ build on a machine
        # that has never built it; gloo's allreduce is fast enough for the CPU models here
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    path = resolve_path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {str(config_path)!r} does not exist")
    ds_config = resolve_precision(json.loads(path.read_text()), torch.cuda.is_available())
    if not torch.distributed.is_initialized():
        # DeepSpeed caches its clone of the world group; a world destroyed earlier in this process
        # (an in-process vLLM engine destroys the one it used when it shuts down) would leave that
        # clone pointing at a dead group, and the next engine's first broadcast fails
        deepspeed.utils.groups._WORLD_GROUP = None
    deepspeed.init_distributed(timeout=datetime.timedelta(seconds=timeout_s), verbose=False)
    # one optimizer step per call: the learner forms its own minibatches
    ds_config.update(
        train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=grad_clip
    )
    ds_config.pop("train_batch_size", None)
    ds_config.setdefault("steps_per_print", 10**9)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    return engine


def learning_rate(cfg, step: int, ess: float, mean_lag: float) -> float:
    """η_k of docs/method.md §6 (``cfg.lr_schedule``) from η_0 = ``cfg.eta``, with the shared warm-up."""
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "constant":
        eta = cfg.eta
    elif cfg.lr_schedule == "ess":
        eta = cfg.eta * math.sqrt(min(1.0, ess)) if math.isfinite(ess) else cfg.eta
    elif cfg.lr_schedule == "staleness":
        eta = cfg.eta / max(1.0, mean_lag)
    else:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")
    return eta * warmup


def normalised_ess(log_weights: torch.Tensor) -> float:
    """(Σw)² / (N·Σw²) of weights given as logs, computed without overflow."""
    if log_weights.numel() == 0:
        return float("nan")
    lse1 = torch.logsumexp(log_weights.double(), 0)
    lse2 = torch.logsumexp(2 * log_weights.double(), 0)
    return float(torch.exp(2 * lse1 - lse2 - math.log(log_weights.numel())))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    total = mask.sum()
    return float((values * mask).sum() / total) if total > 0 else float("nan")


class RankReduce:
    """The §3 metrics of a batch that the data-parallel ranks hold in shards, computed as if one
    process held it all (with one rank, exactly the one-process formulas)."""

    def __init__(self, world_size: int, device):
        self.world_size, self.device = world_size, device

    def _sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        if self.world_size == 1:
            return masked_mean(values, mask)
        total, count = self._sum([float((values * mask).sum()), float(mask.sum())])
        return total / count if count > 0 else float("nan")

    def ess(self, log_weights: torch.Tensor) -> float:
        """:func:`normalised_ess` of the weights of every rank."""
        if self.world_size == 1:
            return normalised_ess(log_weights)
        w = log_weights.double()
        shift = float(w.max()) if w.numel() else 0.0
        (shift,) = self._max([shift])
        s1, s2, n = self._sum([float((w - shift).exp().sum()), float((2 * (w - shift)).exp().sum()), w.numel()])
        return s1 * s1 / (n * s2) if n > 0 and s2 > 0 else float("nan")

    def _max(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def all_true(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        (low,) = self._sum([0.0 if flag else 1.0])
        return low == 0


class Learner:
    """GRPO learner over a DeepSpeed engine; ``version`` counts the optimizer steps taken."""

    def __init__(self, model, ref_model, cfg, version: int = 0):
        self.cfg = cfg
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.eta, betas=(cfg.adam_beta1, cfg.adam_beta2)
        )
        config_path = Path(cfg.deepspeed_dir) / f"zero{cfg.deepspeed_zero}.json"
        self.engine = deepspeed_engine(model, self.optimizer, config_path, cfg.grad_clip, cfg.collective_timeout_s)
        self.model = self.engine.module
        self.device = self.engine.device
        self.reduce = RankReduce(int(os.environ["WORLD_SIZE"]), self.device)
        self.ref_model = (
            ref_model.to(self.device).eval().requires_grad_(False) if ref_model is not None else None
        )
        self.version = version
        self.prev_grad: torch.Tensor | None = None

    # -- micro-batches ---------------------------------------------------------------------
    def micro_batches(self, rows: int) -> list[slice]:
        """The rows of each micro-batch of a ``rows``-row batch (``cfg.micro_batch_size`` each;
        None: one micro-batch). Memory grows with a micro-batch, not with the batch."""
        size = self.cfg.micro_batch_size or rows
        return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]

    def token_logprobs(self, model, batch, rows: slice = slice(None)):
        """log π and the entropy of ``batch``'s completion tokens in ``rows`` under ``model``."""
        return token_logprobs(
            model,
            batch.prompt_ids[rows],
            batch.prompt_mask[rows],
            batch.completion_ids[rows],
            batch.completion_mask[rows],
            self.cfg.temperature,
            self.cfg.logit_chunk_mb,
        )

    def logprobs(self, model, batch):
        """log π of ``batch``'s completion tokens under ``model``, one micro-batch at a time."""
        return torch.cat([self.token_logprobs(model, batch, rows)[0] for rows in self.micro_batches(len(batch))])

    @torch.no_grad()
    def ref_logprobs(self, batch):
        """log π_ref of the batch when the KL penalty needs it or kl_ref is due at this step."""
        every = self.cfg.kl_ref_every
        if self.ref_model is None or (self.cfg.kl_beta == 0 and not (every and self.version % every == 0)):
            return None
        return self.logprobs(self.ref_model, batch)

    # -- the objective -------------------------------------------------------------------
    def advantages(self, batch) -> torch.Tensor:
        """[N, 1] group advantages of the whole batch (groups never straddle micro-batches' sums)."""
        return group_advantages(batch.rewards.view(-1, self.cfg.group_size)).reshape(-1, 1)

    def objective(self, logprobs, batch, advantages, ref_logprobs, rows=slice(None), count=None, seq_weights=None):
        """The maximised surrogate (minus β·KL to the reference) of ``batch``'s ``rows`` and its
        token clip masks. ``logprobs`` are those rows'; ``advantages`` and ``ref_logprobs`` the
        whole batch's. ``count`` is the whole batch's :func:`aggregate_count` (None: ``rows`` are
        the batch); ``seq_weights`` weight each sequence's term (:func:`aggregate`)."""
        cfg = self.cfg
        mask = batch.completion_mask[rows]
        surrogate = token_surrogate(
            logprobs, batch.behavior_logprobs[rows], advantages[rows], cfg.objective, cfg.eps_lo, cfg.eps_hi,
            cfg.tis_cap,
        )
        value = aggregate(surrogate.value, mask, cfg.aggregation, seq_weights, count)
        if cfg.kl_beta > 0:
            value = value - cfg.kl_beta * aggregate(
                k3_kl(logprobs, ref_logprobs[rows]), mask, cfg.aggregation, seq_weights, count
            )
        return value, surrogate

    # -- one learner step ----------------------------------------------------------------
    def step(self, batch) -> dict:
        """One optimizer step on ``batch`` at version k; returns the §3 metrics of the step.

        The gradient is accumulated over micro-batches (:meth:`micro_batches`): each one's
        surrogate is divided by the whole batch's count, so the micro-batches' losses and
        gradients add up to the whole batch's. The log-probs and entropy at θ_k come out of
        the same forwards, and the metrics are computed on the whole batch afterwards."""
        cfg, reduce, engine = self.cfg, self.reduce, self.engine
        batch = batch.to(self.device)
        mask = batch.completion_mask.float()
        lag = self.version - batch.version
        advantages = self.advantages(batch)
        ref_logprobs = self.ref_logprobs(batch)
        parts = self.micro_batches(len(batch))
        count = aggregate_count(batch.completion_mask, cfg.aggregation) if len(parts) > 1 else None
        logprobs, entropy, finite = [], [], True
        for i, rows in enumerate(parts):
            lp, ent = self.token_logprobs(self.model, batch, rows)
            value, _ = self.objective(lp, batch, advantages, ref_logprobs, rows, count)
            logprobs.append(lp.detach())
            entropy.append(ent)
            # every rank backpropagates the same micro-batches, or none: ZeRO reduces inside backward
            finite = finite and reduce.all_true(bool(torch.isfinite(value)))
            if finite:
                engine.set_gradient_accumulation_boundary(i == len(parts) - 1)
                engine.backward(-value, scale_wrt_gas=False)
        lp = torch.cat(logprobs)

        # diagnostics at θ_k, before the update
        log_ratio = (lp - batch.behavior_logprobs) * mask
        # in float64: in float32, exp(x) - 1 - x has a rounding floor of ~1e-8 per token
        kl_behavior_tok = k3_kl(batch.behavior_logprobs.double(), lp.double())
        fresh = (lag == 0).float().unsqueeze(1) * mask
        metrics = {
            "ess": reduce.ess(log_ratio.sum(1)),
            "ess_token": reduce.ess(log_ratio[batch.completion_mask]),
            "kl_behavior": reduce.mean(kl_behavior_tok, mask),
            # KL(μ‖π_ref) from the samples of μ (= the usual KL(π_θ‖π_ref) at lag 0). The k3 of
            # π_θ against π_ref would need samples of π_θ: on stale samples its ratio π_ref/π_θ is
            # heavy-tailed (measured: 30 nats/token at lag 4 while KL(μ‖π_θ) was 0.1).
            "kl_ref": reduce.mean(k3_kl(batch.behavior_logprobs.double(), ref_logprobs.double()), mask)
            if ref_logprobs is not None
            else float("nan"),
            "mismatch_kl": reduce.mean(kl_behavior_tok, fresh),
            "entropy": reduce.mean(torch.cat(entropy), mask),
        }
        if reduce.world_size == 1:
            mean_lag = float(lag.float().mean())
        else:
            mean_lag = reduce.mean(lag.double(), torch.ones_like(lag, dtype=torch.float64))
        eta_k = learning_rate(cfg, self.version, metrics["ess"], mean_lag)
        for group in self.optimizer.param_groups:
            group["lr"] = eta_k

        value, surrogate = self.objective(lp, batch, advantages, ref_logprobs)  # the whole batch, as one
        loss = -value.reshape(1)
        metrics.update(
            eta_k=eta_k,
            loss=reduce.mean(loss, torch.ones_like(loss)),  # mean over ranks of equal shards
            clip_frac_low=reduce.mean(surrogate.clipped_low.float(), mask),
            clip_frac_high=reduce.mean(surrogate.clipped_high.float(), mask),
        )
        if not finite:  # every rank skips the update together
            if len(parts) > 1:  # the micro-batches before the non-finite one left gradients behind
                engine.optimizer.zero_grad()
            metrics.update(
                finite=False, grad_norm=float("nan"), grad_cos=float("nan"), update_norm=float("nan")
            )
            return metrics
        grad = self.flat_grad()
        grad_norm = float(grad.norm())
        metrics["grad_norm"] = grad_norm
        metrics["grad_cos"] = (
            float(torch.nn.functional.cosine_similarity(grad, self.prev_grad, dim=0))
            if self.prev_grad is not None
            else float("nan")
        )
        self.prev_grad = grad
        metrics["finite"] = math.isfinite(grad_norm)
        if not metrics["finite"]:
            metrics["update_norm"] = float("nan")
            return metrics
        before = flat_params(self.model)
        engine.step()
        metrics["update_norm"] = float((flat_params(self.model) - before).norm())
        self.version += 1
        return metrics

    def flat_grad(self) -> torch.Tensor:
        """The full gradient of the last backward as one vector (any ZeRO stage ≤ 2)."""
        from deepspeed.utils import safe_get_full_grad

        return torch.cat(
            [safe_get_full_grad(p).detach().reshape(-1).float().clone() for p in self.model.parameters()]
        )

    # -- the bias probe of §3.2 ----------------------------------------------------------
    def probe_gradient(self, probe_model, batch, coupled: bool = False):
        """Flat gradient of the objective at the weights of ``probe_model`` (θ_k, a detached copy),
        summed over micro-batches as :meth:`step` does.

        With ``coupled``, also the coupled estimate of the fresh gradient from the same samples
        (docs/method.md §3.2): the objective as if θ_k had sampled them (μ := sg[π_θk]), each
        prompt's group weighted by its likelihood ratio W = Π_j π_θk(y_j)/μ(y_j). Returns
        (gradient, coupled gradient) then."""
        batch = batch.to(next(probe_model.parameters()).device)
        ref_logprobs = self.ref_logprobs(batch.to(self.device))
        ref_logprobs = None if ref_logprobs is None else ref_logprobs.to(batch.prompt_ids.device)
        params = list(probe_model.parameters())
        advantages = self.advantages(batch)
        parts = self.micro_batches(len(batch))
        count = aggregate_count(batch.completion_mask, self.cfg.aggregation) if len(parts) > 1 else None

        def flat(value, retain_graph=False):
            grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=retain_graph)
            return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])

        if coupled:
            with torch.no_grad():
                lp = self.logprobs(probe_model, batch)
            mask = batch.completion_mask.to(lp.dtype)
            log_w = ((lp - batch.behavior_logprobs) * mask).sum(-1).double().view(-1, self.cfg.group_size).sum(-1)
            weights = torch.exp(log_w).repeat_interleave(self.cfg.group_size)
            as_fresh = dataclasses.replace(batch, behavior_logprobs=lp)
        gradient = coupled_gradient = 0.0
        for rows in parts:
            logprobs = self.token_logprobs(probe_model, batch, rows)[0]
            value = self.objective(logprobs, batch, advantages, ref_logprobs, rows, count)[0]
            gradient = gradient + flat(value, retain_graph=coupled)
            if coupled:
                value = self.objective(logprobs, as_fresh, advantages, ref_logprobs, rows, count, weights[rows])[0]
                coupled_gradient = coupled_gradient + flat(value)
        return (gradient, coupled_gradient) if coupled else gradient

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, directory: Path, tag: str) -> None:
        self.engine.save_checkpoint(str(directory), tag=tag)

    def load(self, directory: Path, tag: str) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} under {str(directory)!r}")


def bias_estimate(grad_stale_a, grad_stale_b, grad_fresh_a, grad_fresh_b) -> dict:
    """The unbiased squared-bias estimate of docs/method.md §3.2 and the relative bias."""
    bias_sq = float(torch.dot(grad_stale_a - grad_fresh_a, grad_stale_b - grad_fresh_b))
    grad_sq = float(torch.dot(grad_fresh_a, grad_fresh_b))
    bias = math.sqrt(max(bias_sq, 0.0))
    return {
        "bias_sq": bias_sq,
        "bias": bias,
        "grad_sq": grad_sq,
        "relative_bias": bias / math.sqrt(grad_sq) if grad_sq > 0 else float("nan"),
    }
