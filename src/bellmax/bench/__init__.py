"""`bellmax bench`: bellmax against Stable-Baselines3, side by side, each run its own process.

    bellmax bench ppo-cartpole [--seeds 3]                 # preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench ppo-cartpole --same-hparams [--seeds 3]  # identical hyperparameters, fixed 100k steps
    bellmax bench dqn-cartpole [--seeds 3]                 # DQN preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench sac-pendulum [--seeds 3]                 # SAC preset with its stop rule vs SB3 + rl-zoo3
    bellmax bench mujoco --algo ppo --env HalfCheetah-v5 [--steps 200000] [--seeds 3]
    bellmax bench mujoco ... --reuse-sb3 docs/images/bench_mujoco_ppo_HalfCheetah-v5.json  # re-run bellmax only
    bellmax bench rollout --env HalfCheetah-v5 [--steps 50000] [--repeats 3]

Runs happen one after the other on this machine (never in parallel: they would compete for the
cores), alternating libraries seed by seed so that drifting load hits both alike. Every command
prints Markdown tables on stdout; `--out-dir DIR` also writes DIR/bench_NAME.{json,md,png};
`--keep-runs DIR` keeps the run directories (default: a temporary directory, named on stderr);
`--dry-run` prints the commands without running them.

Needs the `bench` extra (stable-baselines3, sb3-contrib); only this package imports them, and
only inside the runner processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellmax.errors import BellmaxError

CARTPOLE = "CartPole-v1"
CARTPOLE_STEPS = 100_000  # rl-zoo3's n_timesteps for PPO CartPole-v1 (and the preset's budget)

# off-policy time-to-solve benchmarks: name -> (algorithm, environment); SB3's budget is the
# rl-zoo3 entry's n_timesteps (DQN CartPole 50k, SAC Pendulum 20k)
OFF_POLICY_BENCHMARKS = {"dqn-cartpole": ("dqn", CARTPOLE), "sac-pendulum": ("sac", "Pendulum-v1")}

# `bench mujoco` step budgets: the issues' minimums (on-policy 200k, SAC/TD3 100k)
ON_POLICY_MUJOCO_STEPS = 200_000
OFF_POLICY_MUJOCO_STEPS = 100_000


class _Parser(argparse.ArgumentParser):
    """argparse that raises BellmaxError (one line from the CLI) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BellmaxError(f"{self.prog}: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bellmax bench", description="bellmax against Stable-Baselines3, side by side.",
                     epilog="Each benchmark runs one process per library and seed, one after the other "
                            "(--jobs N: N at a time).")
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", parser_class=_Parser)

    def common(p: argparse.ArgumentParser, seeds: bool = True) -> None:
        if seeds:
            p.add_argument("--seeds", type=_positive, default=3, help="seeds 0..N-1 (default 3)")
            p.add_argument("--import-repeats", type=_positive, default=5,
                           help="import-cost samples for the time breakdown, at least one after each bellmax "
                                "run (median; default 5)")
            p.add_argument("--sb3-threads", type=int, default=1,
                           help="torch threads of the SB3 processes (default 1, as bellmax's torch_threads; "
                                "0: torch's default)")
            p.add_argument("--jobs", type=_positive, default=1,
                           help="processes at a time (default 1: one after the other, each on a quiet "
                                "machine); more only with at least that many idle cores, said in the report")
        p.add_argument("--keep-runs", default=None, help="put the run directories here (default: a temporary dir)")
        p.add_argument("--out-dir", default=None, help="write bench_NAME.json, .md and .png here")
        p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")

    def reuse(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reuse-sb3", default=None, metavar="FILE",
                       help="do not re-run SB3: take its runs from an earlier bench_*.json of the same comparison "
                            "(algo, env, steps, seeds; the report says when and where each side was measured)")

    cart = sub.add_parser("ppo-cartpole", help="PPO on CartPole-v1: whole-process time, steps to solve",
                          description="bellmax's PPO CartPole preset (8 envs, deterministic eval every 2048 steps "
                                      "x 10 episodes, stop at 475) vs SB3 PPO with rl-zoo3's CartPole-v1 "
                                      "hyperparameters: (a) plain 100k-step learn() + 10-episode eval, (b) the same "
                                      "stop rule as bellmax's. With --same-hparams: both with rl-zoo3's values for "
                                      "a fixed number of steps, no stop.")
    cart.add_argument("--same-hparams", action="store_true",
                      help="both libraries with rl-zoo3's hyperparameters, fixed steps, no evaluation stop")
    cart.add_argument("--total-steps", type=_positive, default=None,
                      help=f"step budget (default {CARTPOLE_STEPS:,}; smaller only for smoke tests)")
    common(cart)

    for name, (algo, env) in OFF_POLICY_BENCHMARKS.items():
        off = sub.add_parser(name, help=f"{algo.upper()} on {env}: whole-process time, steps to solve",
                             description=f"bellmax's {algo.upper()} {env} preset (with its periodic deterministic "
                                         f"evaluation and stop rule) vs SB3 {algo.upper()} with rl-zoo3's {env} "
                                         "hyperparameters: (a) plain learn() for rl-zoo3's n_timesteps + 10-episode "
                                         "eval, (b) the same stop rule as bellmax's.")
        off.add_argument("--without-stop-rule", action="store_true",
                         help="skip SB3 (b), the runs with bellmax's stop rule (saves time)")
        reuse(off)
        common(off)

    mujoco = sub.add_parser("mujoco", help="MuJoCo: final eval return and training steps/s",
                            description="bellmax `train ALGO --env ENV --total-steps N` with its preset vs SB3 "
                                        "(sb3-contrib for TRPO) with rl-zoo3's hyperparameters for the env "
                                        "(v4 entries used for v5 ids); for SAC and TD3 also gradient updates "
                                        "per second of update time.")
    mujoco.add_argument("--algo", choices=["ppo", "a2c", "trpo", "sac", "td3"], default="ppo")
    mujoco.add_argument("--env", default="HalfCheetah-v5")
    mujoco.add_argument("--steps", type=_positive, default=None,
                        help="training steps per run (default 200000 on-policy, 100000 for sac and td3)")
    mujoco.add_argument("--bellmax-flags", default="",
                        help="extra `bellmax train` flags on top of the preset, one string with =, e.g. "
                             "--bellmax-flags=\"--normalize-reward --value-epochs 20\" (the report lists them)")
    mujoco.add_argument("--tag", default=None,
                        help="appended to the output file names (bench_mujoco_ALGO_ENV_TAG.*), e.g. for a variant")
    reuse(mujoco)
    common(mujoco)

    rollout = sub.add_parser("rollout", help="steps/s of the rollout phase alone (no updates)",
                             description="Environment steps per second of policy inference + env stepping: "
                                         "bellmax's collect_rollout vs SB3's collect_rollouts, plus the env alone.")
    rollout.add_argument("--env", default="HalfCheetah-v5")
    rollout.add_argument("--steps", type=_positive, default=50_000, help="timed steps per measurement")
    rollout.add_argument("--repeats", type=_positive, default=3, help="measurements per mode (median reported)")
    rollout.add_argument("--modes", default=None,
                         help="comma-separated subset of bellmax,sb3-zoo,sb3-matched,env-gymnasium,env-sb3")
    common(rollout, seeds=False)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace | None:
    """Parsed options, or None when --help was printed."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        if exc.code in (0, None):
            return None
        raise
    if opts.benchmark is None:
        raise BellmaxError("choose a benchmark: bellmax bench ppo-cartpole | dqn-cartpole | sac-pendulum | mujoco | "
                           "rollout (--help for more)")
    return opts


# ---------------------------------------------------------------------------------------------
# plans: the processes a benchmark runs, in order


@dataclass
class Job:
    group: str  # results key, e.g. "bellmax" or "sb3_stop"
    seed: int
    command: list[str]
    run_dir: Path | None = None
    library: str = "bellmax"  # bellmax | sb3 | rollout


@dataclass
class Plan:
    name: str
    jobs: list[Job] = field(default_factory=list)
    stop_at_return: float | None = None
    notes: list[str] = field(default_factory=list)
    reused: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # group -> runs not re-run
    reused_from: dict[str, Any] | None = None  # file, command, machine and imports of those runs

    @property
    def file_stem(self) -> str:
        """The name as used in output file names (Atari ids such as ALE/Pong-v5 hold a slash)."""
        return self.name.replace("/", "_")


def load_reused_runs(path: str, group: str, algo: str, env: str, steps: int, seeds: int) -> dict[str, Any]:
    """The `group` runs of an earlier benchmark's JSON output, checked to be the same comparison
    (algo, env, step budget, at least `seeds` seeds in order)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BellmaxError(f"--reuse-sb3 {path}: cannot read it as a benchmark JSON file ({exc})") from None
    runs = data.get("results", {}).get(group) or []
    if len(runs) < seeds:
        raise BellmaxError(f"--reuse-sb3 {path}: it has {len(runs)} {group!r} runs, {seeds} seeds asked for; "
                           "pass --seeds <= that, or re-run SB3")
    for seed, run in enumerate(runs[:seeds]):
        found = (run.get("algo"), run.get("env"), run.get("total_steps"), run.get("seed"))
        if found != (algo, env, steps, seed):
            raise BellmaxError(f"--reuse-sb3 {path}: run {seed} is (algo, env, steps, seed) = {found}, not "
                               f"{(algo, env, steps, seed)}; reuse only the same comparison")
        missing = [key for key in ("eval_return", "whole_seconds") if key not in run]
        if missing:
            raise BellmaxError(f"--reuse-sb3 {path}: run {seed} has no {', '.join(missing)}; reuse a JSON file "
                               "written by `bellmax bench` (it times every run as a whole process)")
    origin = data.get("reused_from")
    if origin:  # that file reused them in turn: keep pointing at where they were measured
        return {**origin, "runs": runs[:seeds]}
    return {"file": path, "command": data.get("command"), "machine": data.get("machine", {}),
            "imports": data.get("imports") or {}, "runs": runs[:seeds]}


def reuse_sb3_runs(opts: argparse.Namespace, plan: Plan, groups: list[str], algo: str, env: str, steps: int) -> None:
    """Take the SB3 `groups` of the plan from the earlier benchmark JSON `--reuse-sb3 FILE` instead
    of re-running them, and say so (where and when they were measured) in the report's notes."""
    for group in groups:
        reused = load_reused_runs(opts.reuse_sb3, group, algo, env, steps, opts.seeds)
        plan.reused[group] = reused.pop("runs")
        plan.reused_from = reused
    machine = plan.reused_from["machine"]
    plan.notes.append(f"**SB3 side not re-run**: its runs ({', '.join(groups)}; {opts.seeds} seeds) are reused from "
                      f"{opts.reuse_sb3}, measured {machine.get('date', '?')} (bellmax commit "
                      f"{machine.get('bellmax_commit', '?')}, {machine.get('cpu_count', '?')} CPU cores "
                      f"{machine.get('cpu', '?')}, SB3 {machine.get('versions', {}).get('stable_baselines3', '?')}) "
                      f"by `{plan.reused_from['command']}`; the bellmax side was measured now (date below)")


def preset_stop_rule(algo: str, env: str) -> tuple[int, float, int]:
    """(eval_every, stop_at_return, eval_episodes) of bellmax's preset for algo on env, which
    SB3 (b) copies."""
    from bellmax.config import find_preset

    found = find_preset(algo, env, None)
    values = found[1]["values"] if found else {}
    if not values.get("eval_every") or values.get("stop_at_return") is None:
        raise BellmaxError(f"bellmax's {algo.upper()} {env} preset has no stop rule (eval_every, stop_at_return), "
                           f"which `bellmax bench` compares against (see src/bellmax/presets/{algo}.json)")
    return int(values["eval_every"]), float(values["stop_at_return"]), int(values.get("eval_episodes", 10))


def cartpole_plan(opts: argparse.Namespace, root: Path) -> Plan:
    from bellmax.bench.harness import bellmax_train_command, sb3_command
    from bellmax.bench.zoo import bellmax_ppo_flags, zoo_entry

    steps = opts.total_steps or CARTPOLE_STEPS
    if opts.same_hparams:
        hyperparams, provenance = zoo_entry("ppo", CARTPOLE)
        hyperparams["n_timesteps"] = steps
        flags, notes = bellmax_ppo_flags(hyperparams)
        flags += ["--eval-every", "0", "--stop-at-return", "None", "--eval-episodes", "10"]
        plan = Plan("ppo_cartpole_same_hparams", notes=[f"hyperparameters: {provenance}", *notes])
        for seed in range(opts.seeds):
            plan.jobs.append(Job("bellmax", seed, bellmax_train_command("ppo", CARTPOLE, seed,
                                                                        root / f"bellmax-s{seed}", flags),
                                 root / f"bellmax-s{seed}"))
            plan.jobs.append(Job("sb3", seed, sb3_command("ppo", CARTPOLE, seed, root / f"sb3-s{seed}", steps,
                                                          threads=opts.sb3_threads), root / f"sb3-s{seed}", "sb3"))
        return plan

    _, provenance = zoo_entry("ppo", CARTPOLE)
    eval_every, stop_at_return, eval_episodes = preset_stop_rule("ppo", CARTPOLE)
    plan = Plan("ppo_cartpole", stop_at_return=stop_at_return,
                notes=[f"SB3 hyperparameters: {provenance}",
                       f"stop rule (bellmax's preset, copied for SB3 (b)): {eval_episodes} deterministic episodes "
                       f"every {eval_every} steps, stop at mean >= {stop_at_return}"])
    flags = ["--total-steps", str(opts.total_steps)] if opts.total_steps else []
    for seed in range(opts.seeds):
        plan.jobs += [
            Job("bellmax", seed, bellmax_train_command("ppo", CARTPOLE, seed, root / f"bellmax-s{seed}", flags),
                root / f"bellmax-s{seed}"),
            Job("sb3_zoo", seed, sb3_command("ppo", CARTPOLE, seed, root / f"sb3-zoo-s{seed}", steps,
                                             threads=opts.sb3_threads), root / f"sb3-zoo-s{seed}", "sb3"),
            Job("sb3_stop", seed, sb3_command("ppo", CARTPOLE, seed, root / f"sb3-stop-s{seed}", steps,
                                              eval_every=eval_every, stop_at_return=stop_at_return,
                                              eval_episodes=eval_episodes, threads=opts.sb3_threads),
                root / f"sb3-stop-s{seed}", "sb3"),
        ]
    return plan


def offpolicy_plan(opts: argparse.Namespace, root: Path) -> Plan:
    """dqn-cartpole / sac-pendulum: per seed, bellmax's preset (its own stop rule), SB3 (a) with
    rl-zoo3's full budget and no periodic evaluation, SB3 (b) with bellmax's stop rule."""
    from bellmax.bench.harness import bellmax_train_command, sb3_command
    from bellmax.bench.zoo import zoo_entry
    from bellmax.config import find_preset

    algo, env = OFF_POLICY_BENCHMARKS[opts.benchmark]
    hyperparams, provenance = zoo_entry(algo, env)
    steps = int(hyperparams["n_timesteps"])
    eval_every, stop_at_return, eval_episodes = preset_stop_rule(algo, env)
    preset = find_preset(algo, env, None)
    plan = Plan(opts.benchmark.replace("-", "_"), stop_at_return=stop_at_return,
                notes=[f"bellmax preset: {preset[0]} ({preset[1]['source']})" if preset else "bellmax: no preset",
                       f"SB3 hyperparameters: {provenance}; SB3 (a) budget {steps:,} steps (rl-zoo3's n_timesteps)",
                       "stop rule (bellmax's preset" + (", copied for SB3 (b)" if not opts.without_stop_rule
                                                         else "; SB3 (b) skipped")
                       + f"): {eval_episodes} deterministic episodes every {eval_every} steps, "
                         f"stop at mean >= {stop_at_return}"])
    if opts.reuse_sb3:
        reuse_sb3_runs(opts, plan, ["sb3_zoo"] + ([] if opts.without_stop_rule else ["sb3_stop"]), algo, env, steps)
    for seed in range(opts.seeds):
        plan.jobs.append(Job("bellmax", seed, bellmax_train_command(algo, env, seed, root / f"bellmax-s{seed}"),
                             root / f"bellmax-s{seed}"))
        if opts.reuse_sb3:
            continue
        plan.jobs.append(Job("sb3_zoo", seed, sb3_command(algo, env, seed, root / f"sb3-zoo-s{seed}", steps,
                                                          threads=opts.sb3_threads), root / f"sb3-zoo-s{seed}", "sb3"))
        if not opts.without_stop_rule:
            plan.jobs.append(Job("sb3_stop", seed, sb3_command(algo, env, seed, root / f"sb3-stop-s{seed}", steps,
                                                               eval_every=eval_every, stop_at_return=stop_at_return,
                                                               eval_episodes=eval_episodes, threads=opts.sb3_threads),
                                 root / f"sb3-stop-s{seed}", "sb3"))
    return plan


def mujoco_plan(opts: argparse.Namespace, root: Path) -> Plan:
    from bellmax.bench.harness import bellmax_train_command, sb3_command
    from bellmax.bench.zoo import zoo_entry
    from bellmax.config import find_preset

    _, provenance = zoo_entry(opts.algo, opts.env)  # a clear error for an env without an entry
    preset = find_preset(opts.algo, opts.env, None)
    if preset is None:
        raise BellmaxError(f"bellmax has no {opts.algo} preset for {opts.env}; the benchmark compares presets "
                           f"(see src/bellmax/presets/{opts.algo}.json)")
    if opts.steps is None:
        opts.steps = OFF_POLICY_MUJOCO_STEPS if opts.algo in ("sac", "td3") else ON_POLICY_MUJOCO_STEPS
    extra = shlex.split(opts.bellmax_flags)
    plan = Plan(f"mujoco_{opts.algo}_{opts.env}" + (f"_{opts.tag}" if opts.tag else ""),
                notes=[f"bellmax preset: {preset[0]} ({preset[1]['source']})", f"SB3 hyperparameters: {provenance}"])
    if extra:
        plan.notes.append(f"**bellmax flags on top of the preset**: `{shlex.join(extra)}`")
    if opts.reuse_sb3:
        reuse_sb3_runs(opts, plan, ["sb3"], opts.algo, opts.env, opts.steps)
    flags = ["--total-steps", str(opts.steps), "--eval-episodes", "10", *extra]
    for seed in range(opts.seeds):
        plan.jobs.append(Job("bellmax", seed, bellmax_train_command(opts.algo, opts.env, seed,
                                                                    root / f"bellmax-s{seed}", flags),
                             root / f"bellmax-s{seed}"))
        if not opts.reuse_sb3:
            plan.jobs.append(Job("sb3", seed, sb3_command(opts.algo, opts.env, seed, root / f"sb3-s{seed}", opts.steps,
                                                          threads=opts.sb3_threads), root / f"sb3-s{seed}", "sb3"))
    return plan


def rollout_plan(opts: argparse.Namespace, root: Path) -> Plan:
    from bellmax.bench.harness import rollout_command
    from bellmax.bench.rollout_runner import MODES

    default = [m for m in MODES if not (opts.env.startswith("ALE/") and m == "sb3-matched")]  # same shape on Atari
    modes = default if opts.modes is None else [m.strip() for m in opts.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise BellmaxError(f"--modes {opts.modes!r}: unknown mode(s) {', '.join(unknown) or '(none given)'}; "
                           f"known: {', '.join(MODES)}")
    plan = Plan(f"rollout_{opts.env}")
    for repeat in range(opts.repeats):
        for mode in modes:  # interleaved, so drifting load hits every mode alike
            plan.jobs.append(Job(mode, repeat, rollout_command(mode, opts.env, opts.steps), None, "rollout"))
    return plan


# ---------------------------------------------------------------------------------------------
# running a plan


def _check_installed(opts: argparse.Namespace) -> None:
    needed = ["stable_baselines3"]
    if getattr(opts, "algo", None) == "trpo":
        needed.append("sb3_contrib")
    if opts.benchmark in ("mujoco", "rollout") and "-v" in opts.env and opts.env.split("-")[0] in (
            "HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "Reacher", "InvertedPendulum",
            "InvertedDoublePendulum", "Pusher", "HumanoidStandup"):
        needed.append("mujoco")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BellmaxError(f"bellmax bench needs {', '.join(missing)}: "
                           "pip install -c constraints.txt -e '.[bench,mujoco]'")


def _runs_root(opts: argparse.Namespace, benchmark: str) -> Path:
    if opts.keep_runs:
        return Path(opts.keep_runs)
    return Path(tempfile.mkdtemp(prefix=f"bellmax-bench-{benchmark}-"))


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
            summary = summarize_bellmax_run(job.run_dir, finished.seconds, plan.stop_at_return)
        elif job.library == "sb3":
            summary = summarize_sb3_run(finished)
        else:
            summary = {**last_json_line(finished.stdout), "whole_seconds": finished.seconds}
        summary["command"] = finished.command
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


def _header(invocation: str, machine: dict[str, Any], notes: list[str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [f"Command: `{invocation}`", "",
             f"Machine: {machine['cpu_count']} CPU cores ({machine['cpu']}), {machine['platform']}, "
             f"Python {machine['python']}; {versions}; bellmax commit {machine.get('bellmax_commit') or '?'}; "
             f"measured {machine['date']}."]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def _write_outputs(opts: argparse.Namespace, plan: Plan, invocation: str, text: str, data: dict[str, Any]) -> None:
    print(text)
    if opts.out_dir:
        out = Path(opts.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"bench_{plan.file_stem}.md").write_text(text + "\n")
        (out / f"bench_{plan.file_stem}.json").write_text(json.dumps({"command": invocation, **data}, indent=1) + "\n")
        print(f"wrote {out / f'bench_{plan.file_stem}.md'} and .json", file=sys.stderr)


def _figure_path(opts: argparse.Namespace, plan: Plan, root: Path) -> Path:
    return (Path(opts.out_dir) if opts.out_dir else root) / f"bench_{plan.file_stem}.png"


def _plot(draw: Any, *args: Any, **kwargs: Any) -> Path | None:
    """Draw a figure; a run without the metric (e.g. no episode finished in a short run) skips the
    figure with a note instead of losing the tables."""
    try:
        return draw(*args, **kwargs)
    except BellmaxError as exc:
        print(f"no figure: {exc}", file=sys.stderr)
        return None


def report_cartpole(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                    header: str) -> tuple[str, Path | None]:
    from bellmax.bench import report
    from bellmax.plotting import plot_runs

    seeds = list(range(opts.seeds))
    figure = _figure_path(opts, plan, root)
    dirs = {group: [job.run_dir for job in plan.jobs if job.group == group] for group in results}
    if opts.same_hparams:
        text = "\n\n".join([
            header,
            report.same_hparams_table(seeds, results["bellmax"], results["sb3"]),
            report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
            report.breakdown_table("SB3 time by phase (seconds):", seeds, results["sb3"], imports),
        ])
        figure = _plot(plot_runs, dirs["bellmax"] + dirs["sb3"], figure, key="rollout/ep_return",
                       labels=["bellmax PPO"] * len(seeds) + ["SB3 PPO"] * len(seeds),
                       title="PPO CartPole-v1, identical rl-zoo3 hyperparameters (training return)")
    else:
        text = "\n\n".join([
            header,
            report.cartpole_time_table(seeds, results["bellmax"], results["sb3_zoo"], results["sb3_stop"]),
            report.cartpole_sample_table(seeds, results["bellmax"], results["sb3_stop"]),
            report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
            report.breakdown_table("SB3 (a) time by phase (seconds):", seeds, results["sb3_zoo"], imports),
        ])
        figure = _plot(report.plot_seed_curves, [
            ("deterministic eval return (10 episodes every 2048 steps, stop at 475)", "eval/return",
             [("bellmax PPO preset", dirs["bellmax"]), ("SB3 PPO rl-zoo3, same stop rule (b)", dirs["sb3_stop"])]),
            ("training return (last 100 episodes)", "rollout/ep_return",
             [("bellmax PPO preset", dirs["bellmax"]), ("SB3 PPO rl-zoo3, 100k steps (a)", dirs["sb3_zoo"])]),
        ], figure, suptitle="PPO on CartPole-v1: bellmax vs Stable-Baselines3")
    return text, figure


def report_offpolicy(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                     header: str) -> tuple[str, Path | None]:
    from bellmax.bench import report

    algo, env = OFF_POLICY_BENCHMARKS[opts.benchmark]
    seeds = list(range(opts.seeds))
    stop = results.get("sb3_stop")
    budget = report.fmt_steps(results["sb3_zoo"][0].get("total_steps")) if results["sb3_zoo"] else "?"
    threshold = report.fmt(plan.stop_at_return, 0)
    parts = [
        header,
        report.cartpole_time_table(seeds, results["bellmax"], results["sb3_zoo"], stop, zoo_label=f"rl-zoo3 {budget}"),
    ]
    if stop:
        parts.append(report.cartpole_sample_table(seeds, results["bellmax"], stop, threshold=threshold))
    sb3_imports, reused_note = imports, ""
    if plan.reused_from is not None:
        sb3_imports = {**(imports or {}), **plan.reused_from["imports"]}
        reused_note = f"; runs and import probe reused from {plan.reused_from['machine'].get('date', '?')}"
    parts += [
        report.updates_table(seeds, results["bellmax"], results["sb3_zoo"], stop),
        report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
        report.breakdown_table(f"SB3 (a) time by phase (seconds{reused_note}):", seeds, results["sb3_zoo"],
                               sb3_imports),
    ]
    if stop:
        parts.append(report.breakdown_table(f"SB3 (b) time by phase (seconds{reused_note}):", seeds, stop,
                                            sb3_imports))
    dirs = {group: group_dirs(plan, group) for group in results}
    eval_every, _, eval_episodes = preset_stop_rule(algo, env)
    eval_groups = [(f"bellmax {algo.upper()} preset", dirs["bellmax"])]
    if stop:
        eval_groups.append((f"SB3 {algo.upper()} rl-zoo3, same stop rule (b)", dirs["sb3_stop"]))
    figure = _plot(report.plot_seed_curves, [
        (f"deterministic eval return ({eval_episodes} episodes every {eval_every} steps, stop at {threshold})",
         "eval/return", eval_groups),
        ("training return (last 100 episodes)", "rollout/ep_return",
         [(f"bellmax {algo.upper()} preset", dirs["bellmax"]),
          (f"SB3 {algo.upper()} rl-zoo3, {budget} steps (a)", dirs["sb3_zoo"])]),
    ], _figure_path(opts, plan, root), suptitle=f"{algo.upper()} on {env}: bellmax vs Stable-Baselines3")
    return "\n\n".join(parts), figure


def _run_dir_of(run: dict[str, Any]) -> Path | None:
    """The --run-dir of a finished run's command, if it had one."""
    command = run.get("command") or []
    return Path(command[command.index("--run-dir") + 1]) if "--run-dir" in command[:-1] else None


def group_dirs(plan: Plan, group: str) -> list[Path]:
    """Run directories of a group: those of its jobs, or of its reused runs while still on disk."""
    dirs = [job.run_dir for job in plan.jobs if job.group == group and job.run_dir is not None]
    reused = [_run_dir_of(run) for run in plan.reused.get(group, [])]
    return dirs + [d for d in reused if d is not None and (d / "metrics.jsonl").exists()]


def report_mujoco(opts: argparse.Namespace, plan: Plan, root: Path, results: dict, imports: dict | None,
                  header: str) -> tuple[str, Path | None]:
    from bellmax.bench import report
    from bellmax.plotting import plot_runs

    seeds = list(range(opts.seeds))
    sb3_imports, sb3_label = imports, "SB3 time by phase (seconds):"
    if plan.reused_from is not None:
        sb3_imports = {**(imports or {}), **plan.reused_from["imports"]}
        sb3_label = (f"SB3 time by phase (seconds; runs and import probe reused from "
                     f"{plan.reused_from['machine'].get('date', '?')}):")
    text = "\n\n".join([
        header,
        report.mujoco_table(seeds, results["bellmax"], results["sb3"]),
        *([report.updates_table(seeds, results["bellmax"], results["sb3"], None, zoo_label="SB3")]
          if opts.algo in ("sac", "td3") else []),
        report.breakdown_table("bellmax time by phase (seconds):", seeds, results["bellmax"], imports),
        report.breakdown_table(sb3_label, seeds, results["sb3"], sb3_imports),
    ])
    dirs = group_dirs(plan, "bellmax") + group_dirs(plan, "sb3")
    labels = [f"bellmax {opts.algo} (preset)"] * len(seeds) + [f"SB3 {opts.algo} (rl-zoo3)"] * (len(dirs) - len(seeds))
    figure = _plot(plot_runs, dirs, _figure_path(opts, plan, root), key="rollout/ep_return", labels=labels,
                   title=f"{opts.algo.upper()} on {opts.env}: training return, {opts.steps:,} steps")
    return text, figure


def main(argv: list[str]) -> int:
    """Entry point of `bellmax bench ARGS...` (dispatched from bellmax.cli)."""
    opts = parse_args(list(argv))
    if opts is None:
        return 0
    invocation = "bellmax bench " + shlex.join(argv)
    if opts.dry_run:
        root = Path(opts.keep_runs or "RUNS")
    else:
        _check_installed(opts)
        root = _runs_root(opts, opts.benchmark)
    plans = {"ppo-cartpole": cartpole_plan, "mujoco": mujoco_plan, "rollout": rollout_plan,
             **{name: offpolicy_plan for name in OFF_POLICY_BENCHMARKS}}
    plan = plans[opts.benchmark](opts, root)
    if opts.dry_run:
        from bellmax.bench.harness import display

        for job in plan.jobs:
            print(display(job.command))
        return 0
    jobs = getattr(opts, "jobs", 1)  # the rollout benchmark has no --jobs
    pace = "one at a time" if jobs == 1 else f"{jobs} at a time"
    print(f"{invocation}: {len(plan.jobs)} processes, {pace}; runs and logs in {root}", file=sys.stderr)

    from bellmax.bench import report
    from bellmax.bench.harness import machine_info, median_imports, source_commit, time_imports

    commit_at_start = source_commit()
    start = time.perf_counter()
    algo = getattr(opts, "algo", None) or OFF_POLICY_BENCHMARKS.get(opts.benchmark, ("ppo",))[0]
    samples: list[dict[str, float]] | None = None if opts.benchmark == "rollout" else []
    if jobs > 1:
        plan.notes.append(f"**{jobs} processes at a time** (`--jobs {jobs}`) on {os.cpu_count()} CPU cores: "
                          "runs shared the machine with each other, each library alike")
    results = execute(plan, root, samples, algo, jobs=jobs)
    for group, runs in plan.reused.items():
        results[group] = runs
    imports = None
    if samples is not None:
        samples += [time_imports(algo) for _ in range(max(opts.import_repeats - len(samples), 0))]
        imports = median_imports(samples)
    machine = machine_info()
    if machine["bellmax_commit"] != commit_at_start:  # someone committed while the benchmark ran
        machine["bellmax_commit"] = f"{commit_at_start} at start, {machine['bellmax_commit']} at end"
    header = _header(invocation, machine, plan.notes)
    figure = None
    if opts.benchmark == "ppo-cartpole":
        text, figure = report_cartpole(opts, plan, root, results, imports, header)
    elif opts.benchmark in OFF_POLICY_BENCHMARKS:
        text, figure = report_offpolicy(opts, plan, root, results, imports, header)
    elif opts.benchmark == "mujoco":
        text, figure = report_mujoco(opts, plan, root, results, imports, header)
    else:
        text = "\n\n".join([header, report.rollout_table(results)])
    text += f"\n\n(benchmark wall-clock {time.perf_counter() - start:.0f} s; runs in {root})"
    if figure is not None:
        print(f"wrote {figure}", file=sys.stderr)
    _write_outputs(opts, plan, invocation, text,
                   {"machine": machine, "notes": plan.notes, "imports": imports, "import_samples": samples,
                    "results": results, **({"reused_from": plan.reused_from} if plan.reused_from else {})})
    return 0
