"""Attack bellmax as a careful user's worst day would, and count the outcomes (docs/RELIABILITY.md).

    python benchmarks/fuzz.py [--cli 200] [--corruptions 60] [--kills 10] [--seed 0] [--jobs 2]
                              [--out docs/images/fuzz.json]

Three parts, each command a separate process (so a crash or a hang is seen as one):
- bad input: command lines of every command with malformed, extreme or wrong-typed values (every
  Config field of every algorithm, paths that cannot be read or written, damaged data files);
  a good outcome is exit 2 with a readable message, no traceback and no file left behind, or a
  normal run when the value happens to be valid.
- corruption: a trained run's checkpoint damaged at random (a flipped byte, a cut, a zeroed block,
  bytes appended, an empty file); `bellmax eval` must refuse it in one line (nothing to fall back
  to), and `--resume` with the kept older checkpoint must continue from that one.
- kill and resume: a training killed with SIGKILL at a random moment, then `--resume`d until it
  ends; its parameters must equal the uninterrupted run's and its metrics hold every iteration once.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BELLMAX = [sys.executable, "-m", "bellmax"]
TRAIN_FLAGS = ["--no-progress", "--no-tensorboard", "--total-steps", "400", "--eval-episodes", "0"]
TINY_VPG = ["--env", "CartPole-v1", "--num-envs", "2", "--n-steps", "50", "--batch-size", "100",
            "--hidden-sizes", "16", "--eval-episodes", "0", "--no-progress", "--no-tensorboard"]
BAD_NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e39", "1e400", "2147483648", "18446744073709551616", "1.5", "x",
               "", "None", "１", "0x10"]
BAD_PATHS = ["/proc/bellmax-run", "/dev/null/run", "/etc/hostname/run", "x" * 300, "", "."]
TIMEOUT = 120.0


def run(argv: list[str], cwd: Path, timeout: float = TIMEOUT) -> dict:
    start = time.monotonic()
    try:
        done = subprocess.run(BELLMAX + argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "MPLBACKEND": "Agg"})
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        code, err = None, ""
    return {"argv": argv, "code": code, "stderr_tail": err.strip().splitlines()[-3:] if err else [],
            "traceback": "Traceback" in err, "seconds": round(time.monotonic() - start, 1)}


# -- bad input ----------------------------------------------------------------------------------
def config_fields() -> dict[str, list[tuple[str, str]]]:
    import dataclasses
    import typing

    from bellmax.algos import get_algorithm

    fields = {}
    for algo in ("vpg", "a2c", "trpo", "ppo", "dqn", "ddpg", "td3", "sac"):
        config_class = get_algorithm(algo).config_class
        hints = typing.get_type_hints(config_class)
        fields[algo] = [(f.name, str(hints[f.name])) for f in dataclasses.fields(config_class)
                        if hints[f.name] is not bool]
    return fields


def bad_command_lines(count: int, rng: random.Random, data_dir: Path) -> list[list[str]]:
    """`count` malformed command lines over every command."""
    fields = config_fields()
    lines: list[list[str]] = []
    while len(lines) < count:
        kind = rng.choice(["field"] * 6 + ["path", "eval", "plot", "solve", "rlhf", "sweep", "arena"])
        if kind == "field":
            algo = rng.choice(list(fields))
            name, hint = rng.choice(fields[algo])
            values = [rng.choice(BAD_NUMBERS)] if "tuple" not in hint else rng.sample(BAD_NUMBERS, 2)
            if name == "env":
                values = [rng.choice(["CartPol-v1", "phys2d/CartPole-v1", "tabular/Blackjack-v0",
                                      "GymV26Environment-v0", "ALE/NoSuchGame-v5", "", "CarRacing-v3"])]
            lines.append(["train", algo, *TRAIN_FLAGS, "--" + name.replace("_", "-"), *values,
                          "--run-dir", "run"])
        elif kind == "path":
            lines.append(["train", "vpg", *TRAIN_FLAGS, "--run-dir", rng.choice(BAD_PATHS)])
        elif kind == "eval":
            lines.append(["eval", rng.choice(BAD_PATHS + [str(data_dir / "garbage.jsonl")]),
                          "--episodes", rng.choice(["0", "-3", "x", "1"]), "--seed", rng.choice(BAD_NUMBERS)])
        elif kind == "plot":
            lines.append(["plot", rng.choice(BAD_PATHS + [str(data_dir)]), "-o",
                          rng.choice(["/proc/x.png", "curve.xyz", "/nonexistent/a.png", "ok.png"])])
        elif kind == "solve":
            lines.append(["solve", "gridworld", "--layout", rng.choice(["", "....", "S...", "S.S+", "ab/cd", "S+/."]),
                          "--gamma", rng.choice(BAD_NUMBERS), "--noise", rng.choice(BAD_NUMBERS)])
        elif kind == "rlhf":
            stage = rng.choice(["sft", "reward"])
            lines.append(["rlhf", stage, "--data", str(data_dir / rng.choice(["latin1.jsonl", "garbage.jsonl",
                                                                             "wrong_types.jsonl", "missing.jsonl"])),
                          "--out", "stage"])
        elif kind == "sweep":
            lines.append(["sweep", "ppo", "--env", "CartPole-v1", "--seeds", rng.choice(["0", "x", "-1"]),
                          "--grid", rng.choice(["learning_rate=x", "nosuch=1,2", "seed=1,2", "gamma=2"]),
                          "--run-dir", "sweep"])
        else:
            lines.append(["arena", rng.choice(BAD_PATHS), rng.choice(["rule", "nosuch", "random"]),
                          "--games", rng.choice(["0", "-1", "x", "2"])])
    return lines


def write_bad_data(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"))
    (data_dir / "garbage.jsonl").write_text('{"prompt": "a", "completion": "b"}\nnot json at all\n')
    (data_dir / "wrong_types.jsonl").write_text('{"prompt": 3, "completion": null}\n')
    (data_dir / "missing.jsonl").write_text('{"prompt": "a"}\n')


def classify_bad_input(result: dict, cwd: Path) -> str:
    if result["code"] is None:
        return "ran past the time limit"
    if result["code"] < 0:
        return f"killed by signal {-result['code']}"
    if result["traceback"]:
        return "traceback"
    if result["code"] == 0:
        return "accepted (a valid value)"
    left = [p.name for p in cwd.iterdir()]
    if left:
        return "refused, but left files behind"
    return "refused cleanly (exit 2, one message)" if result["code"] == 2 else f"exit {result['code']}"


def fuzz_cli(count: int, rng: random.Random, jobs: int, workdir: Path) -> dict:
    data_dir = workdir / "data"
    write_bad_data(data_dir)
    lines = bad_command_lines(count, rng, data_dir)

    def one(index_line: tuple[int, list[str]]) -> dict:
        index, line = index_line
        cwd = workdir / f"cli{index}"
        cwd.mkdir()
        result = run(line, cwd)
        result["outcome"] = classify_bad_input(result, cwd)
        shutil.rmtree(cwd, ignore_errors=True)
        return result

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, enumerate(lines)))
    return summarize(results)


# -- corruption ---------------------------------------------------------------------------------
def corrupt(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    how = rng.choice(["flip a byte", "cut", "zero 4 KiB", "append bytes", "empty"])
    if how == "flip a byte":
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "cut":
        data = data[:rng.randrange(len(data))]
    elif how == "zero 4 KiB":
        start = rng.randrange(len(data))
        data[start:start + 4096] = bytes(len(data[start:start + 4096]))
    elif how == "append bytes":
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    return how


def fuzz_corruption(count: int, rng: random.Random, jobs: int, workdir: Path) -> dict:
    trained = workdir / "trained"
    first = run(["train", "vpg", *TINY_VPG, "--total-steps", "600", "--checkpoint-every", "200",
                 "--run-dir", str(trained)], workdir)
    assert first["code"] == 0, first

    def one(index: int) -> dict:
        trial_rng = random.Random(rng.random() + index)
        copy = workdir / f"corrupt{index}"
        shutil.copytree(trained, copy, copy_function=shutil.copy2)
        damage = corrupt(copy / "checkpoint.pt", trial_rng)
        kept = [p for p in copy.glob("checkpoint-*.pt") if p.stat().st_size != (copy / "checkpoint.pt").stat().st_size
                or p.read_bytes() != (copy / "checkpoint.pt").read_bytes()]
        newest = max(copy.glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        newest.unlink()  # the newest's second name was damaged; the older one stays to fall back to
        evaluated = run(["eval", str(copy), "--episodes", "1"], workdir)
        resumed = run(["train", "vpg", "--resume", str(copy), "--total-steps", "800", "--no-progress"], workdir)
        clean_eval = evaluated["code"] == 2 and not evaluated["traceback"] and len(evaluated["stderr_tail"]) == 1
        fell_back = resumed["code"] == 0 and any("newest valid checkpoint" in line
                                                 for line in resumed["stderr_tail"] + [""])
        shutil.rmtree(copy, ignore_errors=True)
        outcome = ("eval refused in one line, resume fell back" if clean_eval and fell_back else
                   "eval refused in one line" if clean_eval else
                   "eval loaded the damaged file" if evaluated["code"] == 0 else "eval failed badly")
        return {"damage": damage, "kept": len(kept), "eval": evaluated, "resume": resumed, "outcome": outcome}

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, range(count)))
    summary = summarize(results)
    summary["by_damage"] = dict(Counter(r["damage"] for r in results))
    return summary


# -- kill and resume ----------------------------------------------------------------------------
def params_of(run_dir: Path, cwd: Path) -> str | None:
    done = subprocess.run(BELLMAX + ["eval", str(run_dir), "--episodes", "1", "--json"], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    return json.loads(done.stdout)["params_sha256"] if done.returncode == 0 else None


def fuzz_kills(count: int, rng: random.Random, workdir: Path) -> dict:
    flags = [*TINY_VPG, "--total-steps", "20000", "--checkpoint-every", "1000", "--seed", "7"]
    reference = workdir / "uninterrupted"
    assert run(["train", "vpg", *flags, "--run-dir", str(reference)], workdir)["code"] == 0
    expected = params_of(reference, workdir)
    expected_steps = [json.loads(line)["step"] for line in (reference / "metrics.jsonl").read_text().splitlines()]
    results = []
    for index in range(count):
        run_dir = workdir / f"killed{index}"
        delay = rng.uniform(3.0, 12.0)  # start-up takes 2-5 s, the whole training 10-20
        process = subprocess.Popen(BELLMAX + ["train", "vpg", *flags, "--run-dir", str(run_dir)], cwd=workdir,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            killed = True
        if run_dir.exists():
            resumed = run(["train", "vpg", "--resume", str(run_dir), "--no-progress", "--no-tensorboard"], workdir)
        else:  # killed while starting, before the run directory existed: start it again, as a user would
            resumed = run(["train", "vpg", *flags, "--run-dir", str(run_dir)], workdir)
        steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                 if line.strip()] if (run_dir / "metrics.jsonl").exists() else []
        equal = params_of(run_dir, workdir) == expected
        outcome = ("resumed bit for bit, every metrics row once" if equal and steps == expected_steps else
                   "parameters equal, metrics rows differ" if equal else "parameters differ")
        results.append({"killed_after_s": round(delay, 2), "killed": killed,
                        "run_dir_existed": "--resume" in resumed["argv"], "resume_exit": resumed["code"],
                        "resume_said": resumed["stderr_tail"], "outcome": outcome})
        shutil.rmtree(run_dir, ignore_errors=True)
    return summarize(results)


def summarize(results: list[dict]) -> dict:
    return {"trials": len(results), "outcomes": dict(Counter(r["outcome"] for r in results)), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=int, default=200, help="malformed command lines (default 200)")
    parser.add_argument("--corruptions", type=int, default=60, help="damaged checkpoints (default 60)")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 and resume trials (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="commands run at once (default 2)")
    parser.add_argument("--out", default=None, help="also write every result as JSON")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    report = {}
    with tempfile.TemporaryDirectory(prefix="bellmax-fuzz-") as tmp:
        workdir = Path(tmp)
        for name, part in (("bad input", lambda: fuzz_cli(opts.cli, rng, opts.jobs, workdir)),
                           ("corruption", lambda: fuzz_corruption(opts.corruptions, rng, opts.jobs, workdir)),
                           ("kill and resume", lambda: fuzz_kills(opts.kills, rng, workdir))):
            start = time.monotonic()
            report[name] = part()
            report[name]["seconds"] = round(time.monotonic() - start)
            print(f"{name}: {report[name]['trials']} trials in {report[name]['seconds']} s: "
                  f"{json.dumps(report[name]['outcomes'])}", flush=True)
    if opts.out:
        Path(opts.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
