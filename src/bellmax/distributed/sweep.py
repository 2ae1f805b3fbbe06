"""Sweeps on Ray Tune: every (setting, seed) is a Tune trial whose trainable is an ordinary bellmax
run writing an ordinary run directory under `DIR/runs/`, so `bellmax eval`, `plot` and `--resume`
work on each trial unchanged, and a trial's parameters equal those of `bellmax train` with the same
config and seed.

Searches: a grid (every combination, on every seed); random (settings drawn from ranges by a seeded
generator, each trained on every seed); Optuna's sampler through Ray Tune's Optuna integration (one
trial per setting Optuna proposes, training every seed one after the other and reporting their mean,
the one number Optuna maximizes). ASHA early stopping is an option for each. Trials report `metric`
(default `eval/return`) to Tune at every periodic evaluation.

Resume: Tune records the sweep under `DIR/tune`; `bellmax sweep --resume DIR` restores it: finished
trials are not run again, unfinished ones start again and their runs continue from their own last
checkpoints (a run killed before its first checkpoint starts afresh).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellmax.core.run import Run, has_checkpoint, load_run_checkpoint, read_metrics, read_run_config
from bellmax.distributed.space import (
    Range,
    SearchSpace,
    grid_settings,
    random_settings,
    setting_name,
)
from bellmax.errors import BellmaxError

SPEC_FILE = "sweep.json"
SEARCHES = ("grid", "random", "optuna")


def import_ray() -> Any:
    # Tune's console output off (verbose=0 is silent only in its classic output): bellmax prints
    # a line per finished trial and the results table itself
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        import ray
        from ray import tune  # noqa: F401  (ray[tune], not only ray)
    except ImportError:
        raise BellmaxError("sweeps run on Ray, which is not installed: pip install -c constraints.txt "
                           "'bellmax[ray]' (or make install)") from None
    return ray


@dataclass
class SweepSpec:
    """Everything a sweep needs, saved as `DIR/sweep.json` so that `--resume DIR` needs nothing else."""

    algo: str
    base: dict[str, Any]  # the config every trial starts from (env, total_steps, fixed flags)
    seeds: list[int]
    space: SearchSpace = field(default_factory=SearchSpace)
    search: str = "grid"
    samples: int = 1  # random: draws per grid combination; optuna: settings proposed
    search_seed: int = 0
    asha: bool = False
    metric: str = "eval/return"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: the cluster's GPUs shared by the trials that run at once

    def settings(self) -> list[dict[str, Any]]:
        """The settings a grid or random search trains (each on every seed)."""
        if self.search == "random":
            return random_settings(self.space, self.samples, self.search_seed)
        return grid_settings(self.space)

    def num_trials(self) -> int:
        return self.samples if self.search == "optuna" else len(self.settings()) * len(self.seeds)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["space"] = self.space.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        from bellmax.algos import get_algorithm
        from bellmax.distributed.space import parse_range

        config_class = get_algorithm(data["algo"]).config_class
        space = SearchSpace(grid=dict(data["space"]["grid"]),
                            sample={k: parse_range(config_class, k, v) for k, v in data["space"]["sample"].items()})
        return cls(**{**data, "space": space})

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / SPEC_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> SweepSpec:
        path = Path(root) / SPEC_FILE
        if not path.is_file():
            raise BellmaxError(f"{root} holds no sweep (no {SPEC_FILE}); start one with `bellmax sweep ALGO ... "
                               f"--run-dir {root}`")
        return cls.from_json(json.loads(path.read_text()))


# -- one trial ----------------------------------------------------------------------------------
class ReportingRun(Run):
    """A run directory that also reports `metric` to Tune whenever a row carries it."""

    def __init__(self, *args: Any, report: Callable[[dict[str, Any]], None], metric: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.report, self.metric = report, metric

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        super().log(step, metrics)
        if self.metric in metrics:
            self.report({self.metric: float(metrics[self.metric]), "step": step})


def run_dir_of(root: Path, setting: dict[str, Any], seed: int) -> Path:
    return Path(root) / "runs" / f"{setting_name(setting)}-s{seed}"


def train_run(algo: str, config_values: dict[str, Any], run_dir: Path, metric: str,
              report: Callable[[dict[str, Any]], None]) -> float:
    """Train one ordinary run in `run_dir`, continuing from its checkpoint when it has one; returns the
    last value of `metric` it logged."""
    from bellmax.algos import get_algorithm

    algo_class = get_algorithm(algo)
    if has_checkpoint(run_dir):  # a trial started again after the sweep was interrupted
        agent = algo_class.from_state(load_run_checkpoint(run_dir, notify=lambda line: print(line, file=sys.stderr)))
        run = ReportingRun(run_dir, algo_class.name, agent.config.to_dict(), resume_step=agent.global_step,
                           tensorboard=True, report=report, metric=metric)
        if agent.global_step >= agent.config.total_steps:  # trained before the interruption: finish it
            with run:
                agent.finish(run, evaluate=True)
        else:
            agent.learn(run=run)
    else:
        if run_dir.exists():  # started, but killed before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        config = algo_class.config_class.from_dict(config_values)
        agent = algo_class(config)
        run = ReportingRun(run_dir, algo_class.name, config.to_dict(), tensorboard=True, report=report,
                           metric=metric)
        agent.learn(run=run)
    return last_value(run_dir, metric)


def last_value(run_dir: Path, metric: str) -> float:
    return last_of(read_metrics(run_dir), metric)


def last_of(rows: list[dict[str, Any]], metric: str) -> float:
    """The last value of `metric` in metrics rows (nan: none)."""
    values = [row[metric] for row in rows if metric in row]
    return float(values[-1]) if values else float("nan")


def trial(params: dict[str, Any], spec: dict[str, Any], root: str) -> None:
    """The Tune trainable: one (setting, seed) for a grid or random search; for Optuna, one proposed
    setting on every seed, reporting their mean last."""
    import ray
    from ray import tune

    node = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, Any]) -> None:  # with the Ray node the trial runs on, for a cluster's users
        tune.report({**metrics, "node_id": node})

    sweep = SweepSpec.from_json(spec)
    if sweep.search == "optuna":
        setting = {name: params[name] for name in sweep.space.fields}
        seeds = sweep.seeds
    else:
        setting, seeds = params["setting"], [params["seed"]]
    finals = []
    for seed in seeds:
        values = {**sweep.base, **setting, "seed": seed}
        finals.append(train_run(sweep.algo, values, run_dir_of(Path(root), setting, seed), sweep.metric, report))
    if len(seeds) > 1:
        report({sweep.metric: sum(finals) / len(finals), "seeds": len(seeds)})


# -- the driver ---------------------------------------------------------------------------------
def start_ray(address: str | None) -> Any:
    """Connect to the cluster at `address` ("auto": the one this machine belongs to; "ray://...": a
    remote one), or start a local runtime on this machine's cores."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address else "on this machine"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BellmaxError(f"could not reach a Ray cluster {where} ({first_line}); start one with "
                           "`ray start --head`, or leave out --address to run on this machine") from None
    return ray


def check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at `address`."""
    import socket

    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise BellmaxError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise BellmaxError(f"could not reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one with "
                           "`ray start --head`, or leave out --address to run on this machine") from None


def make_tuner(spec: SweepSpec, root: Path, resume: bool) -> Any:
    from ray import tune

    trainable = tune.with_parameters(trial, spec=spec.to_json(), root=str(root.resolve()))
    resources = {"cpu": spec.cpus_per_trial, "gpu": gpus_per_trial(spec)}
    trainable = tune.with_resources(trainable, resources)
    experiment = root.resolve() / "tune"
    if resume and tune.Tuner.can_restore(str(experiment)):
        return tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
    if experiment.exists():
        shutil.rmtree(experiment)  # a sweep stopped before Tune recorded it: start it again
    scheduler = None
    if spec.asha:
        from ray.tune.schedulers import ASHAScheduler

        # a report per evaluation of each run; an Optuna trial runs every seed in turn
        reports = spec.base["total_steps"] // max(int(spec.base.get("eval_every") or 1), 1) + 1
        if spec.search == "optuna":
            reports *= len(spec.seeds)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(reports, 2), grace_period=1,
                                  reduction_factor=2)
    if spec.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        space: dict[str, Any] = {name: r.to_tune() for name, r in spec.space.sample.items()}
        space.update({name: tune.choice(values) for name, values in spec.space.grid.items()})
        searcher = ConcurrencyLimiter(OptunaSearch(seed=spec.search_seed), max_concurrent=max(1, parallel_trials(spec)))
        tune_config = tune.TuneConfig(metric=spec.metric, mode="max", search_alg=searcher, scheduler=scheduler,
                                      num_samples=spec.samples)
        param_space = space
    else:
        tune_config = tune.TuneConfig(metric=spec.metric, mode="max", scheduler=scheduler,
                                      trial_dirname_creator=lambda t: f"trial_{t.trial_id}")
        param_space = {"setting": tune.grid_search(spec.settings()), "seed": tune.grid_search(spec.seeds)}
    run_config = tune.RunConfig(name="tune", storage_path=str(root.resolve()), verbose=0,
                                failure_config=tune.FailureConfig(max_failures=2), callbacks=[trial_lines()])
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def gpus_per_trial(spec: SweepSpec) -> float:
    """What each trial asks for: as given, or the cluster's GPUs divided among the trials its CPUs
    run at once (so that on a GPU cluster every trial gets a share, and none waits for a GPU)."""
    if spec.gpus_per_trial is not None:
        return spec.gpus_per_trial
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    return 0.0 if gpus == 0 else min(1.0, gpus / max(parallel_trials(spec), 1))


def parallel_trials(spec: SweepSpec) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    return int(cpus // max(spec.cpus_per_trial, 1e-9))


def trial_lines() -> Any:
    """A Tune callback that prints a line on stderr as each trial ends (Tune's own reporter is off)."""
    from ray import tune

    class TrialLines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            value = next((v for k, v in result.items() if k.startswith("eval/")), None)
            shown = f"{value:.2f}" if isinstance(value, float) else "-"
            print(f"trial {trial.trial_id} finished: {_describe(trial.config)} -> {shown}", file=sys.stderr)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"trial {trial.trial_id} failed: {_describe(trial.config)} (Ray retries it; "
                  f"its log: {trial.local_path})", file=sys.stderr)

    return TrialLines()


def _describe(config: dict[str, Any]) -> str:
    if "setting" in config:
        return f"{setting_name(config['setting'])} seed {config['seed']}"
    return setting_name(config)


def run_sweep(spec: SweepSpec, root: Path, address: str | None = None, resume: bool = False) -> list[Any]:
    """Run (or continue) the sweep in `root` and summarize it."""
    start_ray(address)
    spec.save(root)
    tuner = make_tuner(spec, root, resume)
    # Tune installs a SIGINT handler of its own for the fit and leaves it there: put the caller's back,
    # or a later training in this process no longer stops cleanly on Ctrl-C
    handler = signal.getsignal(signal.SIGINT)
    try:
        results = tuner.fit()
    finally:
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGINT, handler)
    failed = [r for r in results if r.error is not None]
    if failed:
        print(f"{len(failed)} trial(s) failed after retries; the first error: "
              f"{str(failed[0].error).strip().splitlines()[-1]}", file=sys.stderr)
    return summarize(root, spec)


# -- the results --------------------------------------------------------------------------------
@dataclass
class SettingResult:
    """A setting's runs and the last value of the metric each logged."""

    setting: dict[str, Any]
    runs: list[Path]
    values: list[float]
    finished: list[bool]

    @property
    def name(self) -> str:
        return setting_name(self.setting)

    @property
    def mean(self) -> float:
        done = [v for v in self.values if not math.isnan(v)]
        return sum(done) / len(done) if done else float("nan")

    @property
    def std(self) -> float:
        done = [v for v in self.values if not math.isnan(v)]
        if len(done) < 2:
            return 0.0
        mean = sum(done) / len(done)
        return math.sqrt(sum((v - mean) ** 2 for v in done) / len(done))


def summarize(root: Path, spec: SweepSpec) -> list[SettingResult]:
    """Every setting's runs under `root/runs`, best mean first (settings with no value last)."""
    by_name: dict[str, SettingResult] = {}
    runs_dir = Path(root) / "runs"
    for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if not (run_dir / "config.json").exists():
            continue
        config = read_run_config(run_dir)["config"]
        setting = {name: _as_set(spec, name, config.get(name)) for name in spec.space.fields}
        result = by_name.setdefault(setting_name(setting), SettingResult(setting, [], [], []))
        result.runs.append(run_dir)
        rows = read_metrics(run_dir)
        result.values.append(last_of(rows, spec.metric))
        result.finished.append(bool(rows) and max(row.get("step", 0) for row in rows) >= config["total_steps"])
    return sorted(by_name.values(), key=lambda r: (math.isnan(r.mean), -r.mean if not math.isnan(r.mean) else 0))


def _as_set(spec: SweepSpec, name: str, value: Any) -> Any:
    # config.json holds lists where a Config holds tuples: show them as the sweep gave them
    if isinstance(value, list) and name in spec.space.grid and spec.space.grid[name] \
            and isinstance(spec.space.grid[name][0], tuple):
        return tuple(value)
    return value


def best_preset(spec: SweepSpec, results: list[SettingResult], root: Path) -> dict[str, Any]:
    """The best setting as a preset entry `bellmax train --preset FILE` accepts."""
    from bellmax.algos import get_algorithm

    best = results[0]
    defaults = get_algorithm(spec.algo).config_class().to_dict()
    values = {k: v for k, v in spec.base.items() if k not in ("env", "seed") and defaults.get(k) != v}
    values.update({k: list(v) if isinstance(v, tuple) else v for k, v in best.setting.items()})
    source = (f"bellmax sweep {root}: best of {len(results)} setting(s) by the mean last {spec.metric} over seeds "
              f"{', '.join(map(str, spec.seeds))}: {best.mean:.4g} +- {best.std:.2g}")
    return {"env": spec.base["env"], "source": source, "values": values}


def write_outputs(spec: SweepSpec, results: list[SettingResult], root: Path) -> dict[str, Path]:
    """The best preset (`best_preset.json`), the results (`results.json`) and one learning-curve
    figure per setting (`curves/SETTING.png`)."""
    from bellmax.plotting import plot_runs

    written: dict[str, Path] = {}
    table = [{"setting": {k: list(v) if isinstance(v, tuple) else v for k, v in r.setting.items()},
              "mean": r.mean, "std": r.std, "values": r.values, "runs": [str(p) for p in r.runs],
              "finished": r.finished} for r in results]
    (root / "results.json").write_text(json.dumps({"metric": spec.metric, "settings": table}, indent=2) + "\n")
    written["results"] = root / "results.json"
    if results and not math.isnan(results[0].mean):
        (root / "best_preset.json").write_text(json.dumps(best_preset(spec, results, root), indent=2) + "\n")
        written["best_preset"] = root / "best_preset.json"
    curves = root / "curves"
    curves.mkdir(exist_ok=True)
    for result in results:
        try:
            plot_runs(result.runs, curves / f"{result.name}.png", title=f"{spec.algo} on {spec.base['env']}: "
                      f"{result.name}", labels=[result.name] * len(result.runs))
        except BellmaxError:  # a run that logged nothing yet (stopped at once): no curve
            continue
    written["curves"] = curves
    return written


__all__ = ["Range", "SearchSpace", "SweepSpec", "run_sweep", "summarize", "write_outputs", "best_preset",
           "train_run", "run_dir_of", "import_ray", "SEARCHES"]
