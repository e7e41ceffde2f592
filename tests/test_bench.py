"""``stalegrpo bench lm`` on a tiny untrained policy: the ratios of docs/method.md §7 are measured
and consistent with each other."""

from __future__ import annotations

import json

import pytest

import stalegrpo.bench
from stalegrpo.bench import bench
from stalegrpo.policy import build_model, build_tokenizer
from stalegrpo.tasks.arithmetic import ALPHABET


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    out = tmp_path_factory.mktemp("random_policy")
    tokenizer = build_tokenizer(ALPHABET)
    build_model(tokenizer, hidden=32, layers=1, heads=2, intermediate=64).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
def test_bench_lm_reports_speedup_against_the_ideal_bound(policy, tmp_path):
    overrides = [
        f"init_checkpoint={policy}",
        "batch_prompts=8",
        "group_size=4",
        "threads=2",
        "bench.steps=6",
        "bench.skip=1",
        "bench.S=[1]",
        "bench.sampling_repeats=1",
    ]
    assert bench(None, overrides, tmp_path) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    t_gen, t_train = result["t_gen"], result["t_train"]
    assert t_gen > 0 and t_train > 0
    # overlapping two stages that both take time can at best hide the shorter one: 1 < ideal ≤ 2
    assert 1 < result["ideal_speedup"] <= 2
    sync, async_1 = result["runs"]
    assert (sync["S"], async_1["S"]) == (0, 1) and sync["lag_mean"] == 0 and async_1["lag_mean"] <= 1
    # the baseline against itself: speedup 1, its components neither slowed nor sped up
    assert sync["speedup"] == 1 and sync["gen_slowdown"] == 1 and sync["train_slowdown"] == 1
    assert async_1["speedup"] > 0 and async_1["efficiency"] > 0
    assert all(r["admission_violations"] == 0 and 0 < r["bookkeeping_pct"] < 100 for r in result["runs"])
    assert result["sampling"]["loop_tokens_per_s"] > 0 and result["sampling"]["generate_tokens_per_s"] > 0
    # on the CPU the hf actor's modes default to fp32 eager alone
    assert list(result["actor_modes"]) == ["float32/eager"] and result["sampling"]["mode"] == "float32/eager"
    assert result["summary"]["actor_tokens_per_s_by_mode"]["float32/eager"] > 0
    (hf,) = result["actors"]
    assert hf["backend"] == "hf" and hf["tokens_per_s"] > 0 and hf["weight_sync_s"] > 0
    assert 0 < hf["weight_sync_pct_of_step"] < 100  # loading a tiny model's weights is part of a step


def test_bench_ratios_from_known_component_times(policy, tmp_path, monkeypatch):
    """With the measured runs replaced by known times, every ratio is a hand-computed number."""

    def fake_measure(cfg, out, skip):
        times = {  # S = 0: the synchronous baseline, one step = t_gen + t_train = 0.4 s
            0: {"steps_per_s": 2.5, "step_s": 0.4, "t_gen": 0.3, "t_train": 0.1},
            1: {"steps_per_s": 3.0, "step_s": 1 / 3, "t_gen": 0.33, "t_train": 0.12},
        }[cfg.S]
        return times | {"S": cfg.S, "schedule": "async", "actors": cfg.actors, "lag_mean": float(cfg.S),
                        "bookkeeping_pct": 1.0, "weight_sync_s": 0.02, "admission_violations": 0,
                        "train_tokens_per_s": 1000.0 + cfg.S, "gen_tokens_per_s": 500.0 + cfg.S,
                        "train_peak_gib": 3.0 + cfg.S}

    monkeypatch.setattr(stalegrpo.bench, "measure", fake_measure)
    overrides = [f"init_checkpoint={policy}", "batch_prompts=2", "group_size=2", "threads=2", "bench.S=[1]",
                 "bench.sampling_repeats=1", "bench.actor_modes=[float32/eager, bfloat16/eager]"]
    assert bench(None, overrides, tmp_path) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    # ideal = (0.3 + 0.1) / max(0.3, 0.1) = 4/3: a perfect overlap would take max(t_gen, t_train) = 0.3 s
    assert result["ideal_speedup"] == pytest.approx(4 / 3)
    _, async_1 = result["runs"]
    assert async_1["speedup"] == pytest.approx(1.2)  # 3.0 / 2.5 steps per second
    assert async_1["efficiency"] == pytest.approx(0.9)  # 1.2 / (4/3)
    assert async_1["gen_slowdown"] == pytest.approx(1.1) and async_1["train_slowdown"] == pytest.approx(1.2)
    assert async_1["overlap_efficiency"] == pytest.approx(0.99)  # max(0.33, 0.12) / (1/3)
    assert result["weight_sync"][0]["weight_sync_pct_of_step"] == pytest.approx(5.0)  # 100 · 0.02 / 0.4
    (hf,) = result["actors"]
    # against the synchronous step of 0.4 s: 100 · weight_sync_s / 0.4 (the async 1/3 s would give 300·)
    assert hf["weight_sync_pct_of_step"] == pytest.approx(250 * hf["weight_sync_s"])
    # the summary's tokens/s and weight sync are the synchronous baseline's, its speedups the async runs'
    summary = result["summary"]
    assert (summary["learner_tokens_per_s"], summary["actor_tokens_per_s"]) == (1000.0, 500.0)
    assert summary["weight_sync_s"] == 0.02 and summary["baseline"] == "async S=0, A=1"
    # the hf actor's sampling tokens/s by mode, measured on the same batch (not faked)
    by_mode = summary["actor_tokens_per_s_by_mode"]
    assert list(by_mode) == ["float32/eager", "bfloat16/eager"] and all(v > 0 for v in by_mode.values())
    assert by_mode == {mode: m["tokens_per_s"] for mode, m in result["actor_modes"].items()}
    assert summary["speedups"] == [{"S": 1, "A": 1, "speedup": pytest.approx(1.2), "efficiency": pytest.approx(0.9)}]
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"  # bf16 "auto" is fp32 on CPU
    assert summary["learner_peak_gib"] == 3.0  # the baseline's largest learner step
    assert result["load_before"] >= 0 and result["load_after"] >= 0 and result["cores"] > 0
    assert 0 < summary["actor_peak_gib"] == hf["peak_gib"] and summary["peak_memory"] == "peak RSS of the process"


def test_model_specs_name_their_sizes():
    from stalegrpo.checkpoints import model_shape
    from stalegrpo.config import ConfigError

    assert model_shape("qwen2.5-0.5b") == {"arch": "qwen2", "hidden": 896, "layers": 24, "heads": 14,
                                            "kv_heads": 2, "intermediate": 4864, "vocab": 151936}
    # unnamed sizes: head dim 64, one key/value head, a SwiGLU MLP of 8/3 hidden, the tokenizer's vocab
    assert model_shape("llama:128x3,vocab=600") == {"arch": "llama", "hidden": 128, "layers": 3, "heads": 2,
                                                     "kv_heads": 1, "intermediate": 336, "vocab": 600}
    for bad, message in [("qwen2:64", "ARCH:HIDDENxLAYERS"), ("qwen2:64x2,experts=8", "experts"),
                         ("gpt2:64x2", "arch 'gpt2'")]:
        with pytest.raises(ConfigError, match=message):
            model_shape(bad)


def test_a_padded_vocabulary_decodes_sampled_ids_without_a_token(tmp_path):
    """As Qwen's checkpoints: more embedding rows than tokens; an id without a token decodes to nothing."""
    from stalegrpo.checkpoints import count_parameters_of, make_model
    from stalegrpo.checkpoints import check_checkpoint
    from stalegrpo.policy import load_policy

    path = make_model("qwen2:64x1,heads=2,intermediate=128,vocab=1000", tmp_path / "model")
    check_checkpoint(path)
    model, tokenizer = load_policy(path)
    assert model.config.vocab_size == 1000 > len(tokenizer) == 512
    assert model.lm_head.weight is model.get_input_embeddings().weight  # still tied
    assert count_parameters_of(path) == sum(p.numel() for p in model.parameters())
    assert tokenizer.decode([600, 999], skip_special_tokens=True) == ""


def test_one_device_without_colocation_benches_the_fixed_schedule(tmp_path, monkeypatch):
    """A machine with one CUDA device has none for an actor engine of its own (with colocate off):
    the async points are left out with the placement's reason and the baseline is a train run of
    the fixed schedule at S = 0, its actor in the learner's process (here on CPU, with the device
    count of a one-GPU machine)."""
    monkeypatch.setattr(stalegrpo.bench, "cuda_devices", lambda: 1)
    overrides = [
        "bench.model=qwen2:64x2,heads=2,intermediate=128,vocab=1000",
        "task=countdown",
        "task_options={max_new_tokens: 8}",
        "deepspeed_zero=2",
        "batch_prompts=2",
        "group_size=2",
        "threads=2",
        "bench.steps=3",
        "bench.skip=1",
        "bench.S=[1]",
        "bench.engines=[1, 2]",
        "bench.sampling_repeats=1",
        "colocate=false",  # colocate: auto would place hf engines beside the learner on the one GPU
    ]
    assert bench(None, overrides, tmp_path) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    (base,) = result["runs"]
    assert base["schedule"] == "fixed" and base["S"] == 0 and base["actors"] == 0 and base["lag_mean"] == 0
    assert (tmp_path / "fixed_S0" / "steps.parquet").exists()  # the train loop's own step rows
    assert [(s["S"], s["actors"]) for s in result["skipped"]] == [(0, 1), (1, 1), (1, 2)]
    assert "placement needs 2 CUDA devices" in result["skipped"][0]["reason"]
    assert "skipped" in result["weight_sync"][0]  # its broadcast needs an engine's device too
    summary = result["summary"]
    assert summary["baseline"].startswith("fixed S=0") and summary["weight_sync"].startswith("snapshot copy")
    assert summary["learner_tokens_per_s"] > 0 and summary["actor_tokens_per_s"] > 0 and summary["weight_sync_s"] > 0
    assert [("skipped" in s, s["A"]) for s in summary["speedups"]] == [(True, 1), (True, 2)]
    assert summary["model"].startswith("qwen2:64x2") and summary["parameters"] > 1000 * 64  # the padded embedding
    assert result["config"]["task"] == "countdown" and result["actors"][0]["tokens_per_s"] > 0


@pytest.mark.slow
@pytest.mark.vllm
def test_bench_compares_hf_and_vllm_actors_on_the_same_batch(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "policy"
    tokenizer = build_tokenizer(ALPHABET)
    # vLLM's CPU attention needs a head dimension of 32 or more
    build_model(tokenizer, hidden=64, layers=1, heads=2, intermediate=128).save_pretrained(out)
    tokenizer.save_pretrained(out)
    overrides = [
        f"init_checkpoint={out}",
        "batch_prompts=8",
        "group_size=4",
        "threads=1",
        "bench.steps=4",
        "bench.skip=1",
        "bench.S=[1]",
        "bench.sampling_repeats=2",
        "bench.actors=[hf, vllm]",
    ]
    assert bench(None, overrides, tmp_path / "bench") == 0
    result = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert [a["backend"] for a in result["actors"]] == ["hf", "vllm"]
    assert all(a["tokens_per_s"] > 0 and a["weight_sync_s"] > 0 for a in result["actors"])
