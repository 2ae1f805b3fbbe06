"""The command line of `bellmax bench`: one subcommand per benchmark, with the options they share.

Errors are BellmaxError (one line from the CLI) rather than argparse's exit.
"""

from __future__ import annotations

import argparse

from bellmax.bench.plans import CARTPOLE_STEPS, OFF_POLICY_BENCHMARKS
from bellmax.errors import ArgumentParser, BellmaxError


def _at_least(least: int):
    """An argparse type: an integer >= least."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
        return value

    return parse


_positive, _non_negative = _at_least(1), _at_least(0)


def build_parser() -> argparse.ArgumentParser:
    """The `bellmax bench` parser: ppo-cartpole, dqn-cartpole, sac-pendulum, mujoco and rollout."""
    parser = ArgumentParser(prog="bellmax bench", description="bellmax against Stable-Baselines3, side by side.",
                     epilog="Each benchmark runs one process per library and seed, one after the other "
                            "(--jobs N: N at a time).")
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", parser_class=ArgumentParser)

    def common(p: argparse.ArgumentParser, seeds: bool = True) -> None:
        if seeds:
            p.add_argument("--seeds", type=_positive, default=3,
                           help="how many seeds: FIRST..FIRST+N-1 (default 3, from --first-seed 0)")
            p.add_argument("--first-seed", type=_non_negative, default=0,
                           help="the first seed (default 0); e.g. --first-seed 3 --seeds 1 runs seed 3 alone again")
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
                          description="bellmax's PPO CartPole preset (with its periodic deterministic evaluation and "
                                      "stop rule) vs SB3 PPO with rl-zoo3's CartPole-v1 "
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

    bomber = sub.add_parser("bomber", help="the Bomber engine: agent steps/s, batched and one game at a time",
                            description="Steps of the batched Bomber engine with random actions on one core, beside "
                                        "the plain reference game's and the PettingZoo env's, and the cost of each "
                                        "built-in opponent per step (in this process; no Stable-Baselines3 needed).")
    bomber.add_argument("--board", choices=["duel", "ffa", "team"], default="duel")
    bomber.add_argument("--games", type=_positive, default=256, help="games stepped together (default 256)")
    bomber.add_argument("--steps", type=_positive, default=2000, help="timed engine steps (default 2000)")
    bomber.add_argument("--json", action="store_true", help="print one JSON object")
    bomber.add_argument("--out-dir", default=None, help="also write bench_bomber_BOARD.json here")
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
                           "rollout | bomber (--help for more)")
    return opts
