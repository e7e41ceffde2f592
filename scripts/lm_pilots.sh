#!/usr/bin/env bash
# Pilot runs of the language-model experiments (docs/method.md §10), outside the workflow:
#   bash scripts/lm_pilots.sh [ROOT [hack|bias]]   # default ROOT=results/pilots, both parts; then:
#   .venv/bin/python scripts/lm_pilots_summary.py ROOT
#
# 1. hack: S = 0, the default base policy, proxy = gold + 1.5 on the first_digit hack; η from
#    6.25e-5 to 3.54e-4 (ratio √2 to 2), seeds 0 and 1, and η = 5e-4 (where the policy falls
#    apart within tens of steps without the hack). Does the time until gold falls scale as 1/η?
# 2. bias: the §3.2 probe read once, at the fixed continuous time t = k·η = 0.01, with 8 pairs,
#    on the well-specified reward; S ∈ {1, 4, 16} × η ∈ {2.5e-5, 5e-5, 1e-4}, so S·η spans
#    2.5e-5 .. 1.6e-3. Plan fixed before these runs were looked at: the slope of log relative bias
#    on log(S·η) is fitted over all nine runs (nothing dropped after seeing them).
# Runs go two at a time on one thread each; about 25 min on a 2-core AVX-512 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-results/pilots}
PART=${2:-all}
BASE=$ROOT/base
mkdir -p "$ROOT"
[ -f "$BASE/config.json" ] || .venv/bin/stalegrpo pretrain config/pretrain.yaml threads=2 --out "$BASE" > "$ROOT/pretrain.log" 2>&1

train() {  # OUT, then overrides
  local out=$1; shift
  [ -f "$out/summary.json" ] && return 0
  mkdir -p "$(dirname "$out")"
  .venv/bin/stalegrpo train config/train.yaml init_checkpoint="$BASE" threads=1 kl_ref_every=0 \
    progress=false logger=none "$@" --out "$out" > "$out.log" 2>&1
}
hack() {  # eta seed steps
  train "$ROOT/hack/eta$1/seed$2" S=0 eta="$1" seed="$2" steps="$3" reward_hack=first_digit hack_bonus=1.5 \
    probe_every=0 eval_every=25
}
bias() {  # S eta
  local steps; steps=$(python3 -c "print(round(0.01 / $2) + 1)")
  train "$ROOT/bias/S$1/eta$2" S="$1" eta="$2" steps="$steps" probe_every=0 probe_time=0.01 probe_pairs=8 \
    eval_every=0 collapse.reward_detector=false
}
jobs=()
[ "$PART" = bias ] || jobs+=(
  "hack 3.54e-4 0 800" "hack 3.54e-4 1 800" "hack 2.5e-4 0 1000" "hack 2.5e-4 1 1000"
  "hack 1.25e-4 0 1000" "hack 1.25e-4 1 1000" "hack 6.25e-5 0 1800" "hack 6.25e-5 1 1800"
  "hack 5e-4 0 600" "hack 5e-4 1 600"
)
if [ "$PART" != hack ]; then
  for S in 1 4 16; do for eta in 2.5e-5 5e-5 1e-4; do jobs+=("bias $S $eta"); done; done
fi
for job in "${jobs[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  $job &
done
wait
echo "pilots done: $ROOT"
