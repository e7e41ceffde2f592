#!/usr/bin/env bash
# GPU check: the paper path of asynchronous GRPO on one CUDA machine, in one call, with no
# internet, on a Python that has torch (2.11 was the target) but no DeepSpeed.
#
#   bash scripts/gpu_check.sh                    # every step: install, tests, bench
#   WHEELS=/path/to/wheels OUT=/tmp/check bash scripts/gpu_check.sh install tests
#
# Steps, each logged to OUT/<step>.log:
#   install  DeepSpeed (and jsonschema, which this repository's configs need) from the wheel
#            folder WHEELS, when python cannot import them; the repository itself is used in
#            place (PYTHONPATH=code: no install, no dependencies resolved).
#   tests    pytest -m cuda (tests/test_cuda.py): learner steps in fp32 and, for the Qwen2
#            stand-in under ZeRO-2, in bf16; a micro-batched step against the whole batch's; the
#            memory of a step with Qwen's 151936-row vocabulary; the bench at toy size; the NCCL
#            weight broadcast and an async run with an hf actor engine on its own GPU (these two
#            need 2 GPUs and are skipped on one).
#   bench    stalegrpo bench lm at the paper preset's batch on a randomly initialised model of
#            Qwen2.5-0.5B's shape (bench.model=qwen2.5-0.5b: hidden 896, 24 layers, 14 heads, 2
#            key/value heads, MLP 4864, tied embeddings; 494M parameters). Its embedding has
#            Qwen's 151936 rows over the stand-in's 512-token BPE tokenizer: the full-vocabulary
#            softmax costs what the real model's does, and a sampled id without a token decodes to
#            nothing. Nothing is downloaded. bf16, ZeRO-2, micro-batches of MICRO sequences, the
#            hf actor engine, countdown prompts in the ChatML template, B x G = 32 x 8, 256 new
#            tokens (random weights rarely sample EOS: nearly every completion is 256 tokens long).
#   train    stalegrpo train on the same shape along the paper preset's code path: fixed S = 2,
#            10 steps, ZeRO-2 bf16, micro-batches, kl_ref every step, one bias probe (step 5), the
#            held-out evaluation (32 prompts) at the start and the end, a checkpoint, TensorBoard.
#   async    (only when named: `bash scripts/gpu_check.sh install async`) stalegrpo bench lm at
#            B x G = 8 x 8 and 128 new tokens on the same shape: the async schedule with its actor
#            engine placed as `colocate: auto` places it (on one GPU: beside the learner, weights
#            by CUDA IPC), S = 0 (the synchronous baseline) and S = 2, and the speedup.
# At the end ONE table: each step's status and seconds, learner tokens/s (prompt + completion
# tokens per second of a learner step), actor tokens/s (sampled tokens per second), the peak
# memory of a learner step and of the actor, the memory target (a learner peak under 40 GB at
# the paper batch, so that a 40 GB A100 runs the preset), weight-sync seconds per step, the async
# speedup with A = 1 and 2 actor engines over the synchronous baseline (docs/method.md §7), and
# the train run's seconds per step and peak. On one GPU the bench's engines are colocated with the
# learner (colocate: auto, weights by CUDA IPC); with colocate: false they would need a GPU each,
# and the baseline would be the fixed schedule at S = 0 with the actor in the learner's process.
#
# Time: budgeted at 6 min on one H200 (install 0.5, tests 1.5, bench 2, train 2); the table's
# seconds column gives what each step took. Without CUDA it says so and runs the same steps at
# toy size (a 0.14M-parameter Qwen2, 3 steps per run): about 2 min on 2 shared CPU cores.
#
# The wheel folder, filled on any machine with internet for the GPU machine's Python (3.12):
#   pip wheel --no-deps -w wheels deepspeed==0.19.8
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d wheels hjson "pydantic>=2" jsonschema
# (about 6 MB). DeepSpeed is published as source only; the first command builds its pure-Python
# wheel (its C++/CUDA ops are compiled on first use, and this code uses none). DeepSpeed 0.19.8
# needs einops, hjson, msgpack, ninja, numpy, packaging, psutil, py-cpuinfo, pydantic>=2, torch
# and tqdm; a CUDA image with torch usually lacks only hjson and pydantic (with pydantic-core,
# annotated-types and typing-inspection, which the second command fetches), and jsonschema.
# pip installs from the folder only what is missing.
#
# Environment: WHEELS (default wheels/ in the repository), OUT (default results/gpu_check/<date-
# time> in the repository; given paths are relative to the working directory), PYTHON (default
# python3), SIZE (full or toy; default full with CUDA, toy without), MICRO (micro_batch_size of
# the learner at full size, default 16), BENCH_ARGS and TRAIN_ARGS (more `stalegrpo bench lm` /
# `stalegrpo train` overrides, e.g. "batch_prompts=16 bench.steps=12").
# Exit status 0 when every step passed, else 1 with the failed steps named (2: bad arguments).
set -uo pipefail

CALLER=$PWD
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
PYTHON=${PYTHON:-python3}
case $PYTHON in */*) PYTHON=$(from_caller "$PYTHON") ;; esac
if [ -n "${WHEELS:-}" ]; then WHEELS=$(from_caller "$WHEELS"); else WHEELS=$REPO/wheels; fi
if [ -n "${OUT:-}" ]; then OUT=$(from_caller "$OUT"); else OUT=$REPO/results/gpu_check/$(date +%Y%m%d-%H%M%S); fi
cd "$REPO" || exit 2
BENCH_ARGS=${BENCH_ARGS:-}
TRAIN_ARGS=${TRAIN_ARGS:-}
MICRO=${MICRO:-16}
ALL_STEPS=(install tests bench train async)
DEFAULT_STEPS=(install tests bench train)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=("${DEFAULT_STEPS[@]}")
for step in "${STEPS[@]}"; do
  case " ${ALL_STEPS[*]} " in
    *" $step "*) ;;
    *) echo "gpu_check: unknown step '$step'; the steps are: ${ALL_STEPS[*]}" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" || exit 2
export PYTHONPATH="$REPO/code${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

declare -A STATUS NOTE SECONDS_OF
FAILED=()
say() { echo "gpu_check: $*"; }
passed() { STATUS[$1]=ok; NOTE[$1]=$2; say "$1: ok ($2)"; }
failed() {  # step, why
  STATUS[$1]=FAILED; NOTE[$1]=$2; FAILED+=("$1")
  say "step '$1' failed: $2"
  [ -s "$OUT/$1.log" ] && { say "the end of $OUT/$1.log:"; tail -n 25 "$OUT/$1.log" | sed 's/^/    /'; }
  return 1
}

# -- the machine ------------------------------------------------------------------------------
if ! "$PYTHON" - "$OUT/machine.txt" >"$OUT/machine.log" 2>&1 <<'EOF'
import platform, sys
import torch
cuda = torch.cuda.is_available()
devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
with open(sys.argv[1], "w") as f:
    f.write(f"{len(devices)}\n{devices[0] if devices else 'cpu'}\n")
print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, devices {devices or 'none'}")
EOF
then
  say "step 'machine' failed: $PYTHON cannot import torch (set PYTHON to the python that has it)"
  tail -n 5 "$OUT/machine.log" | sed 's/^/    /'
  exit 1
fi
GPUS=$(sed -n 1p "$OUT/machine.txt")
DEVICE=$(sed -n 2p "$OUT/machine.txt")
say "$(tail -n 1 "$OUT/machine.log")"
command -v nvidia-smi >/dev/null && nvidia-smi >>"$OUT/machine.log" 2>&1
SIZE=${SIZE:-$([ "$GPUS" -gt 0 ] && echo full || echo toy)}
if [ "$GPUS" -eq 0 ]; then
  say "no CUDA device: the same steps at toy size, on CPU"
fi
say "logs in $OUT"

# -- install ----------------------------------------------------------------------------------
missing() {  # the pip names of what python cannot import, into $OUT/missing.txt
  "$PYTHON" - "$OUT/missing.txt" >>"$OUT/install.log" 2>&1 <<'EOF'
import importlib, sys
NEEDS = {"deepspeed": "deepspeed", "jsonschema": "jsonschema", "transformers": "transformers",
         "tokenizers": "tokenizers", "safetensors": "safetensors", "pandas": "pandas", "pyarrow": "pyarrow",
         "yaml": "pyyaml", "tqdm": "tqdm", "tensorboard": "tensorboard", "pytest": "pytest",
         "pytest_benchmark": "pytest-benchmark"}
missing = []
for module, package in NEEDS.items():
    try:
        importlib.import_module(module)
    except Exception as err:  # not installed, or installed without its own dependencies
        print(f"cannot import {module}: {type(err).__name__}: {err}")
        missing.append(package)
open(sys.argv[1], "w").write(" ".join(missing))
EOF
}

install_step() {
  : >"$OUT/install.log"
  missing || { failed install "$PYTHON could not check its packages"; return 1; }
  local need
  need=$(cat "$OUT/missing.txt")
  if [ -z "$need" ]; then
    passed install "deepspeed $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("deepspeed"))') already importable; $WHEELS not used"
    return 0
  fi
  if [ ! -d "$WHEELS" ] || [ -z "$(ls -A "$WHEELS" 2>/dev/null)" ]; then
    failed install "python cannot import: $need; and the wheel folder '$WHEELS' is missing or empty. Fill it as the header of scripts/gpu_check.sh says, or point WHEELS at one"
    return 1
  fi
  say "installing $need from $WHEELS (no index)"
  # shellcheck disable=SC2086  # one word per package
  if ! "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $need >>"$OUT/install.log" 2>&1; then
    failed install "pip could not install $need from '$WHEELS' (a wheel missing there? the log names it)"
    return 1
  fi
  missing || { failed install "$PYTHON could not check its packages"; return 1; }
  need=$(cat "$OUT/missing.txt")
  [ -z "$need" ] || { failed install "still not importable after the install: $need"; return 1; }
  passed install "installed from $WHEELS"
}

# -- tests --------------------------------------------------------------------------------------
tests_step() {
  "$PYTHON" -m pytest -m cuda tests -p no:cacheprovider -rA >"$OUT/tests.log" 2>&1
  local rc=$? counts
  counts=$(grep -E '^=+ .*(passed|failed|skipped|error|deselected).* in [0-9.]+s' "$OUT/tests.log" | tail -n 1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*$//')
  if [ $rc -ne 0 ]; then
    failed tests "pytest -m cuda exited $rc: ${counts:-see the log}"
    return 1
  fi
  passed tests "${counts:-no summary line}"
}

# -- bench --------------------------------------------------------------------------------------
bench_step() {
  local args
  if [ "$SIZE" = full ]; then
    # colocate=false: at this batch the engines' async runs would take minutes; the async step below
    # measures them at a smaller one
    args=(bench.model=qwen2.5-0.5b "${PAPER_PATH[@]}" "micro_batch_size=$MICRO" batch_prompts=32 group_size=8
          colocate=false "threads=$(nproc)" bench.steps=3 bench.skip=1 "bench.S=[1]" "bench.engines=[1, 2]"
          bench.sampling_repeats=1 bench.sync_steps=3)
  else
    args=(bench.model=$TOY_MODEL "${TOY_PATH[@]}" micro_batch_size=3 batch_prompts=2 group_size=2 threads=2
          bench.steps=3 bench.skip=1 "bench.S=[1]" "bench.engines=[1, 2]" bench.sampling_repeats=1 bench.sync_steps=2)
  fi
  run_bench bench "${args[@]}"
}

run_bench() {  # step, overrides: stalegrpo bench lm into OUT/<step>, its bench.json as OUT/<step>.json
  local step=$1
  shift
  # shellcheck disable=SC2206  # BENCH_ARGS is a list of words
  local args=("$@" $BENCH_ARGS)
  say "$step ($SIZE size): stalegrpo bench lm ${args[*]}"
  if ! "$PYTHON" -m stalegrpo.cli bench lm "${args[@]}" --out "$OUT/$step" >"$OUT/$step.log" 2>&1; then
    failed "$step" "stalegrpo bench lm exited non-zero"
    return 1
  fi
  cp "$OUT/$step/bench.json" "$OUT/$step.json"
  passed "$step" "$OUT/$step.json"
}

# -- train --------------------------------------------------------------------------------------
train_step() {
  local shape args
  if [ "$SIZE" = full ]; then
    shape=qwen2.5-0.5b
    args=("${PAPER_PATH[@]}" "micro_batch_size=$MICRO" batch_prompts=32 group_size=8 steps=10 "threads=$(nproc)"
          eta=1e-4 probe_time=5e-4 probe_prompts=8 eval_prompts=32)
  else
    shape=$TOY_MODEL
    args=("${TOY_PATH[@]}" micro_batch_size=3 batch_prompts=2 group_size=2 steps=3 threads=2 eta=1e-4
          probe_time=2e-4 probe_prompts=2 eval_prompts=4)
  fi
  args+=(schedule=fixed S=2 kl_ref_every=1 probe_every=0 eval_every=0 checkpoint_every=100 logger=tensorboard
        progress=false)
  # shellcheck disable=SC2206  # TRAIN_ARGS is a list of words
  args+=($TRAIN_ARGS)
  say "train ($SIZE size): stalegrpo train config/train.yaml ${args[*]}"
  rm -rf "$OUT/train" "$OUT/model"
  if ! "$PYTHON" -c "import sys; from pathlib import Path; from stalegrpo.checkpoints import make_model; make_model(sys.argv[1], Path(sys.argv[2]))" \
      "$shape" "$OUT/model" >"$OUT/train.log" 2>&1 ||
     ! "$PYTHON" -m stalegrpo.cli train config/train.yaml "init_checkpoint=$OUT/model" "${args[@]}" --out "$OUT/train" \
      >>"$OUT/train.log" 2>&1; then
    failed train "stalegrpo train exited non-zero"
    return 1
  fi
  rm -rf "$OUT/train/checkpoint" "$OUT/model"  # gigabytes at 0.5B; the tables and summary stay
  passed train "$OUT/train/summary.json"
}

# -- async ----------------------------------------------------------------------------------------
async_step() {
  local args
  if [ "$SIZE" = full ]; then
    args=(bench.model=qwen2.5-0.5b "${PAPER_PATH[@]}" "micro_batch_size=$MICRO" batch_prompts=8 group_size=8
          "task_options={numbers: 4, max_number: 50, max_target: 200, max_new_tokens: 128}" "threads=$(nproc)"
          bench.steps=6 bench.skip=2 "bench.S=[2]" "bench.engines=[1]" bench.sampling_repeats=1 bench.sync_steps=3)
  else
    args=(bench.model=$TOY_MODEL "${TOY_PATH[@]}" micro_batch_size=3 batch_prompts=2 group_size=2 threads=2
          bench.steps=4 bench.skip=1 "bench.S=[2]" "bench.engines=[1]" bench.sampling_repeats=1 bench.sync_steps=2)
  fi
  run_bench async "${args[@]}"
}

# the paper preset's LM keys (config/paper.yaml) with the hf actor (vLLM does not travel here),
# and the same path at toy size
PAPER_PATH=(task=countdown "task_options={numbers: 4, max_number: 50, max_target: 200, max_new_tokens: 256}"
            prompt_template=chat deepspeed_zero=2 actor=hf)
TOY_MODEL="qwen2:64x2,heads=2,intermediate=128,vocab=1024"
TOY_PATH=(task=countdown "task_options={max_new_tokens: 8}" prompt_template=chat deepspeed_zero=2 actor=hf)

for step in "${STEPS[@]}"; do
  if [ "$step" != install ] && [ "${STATUS[install]:-}" = FAILED ]; then
    STATUS[$step]="not run"; NOTE[$step]="the install failed"
    continue
  fi
  started=$(date +%s)
  "${step}_step"
  SECONDS_OF[$step]=$(( $(date +%s) - started ))
done

# -- the table ----------------------------------------------------------------------------------
STATUS_LINES=""
for step in "${STEPS[@]}"; do
  STATUS_LINES+="$step"$'\t'"${STATUS[$step]}"$'\t'"${NOTE[$step]}"$'\t'"${SECONDS_OF[$step]:-0}"$'\n'
done
export STATUS_LINES SIZE GPUS DEVICE OUT
"$PYTHON" - <<'EOF' | tee "$OUT/table.txt"
import json, os
from pathlib import Path

TARGET_GIB = 40 * 1e9 / 2**30  # 40 GB: an A100 40GB
out = Path(os.environ["OUT"])
rows = [line.split("\t") for line in os.environ["STATUS_LINES"].splitlines() if line]
names = {"install": "install", "tests": "pytest -m cuda", "bench": "stalegrpo bench lm", "train": "stalegrpo train",
         "async": "bench: async colocated"}
table = [(names[step], status, f"{seconds} s; {note}") for step, status, note, seconds in rows]
ran = {step for step, *_ in rows}
title = f"GPU check on {os.environ['DEVICE']} x{os.environ['GPUS']}" if os.environ["GPUS"] != "0" else \
    "GPU check without CUDA (CPU fallback)"
title += f", {os.environ['SIZE']} size"
path = out / "bench.json"
if path.is_file() and "bench" in ran:
    s = json.loads(path.read_text())["summary"]
    title += (f"\nmodel {s['model']} ({s['parameters'] / 1e6:.1f}M parameters), {s['precision']}, ZeRO-{s['zero']}, "
              f"{s['actor']} actor, {s['task']}, batch B x G = {s['batch']}, micro-batches of {s['micro_batch_size']}")
    met = s["learner_peak_gib"] < TARGET_GIB
    target = "met" if met else "NOT met"
    if os.environ["SIZE"] != "full":
        target += " (toy size: says nothing about the paper batch)"
    actor_peak = s["actor_peak_gib"]
    table += [
        ("learner tokens/s", f"{s['learner_tokens_per_s']:.0f}", f"baseline: {s['baseline']}"),
        ("actor tokens/s", f"{s['actor_tokens_per_s']:.0f}", f"t_gen {s['t_gen']:.3f} s, t_train {s['t_train']:.3f} s"),
        ("learner step peak GiB", f"{s['learner_peak_gib']:.2f}",
         f"{s['peak_memory']}; under 40 GB ({TARGET_GIB:.2f} GiB): {target}"),
        ("actor peak GiB", f"{actor_peak:.2f}" if actor_peak is not None else "n/a",
         f"{s['peak_memory']}, the {s['actor']} actor's sampling in the bench process"),
        ("weight sync s", f"{s['weight_sync_s']:.4f}", s["weight_sync"]),
    ]
    for p in s["speedups"]:
        what = f"async speedup A={p['A']}, S={p['S']}"
        if "skipped" in p:
            table.append((what, "n/a", p["skipped"]))
        else:
            table.append((what, f"{p['speedup']:.2f}",
                          f"ideal {s['ideal_speedup']:.2f}, efficiency {p['efficiency']:.2f}"))
    (out / "memory_target.txt").write_text("met\n" if met else "not met\n")
elif "bench" in ran:
    table.append(("learner, actor, weight sync, speedup", "n/a", "the bench did not finish"))
path = out / "async.json"
if path.is_file() and "async" in ran:
    s = json.loads(path.read_text())["summary"]
    table.append(("async: model, batch", s["model"], f"{s['precision']}, batch {s['batch']}, baseline {s['baseline']}"))
    for p in s["speedups"]:
        what = f"async: speedup A={p['A']}, S={p['S']}"
        if "skipped" in p:
            table.append((what, "n/a", p["skipped"]))
        else:
            table.append((what, f"{p['speedup']:.2f}", f"ideal {s['ideal_speedup']:.2f}, efficiency {p['efficiency']:.2f}, "
                                                       f"t_gen {s['t_gen']:.3f} s, t_train {s['t_train']:.3f} s"))
    table.append(("async: weight sync s", f"{s['weight_sync_s']:.4f}", s["weight_sync"]))
    for mode, rate in (s.get("actor_tokens_per_s_by_mode") or {}).items():
        table.append((f"actor tokens/s {mode}", f"{rate:.0f}", "hf actor, the async step's batch"))
elif "async" in ran:
    table.append(("async", "n/a", "the bench did not finish"))
summary = out / "train" / "summary.json"
if summary.is_file() and "train" in ran:
    import pandas as pd
    t = json.loads(summary.read_text())
    steps = pd.read_parquet(out / "train" / "steps.parquet")
    probed = steps.loc[steps["bias_sq"].notna(), "step"].tolist() if "bias_sq" in steps else []
    steady = steps[(steps["step"] > 0) & ~steps["step"].isin(probed)]  # no start-up, no probe
    steady = steady if len(steady) else steps
    table += [
        ("train: steps done", f"{t['steps_done']}",
         f"of {t['horizon']}, stopped: {t['stopped']}, fixed S=2, lag max {int(steps['lag_max'].max())}"),
        ("train: s per step", f"{steady['step_time_s'].mean():.2f}",
         f"gen {steady['gen_s'].mean():.2f} s, train {steady['train_s'].mean():.2f} s (steps after 0 without a "
         f"probe); bias probe at step(s) {probed}: {steps['probe_s'].max():.1f} s" if probed else "no probe"),
        ("train: learner peak GiB", f"{steps['train_peak_gib'].max():.2f}", "the largest step of the run"),
    ]
elif "train" in ran:
    table.append(("train", "n/a", "the run did not finish"))
head = ("what", "value", "note")
width = [max(len(r[i]) for r in [head, *table]) for i in range(2)]
print(title)
print(f"| {head[0]:<{width[0]}} | {head[1]:<{width[1]}} | {head[2]}")
print(f"|{'-' * (width[0] + 2)}|{'-' * (width[1] + 2)}|{'-' * 6}")
for what, value, note in table:
    print(f"| {what:<{width[0]}} | {value:<{width[1]}} | {note}")
EOF

if [ "$SIZE" = full ] && [ "$(cat "$OUT/memory_target.txt" 2>/dev/null)" = "not met" ]; then
  say "the learner step's peak is over 40 GB at the paper batch: lower MICRO"
  FAILED+=("memory-target")
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  say "FAILED step(s): ${FAILED[*]} (logs in $OUT)"
  exit 1
fi
say "all steps passed (logs in $OUT)"
