"""Running the two sides of a benchmark as separate processes and reading back what they did.

Every measured run is its own process started from here, one after the other, timed from start to
exit (`whole_seconds`: interpreter, imports, env creation, training, evaluation, logging and
shutdown). bellmax runs are `bellmax train ...` commands read back from their run directory;
Stable-Baselines3 runs are `python -m bellmax.bench.sb3_runner ...`, read back from the JSON line
they print. Nothing here imports torch or stable_baselines3, so the parent process stays light.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bellmax.core.run import read_metrics
from bellmax.errors import BellmaxError


@dataclass
class Finished:
    """A finished process: the command, its whole-process wall-clock and CPU time, and its output."""

    command: list[str]
    seconds: float
    stdout: str
    stderr: str
    cpu_seconds: float | None = None  # user + system CPU of the process and the children it waited for


def bellmax_executable() -> list[str]:
    """The `bellmax` console script of this interpreter's environment (what a user runs), or
    `python -m bellmax.cli` where there is none."""
    script = Path(sys.executable).with_name("bellmax")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bellmax.cli"]


def display(command: list[str]) -> str:
    """A command as the docs show it: `bellmax ...` / `python -m ...` without absolute paths."""
    shown = list(command)
    if shown and Path(shown[0]).name == "bellmax":
        shown[0] = "bellmax"
    elif shown and shown[0] == sys.executable:
        shown[0] = "python"
    return shlex.join(shown)


def run_process(command: list[str], log_dir: Path | None = None, name: str = "process",
                dry_run: bool = False) -> Finished:
    """Run `command` to completion and time it; a failure is a BellmaxError quoting its last
    line of stderr. With `log_dir`, stdout and stderr are kept as NAME.out / NAME.err."""
    print(f"$ {display(command)}", file=sys.stderr, flush=True)
    if dry_run:
        return Finished(command, 0.0, "", "")
    # output to files rather than pipes, so that the process can be reaped with os.wait4, which
    # also returns its CPU time: unlike wall-clock, that does not grow with other processes' load
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
        cpu_seconds = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu_seconds = usage.ru_utime + usage.ru_stime
        else:  # no wait4 (Windows): wall-clock only
            proc.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{name}.out").write_text(stdout)
        (log_dir / f"{name}.err").write_text(stderr)
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "(no output)"
        raise BellmaxError(f"`{display(command)}` failed with exit status {proc.returncode}: {last}")
    return Finished(command, seconds, stdout, stderr, cpu_seconds)


def last_json_line(text: str) -> dict[str, Any]:
    """The JSON object printed on the last non-empty line of a runner's stdout."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BellmaxError("the runner printed nothing; expected one JSON line of results")
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BellmaxError(f"the runner's last line is not JSON ({exc.msg}): {lines[-1][:200]!r}") from None
    if not isinstance(value, dict):
        raise BellmaxError(f"the runner's last line is not a JSON object: {lines[-1][:200]!r}")
    return value


# ---------------------------------------------------------------------------------------------
# commands


def bellmax_train_command(algo: str, env: str, seed: int, run_dir: Path, flags: Sequence[str] = ()) -> list[str]:
    return [*bellmax_executable(), "train", algo, "--env", env, "--seed", str(seed), "--no-progress",
            "--run-dir", str(run_dir), *flags]


def sb3_command(algo: str, env: str, seed: int, run_dir: Path | None = None, total_steps: int | None = None,
                eval_every: int = 0, stop_at_return: float | None = None, eval_episodes: int = 10,
                threads: int = 1) -> list[str]:
    command = [sys.executable, "-m", "bellmax.bench.sb3_runner", "--algo", algo, "--env", env, "--seed", str(seed)]
    if total_steps is not None:
        command += ["--total-steps", str(total_steps)]
    if eval_every:
        command += ["--eval-every", str(eval_every)]
    if stop_at_return is not None:
        command += ["--stop-at-return", str(stop_at_return)]
    command += ["--eval-episodes", str(eval_episodes), "--threads", str(threads)]
    if run_dir is not None:
        command += ["--run-dir", str(run_dir)]
    return command


def rollout_command(mode: str, env: str, steps: int, seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "bellmax.bench.rollout_runner", "--mode", mode, "--env", env,
            "--steps", str(steps), "--seed", str(seed)]


def import_probes(algo: str = "ppo") -> dict[str, str]:
    """Python one-liners whose whole-process time is the import cost of each side. The bellmax ones
    end as the `bellmax` command does (`bellmax.cli.exit_now`: no interpreter teardown), the SB3 one as
    its runner does (the ordinary exit, whose teardown of torch is part of SB3's whole-process time)."""
    end_as_cli = "; from bellmax.cli import exit_now; exit_now(0)"
    return {
        # interpreter start-up plus the algorithm module (torch, gymnasium, core)
        "import_algo": f"import bellmax.algos.{algo}" + end_as_cli,
        # everything `bellmax train ALGO --no-progress` imports before it trains (+ tyro, TensorBoard writer)
        "import_train": f"import bellmax.cli, bellmax.algos.{algo}, bellmax.core.run, tyro, torch.utils.tensorboard"
                        + end_as_cli,
        # the SB3 side: interpreter start-up plus Stable-Baselines3 (and sb3-contrib for TRPO)
        "import_sb3": "import stable_baselines3" + (", sb3_contrib" if algo == "trpo" else ""),
    }


def time_imports(algo: str = "ppo") -> dict[str, float]:
    """Whole-process seconds of `python -c "<imports>"` for each of `import_probes(algo)`, once."""
    return {key: run_process([sys.executable, "-c", code]).seconds for key, code in import_probes(algo).items()}


def median_imports(samples: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per probe, the median over samples (each sample one `time_imports` call)."""
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]} if samples else {}


# ---------------------------------------------------------------------------------------------
# reading results back


def summarize_bellmax_run(run_dir: Path, whole_seconds: float, stop_at_return: float | None = None) -> dict[str, Any]:
    """What a finished `bellmax train` run did, from its metrics.jsonl: steps, final evaluation
    return, first step whose periodic evaluation reached `stop_at_return`, and its time by phase
    (sums of time/rollout_seconds, time/iteration_seconds minus rollout, time/eval_seconds); for
    off-policy runs also the gradient updates (sum of losses/gradient_steps) and updates per
    second of update time."""
    rows = read_metrics(run_dir)
    if not rows:
        raise BellmaxError(f"{run_dir} has no metrics.jsonl rows; did `bellmax train` run there?")
    iteration_rows = [r for r in rows if r.get("time/iteration_seconds") is not None]
    eval_rows = [r for r in rows if r.get("eval/return") is not None]
    rollout = sum(r.get("time/rollout_seconds") or 0.0 for r in iteration_rows)
    iterations = sum(r["time/iteration_seconds"] for r in iteration_rows)
    evaluation = sum(r.get("time/eval_seconds") or 0.0 for r in rows)
    solved_at = None
    if stop_at_return is not None:
        solved_at = next((r["step"] for r in eval_rows if r["eval/return"] >= stop_at_return), None)
    train_sps = None
    if iteration_rows and iteration_rows[-1].get("time/sps"):
        # time/sps is steps / learn-loop seconds up to the end of that iteration's update, which
        # includes the periodic evaluations logged before it (not the one in its own row)
        last = iteration_rows[-1]
        loop_seconds = last["step"] / last["time/sps"]
        evals_before = sum(r.get("time/eval_seconds") or 0.0 for r in rows if r["step"] < last["step"])
        train_sps = last["step"] / max(loop_seconds - evals_before, 1e-9)
    gradient_steps = None
    if any(r.get("losses/gradient_steps") is not None for r in iteration_rows):
        gradient_steps = int(sum(r.get("losses/gradient_steps") or 0 for r in iteration_rows))
    update_seconds = iterations - rollout
    return {
        "library": "bellmax", "run_dir": str(run_dir), "whole_seconds": whole_seconds,
        "steps": rows[-1]["step"], "eval_return": eval_rows[-1]["eval/return"] if eval_rows else None,
        "solved_at": solved_at, "iterations": len(iteration_rows), "evaluations": len(eval_rows),
        "rollout_seconds": rollout, "update_seconds": update_seconds, "eval_seconds": evaluation,
        "train_sps": train_sps, "gradient_steps": gradient_steps,
        "updates_per_second": gradient_steps / update_seconds if gradient_steps and update_seconds > 0 else None,
    }


def summarize_sb3_run(finished: Finished) -> dict[str, Any]:
    result = last_json_line(finished.stdout)
    result["whole_seconds"] = finished.seconds
    result["update_seconds"] = result["learn_seconds"] - result["rollout_seconds"] - result["periodic_eval_seconds"]
    result["eval_seconds"] = result["periodic_eval_seconds"] + result["final_eval_seconds"]
    return result


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: CPU model and count, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("bellmax", "torch", "gymnasium", "stable_baselines3", "sb3_contrib", "mujoco", "numpy"):
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "bellmax_commit": source_commit(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def source_commit() -> str | None:
    """The git commit of the bellmax source being measured (+ "-dirty" when tracked files in src/
    outside bellmax.bench have uncommitted changes), or None outside a git checkout."""
    import bellmax

    root = Path(bellmax.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src",
                                ":!src/bellmax/bench"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")
