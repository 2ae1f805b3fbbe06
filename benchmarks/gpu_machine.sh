#!/bin/bash
# The long MuJoCo runs, once, on a GPU machine (16 CPU cores, one H100/H200), all at the same
# time, each run one process with one torch thread:
#   - bellmax PPO, 1M steps, HalfCheetah-v5 and Hopper-v5, seeds 0-2, CPU (bellmax keeps small MLPs on
#     the CPU);
#   - Stable-Baselines3 SAC and TD3 (rl-zoo3 hyperparameters), 100k steps, HalfCheetah-v5,
#     seeds 0-2, on the GPU (SB3 on one CPU thread needs ~25 min for 100k SAC steps);
#   - bellmax TD3 (its preset), 100k steps, HalfCheetah-v5, seeds 0-2, CPU.
# Every process is cut at LIMIT seconds; each writes metrics.jsonl as it goes, so a cut run still
# leaves its curve. Results: $OUT/gpu_machine.tar.gz (run dirs, result lines) and $OUT/log.txt.
#
# Usage on the machine (repo root, wheels for what its image lacks in .whl/, see docs/BENCHMARKS.md):
#   LIMIT=540 bash benchmarks/gpu_machine.sh
set -u
LIMIT=${LIMIT:-540}
PPO_STEPS=${PPO_STEPS:-1000000}
OFF_STEPS=${OFF_STEPS:-100000}
SEEDS=${SEEDS:-0 1 2}
SB3_DEVICE=${SB3_DEVICE:-cuda}
source "$(dirname "$0")/gpu_machine_common.sh"
describe_machine gymnasium mujoco stable_baselines3

launch() {  # name, command...
  local name=$1; shift
  ( start=$(date +%s); timeout "$LIMIT" "$@" > "$ROOT/$name.out" 2> "$ROOT/$name.err"; rc=$?
    echo "$name exit $rc wall $(( $(date +%s) - start )) s" >> "$ROOT/status.txt" ) &
}

for seed in $SEEDS; do
  for env in HalfCheetah-v5 Hopper-v5; do
    launch "bellmax-ppo-$env-s$seed" $PY -m bellmax.cli train ppo --env "$env" --seed $seed --total-steps $PPO_STEPS \
      --eval-episodes 10 --no-progress --no-tensorboard --checkpoint-every 1000000 --run-dir "$ROOT/bellmax-ppo-$env-s$seed"
  done
  for algo in sac td3; do
    launch "sb3-$algo-HalfCheetah-v5-s$seed" $PY -m bellmax.bench.sb3_runner --algo $algo --env HalfCheetah-v5 \
      --seed $seed --total-steps $OFF_STEPS --eval-every 20000 --eval-episodes 10 --device $SB3_DEVICE --threads 1 \
      --run-dir "$ROOT/sb3-$algo-HalfCheetah-v5-s$seed"
  done
  launch "bellmax-td3-HalfCheetah-v5-s$seed" $PY -m bellmax.cli train td3 --env HalfCheetah-v5 --seed $seed \
    --total-steps $OFF_STEPS --eval-every 20000 --eval-episodes 10 --no-progress --no-tensorboard \
    --checkpoint-every 1000000 --run-dir "$ROOT/bellmax-td3-HalfCheetah-v5-s$seed"
done
wait
date -u >> "$OUT/log.txt"
cat "$ROOT/status.txt" >> "$OUT/log.txt"
tail -n 3 "$ROOT"/*.err >> "$OUT/log.txt" 2>/dev/null
rm -f "$ROOT"/*/checkpoint.pt
tar -czf "$OUT/gpu_machine.tar.gz" -C "$ROOT" .
