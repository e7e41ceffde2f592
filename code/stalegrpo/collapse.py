"""Collapse detection (docs/method.md §4).

Detectors run on EMA-smoothed series, one step at a time, for a whole batch of runs at once
(an array of R runs; a language-model run is R = 1, the exact testbed's grid is R = runs):

1. ``reward``  : the reward EMA reached a peak r_peak and then fell below
                 r_peak - δ·(r_peak - r_0), r_0 the initial reward. So that noise around a
                 flat start cannot fire it, the fall must also exceed ``min_drop`` in absolute
                 terms (the detector's noise floor; the spec leaves it implicit).
2. ``kl``      : the EMA of ``kl_behavior`` or of ``kl_ref`` went above κ (``kappa_ref``, if
                 set, is kl_ref's own threshold).
3. ``nonfinite``: a non-finite loss, gradient, reward or KL.
4. ``entropy`` : the entropy EMA fell below ``entropy_min`` (only when enabled).

The collapse time T_c is the first step at which an enabled detector fires, and the detector
that fired is recorded. A run that never fires is right-censored at its horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTORS = ("none", "reward", "kl", "nonfinite", "entropy")
"""detector codes; index 0 means 'has not fired' (censored)"""


@dataclass
class CollapseConfig:
    """Parameters of the collapse detectors (docs/method.md §4)."""

    ema_alpha: float = 0.1
    """EMA weight of the newest value (1 = no smoothing)"""
    reward_detector: bool = True
    """run the reward detector (false for runs that are not about collapse, whose reward noise must
    not end them)"""
    delta: float = 0.5
    """reward detector: fraction δ of the gain r_peak - r_0 that must be lost"""
    min_drop: float = 0.05
    """reward detector: absolute fall below the peak that is always required (noise floor)"""
    kappa: float = 1.0
    """KL detector: threshold κ on the EMA of kl_behavior / kl_ref (nats per token)"""
    kappa_ref: float | None = None
    """KL detector: threshold on the EMA of kl_ref alone; None: the same κ (docs/method.md §4). A run
    that keeps improving moves ever further from its reference, so long runs may want it higher"""
    entropy_min: float | None = None
    """entropy detector: threshold on the entropy EMA (nats per token); None disables it"""


class CollapseMonitor:
    """Streaming collapse detection for R runs in lockstep.

    Call :meth:`update` once per learner step with arrays of shape [R] (or scalars for R = 1).
    ``collapse_step`` holds the first firing step (-1 while none), ``detector`` its code into
    :data:`DETECTORS`.
    """

    def __init__(self, config: CollapseConfig, runs: int = 1):
        self.config = config
        self.collapse_step = np.full(runs, -1, dtype=np.int64)
        self.detector = np.zeros(runs, dtype=np.int64)
        self._ema: dict[str, np.ndarray] = {}
        self._reward_0 = None
        self._reward_peak = None

    def _smooth(self, name: str, value) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        previous = self._ema.get(name)
        if previous is None:
            smoothed = value.copy()
        else:
            a = self.config.ema_alpha
            smoothed = np.where(np.isfinite(value), a * value + (1 - a) * previous, previous)
        self._ema[name] = smoothed
        return smoothed

    def update(self, step: int, reward, kl_behavior=None, kl_ref=None, finite=None, entropy=None) -> np.ndarray:
        """Feed one step; returns the boolean array of runs that fired *at this step*."""
        cfg = self.config
        reward = np.asarray(reward, dtype=np.float64)
        fired = np.zeros(self.collapse_step.shape, dtype=np.int64)

        nonfinite = ~np.isfinite(reward)
        for series in (kl_behavior, kl_ref):
            if series is not None:
                nonfinite |= ~np.isfinite(np.asarray(series, dtype=np.float64))
        if finite is not None:
            nonfinite |= ~np.asarray(finite, dtype=bool)
        fired = np.where(nonfinite, DETECTORS.index("nonfinite"), fired)

        r = self._smooth("reward", reward)
        if self._reward_0 is None:
            self._reward_0 = r.copy()
            self._reward_peak = r.copy()
        self._reward_peak = np.fmax(self._reward_peak, r)
        gain = self._reward_peak - self._reward_0
        fell = (r < self._reward_peak - cfg.delta * gain) & (self._reward_peak - r > cfg.min_drop)
        fell &= cfg.reward_detector
        fired = np.where((fired == 0) & fell, DETECTORS.index("reward"), fired)

        kappa_ref = cfg.kappa if cfg.kappa_ref is None else cfg.kappa_ref
        for name, series, kappa in (("kl_behavior", kl_behavior, cfg.kappa), ("kl_ref", kl_ref, kappa_ref)):
            if series is not None:
                blown = self._smooth(name, series) > kappa
                fired = np.where((fired == 0) & blown, DETECTORS.index("kl"), fired)

        if cfg.entropy_min is not None and entropy is not None:
            low = self._smooth("entropy", entropy) < cfg.entropy_min
            fired = np.where((fired == 0) & low, DETECTORS.index("entropy"), fired)

        new = (fired > 0) & (self.collapse_step < 0)
        self.collapse_step[new] = step
        self.detector[new] = fired[new]
        return new

    @property
    def collapsed(self) -> np.ndarray:
        return self.collapse_step >= 0

    def detector_names(self) -> list[str]:
        return [DETECTORS[d] for d in self.detector]


def detect_collapse(config: CollapseConfig, reward, kl_behavior=None, kl_ref=None, finite=None, entropy=None):
    """Offline detection on whole series of shape [R, T] (or [T]).

    Returns ``(collapse_step, detector_names, censored)``: collapse_step is the first firing
    step, or the horizon T for a right-censored run.
    """
    reward = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    runs, horizon = reward.shape

    def column(series, t):
        return None if series is None else np.atleast_2d(np.asarray(series))[:, t]

    monitor = CollapseMonitor(config, runs)
    for t in range(horizon):
        monitor.update(
            t,
            reward[:, t],
            column(kl_behavior, t),
            column(kl_ref, t),
            column(finite, t),
            column(entropy, t),
        )
    censored = ~monitor.collapsed
    step = np.where(censored, horizon, monitor.collapse_step)
    return step, monitor.detector_names(), censored
