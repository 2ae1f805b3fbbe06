#!/bin/bash
# TRPO on HalfCheetah-v5, 200k steps: which of the differences between bellmax's preset and
# rl-zoo3's SB3 settings costs return. Each variant is `bellmax bench mujoco --algo trpo` with
# extra flags over SEEDS seeds, against the SB3 runs of benchmarks/gpu_machine_seeds.sh (same
# machine type, reused from docs/images/bench_mujoco_trpo_HalfCheetah-v5_8seeds.json). All
# variants at once on a 16-core machine, each run one process with one torch thread.
# Results in $OUT: bench_mujoco_trpo_HalfCheetah-v5_TAG.json/.md/.png, log.txt.
#   SEEDS=8 BENCH_LIMIT=200 bash benchmarks/gpu_machine_trpo_variants.sh
set -u
SEEDS=${SEEDS:-8}
BENCH_LIMIT=${BENCH_LIMIT:-200}
SB3=docs/images/bench_mujoco_trpo_HalfCheetah-v5_8seeds.json
source "$(dirname "$0")/gpu_machine_common.sh"
describe_machine gymnasium mujoco
variant() {  # tag, flags
  timeout "$BENCH_LIMIT" $PY -m bellmax.cli bench mujoco --algo trpo --env HalfCheetah-v5 --seeds "$SEEDS" --jobs 4 \
    --import-repeats 1 --reuse-sb3 "$SB3" --tag "$1" --bellmax-flags="$2" --out-dir "$OUT" --keep-runs "$ROOT/$1" \
    > "$ROOT/$1.out" 2> "$ROOT/$1.err"
  echo "$1 exit $?" >> "$OUT/log.txt"
}
variant rewardnorm "--normalize-reward" &
variant rewardnorm_critic20 "--normalize-reward --value-epochs 20" &
variant rewardnorm_2x1024 "--normalize-reward --num-envs 2 --n-steps 1024" &
variant sb3_like "--normalize-reward --num-envs 2 --n-steps 1024 --value-epochs 20 --cg-iterations 25" &
wait
date -u >> "$OUT/log.txt"
tail -n 3 "$ROOT"/*.err >> "$OUT/log.txt" 2>/dev/null
