"""`bellmax` command line: solve | train | eval | plot | envs | bench | arena | sweep | rlhf.

Each command imports only what it needs (`bellmax solve` never loads torch). User mistakes raise
`BellmaxError`; `main` prints them as one line on stderr and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bellmax.errors import BellmaxError, TrainingInterrupted

STARTED = time.perf_counter()  # for the "took N s" line: counts imports, training and evaluation

USAGE = """usage: bellmax COMMAND [ARGS...]

commands:
  solve   exact dynamic programming: bellmax solve gridworld [--method value-iteration] [--json]
  train   train an agent:            bellmax train vpg --env CartPole-v1 [--seed S] [--total-steps N]
  eval    evaluate a run:            bellmax eval RUN_DIR [--episodes K] [--json]
  plot    learning curves:           bellmax plot RUN_DIR... [-o FILE]
  envs    list environment ids:      bellmax envs [FILTER]
  bench   side-by-side benchmarks:   bellmax bench --help
  arena   a Bomber tournament:       bellmax arena RUN_DIR rule filtered --games 100 [--json]
  sweep   many runs on Ray Tune:     bellmax sweep ppo --env ID --seeds 0 1 --grid learning_rate=3e-4,1e-3 --run-dir DIR
  rlhf    RLHF on a small GPT:       bellmax rlhf run --preset tiny --run-dir DIR  (bellmax rlhf --help)

`bellmax COMMAND --help` shows the options of a command."""


def main(argv: list[str] | None = None) -> int:
    """Run the command in `argv` and return its exit status. Called without `argv` (the `bellmax`
    console script, `python -m bellmax.cli`), it then ends the process itself: see `exit_now`."""
    if argv is not None:
        return run_command(list(argv))
    code = run_command(sys.argv[1:])
    exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process with `code`, skipping Python's interpreter teardown once torch is loaded:
    freeing every module and torch's operator registrations costs 0.3-0.6 s of CPU on the 2-core dev
    box after the work is done, as much as PPO trains on CartPole. Every file bellmax writes is closed
    by then; atexit handlers (Ray's shutdown, logging's flush) still run, and stdout and stderr are
    flushed. While a non-daemon thread runs (none of bellmax's), the ordinary exit waits for it."""
    import atexit
    import os
    import threading

    if "torch" not in sys.modules or any(t.is_alive() and not t.daemon and t is not threading.main_thread()
                                         for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (`| head`), a closed stream: nothing to flush to
            pass
    os._exit(code)


def run_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from bellmax import __version__

        print(f"bellmax {__version__}")
        return 0
    command, args = argv[0], argv[1:]
    commands = {"solve": solve, "train": train, "eval": evaluate, "plot": plot, "envs": envs, "bench": bench,
                "arena": arena, "sweep": sweep, "rlhf": rlhf}
    if command not in commands:
        import difflib

        close = difflib.get_close_matches(command, commands, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown command {command!r}{hint}; commands: {', '.join(commands)}", file=sys.stderr)
        return 2
    try:
        return commands[command](args) or 0
    except BellmaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `bellmax envs | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path given that cannot be used (too long, not a directory, no permission)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stopped:  # the first Ctrl-C or SIGTERM during `train`
        print(f"stopped by {stopped}", file=sys.stderr)
        return 128 + getattr(signal, stopped.signal_name)
    except KeyboardInterrupt:  # a second Ctrl-C during `train`, or one during any other command
        hint = {"train": "the last checkpoint (written every --checkpoint-every steps) is intact; "
                         "continue with `bellmax train ALGO --resume RUN_DIR`",
                "rlhf": "the last checkpoint (written every --checkpoint-every steps) is intact; continue with "
                        "`bellmax rlhf STAGE --resume RUN_DIR` (or `bellmax rlhf run --resume RUN_DIR`)",
                }.get(command, "stopped")
        print(f"interrupted: {hint}", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------
def sweep(args: list[str]) -> int:
    from bellmax.commands.sweep import main as sweep_main

    return sweep_main(args)


def solve(args: list[str]) -> int:
    from bellmax.commands.solve import main as solve_main

    return solve_main(args)


# ---------------------------------------------------------------------------------------------
def _default_run_dir(algo: str, env: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{env.replace('/', '_')}-s{seed}-{stamp}"


def holds_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run already; a path no run could be written to is a clear error."""
    from bellmax.core.run import unwritable_run_dir

    try:
        return (run_dir / "config.json").exists()
    except OSError as exc:  # a name too long, a loop of links
        raise unwritable_run_dir(run_dir, exc) from None


def train(args: list[str]) -> int:
    """bellmax train ALGO [--env ID] [--preset NAME] [--run-dir DIR] [--resume DIR] [config flags]."""
    pre = argparse.ArgumentParser(prog="bellmax train", add_help=False)
    pre.add_argument("algo", nargs="?")
    pre.add_argument("--env")
    pre.add_argument("--preset")
    pre.add_argument("--run-dir")
    pre.add_argument("--resume")
    pre.add_argument("--no-progress", action="store_true")
    pre.add_argument("--no-tensorboard", action="store_true")
    pre.add_argument("-h", "--help", action="store_true")
    meta, rest = pre.parse_known_args(args)
    if meta.algo is None or meta.algo.startswith("-"):
        from bellmax.algos import ALGORITHMS

        print("usage: bellmax train ALGO --env ID [--preset NAME] [--run-dir DIR] [--resume DIR] [--no-progress]"
              " [--no-tensorboard]"
              f" [config flags]\nalgorithms: {', '.join(ALGORITHMS)}\n`bellmax train ALGO --help` lists the flags.")
        return 0 if meta.help else 2

    from bellmax.algos import algorithm_key
    from bellmax.commands.fast_help import train_description, train_help

    algo = algorithm_key(meta.algo)
    if meta.help:  # from the config's source: no torch, well under a second
        return train_help(algo, meta.env, meta.preset, meta.resume)

    import tyro

    from bellmax.algos import get_algorithm
    from bellmax.config import config_with_preset, find_preset
    from bellmax.core.run import Run, check_run_dir_free, has_checkpoint, load_run_checkpoint, read_run_config

    algo_class = get_algorithm(algo)
    prog = f"bellmax train {algo}"
    if any(a == "--num-workers" or a.startswith("--num-workers=") for a in rest) \
            and "num_workers" not in algo_class.config_class.__dataclass_fields__:
        raise BellmaxError(f"--num-workers steps the environments of on-policy runs (vpg, a2c, trpo, ppo); "
                           f"{algo_class.name} learns from a replay buffer in one process: leave it out")

    if meta.resume:
        run_dir = Path(meta.resume)
        saved = read_run_config(run_dir)
        if saved.get("algo") != algo_class.name:
            other = saved.get("algo")
            raise BellmaxError(f"{run_dir} is a {other} run; resume it with `bellmax train {other} --resume {run_dir}`")
        check_run_dir_free(run_dir)  # before a load that can take a minute (a DQN Atari replay)
        if not has_checkpoint(run_dir) and isinstance(saved.get("config"), dict):
            return restart(algo_class, run_dir, saved, rest, meta)
        state = load_run_checkpoint(run_dir, notify=lambda line: print(line, file=sys.stderr))
        saved_config = algo_class.config_class.from_dict(state["config"])
        description = train_description(algo, saved_config.env, None, resume=str(run_dir))
        config = tyro.cli(algo_class.config_class, default=saved_config, args=rest, prog=prog, description=description)
        if meta.env:
            config = config.replace(env=meta.env)
        changes = {k: v for k, v in config.to_dict().items() if v != saved_config.to_dict()[k]}
        agent = algo_class.from_state(state, **changes)  # refuses changes a resume cannot make
        ended = end_of_ended_run(agent, run_dir, "stop_at_return" in changes, tensorboard=not meta.no_tensorboard)
        if ended is not None:
            return ended
        agent.set_budget()  # refuses a budget already spent
        agent.check_resources(run_dir)
        config = agent.config
        run = Run(run_dir, algo_class.name, config.to_dict(), resume_step=agent.global_step,
                  progress=not meta.no_progress, tensorboard=not meta.no_tensorboard)
        device_note = f" (networks on {agent.device})" if agent.device.type != "cpu" else ""
        print(f"resuming {run_dir} at step {agent.global_step:,} -> {config.total_steps:,}{device_note}",
              file=sys.stderr)
    else:
        from bellmax.envs.make import check_env_id

        if meta.env:
            check_env_id(meta.env)
        found = find_preset(algo_class.name, meta.env or algo_class.config_class().env, meta.preset)
        defaults = config_with_preset(algo_class.config_class, meta.env, meta.preset)
        description = train_description(algo, defaults.env, found)
        config = tyro.cli(algo_class.config_class, default=defaults, args=rest, prog=prog, description=description)
        config.validate()  # before anything is created on disk
        check_env_id(config.env)
        run_dir = Path(meta.run_dir) if meta.run_dir else _default_run_dir(algo_class.name, config.env, config.seed)
        if holds_run(run_dir):
            raise BellmaxError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                               "or pick another --run-dir")
        agent = algo_class(config)  # builds envs and networks: errors here leave no directory behind
        agent.check_resources(run_dir)
        run = Run(run_dir, algo_class.name, config.to_dict(), preset=found[0] if found else None,
                  progress=not meta.no_progress, tensorboard=not meta.no_tensorboard)
        preset_note = f", preset {found[0]}" if found else ""
        n_steps = getattr(config, "n_steps", None)
        batch_note = (f", batch = n_steps x num_envs = {n_steps} x {config.num_envs} = {n_steps * config.num_envs:,}"
                      if n_steps else "")
        device_note = f", networks on {agent.device}" if agent.device.type != "cpu" else ""
        print(f"training {algo_class.name} on {config.env} (seed {config.seed}{preset_note}{batch_note}{device_note}) "
              f"for {config.total_steps:,} steps -> {run_dir}", file=sys.stderr)

    return finish_training(agent, run, config, run_dir)


def finish_training(agent: Any, run: Any, config: Any, run_dir: Path) -> int:
    """Train to the budget and print the final line."""
    agent.learn(config.total_steps, run=run)
    return report_end(agent, config, run_dir)


def report_end(agent: Any, config: Any, run_dir: Path) -> int:
    seconds = time.perf_counter() - STARTED
    if agent.last_eval is not None:
        returns = agent.last_eval
        solved = (" (reached --stop-at-return)" if config.stop_at_return is not None
                  and returns.mean() >= config.stop_at_return else "")
        print(f"eval/return {returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes "
              f"({config.eval_policy_name()} policy) after {agent.global_step:,} steps{solved}, {seconds:.1f} s; "
              f"run dir: {run_dir}")
    else:
        print(f"done after {agent.global_step:,} steps, {seconds:.1f} s; run dir: {run_dir}")
    return 0


def end_of_ended_run(agent: Any, run_dir: Path, new_stop_rule: bool, tensorboard: bool) -> int | None:
    """For a `--resume` of a run that had ended, do what is left instead of training and return the
    exit status; None to train on. A run killed during its final evaluation gets it; a run that
    reached its --stop-at-return is left as it is unless the rule changed."""
    from bellmax.core.run import Run, read_metrics

    config = agent.config
    at_checkpoint = [row for row in read_metrics(run_dir) if row.get("step") == agent.global_step]
    evaluations = [row["eval/return"] for row in at_checkpoint if row.get("eval/return") is not None]
    if agent.global_step >= config.total_steps and config.eval_episodes and not evaluations:
        print(f"{run_dir} was trained to its budget ({agent.global_step:,} steps) but stopped before its final "
              "evaluation: evaluating it now", file=sys.stderr)
        with Run(run_dir, agent.name, config.to_dict(), resume_step=agent.global_step, progress=False,
                 tensorboard=tensorboard) as run:
            agent.finish(run, evaluate=True)
        return report_end(agent, config, run_dir)
    if (config.stop_at_return is not None and not new_stop_rule and evaluations
            and evaluations[-1] >= config.stop_at_return):
        print(f"{run_dir} is finished: it reached --stop-at-return {config.stop_at_return:g} at step "
              f"{agent.global_step:,} (eval/return {evaluations[-1]:.2f}); to train it further, resume with a "
              "higher --stop-at-return or --stop-at-return None", file=sys.stderr)
        return 0
    return None


def restart(algo_class: Any, run_dir: Path, saved: dict[str, Any], rest: list[str], meta: argparse.Namespace) -> int:
    """`--resume` of a run stopped before its first checkpoint: nothing to continue, so train it
    afresh with the config it was started with (and any flags given now), its partial record cleared."""
    import shutil

    import tyro

    from bellmax.core.run import Run

    saved_config = algo_class.config_class.from_dict(saved["config"])
    config = tyro.cli(algo_class.config_class, default=saved_config, args=rest, prog=f"bellmax train {algo_class.name}")
    config.validate()
    agent = algo_class(config)
    agent.check_resources(run_dir)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)  # the stopped start's events; metrics are rewritten below
    run = Run(run_dir, algo_class.name, config.to_dict(), preset=saved.get("preset"),
              progress=not meta.no_progress, tensorboard=not meta.no_tensorboard)
    print(f"{run_dir} has no checkpoint (its first start stopped before writing one): training it afresh with "
          f"its config for {config.total_steps:,} steps", file=sys.stderr)
    return finish_training(agent, run, config, run_dir)


# ---------------------------------------------------------------------------------------------
def evaluate(args: list[str]) -> int:
    """bellmax eval RUN_DIR [--episodes K] [--seed S] [--device D] [--json]."""
    parser = argparse.ArgumentParser(prog="bellmax eval",
                                     description="Deterministic evaluation of a run's last checkpoint.")
    parser.add_argument("run_dir", help="a run directory written by `bellmax train`")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="first evaluation seed (default: the run's seed + 10^6)")
    parser.add_argument("--device", default="auto",
                        help="where the networks run (default auto: this machine's GPU for image observations, "
                             "else the CPU; a run trained on a GPU evaluates on a machine without one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gif", default=None,
                        help="arena runs (bellmax/Bomber*): where to save a GIF of one game (default RUN_DIR/game.gif)")
    opts = parser.parse_args(args)
    if opts.episodes < 1:
        raise BellmaxError(f"--episodes {opts.episodes} must be at least 1")
    if opts.seed is not None and not 0 <= opts.seed <= 2**32 - opts.episodes:
        raise BellmaxError(f"--seed {opts.seed} must be in [0, 2^32 - episodes] (episode i is seeded with seed + i)")

    from bellmax.algos import load
    from bellmax.core.run import CHECKPOINT_FILE, read_run_config

    read_run_config(opts.run_dir)  # a clear error for a directory that is not a run
    # mapped, not read: a DQN Atari checkpoint holds a 6.6 GiB replay that evaluation never touches
    agent = load(Path(opts.run_dir) / CHECKPOINT_FILE, mmap=True, device=opts.device)
    returns = agent.evaluate(opts.episodes, seed=opts.seed)
    result = {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": int(len(returns)),
        "params_sha256": agent.params_sha256(),
    }
    from bellmax.arena.players import ARENA_BOARDS

    if agent.config.env in ARENA_BOARDS:  # a game to watch
        from bellmax.arena.record import record_game

        gif = record_game(agent, Path(opts.gif or Path(opts.run_dir) / "game.gif"), seed=opts.seed or 0)
        result["gif"] = str(gif)
    if opts.json:
        print(json.dumps(result))
    else:
        print(f"{agent.name} on {agent.config.env} after {agent.global_step:,} steps: "
              f"return {result['mean_return']:.2f} +- {result['std_return']:.2f} over {opts.episodes} episodes")
        if "gif" in result:
            print(f"a game: {result['gif']}")
    return 0


# ---------------------------------------------------------------------------------------------
def plot(args: list[str]) -> int:
    """bellmax plot RUN_DIR... [-o FILE] [--key KEY] [--title TITLE]."""
    parser = argparse.ArgumentParser(prog="bellmax plot", description="Learning curves: mean and spread over seeds.")
    parser.add_argument("run_dirs", nargs="+", help="run directories; runs of the same algorithm and env are one curve")
    parser.add_argument("-o", "--output", default=None, help="PNG/PDF/SVG file (default: learning_curves.png, "
                        "or RUN_DIR/learning_curve.png for one run)")
    parser.add_argument("--key", default=None,
                        help="metric to plot (default: the training return rollout/ep_return and, where logged, "
                             "the evaluation return eval/return)")
    parser.add_argument("--title", default=None)
    opts = parser.parse_args(args)

    from bellmax.plotting import DEFAULT_KEYS, plot_runs

    if opts.output is None:
        single = len(opts.run_dirs) == 1
        opts.output = str(Path(opts.run_dirs[0]) / "learning_curve.png") if single else "learning_curves.png"
    path = plot_runs([Path(d) for d in opts.run_dirs], Path(opts.output), key=opts.key or DEFAULT_KEYS,
                     title=opts.title)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------
def envs(args: list[str]) -> int:
    """bellmax envs [FILTER]: the Gymnasium ids bellmax can make, with their spaces."""
    import gymnasium as gym

    import bellmax.envs  # noqa: F401
    from bellmax.envs.make import register_atari

    register_atari()  # ALE/... ids, when ale-py is installed
    pattern = args[0].lower() if args else ""
    ids = sorted(i for i in gym.registry if pattern in i.lower())
    for env_id in ids:
        spec = gym.registry[env_id]
        entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
        print(f"{env_id:40s} {entry}")
    if not ids:
        raise BellmaxError(f"no environment id contains {pattern!r}")
    return 0


# ---------------------------------------------------------------------------------------------
def bench(args: list[str]) -> int:
    """bellmax bench ...: bellmax against Stable-Baselines3, side by side (needs the `bench` extra)."""
    from bellmax.bench import main as bench_main

    return bench_main(args)


# ---------------------------------------------------------------------------------------------
def arena(args: list[str]) -> int:
    """bellmax arena PLAYER... --games N [--json]: a round-robin tournament in the Bomber arena."""
    import importlib.util

    if importlib.util.find_spec("openskill") is None:
        raise BellmaxError("bellmax arena needs the arena extra: pip install -c constraints.txt -e '.[arena]'")
    from bellmax.commands.arena import main as arena_main

    return arena_main(args)


# ---------------------------------------------------------------------------------------------
def rlhf(args: list[str]) -> int:
    """bellmax rlhf STAGE ...: the RLHF workflow on a small GPT (needs the `rlhf` extra)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise BellmaxError("bellmax rlhf needs the rlhf extra: pip install -c constraints.txt -e '.[rlhf]'")
    from bellmax.commands.rlhf import main as rlhf_main

    return rlhf_main(args)


if __name__ == "__main__":
    sys.exit(main())
