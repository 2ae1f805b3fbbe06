"""Running a plan: its processes one after the other (or `--jobs N` at a time), each summarized as
it finishes, plus the import-cost probes that the time breakdowns subtract and the machine the
figures were measured on.

The processes themselves are started and read back by bellmax.bench.harness; nothing here imports
torch or stable_baselines3.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellmax.bench.plans import Job, Plan, benchmark_algo
from bellmax.errors import BellmaxError

MUJOCO_ENVS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "Reacher", "InvertedPendulum",
               "InvertedDoublePendulum", "Pusher", "HumanoidStandup")


@dataclass
class Measured:
    """What running a plan measured, for its report."""

    results: dict[str, list[dict[str, Any]]]  # group -> run summaries in seed order, reused runs included
    imports: dict[str, float] | None  # median whole-process seconds per import probe (None: not probed)
    import_samples: list[dict[str, float]] | None  # every probe sample taken
    machine: dict[str, Any]  # bellmax.bench.harness.machine_info(), commit at start and end if they differ
    started: float  # time.perf_counter() when the benchmark started


def check_installed(opts: argparse.Namespace) -> None:
    """A clear error when the SB3 side (or MuJoCo, for its environments) is not installed."""
    needed = ["stable_baselines3"]
    if getattr(opts, "algo", None) == "trpo":
        needed.append("sb3_contrib")
    if opts.benchmark in ("mujoco", "rollout") and "-v" in opts.env and opts.env.split("-")[0] in MUJOCO_ENVS:
        needed.append("mujoco")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BellmaxError(f"bellmax bench needs {', '.join(missing)}: "
                           "pip install -c constraints.txt -e '.[bench,mujoco]'")


def runs_root(opts: argparse.Namespace) -> Path:
    """Where the run directories go: --keep-runs DIR, or a new temporary directory (a dry run
    creates nothing and names DIR or RUNS)."""
    if opts.dry_run:
        return Path(opts.keep_runs or "RUNS")
    if opts.keep_runs:
        return Path(opts.keep_runs)
    return Path(tempfile.mkdtemp(prefix=f"bellmax-bench-{opts.benchmark}-"))


def print_commands(plan: Plan) -> None:
    """--dry-run: the plan's commands as the docs show them, one a line, run nothing."""
    from bellmax.bench.harness import display

    for job in plan.jobs:
        print(display(job.command))


def measure(opts: argparse.Namespace, plan: Plan, root: Path, invocation: str) -> Measured:
    """Run the plan (runs and logs under `root`), take the reused runs, the import cost and the
    machine: everything the report needs."""
    from bellmax.bench.harness import source_commit

    jobs = getattr(opts, "jobs", 1)  # the rollout benchmark has no --jobs
    pace = "one at a time" if jobs == 1 else f"{jobs} at a time"
    print(f"{invocation}: {len(plan.jobs)} processes, {pace}; runs and logs in {root}", file=sys.stderr)
    commit_at_start = source_commit()
    started = time.perf_counter()
    algo = benchmark_algo(opts)
    samples: list[dict[str, float]] | None = None if opts.benchmark == "rollout" else []
    if jobs > 1:
        plan.notes.append(f"**{jobs} processes at a time** (`--jobs {jobs}`) on {os.cpu_count()} CPU cores: "
                          "runs shared the machine with each other, each library alike")
    results = execute(plan, root, samples, algo, jobs=jobs)
    for group, runs in plan.reused.items():
        results[group] = runs
    imports = None if samples is None else import_cost(samples, opts.import_repeats, algo)
    return Measured(results, imports, samples, _machine(commit_at_start), started)


def import_cost(samples: list[dict[str, float]], repeats: int, algo: str) -> dict[str, float]:
    """Median import cost per probe over `samples` (those taken next to the bellmax runs), first
    topped up to `repeats` samples by probing now."""
    from bellmax.bench.harness import median_imports, time_imports

    samples += [time_imports(algo) for _ in range(max(repeats - len(samples), 0))]
    return median_imports(samples)


def _machine(commit_at_start: str | None) -> dict[str, Any]:
    """machine_info() at the end, naming both commits if someone committed while the benchmark ran."""
    from bellmax.bench.harness import machine_info

    machine = machine_info()
    if machine["bellmax_commit"] != commit_at_start:
        machine["bellmax_commit"] = f"{commit_at_start} at start, {machine['bellmax_commit']} at end"
    return machine


def execute(plan: Plan, root: Path, import_samples: list[dict[str, float]] | None = None,
            algo: str = "ppo", jobs: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Run the plan's processes in order, `jobs` at a time; results grouped by job group, in seed
    order. With `import_samples` and one job at a time, the import probes run once after every
    bellmax run (next to it in time, so both see the same load) and their times are appended
    there; with several at a time they would time the neighbours' load, so main() takes them
    all afterwards."""
    from bellmax.bench.harness import (
        last_json_line,
        run_process,
        summarize_bellmax_run,
        summarize_sb3_run,
        time_imports,
    )

    taken = [str(job.run_dir) for job in plan.jobs if job.run_dir is not None and job.run_dir.exists()]
    if taken:
        raise BellmaxError(f"run directories already exist: {', '.join(taken)}; pass another --keep-runs DIR")
    summaries: dict[int, dict[str, Any]] = {}  # plan index -> summary, filled as runs finish

    def grouped() -> dict[str, list[dict[str, Any]]]:
        results: dict[str, list[dict[str, Any]]] = {}
        for index in sorted(summaries):
            results.setdefault(plan.jobs[index].group, []).append(summaries[index])
        return results

    def summarize_job(index: int, finished: Any) -> None:
        job = plan.jobs[index]
        if job.library == "bellmax":
            assert job.run_dir is not None  # a bellmax job trains into its run directory
            summary = summarize_bellmax_run(job.run_dir, finished.seconds, plan.stop_at_return)
        elif job.library == "sb3":
            summary = summarize_sb3_run(finished)
        else:
            summary = {**last_json_line(finished.stdout), "whole_seconds": finished.seconds}
        summary["command"] = finished.command
        summary["cpu_seconds"] = finished.cpu_seconds
        summaries[index] = summary
        # a bench cut short (a time limit, a kill) still leaves every finished run's summary here
        (root / "results.partial.json").write_text(json.dumps(grouped(), indent=1, default=str) + "\n")
        if import_samples is not None and job.library == "bellmax" and jobs == 1:
            import_samples.append(time_imports(algo))
        shown = {k: summary.get(k) for k in ("whole_seconds", "steps", "eval_return", "solved_at", "sps")
                 if summary.get(k) is not None}
        print(f"  [{len(summaries)}/{len(plan.jobs)}] {job.group} seed {job.seed}: "
              + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()),
              file=sys.stderr, flush=True)

    def run(job: Job) -> Any:
        return run_process(job.command, log_dir=root / "logs", name=f"{job.group}-{job.seed}")

    if jobs == 1:
        for index, job in enumerate(plan.jobs):
            summarize_job(index, run(job))
        return grouped()
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(run, job): index for index, job in enumerate(plan.jobs)}
        for future in as_completed(futures):  # summarized as they finish; a failure stops the rest
            summarize_job(futures[future], future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # after a failure start nothing more
    return grouped()
