"""What each benchmark runs: its plan, the processes in the order they run, with the notes its
report starts with.

A plan alternates the libraries seed by seed (bellmax, then SB3's runs of the same seed) so that
drifting machine load hits both alike. The SB3 side may instead be taken from an earlier
benchmark's JSON output (`--reuse-sb3 FILE`), checked to be the same comparison. Building a plan
runs nothing: `--dry-run` prints its commands.
"""

from __future__ import annotations

import argparse
import json
import shlex
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


@dataclass
class Job:
    """One process of a plan: which results group and seed it fills, and how to read it back."""

    group: str  # results key, e.g. "bellmax" or "sb3_stop"
    seed: int
    command: list[str]
    run_dir: Path | None = None
    library: str = "bellmax"  # bellmax | sb3 | rollout


@dataclass
class Plan:
    """A benchmark's processes in the order they run, and what its report says about them."""

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


def make_plan(opts: argparse.Namespace, root: Path) -> Plan:
    """The plan of the benchmark `opts` asks for, its run directories under `root`."""
    plans = {"ppo-cartpole": cartpole_plan, "mujoco": mujoco_plan, "rollout": rollout_plan,
             **{name: offpolicy_plan for name in OFF_POLICY_BENCHMARKS}}
    return plans[opts.benchmark](opts, root)


def bench_seeds(opts: argparse.Namespace) -> list[int]:
    """The seeds a benchmark runs: --seeds of them from --first-seed on."""
    first = getattr(opts, "first_seed", 0)
    return list(range(first, first + opts.seeds))


def seed_list(opts: argparse.Namespace) -> str:
    """The seeds as the reports name them: "0-4", or "3"."""
    seeds = bench_seeds(opts)
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"


def benchmark_algo(opts: argparse.Namespace) -> str:
    """The algorithm a benchmark trains (whose imports the time breakdown probes)."""
    return getattr(opts, "algo", None) or OFF_POLICY_BENCHMARKS.get(opts.benchmark, ("ppo",))[0]


# ---------------------------------------------------------------------------------------------
# reusing an earlier benchmark's SB3 runs


def load_reused_runs(path: str, group: str, algo: str, env: str, steps: int, seeds: list[int]) -> dict[str, Any]:
    """The `group` runs of `seeds` from an earlier benchmark's JSON output, checked to be the same
    comparison (algo, env, step budget)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BellmaxError(f"--reuse-sb3 {path}: cannot read it as a benchmark JSON file ({exc})") from None
    runs = data.get("results", {}).get(group) or []
    by_seed = {run.get("seed"): run for run in runs}
    missing = [seed for seed in seeds if seed not in by_seed]
    if missing:
        raise BellmaxError(f"--reuse-sb3 {path}: it has {len(runs)} {group!r} runs, without seed(s) "
                           f"{', '.join(map(str, missing))} of the {len(seeds)} seeds asked for; pass seeds it has "
                           "(--seeds, --first-seed), or re-run SB3")
    chosen = [by_seed[seed] for seed in seeds]
    for seed, run in zip(seeds, chosen):
        found = (run.get("algo"), run.get("env"), run.get("total_steps"), run.get("seed"))
        if found != (algo, env, steps, seed):
            raise BellmaxError(f"--reuse-sb3 {path}: run {seed} is (algo, env, steps, seed) = {found}, not "
                               f"{(algo, env, steps, seed)}; reuse only the same comparison")
        absent = [key for key in ("eval_return", "whole_seconds") if key not in run]
        if absent:
            raise BellmaxError(f"--reuse-sb3 {path}: run {seed} has no {', '.join(absent)}; reuse a JSON file "
                               "written by `bellmax bench` (it times every run as a whole process)")
    origin = data.get("reused_from")
    if origin:  # that file reused them in turn: keep pointing at where they were measured
        return {**origin, "runs": chosen}
    return {"file": path, "command": data.get("command"), "machine": data.get("machine", {}),
            "imports": data.get("imports") or {}, "runs": chosen}


def reuse_sb3_runs(opts: argparse.Namespace, plan: Plan, groups: list[str], algo: str, env: str, steps: int) -> None:
    """Take the SB3 `groups` of the plan from the earlier benchmark JSON `--reuse-sb3 FILE` instead
    of re-running them, and say so (where and when they were measured) in the report's notes."""
    for group in groups:
        reused = load_reused_runs(opts.reuse_sb3, group, algo, env, steps, bench_seeds(opts))
        plan.reused[group] = reused.pop("runs")
    plan.reused_from = reused  # file, command, machine and imports: one file, the same for every group
    machine = reused["machine"]
    plan.notes.append(f"**SB3 side not re-run**: its runs ({', '.join(groups)}; seeds {seed_list(opts)}) are reused "
                      f"from {opts.reuse_sb3}, measured {machine.get('date', '?')} (bellmax commit "
                      f"{machine.get('bellmax_commit', '?')}, {machine.get('cpu_count', '?')} CPU cores "
                      f"{machine.get('cpu', '?')}, SB3 {machine.get('versions', {}).get('stable_baselines3', '?')}) "
                      f"by `{reused['command']}`; the bellmax side was measured now (date below)")


def _run_dir_of(run: dict[str, Any]) -> Path | None:
    """The --run-dir of a finished run's command, if it had one."""
    command = run.get("command") or []
    return Path(command[command.index("--run-dir") + 1]) if "--run-dir" in command[:-1] else None


def group_dirs(plan: Plan, group: str) -> list[Path]:
    """Run directories of a group: those of its jobs, or of its reused runs while still on disk."""
    dirs = [job.run_dir for job in plan.jobs if job.group == group and job.run_dir is not None]
    reused = [_run_dir_of(run) for run in plan.reused.get(group, [])]
    return dirs + [d for d in reused if d is not None and (d / "metrics.jsonl").exists()]


# ---------------------------------------------------------------------------------------------
# the plans


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
    """ppo-cartpole: per seed, bellmax's preset (its own stop rule), SB3 (a) with rl-zoo3's values
    for the full budget, SB3 (b) with bellmax's stop rule; with --same-hparams, bellmax and SB3
    both with rl-zoo3's values for a fixed number of steps."""
    from bellmax.bench.harness import bellmax_train_command, sb3_command
    from bellmax.bench.zoo import bellmax_ppo_flags, zoo_entry

    steps = opts.total_steps or CARTPOLE_STEPS
    if opts.same_hparams:
        hyperparams, provenance = zoo_entry("ppo", CARTPOLE)
        hyperparams["n_timesteps"] = steps
        flags, notes = bellmax_ppo_flags(hyperparams)
        flags += ["--eval-every", "0", "--stop-at-return", "None", "--eval-episodes", "10"]
        plan = Plan("ppo_cartpole_same_hparams", notes=[f"hyperparameters: {provenance}", *notes])
        for seed in bench_seeds(opts):
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
    for seed in bench_seeds(opts):
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
    for seed in bench_seeds(opts):
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
    """mujoco: per seed, bellmax's preset (plus --bellmax-flags) and SB3 with rl-zoo3's values, both
    for --steps (default: the on- or off-policy budget, set on `opts`)."""
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
    for seed in bench_seeds(opts):
        plan.jobs.append(Job("bellmax", seed, bellmax_train_command(opts.algo, opts.env, seed,
                                                                    root / f"bellmax-s{seed}", flags),
                             root / f"bellmax-s{seed}"))
        if not opts.reuse_sb3:
            plan.jobs.append(Job("sb3", seed, sb3_command(opts.algo, opts.env, seed, root / f"sb3-s{seed}", opts.steps,
                                                          threads=opts.sb3_threads), root / f"sb3-s{seed}", "sb3"))
    return plan


def rollout_plan(opts: argparse.Namespace, root: Path) -> Plan:
    """rollout: every mode (or those of --modes) once per repeat, interleaved."""
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
