#!/bin/bash
# The Atari presets on a GPU machine, in one call:
#   1. the GPU tests of tests/test_device.py (placement, bit-for-bit resume on CUDA, `auto` on Atari);
#   2. at the same time, LIMIT seconds each, seed 0, every preset as shipped (`--device auto`, so
#      the Nature CNN goes on the GPU; one torch thread per process): PPO and A2C on Pong and
#      Breakout, DQN on Pong; and DQN on Pong with `--device cpu` for the GPU-versus-CPU frames/s.
#      Five training processes share the one GPU, so their speeds are lower bounds.
# LIMIT seconds cover a few million frames: this checks that each preset starts to learn and
# measures its speed; it does not reach the presets' 10M-step budgets. Results in $OUT: log.txt,
# tests.txt, NAME.jsonl (metrics), NAME.out (the run's last lines), nvidia-smi.txt.
#   LIMIT=400 bash benchmarks/gpu_machine_atari.sh
set -u
LIMIT=${LIMIT:-400}
source "$(dirname "$0")/gpu_machine_common.sh"
describe_machine gymnasium ale_py

( timeout 240 $PY -m pytest -q -rs -p no:cacheprovider tests/test_device.py > "$OUT/tests.txt" 2>&1
  echo "device tests exit $?" >> "$OUT/log.txt" ) &

train() {  # train NAME ALGO ENV [FLAGS...]
  local name=$1 algo=$2 env=$3; shift 3
  ( timeout "$LIMIT" $PY -m bellmax.cli train "$algo" --env "$env" --seed 0 --no-progress --no-tensorboard \
      --checkpoint-every 100000000 --run-dir "$ROOT/$name" "$@" > "$ROOT/$name.out" 2>&1
    echo "$name exit $?" >> "$OUT/log.txt"
    cp "$ROOT/$name/metrics.jsonl" "$OUT/$name.jsonl" 2>/dev/null; tail -n 30 "$ROOT/$name.out" > "$OUT/$name.out" ) &
  pids="$pids $!"
}
pids=""
train ppo_pong ppo ALE/Pong-v5
train ppo_breakout ppo ALE/Breakout-v5
train a2c_pong a2c ALE/Pong-v5
train a2c_breakout a2c ALE/Breakout-v5
train dqn_pong dqn ALE/Pong-v5
train dqn_pong_cpu dqn ALE/Pong-v5 --device cpu

# If every run has crashed, stop early (the device minutes are scarce); snapshot the GPU once.
started=$SECONDS
while sleep 5; do
  alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  if [ $((SECONDS - started)) -ge 90 ] && [ ! -e "$OUT/nvidia-smi.txt" ]; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  fi
done
wait

$PY benchmarks/atari_summary.py "$OUT"/*.jsonl >> "$OUT/log.txt" 2>&1
date -u >> "$OUT/log.txt"
