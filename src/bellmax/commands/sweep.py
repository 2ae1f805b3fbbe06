"""`bellmax sweep`: many runs at once on Ray Tune, every (setting, seed) an ordinary run directory.

    bellmax sweep ppo --env CartPole-v1 --seeds 0 1 2 --grid learning_rate=3e-4,1e-3 --run-dir sweeps/lr
    bellmax sweep ppo --env CartPole-v1 --seeds 0 1 --sample learning_rate=loguniform:1e-4:3e-3 \\
        --search optuna --samples 12 --asha --run-dir sweeps/optuna
    bellmax sweep --resume sweeps/lr          # after Ctrl-C or a killed driver: finished trials stay
    bellmax train ppo --preset sweeps/lr/best_preset.json

Any other `bellmax train` flag (`--total-steps 50000`, `--eval-every 5000`) is fixed for every
trial. `--address auto` joins the Ray cluster this machine belongs to (`ray start --head` on one
node, `ray start --address HEAD:6379` on the others), `--address ray://HOST:10001` a remote one;
without it Ray starts on this machine. Each trial asks Ray for `--cpus-per-trial` CPUs (and
`--gpus-per-trial`), so on a cluster trials spread over the nodes.

At the end: a table of the settings, best first, with the mean and spread over seeds of the last
`--metric` each run logged; `DIR/best_preset.json`; `DIR/results.json`; `DIR/curves/SETTING.png`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bellmax.errors import ArgumentParser, BellmaxError

if TYPE_CHECKING:
    from bellmax.distributed.sweep import SweepSpec


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="bellmax sweep", description=__doc__.split("\n\n")[0] if __doc__ else None,
                            epilog="Other flags: any `bellmax train ALGO` config flag, fixed for every trial.")
    parser.add_argument("algo", nargs="?", help="the algorithm (ppo, a2c, dqn, sac, ...)")
    parser.add_argument("--env", help="the environment id (default: the algorithm's preset env)")
    parser.add_argument("--preset", help="start every trial from this preset (a name or a .json file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds, each setting on all (default 0)")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                        help="values to try, crossed with the other grids (repeatable)")
    parser.add_argument("--sample", action="append", default=[], metavar="FIELD=KIND:...",
                        help="a range for random or Optuna search: loguniform:LOW:HIGH, uniform:LOW:HIGH, "
                             "int:LOW:HIGH, choice:A,B (repeatable)")
    parser.add_argument("--space", type=Path, help="a search space in YAML or JSON: {grid: {...}, sample: {...}}")
    parser.add_argument("--search", choices=["grid", "random", "optuna"], default=None,
                        help="grid (default without --sample), random (default with --sample), optuna")
    parser.add_argument("--samples", type=int, default=8,
                        help="random: draws per grid combination; optuna: settings to try (default 8)")
    parser.add_argument("--search-seed", type=int, default=0, help="seed of the random or Optuna search")
    parser.add_argument("--asha", action="store_true", help="stop poor trials early (ASHA)")
    parser.add_argument("--metric", default="eval/return", help="what the sweep maximizes (default eval/return)")
    parser.add_argument("--address", help="a Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: start "
                                          "Ray on this machine)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs (or a fraction) Ray reserves per trial (default: the cluster's GPUs shared "
                             "evenly by the trials that run at once; 0 without GPUs)")
    parser.add_argument("--run-dir", type=Path, help="where the sweep writes (a run directory per trial)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the sweep in DIR")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    opts, rest = parser.parse_known_args(argv)
    from bellmax.distributed.sweep import SweepSpec, import_ray, run_sweep, write_outputs

    if opts.resume is not None:
        if opts.algo or rest:
            raise BellmaxError("--resume DIR continues a sweep as it was started: give only --resume "
                               "(and --address)")
        root = opts.resume
        spec = SweepSpec.load(root)
        import_ray()
    else:
        spec, root = new_sweep(opts, rest)
        import_ray()  # a clear line before anything is written when Ray is missing
    print(f"sweep: {spec.algo} on {spec.base['env']}, {spec.num_trials()} trial(s) "
          f"({spec.search}{', ASHA' if spec.asha else ''}), seeds {' '.join(map(str, spec.seeds))} -> {root}",
          file=sys.stderr)
    results = run_sweep(spec, root, address=opts.address, resume=opts.resume is not None)
    written = write_outputs(spec, results, root)
    print_table(spec, results)
    if "best_preset" in written:
        print(f"best setting: {written['best_preset']} (bellmax train {spec.algo} --preset {written['best_preset']})")
    print(f"learning curves: {written['curves']}/; every run: {root / 'runs'}/")
    return 0


def new_sweep(opts: argparse.Namespace, rest: list[str]) -> tuple[SweepSpec, Path]:
    from bellmax.algos import algorithm_key, get_algorithm
    from bellmax.config import config_with_preset
    from bellmax.distributed.space import (
        SearchSpace,
        check_settings,
        load_space_file,
        parse_grid,
        parse_sample,
    )
    from bellmax.distributed.sweep import SPEC_FILE, SweepSpec  # noqa: F811  (at run time)
    from bellmax.envs.make import check_env_id

    if not opts.algo:
        raise BellmaxError("bellmax sweep: name the algorithm, e.g. `bellmax sweep ppo --env CartPole-v1 "
                           "--grid learning_rate=3e-4,1e-3 --run-dir DIR` (see --help)")
    if opts.run_dir is None:
        raise BellmaxError("bellmax sweep: --run-dir DIR is required (where every trial's run directory goes)")
    root = opts.run_dir
    if (root / SPEC_FILE).exists():
        raise BellmaxError(f"{root} already holds a sweep; continue it with `bellmax sweep --resume {root}` "
                           "or pick another --run-dir")
    if root.exists() and not root.is_dir():
        raise BellmaxError(f"--run-dir {root} is a file, not a directory")
    if opts.samples < 1:
        raise BellmaxError(f"--samples {opts.samples} must be at least 1")
    if opts.cpus_per_trial <= 0 or (opts.gpus_per_trial is not None and opts.gpus_per_trial < 0):
        raise BellmaxError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    if len(set(opts.seeds)) != len(opts.seeds):
        raise BellmaxError(f"--seeds {' '.join(map(str, opts.seeds))}: each seed once")
    algo_class = get_algorithm(algorithm_key(opts.algo))
    config_class = algo_class.config_class
    if opts.env:
        check_env_id(opts.env)

    import tyro

    defaults = config_with_preset(config_class, opts.env, opts.preset)
    if any(a in ("--num-workers",) for a in rest):
        raise BellmaxError("--num-workers belongs to `bellmax train`; a sweep runs each trial in one process")
    base = tyro.cli(config_class, default=defaults, args=rest, prog=f"bellmax sweep {algo_class.name}")
    base.validate()
    check_env_id(base.env)

    space = load_space_file(config_class, opts.space) if opts.space else SearchSpace()
    space.grid.update(parse_grid(config_class, opts.grid))
    space.sample.update(parse_sample(config_class, opts.sample))
    search = opts.search or ("random" if space.sample else "grid")
    if search == "grid" and space.sample:
        raise BellmaxError("--sample ranges need --search random or optuna (a grid search takes --grid values)")
    if search != "grid" and not space.sample and search == "optuna":
        raise BellmaxError("--search optuna needs at least one --sample range for Optuna to explore")
    spec = SweepSpec(algo=algo_class.name, base=base.to_dict(), seeds=list(opts.seeds), space=space, search=search,
                     samples=opts.samples if search != "grid" else 1, search_seed=opts.search_seed, asha=opts.asha,
                     metric=opts.metric, cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial)
    if search != "optuna":
        check_settings(base, spec.settings())
    else:  # Optuna proposes settings as it goes: check the ends of every range now
        ends = [{name: r.options[0]} if r.kind == "choice" else {name: int(r.low) if r.kind == "int" else r.low}
                for name, r in space.sample.items()]
        ends += [{name: int(r.high) if r.kind == "int" else r.high} for name, r in space.sample.items()
                 if r.kind != "choice"]
        ends += [{name: value} for name, values in space.grid.items() for value in values]
        check_settings(base, ends)
    return spec, root


def print_table(spec: object, results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    metric = getattr(spec, "metric", "eval/return")
    table = Table(title=f"sweep results: last {metric}, best first (mean +- std over seeds)")
    table.add_column("#", justify="right")
    table.add_column("setting")
    table.add_column(metric, justify="right")
    table.add_column("per seed", justify="right")
    table.add_column("finished", justify="right")
    for rank, result in enumerate(results, 1):
        mean = "-" if math.isnan(result.mean) else f"{result.mean:.2f} +- {result.std:.2f}"
        per_seed = " ".join("-" if math.isnan(v) else f"{v:.1f}" for v in result.values)
        table.add_row(str(rank), result.name, mean, per_seed, f"{sum(result.finished)}/{len(result.finished)}")
    Console(width=max(100, Console().width)).print(table)
