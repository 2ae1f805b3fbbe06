#!/bin/bash
# DQN on Pong with the networks on a GPU machine's GPU, in one call:
#   1. the GPU tests of tests/test_device.py (placement, bit-for-bit resume on CUDA);
#   2. bellmax DQN with its Pong preset for LIMIT seconds each, on the GPU and, at the same time,
#      on one CPU thread: frames/s and the return curve so far (metrics.jsonl);
#   3. when OpenCV is importable there (SB3's Atari wrappers need it), benchmarks/dqn_pong.py
#      --device cuda: frames/s of both libraries with the networks on the GPU.
# A 10M-frame run (2.5M env steps) takes far longer than a device call, so this measures speed and
# the start of the curve, not the +18 target. Results in $OUT: log.txt, pong_*.jsonl, dqn_pong_cuda.*
#   LIMIT=240 bash benchmarks/gpu_machine_dqn_pong.sh
set -u
LIMIT=${LIMIT:-240}
source "$(dirname "$0")/gpu_machine_common.sh"
describe_machine gymnasium ale_py

timeout 150 $PY -m pytest -q -rs -p no:cacheprovider tests/test_device.py >> "$OUT/log.txt" 2>&1
echo "device tests exit $?" >> "$OUT/log.txt"

for device in cuda cpu; do
  ( timeout "$LIMIT" $PY -m bellmax.cli train dqn --env ALE/Pong-v5 --device $device --seed 0 --no-progress \
      --no-tensorboard --checkpoint-every 100000000 --run-dir "$ROOT/pong_$device" > "$ROOT/pong_$device.out" 2>&1
    echo "pong $device exit $?" >> "$OUT/log.txt"; cp "$ROOT/pong_$device/metrics.jsonl" "$OUT/pong_$device.jsonl" 2>/dev/null ) &
done
wait
$PY benchmarks/atari_summary.py "$OUT"/pong_*.jsonl >> "$OUT/log.txt" 2>&1
if $PY -c "import cv2" 2>/dev/null; then
  timeout "$LIMIT" $PY benchmarks/dqn_pong.py --device cuda --steps 30000 --learning-starts 10000 \
    --out "$OUT/dqn_pong_cuda.json" >> "$OUT/log.txt" 2>&1
else
  echo "no cv2: SB3 side skipped" >> "$OUT/log.txt"
fi
date -u >> "$OUT/log.txt"
