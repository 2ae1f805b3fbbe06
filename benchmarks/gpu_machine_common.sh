# Sourced by the benchmarks/gpu_machine*.sh scripts: where results go ($OUT, brought back by the
# device tool; $ROOT for run directories), the environment of every run (this checkout's src first,
# unbuffered output, one OpenMP thread), and `describe_machine MODULE...`, which starts $OUT/log.txt
# with the date, CPUs, GPU and the versions of torch and the given Python modules.
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_machine_out}
ROOT=/tmp/gpu_runs
mkdir -p "$OUT" "$ROOT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1

describe_machine() {
  {
    date -u; nproc --all; lscpu | grep 'Model name'
    if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi
    $PY - "$@" <<'PYEOF'
import importlib, sys
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
for name in sys.argv[1:]:
    print(name, getattr(importlib.import_module(name), "__version__", "?"))
PYEOF
  } > "$OUT/log.txt" 2>&1
}
