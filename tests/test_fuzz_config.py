"""Property: whatever value a command line gives any Config field of any algorithm, `bellmax train`
either accepts it (the config validates and the agent is built) or refuses it with exit 2 and a
readable message (one `error:` line, or tyro's box for a value of the wrong type), before anything
is written; never a traceback, another exit code, or a run directory left behind."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bellmax.algos import get_algorithm
from bellmax.cli import main
from bellmax.config import flag

ALGOS = ["vpg", "a2c", "trpo", "ppo", "dqn", "ddpg", "td3", "sac"]
SKIPPED = {"env", "device"}  # other environments and devices are tested on their own (test_config_envs, test_device)

EDGE_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, 2**31, 2**32, 2**63, 10**12]
JUNK = ["", "x", "1.5", "1e9", "nan", "-inf", "0x10", "None", "[1]", "１", "\x00"]


class Accepted(BaseException):
    """Raised where `bellmax train` would create the run directory: the value got through."""


def values_for(hint: typing.Any) -> st.SearchStrategy[list[str]]:
    """Command-line words for a field of type `hint`: mostly wrong or extreme, some fine."""
    junk = st.sampled_from(JUNK).map(lambda v: [v])
    if hint is bool:
        return st.just([])  # a bool flag takes no value: --x / --no-x, both valid
    if hint is int:
        return st.one_of(st.sampled_from(EDGE_INTS).map(lambda v: [str(v)]),
                         st.integers(-3, 300).map(lambda v: [str(v)]), junk)
    if hint is float or hint == (float | None):
        floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                           st.sampled_from([0.0, -0.0, 1e-300, 1e39, -1e39, 3.5e38, 1.0, 0.5, 2.0]))
        return st.one_of(floats.map(lambda v: [repr(v)]), junk)
    if hint == tuple[int, ...]:
        return st.one_of(st.lists(st.sampled_from([-1, 0, 1, 16, 64, 10**6, 2**31]), min_size=0, max_size=3)
                         .map(lambda vs: [str(v) for v in vs]), junk)
    if typing.get_origin(hint) is typing.Literal:
        return st.one_of(st.sampled_from([[str(v)] for v in typing.get_args(hint)]), junk)
    if hint is str:
        return st.one_of(st.text(max_size=12).map(lambda v: [v]), junk)
    raise AssertionError(f"no strategy for {hint}")


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    algo = draw(st.sampled_from(ALGOS))
    config_class = get_algorithm(algo).config_class
    hints = typing.get_type_hints(config_class)
    names = sorted(f.name for f in dataclasses.fields(config_class) if f.name not in SKIPPED)
    name = draw(st.sampled_from(names))
    words = draw(values_for(hints[name]))
    return algo, name, [flag(name), *words]


@pytest.fixture
def accept_before_the_run_directory(monkeypatch):
    from bellmax.core import run

    def refuse_to_start(*args, **kwargs):
        raise Accepted

    monkeypatch.setattr(run, "Run", refuse_to_start)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=command_lines())
def test_any_value_of_any_field_is_accepted_or_refused_in_one_readable_message(
        line, accept_before_the_run_directory, tmp_path, capsys):
    algo, name, words = line
    run_dir = tmp_path / "fuzzed"
    try:
        code = main(["train", algo, *words, "--run-dir", str(run_dir), "--no-progress", "--no-tensorboard"])
    except Accepted:
        return
    except SystemExit as exited:  # tyro's parse errors: a box naming the flag and its expected type
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2, (algo, words, code, err)
    assert "Traceback" not in err and err.strip(), (algo, words, err)
    if err.startswith("error: "):
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert flag(name) in err or "Unrecognized" in err or "Parsing error" in err, err
    assert not run_dir.exists()
