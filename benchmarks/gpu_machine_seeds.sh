#!/bin/bash
# More seeds where three are too few to tell two libraries apart, on a machine with 16 CPU
# cores (the GPU stays idle: every run here is small MLPs on one CPU thread):
#   - `bellmax bench mujoco` for A2C and TRPO on HalfCheetah-v5, 200k steps, SEEDS seeds each
#     side (SB3's A2C seeds at 200k spread from -442 to 2,884 on the dev box);
#   - bellmax's PPO presets for Walker2d-v5, Ant-v5 and Humanoid-v5, one seed each, cut at
#     LIMIT seconds (a check that the presets learn, with their curves).
# All at once, each process one torch thread; 15 processes busy at a time.
# Results in $OUT: bench_mujoco_*.json/.md/.png, presets.tar.gz (metrics of the PPO runs), log.txt.
#
# Usage on the machine (repo root, wheels for what its image lacks in .whl/, see docs/BENCHMARKS.md):
#   SEEDS=8 LIMIT=420 bash benchmarks/gpu_machine_seeds.sh
set -u
SEEDS=${SEEDS:-8}
STEPS=${STEPS:-200000}
LIMIT=${LIMIT:-420}
BENCH_LIMIT=${BENCH_LIMIT:-540}  # the benches write their tables only at the end: cut them before the command limit
source "$(dirname "$0")/gpu_machine_common.sh"
describe_machine gymnasium mujoco stable_baselines3 sb3_contrib

for env in Walker2d-v5 Ant-v5 Humanoid-v5; do
  ( timeout "$LIMIT" $PY -m bellmax.cli train ppo --env $env --seed 0 --no-progress --no-tensorboard \
      --checkpoint-every 100000000 --run-dir "$ROOT/ppo-$env" > "$ROOT/ppo-$env.out" 2> "$ROOT/ppo-$env.err"
    echo "ppo $env exit $?" >> "$ROOT/status.txt" ) &
done
timeout "$BENCH_LIMIT" $PY -m bellmax.cli bench mujoco --algo a2c --env HalfCheetah-v5 --steps "$STEPS" --seeds "$SEEDS" --jobs 7 --import-repeats 3 \
  --out-dir "$OUT" --keep-runs "$ROOT/a2c" > "$ROOT/a2c.out" 2> "$ROOT/a2c.err" &
timeout "$BENCH_LIMIT" $PY -m bellmax.cli bench mujoco --algo trpo --env HalfCheetah-v5 --steps "$STEPS" --seeds "$SEEDS" --jobs 5 --import-repeats 3 \
  --out-dir "$OUT" --keep-runs "$ROOT/trpo" > "$ROOT/trpo.out" 2> "$ROOT/trpo.err" &
wait
date -u >> "$OUT/log.txt"
cat "$ROOT/status.txt" >> "$OUT/log.txt"
tail -n 5 "$ROOT"/*.err >> "$OUT/log.txt" 2>/dev/null
tar -czf "$OUT/presets.tar.gz" -C "$ROOT" --exclude='*.pt' --exclude='events.*' ppo-Walker2d-v5 ppo-Ant-v5 ppo-Humanoid-v5
tar -czf "$OUT/bench_runs.tar.gz" -C "$ROOT" --exclude='*.pt' --exclude='events.*' a2c trpo 2>/dev/null
