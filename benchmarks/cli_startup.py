"""Start-up of the command line: wall-clock of short `bellmax` commands, each a fresh process.

Start-up is part of the user experience: `bellmax solve` never imports torch, `train ALGO --help`
and the `rlhf` help read their config classes from source instead of importing torch and
transformers. For scale, the script also times importing torch, and a transformers model class, alone.

    python benchmarks/cli_startup.py [--repeats 7] [--out docs/images/cli_startup.json]

Prints the median (and min) seconds per command; with --out also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BELLMAX = [sys.executable, "-m", "bellmax.cli"]
COMMANDS = {
    "bellmax --version": [*BELLMAX, "--version"],
    "bellmax solve gridworld": [*BELLMAX, "solve", "gridworld"],
    "bellmax train ppo --help": [*BELLMAX, "train", "ppo", "--help"],
    "bellmax train ppo --env HalfCheetah-v5 --help": [*BELLMAX, "train", "ppo", "--env", "HalfCheetah-v5", "--help"],
    "bellmax rlhf --help": [*BELLMAX, "rlhf", "--help"],
    "bellmax rlhf run --help": [*BELLMAX, "rlhf", "run", "--help"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
    "python -c 'from transformers import GPT2LMHeadModel' (for scale)": [sys.executable, "-c",
                                                                      "from transformers import GPT2LMHeadModel"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (median reported; default 7)")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    opts = parser.parse_args(argv)
    results = {}
    for name, command in COMMANDS.items():
        seconds(command)  # warm the file cache
        times = [seconds(command) for _ in range(opts.repeats)]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times)}
        print(f"{name:66s} median {results[name]['median_s']:.2f} s   min {results[name]['min_s']:.2f} s", flush=True)
    if opts.out:
        machine = {"python": platform.python_version(), "machine": platform.machine(),
                   "processor": platform.processor()}
        Path(opts.out).write_text(json.dumps({"machine": machine, "repeats": opts.repeats, "results": results},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
