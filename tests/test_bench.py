"""``stalegrpo bench lm`` on a tiny untrained policy: the ratios of docs/method.md §7 are measured
and consistent with each other."""

from __future__ import annotations

import json

import pytest

from stalegrpo.bench import bench
from stalegrpo.policy import build_model, build_tokenizer


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    out = tmp_path_factory.mktemp("random_policy")
    tokenizer = build_tokenizer()
    build_model(tokenizer, hidden=32, layers=1, heads=2, intermediate=64).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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
    assert result["ideal_speedup"] == pytest.approx((t_gen + t_train) / max(t_gen, t_train))
    sync, async_1 = result["runs"]
    assert (sync["S"], async_1["S"]) == (0, 1) and sync["lag_mean"] == 0 and async_1["lag_mean"] <= 1
    assert async_1["speedup"] == pytest.approx(async_1["steps_per_s"] / sync["steps_per_s"])
    assert async_1["efficiency"] == pytest.approx(async_1["speedup"] / result["ideal_speedup"])
    assert all(r["admission_violations"] == 0 and 0 < r["bookkeeping_pct"] < 100 for r in result["runs"])
    assert result["sampling"]["loop_tokens_per_s"] > 0 and result["sampling"]["generate_tokens_per_s"] > 0
    (hf,) = result["actors"]
    assert hf["backend"] == "hf" and hf["tokens_per_s"] > 0 and hf["weight_sync_s"] > 0
    assert hf["weight_sync_pct_of_step"] == pytest.approx(100 * hf["weight_sync_s"] / sync["step_s"])


@pytest.mark.vllm
def test_bench_compares_hf_and_vllm_actors_on_the_same_batch(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "policy"
    tokenizer = build_tokenizer()
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
