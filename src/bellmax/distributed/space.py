"""What a sweep varies, parsed and checked against the algorithm's Config before any trial starts.

    --grid learning_rate=3e-4,1e-3                 every value, crossed with the other grids
    --sample learning_rate=loguniform:1e-5:1e-3    a range to draw from (random or Optuna search):
             ent_coef=uniform:0:0.02   n_steps=int:64:512   activation=choice:tanh,relu
    --space FILE                                   the same in YAML or JSON:
             {"grid": {"n_epochs": [4, 10]}, "sample": {"learning_rate": "loguniform:1e-5:1e-3"}}

A value is read as its field's type (`hidden_sizes=[64,64];[256,256]` in a grid: lists in JSON,
separated by ';' when they hold commas); a field that is not in the Config, a value of the wrong
type and a setting the Config refuses (`learning_rate=-1`) are one clear error each.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bellmax.errors import BellmaxError, ConfigError

RANGE_KINDS = ("loguniform", "uniform", "int", "choice")
FIXED_BY_THE_SWEEP = ("seed", "env")  # a sweep sets these itself


@dataclass(frozen=True)
class Range:
    """A range a random or Optuna search draws a field's value from."""

    kind: str  # one of RANGE_KINDS
    low: float = 0.0
    high: float = 0.0
    options: tuple[Any, ...] = ()

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return self.options[int(rng.integers(len(self.options)))]

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "int":
            return tune.randint(int(self.low), int(self.high) + 1)  # randint's upper end is exclusive
        return tune.choice(list(self.options))

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice:" + ",".join(map(str, self.options))
        return f"{self.kind}:{self.low:g}:{self.high:g}"


@dataclass
class SearchSpace:
    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample: dict[str, Range] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return [*self.grid, *self.sample]

    def to_json(self) -> dict[str, Any]:
        return {"grid": self.grid, "sample": {k: r.describe() for k, r in self.sample.items()}}


def field_types(config_class: type) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


def check_field(config_class: type, name: str) -> Any:
    """The type of Config field `name`, or a clear error naming the closest fields."""
    types_ = field_types(config_class)
    if name in FIXED_BY_THE_SWEEP:
        raise ConfigError(f"{name!r} cannot be swept here: give seeds with --seeds and the env with --env")
    if name not in types_:
        close = difflib.get_close_matches(name, types_, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{name!r} is not a {config_class.__name__} field{hint}; "
                          f"`bellmax train {getattr(config_class, 'algo', 'ALGO')} --help` lists them")
    return types_[name]


def parse_value(config_class: type, name: str, text: Any) -> Any:
    """`text` (a string from the command line, or a value from a space file) as field `name`'s type."""
    expected = check_field(config_class, name)
    try:
        return _convert(expected, text)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(f"{name}={text!r}: not a valid {_type_name(expected)}") from None


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def _convert(expected: Any, value: Any) -> Any:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value)
            except (ValueError, TypeError, json.JSONDecodeError):
                continue
        raise ValueError(value)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(value)
        return value
    if origin in (tuple, list):
        items = json.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise TypeError(value)
        inner = args[0] if args else Any
        converted = [_convert(inner, item) if inner is not Any else item for item in items]
        return tuple(converted) if origin is tuple else converted
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise ValueError(value)
    if expected is int:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if expected is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return value


def parse_grid(config_class: type, items: list[str]) -> dict[str, list[Any]]:
    """`field=v1,v2` (or `field=[..];[..]` for list values) -> {field: [v1, v2]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, values = _split(item, "--grid", "learning_rate=3e-4,1e-3")
        texts = values.split(";") if "[" in values else values.split(",")
        grid[name] = [parse_value(config_class, name, text.strip()) for text in texts if text.strip()]
        if not grid[name]:
            raise ConfigError(f"--grid {item}: no values")
    return grid


def parse_range(config_class: type, name: str, text: str) -> Range:
    kind, _, rest = text.partition(":")
    if kind not in RANGE_KINDS:
        raise ConfigError(f"{name}={text}: a range is one of {', '.join(k + ':...' for k in RANGE_KINDS)} "
                          "(e.g. loguniform:1e-5:1e-3, int:64:512, choice:tanh,relu)")
    if kind == "choice":
        options = tuple(parse_value(config_class, name, v) for v in rest.split(",") if v)
        if not options:
            raise ConfigError(f"{name}={text}: no options")
        return Range(kind, options=options)
    low_text, _, high_text = rest.partition(":")
    low, high = parse_value(config_class, name, low_text), parse_value(config_class, name, high_text)
    if not low < high:
        raise ConfigError(f"{name}={text}: the low end must be below the high end")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{name}={text}: a log-uniform range must be positive")
    return Range(kind, float(low), float(high))


def parse_sample(config_class: type, items: list[str]) -> dict[str, Range]:
    sample = {}
    for item in items:
        name, text = _split(item, "--sample", "learning_rate=loguniform:1e-5:1e-3")
        check_field(config_class, name)
        sample[name] = parse_range(config_class, name, text)
    return sample


def load_space_file(config_class: type, path: Path) -> SearchSpace:
    """A search space from a YAML or JSON file with `grid` and/or `sample` sections."""
    path = Path(path)
    if not path.is_file():
        raise BellmaxError(f"search-space file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError: the file's own fault
        raise BellmaxError(f"{path} is not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: "
                           f"{str(exc).splitlines()[0]}") from None
    sections_are_mappings = isinstance(data, dict) and all(isinstance(v, dict | None) for v in data.values())
    if not sections_are_mappings or not set(data) <= {"grid", "sample"} or not data:
        raise BellmaxError(f"{path}: expected a mapping with 'grid' and/or 'sample', e.g. "
                           '{"grid": {"n_epochs": [4, 10]}, "sample": {"learning_rate": "loguniform:1e-5:1e-3"}}')
    space = SearchSpace()
    for name, values in (data.get("grid") or {}).items():
        values = values if isinstance(values, list) else [values]
        space.grid[name] = [parse_value(config_class, name, v) for v in values]
    for name, text in (data.get("sample") or {}).items():
        check_field(config_class, name)
        space.sample[name] = parse_range(config_class, name, str(text))
    return space


def _split(item: str, flag: str, example: str) -> tuple[str, str]:
    name, sep, values = item.partition("=")
    if not sep or not name:
        raise ConfigError(f"{flag} {item!r}: expected FIELD=VALUES, e.g. {flag} {example}")
    return name.replace("-", "_"), values


def check_settings(base: Any, settings: list[dict[str, Any]]) -> None:
    """Every setting makes a valid Config (validated as `bellmax train` would, before any trial)."""
    for setting in settings:
        try:
            dataclasses.replace(base, **setting).validate()
        except ConfigError as exc:
            raise ConfigError(f"setting {setting}: {exc}") from None


def grid_settings(space: SearchSpace) -> list[dict[str, Any]]:
    """Every combination of the grid's values (one empty setting without a grid)."""
    names = list(space.grid)
    return [dict(zip(names, values)) for values in itertools.product(*(space.grid[n] for n in names))]


def random_settings(space: SearchSpace, samples: int, seed: int) -> list[dict[str, Any]]:
    """`samples` draws from the ranges for each combination of the grid, from a generator seeded by
    `seed`: the same command gives the same settings, and each setting is trained on every seed."""
    rng = np.random.default_rng(seed)
    return [{**combo, **{name: r.draw(rng) for name, r in space.sample.items()}}
            for _ in range(samples) for combo in grid_settings(space)]


def setting_name(setting: dict[str, Any]) -> str:
    """A directory-safe name of a setting: `learning_rate=0.001,n_epochs=4` (`default` when empty)."""
    if not setting:
        return "default"
    parts = []
    for key, value in setting.items():
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, list | tuple):
            text = "x".join(map(str, value))
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return ",".join(parts).replace("/", "_")
