"""Checkpoints of the long RLHF stages (pretrain, sft, reward, ppo, rl, dpo, rs): a killed stage continues
where it stopped, bit for bit, with `bellmax rlhf STAGE --resume DIR`.

They are the classic trainers' checkpoints (`core/run.py`), in the stage's run directory:
checkpoint-STEP.pt with its SHA-256 line, checkpoint.pt a second name of the newest, the newest
`keep_checkpoints` kept, a damaged newest one passed over for the one before. What one holds:

    algo         the run's name (rlhf-pretrain, rlhf-ppo, rlhf-grpo, ...)
    config       the stage config, as plain data: a resume must run the same one
    global_step  the stage's unit done: Adam steps (pretrain, sft, reward, dpo, rs) or iterations (ppo, rl)
    modules      state dicts of everything trained (ppo: the policy with its value model or head)
    optimizers   the Adam states
    rng          torch's and Python's global generators and the loop's own (torch.Generator, random.Random)
    loop         the loop's running values: losses so far, tokens seen, the KL coefficient, the epoch's
                 order, the first iteration's metrics, seconds spent

A stage saves one every `checkpoint_every` steps, and when Ctrl-C or SIGTERM asks it to stop (it
finishes the step, saves, and raises `TrainingInterrupted`). Once the stage has written its model
and report.json, its checkpoints are deleted: the directory is then a Hugging Face model directory
that users load, and a finished stage is never resumed.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bellmax.core.optim import Optimizer
from bellmax.core.run import (
    CHECKPOINT_FILE,
    Run,
    StopRequests,
    check_run_dir_free,
    has_checkpoint,
    load_run_checkpoint,
    save_run_checkpoint,
    step_checkpoints,
)
from bellmax.errors import BellmaxError, TrainingInterrupted
from bellmax.rlhf import data


def resume_command(stage: str, run_dir: Path) -> str:
    return f"bellmax rlhf {stage} --resume {run_dir}"


def unfinished_stage_error(run_dir: Path, stage: str) -> BellmaxError | None:
    """The refusal of a new start into a stage directory that holds a checkpoint (None: there is none)."""
    if not has_checkpoint(run_dir):
        return None
    steps = step_checkpoints(run_dir)
    at = f" (checkpoint at step {steps[0][0]})" if steps else ""
    return BellmaxError(f"{run_dir} holds an unfinished {stage}{at}: continue it with "
                        f"`{resume_command(stage, run_dir)}`, or pick another --run-dir")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resume_point(run_dir: Path, algo: str, config: Any, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a stage continues from; None to start from the beginning: when not resuming, or
    resuming a stage stopped before its first checkpoint. A new start into a directory that holds a
    checkpoint is refused (it would mix two runs' checkpoints), as is a checkpoint of another run or config."""
    run_dir, stage = Path(run_dir), stage_of(algo)
    if not resume:
        error = unfinished_stage_error(run_dir, stage)
        if error is not None:
            raise error
        return None
    if not has_checkpoint(run_dir):
        return None
    check_run_dir_free(run_dir)  # before renaming a damaged checkpoint aside
    state = load_run_checkpoint(run_dir, notify=_stderr)
    if state["algo"] != algo:
        raise BellmaxError(f"{run_dir / CHECKPOINT_FILE} is a checkpoint of {state['algo']}, not {algo}: "
                           "resume it with the command that started it")
    expected = data.config_dict(config)
    if state["config"] != expected:
        changed = ", ".join(f"{key} {state['config'].get(key)!r} -> {value!r}" for key, value in expected.items()
                            if state["config"].get(key) != value)
        raise BellmaxError(f"{run_dir} was checkpointed with another {stage} config ({changed}); a resume "
                           f"continues the saved one: `{resume_command(stage, run_dir)}`")
    return state


def remove_checkpoints(run_dir: Path) -> None:
    """Delete a finished stage's checkpoints (checkpoint.pt and checkpoint-STEP.pt; set-aside
    *.damaged files stay, for inspection)."""
    run_dir = Path(run_dir)
    for _, path in step_checkpoints(run_dir):
        path.unlink(missing_ok=True)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


def rng_states(generators: dict[str, torch.Generator], randoms: dict[str, random.Random]) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "generators": {name: g.get_state() for name, g in generators.items()},
            "randoms": {name: r.getstate() for name, r in randoms.items()}}


def set_rng_states(state: dict[str, Any], generators: dict[str, torch.Generator],
                   randoms: dict[str, random.Random]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    for name, rng in randoms.items():
        rng.setstate(state["randoms"][name])


def stage_of(algo: str) -> str:
    """The command's stage of a run's name: rlhf-pretrain -> pretrain, rlhf-grpo -> rl."""
    name = algo.removeprefix("rlhf-")
    return "rl" if name in ("rloo", "grpo", "reinforce_pp") else name


@dataclass
class StageCheckpoints:
    """What a stage's loop changes as it trains, by name, and its checkpoints in the run directory:
    `restore` puts a checkpoint back into them; inside `with`, `step_done` saves one every
    `every` steps (0: never) and at a stop request (Ctrl-C, SIGTERM), which it then obeys. Without
    a run (a loop called on its own), nothing is saved and signals keep their meaning.

    modules, optimizers, generators, randoms: the objects whose state a checkpoint holds.
    running: the loop's running values at the end of a step (counters, lists, the KL coefficient),
        plain data, called only when a checkpoint is written.
    """

    run: Run | None
    config: Any
    modules: dict[str, nn.Module]
    optimizers: dict[str, Optimizer]
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    randoms: dict[str, random.Random] = field(default_factory=dict)
    running: Callable[[], dict[str, Any]] = dict
    _stop: StopRequests | None = field(default=None, init=False, repr=False)

    def state(self, algo: str, step: int) -> dict[str, Any]:
        return {"algo": algo, "config": data.config_dict(self.config), "global_step": step,
                "modules": {name: m.state_dict() for name, m in self.modules.items()},
                "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
                "rng": rng_states(self.generators, self.randoms), "loop": self.running()}

    def restore(self, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Load `state` into the modules, optimizers and generators; returns (step, the running values)."""
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        set_rng_states(state["rng"], self.generators, self.randoms)
        return state["global_step"], state["loop"]

    def __enter__(self) -> StageCheckpoints:
        if self.run is not None:
            self._stop = StopRequests(self.run.notify).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop.__exit__(*exc)
            self._stop = None

    def step_done(self, step: int) -> None:
        """After step `step` (counted from 1): checkpoint it when due or asked to stop, then stop if asked."""
        if self.run is None:
            return
        requested = self._stop.requested if self._stop is not None else None
        every, keep = self.config.checkpoint_every, self.config.keep_checkpoints
        if (every > 0 and step % every == 0) or requested:
            save_run_checkpoint(self.run.dir, self.state(self.run.algo, step), step, keep)
            self.run.checkpointed_at = step
        if requested:  # at a step's end (or during its checkpoint), so the resume is exact
            stage = stage_of(self.run.algo)
            raise TrainingInterrupted(requested, stage, step, self.run.dir, command=f"bellmax rlhf {stage}")


def resume_step(checkpoint: dict[str, Any] | None) -> int | None:
    """The step a stage resumes at (Run's resume_step): None for a new start."""
    return None if checkpoint is None else int(checkpoint["global_step"])


def resumed_seconds(checkpoint: dict[str, Any] | None) -> float:
    """The seconds a resumed stage had run until its checkpoint (0 for a new start)."""
    return 0.0 if checkpoint is None else float(checkpoint["loop"].get("seconds", 0.0))
