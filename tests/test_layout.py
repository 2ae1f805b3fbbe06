"""The architecture holds: the import rules of DESIGN.md, read from the source files' imports, and
run directories written before `core/buffers.py` was split still resume exactly."""

import ast
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import bellmax.algos as algos
from bellmax.core.run import CHECKPOINT_FILE, Run, load_checkpoint

SRC = Path(__file__).parents[1] / "src" / "bellmax"
LEGACY_RUNS = Path(__file__).parent / "data" / "runs_before_buffers_split"


def bellmax_imports(path: Path) -> set[str]:
    """Every bellmax module a source file imports (at the top or inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("bellmax", "ray")}


def package_files(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else [SRC / f"{package}.py"]


def imports_of(package: str) -> dict[str, set[str]]:
    return {str(path.relative_to(SRC)): bellmax_imports(path) for path in package_files(package)}


def offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {file: sorted(m for m in mods if m.startswith(forbidden)) for file, mods in imports_of(package).items()
            if any(m.startswith(forbidden) for m in mods)}


def test_core_imports_no_algorithm_arena_distributed_rlhf_or_command():
    assert offending("core", ("bellmax.algos", "bellmax.arena", "bellmax.distributed", "bellmax.rlhf",
                              "bellmax.commands", "bellmax.cli")) == {}


def test_tabular_imports_nothing_of_bellmax_but_errors():
    imported = {m for mods in imports_of("tabular").values() for m in mods}
    assert {m for m in imported if not m.startswith(("bellmax.tabular", "bellmax.errors"))} == set()


def test_envs_never_import_algorithms():
    assert offending("envs", ("bellmax.algos",)) == {}


def test_no_library_package_imports_the_cli_or_the_commands():
    library = [p.name for p in SRC.iterdir() if p.is_dir() and p.name not in ("commands", "__pycache__")]
    library += [p.stem for p in SRC.glob("*.py") if p.stem not in ("cli", "__init__", "__main__")]  # entry points
    for package in library:
        assert offending(package, ("bellmax.cli", "bellmax.commands")) == {}, package


def test_algorithm_files_import_no_other_algorithm_but_td3_from_ddpg():
    for path in package_files("algos"):
        others = {m for m in bellmax_imports(path) if m.startswith("bellmax.algos.")} - {f"bellmax.algos.{path.stem}"}
        others = {m.split(".")[2] for m in others}
        assert others <= ({"ddpg"} if path.stem == "td3" else set()), path.name


def test_only_the_distributed_package_imports_ray():
    for package in [p.name for p in SRC.iterdir() if p.is_dir() and p.name != "distributed"]:
        assert offending(package, ("ray",)) == {}, package


def test_every_algorithm_name_matches_its_class_and_config():
    for key in algos.ALGORITHMS:
        cls = algos.get_algorithm(key)
        assert cls.name == cls.config_class.algo == key


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_a_run_written_before_the_buffers_split_resumes_exactly(tmp_path, algo):
    """tests/data/runs_before_buffers_split holds run directories written by bellmax before
    core/buffers.py became returns/rollout/replay (commit ff43ced): a PPO run with observation and
    reward normalization (its EpisodeTracker pickled under bellmax.core.buffers) at step 256 of 512,
    and a DQN run with prioritized 3-step replay (PrioritizedReplayBuffer, SumTree,
    NStepAccumulator) at step 400 of 800. They load into today's classes and continue exactly as the
    same state saved by today's code does."""
    run_dir = tmp_path / algo
    shutil.copytree(LEGACY_RUNS / algo, run_dir)
    legacy = load_checkpoint(run_dir)
    assert legacy["global_step"] == {"ppo": 256, "dqn": 400}[algo]
    resaved = tmp_path / "resaved.pt"
    algos.load(run_dir).save(resaved)  # the same state, written by today's code
    assert "bellmax.core.buffers" not in str(load_checkpoint(resaved)["tracker"].__class__)

    resumed = algos.load(run_dir)  # (each agent runs right after its load: the RNGs are the process's)
    assert type(resumed.tracker).__module__ == "bellmax.core.rollout"
    if algo == "dqn":
        assert type(resumed.replay).__module__ == "bellmax.core.replay" and len(resumed.replay) > 0
        assert type(resumed.n_step).__module__ == "bellmax.core.replay"
    else:
        assert resumed.obs_normalizer is not None and resumed.reward_normalizer is not None
    with Run(run_dir, algo, resumed.config.to_dict(), resume_step=resumed.global_step, tensorboard=False) as run:
        resumed.learn(run=run)
    again = algos.load(resaved).learn()
    assert resumed.global_step == again.global_step == legacy["config"]["total_steps"]
    assert resumed.params_sha256() == again.params_sha256()
    for (name, a), (_, b) in zip(resumed.state_dict()["modules"].items(), again.state_dict()["modules"].items()):
        assert all(torch.equal(a[k], b[k]) for k in a), name
    if algo == "dqn":
        assert np.array_equal(resumed.replay.priorities.tree, again.replay.priorities.tree)
    assert (run_dir / CHECKPOINT_FILE).exists() and load_checkpoint(run_dir)["global_step"] == resumed.global_step
