"""`bellmax train ALGO --help` and `bellmax rlhf ... --help` are printed from the configs' source
without importing torch: they must say exactly what the real config classes say, defaults of the
preset in force included."""

import contextlib
import io
import json
import subprocess
import sys

import pytest

from bellmax.algos import ALGORITHMS, get_algorithm
from bellmax.cli import main
from bellmax.commands.fast_help import train_description
from bellmax.config import config_with_preset, find_preset, preset_names


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")


def printed(function, *args, **kwargs) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        function(*args, **kwargs)
    return out.getvalue()


def real_help(config_class, defaults, prog: str, description: str) -> str:
    import tyro

    return printed(tyro.cli, config_class, default=defaults, args=["--help"], prog=prog, description=description)


def train_cases():
    for algo in ALGORITHMS:
        yield algo, []  # the default env's preset, if any
        yield algo, ["--env", "Taxi-v3"]  # no preset: the config's own defaults
        for name in preset_names(algo):
            yield algo, ["--preset", name]


@pytest.mark.parametrize(("algo", "flags"), list(train_cases()),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_train_help_is_the_real_configs_help(algo, flags):
    env = flags[1] if flags[:1] == ["--env"] else None
    preset = flags[1] if flags[:1] == ["--preset"] else None
    config_class = get_algorithm(algo).config_class
    defaults = config_with_preset(config_class, env, preset)
    found = find_preset(algo, env or config_class().env, preset)
    expected = real_help(config_class, defaults, f"bellmax train {algo}",
                         train_description(algo, defaults.env, found))
    assert printed(main, ["train", algo, *flags, "--help"]) == expected
    assert ("Defaults shown: the" in expected) == (found is not None)


def test_train_help_of_a_resume_shows_the_runs_own_settings(tmp_path):
    config = get_algorithm("ppo").config_class(env="Pendulum-v1", learning_rate=1.234e-3, n_steps=77)
    (tmp_path / "config.json").write_text(json.dumps({"algo": "ppo", "config": config.to_dict()}))
    text = printed(main, ["train", "ppo", "--resume", str(tmp_path), "--help"])
    assert "(default: 0.001234)" in text and "(default: 77)" in text and "(default: Pendulum-v1)" in text
    assert f"the settings of the run in {tmp_path}; a resume may change --total-steps" in text


def test_rlhf_help_is_the_real_configs_help():
    pytest.importorskip("transformers")
    from bellmax.commands.rlhf import INPUTS, stage_description
    from bellmax.rlhf.pipeline import PRESETS, PipelineConfig, preset

    for name in PRESETS:
        description = (f"All RLHF stages with one preset. Also: --preset NAME, --run-dir DIR, --resume DIR (continue "
                       f"a pipeline that was stopped). Defaults shown: preset {name!r}.")
        expected = real_help(PipelineConfig, preset(name), "bellmax rlhf run", description)
        assert printed(main, ["rlhf", "run", "--preset", name, "--help"]) == expected
        for stage in INPUTS:
            defaults = getattr(preset(name), stage)
            expected = real_help(type(defaults), defaults, f"bellmax rlhf {stage}", stage_description(stage, name))
            assert printed(main, ["rlhf", stage, "--preset", name, "--help"]) == expected, (name, stage)


@pytest.mark.parametrize("command", [["train", "ppo", "--env", "HalfCheetah-v5", "--help"], ["train", "sac", "--help"],
                                     ["rlhf", "--help"], ["rlhf", "run", "--help"], ["rlhf", "ppo", "--help"]])
def test_help_imports_neither_torch_nor_gymnasium_nor_transformers(command):
    probe = (f"import sys, contextlib, io\nfrom bellmax.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main({command!r})\n"
             "heavy = [m for m in ('torch', 'gymnasium', 'transformers', 'numpy') if m in sys.modules]\n"
             "print(code, heavy)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0 []", result.stdout + result.stderr
