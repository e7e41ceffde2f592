"""Collapse detectors of docs/method.md §4."""

import numpy as np

from stalegrpo.collapse import CollapseConfig, CollapseMonitor, detect_collapse

RAW = CollapseConfig(ema_alpha=1.0, delta=0.5, min_drop=0.05, kappa=1.0)


def test_reward_collapse_after_peak_and_censoring():
    rise_fall = [0.2, 0.5, 0.8, 0.8, 0.6, 0.45, 0.3]
    rise = [0.2, 0.5, 0.8, 0.85, 0.9, 0.9, 0.9]
    step, detector, censored = detect_collapse(RAW, np.array([rise_fall, rise]))
    # threshold 0.8 - 0.5 * 0.6 = 0.5: first value below it is 0.45 at step 5
    assert step.tolist() == [5, 7]
    assert detector == ["reward", "none"]
    assert censored.tolist() == [False, True]


def test_noise_on_a_flat_start_does_not_fire_but_a_real_fall_does():
    flat = [0.30, 0.31, 0.29, 0.30, 0.32, 0.28]
    falling = [0.30, 0.25, 0.15, 0.05, 0.0, 0.0]
    step, detector, _ = detect_collapse(RAW, np.array([flat, falling]))
    assert detector == ["none", "reward"]
    assert step[1] == 2  # 0.30 - 0.15 > min_drop


def test_kl_nonfinite_and_optional_entropy_detectors():
    reward = np.full((3, 4), 0.5)
    kl = np.array([[0.1, 0.5, 2.0, 3.0], [0.1] * 4, [0.1] * 4])
    finite = np.array([[True] * 4, [True, True, False, True], [True] * 4])
    entropy = np.array([[1.0] * 4, [1.0] * 4, [1.0, 0.5, 0.01, 0.0]])
    step, detector, censored = detect_collapse(RAW, reward, kl_behavior=kl, finite=finite, entropy=entropy)
    assert detector == ["kl", "nonfinite", "none"]  # entropy is off by default
    assert step[:2].tolist() == [2, 2] and censored.tolist() == [False, False, True]
    with_entropy = CollapseConfig(ema_alpha=1.0, entropy_min=0.1)
    _, detector, _ = detect_collapse(with_entropy, reward, entropy=entropy)
    assert detector[2] == "entropy"


def test_ema_smoothing_delays_a_one_step_spike():
    monitor = CollapseMonitor(CollapseConfig(ema_alpha=0.1, kappa=1.0))
    for step, kl in enumerate([0.0, 5.0, 0.0, 0.0]):
        monitor.update(step, 0.5, kl_behavior=kl)
    assert not monitor.collapsed[0]  # EMA peaks at 0.5 < κ


def test_kl_ref_uses_its_own_threshold_when_set():
    reward = np.full((1, 4), 0.5)
    kl_behavior = np.full((1, 4), 0.2)
    kl_ref = np.array([[0.5, 1.5, 2.5, 3.5]])
    step, detector, _ = detect_collapse(RAW, reward, kl_behavior=kl_behavior, kl_ref=kl_ref)
    assert detector == ["kl"] and step[0] == 1  # the shared κ = 1
    from dataclasses import replace

    step, detector, _ = detect_collapse(replace(RAW, kappa_ref=3.0), reward, kl_behavior=kl_behavior, kl_ref=kl_ref)
    assert detector == ["kl"] and step[0] == 3
    _, detector, _ = detect_collapse(replace(RAW, kappa_ref=10.0), reward, kl_behavior=kl_behavior, kl_ref=kl_ref)
    assert detector == ["none"]  # kl_behavior stays below κ
