"""`--help` for `bellmax train ALGO` and the `bellmax rlhf` stages without importing torch.

Their flags are the fields of config dataclasses that live beside the code that reads them
(`algos/ppo.py` holds PPOConfig and PPO), in modules that import torch or transformers: 1 to 4 s
before a word of help. This module reads a config class from its source instead, with `ast`
(nothing in the file is executed): its fields' names, types, defaults and docstrings, following
base classes and `field(default_factory=...)` into the modules that define them. From those it
makes a stand-in dataclass whose help tyro prints exactly as it prints the real class's
(tests/test_help.py compares the two for every algorithm and RLHF stage).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

BUILTIN_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "None": None,
                                 "Path": Path, "Any": Any}


@functools.cache
def _module_tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no source for {module}")
    return ast.parse(Path(spec.origin).read_text(), spec.origin)


def _resolve(module: str, name: str) -> tuple[str, ast.ClassDef | ast.expr]:
    """Where `name`, as used in `module`, is defined: (module, its ClassDef or assigned value)."""
    for node in _module_tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return module, node.value
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name
                and node.value is not None):
            return module, node.value
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return _resolve(node.module, original)
    raise LookupError(f"{name} is not defined or imported at the top of {module}")


def _type(module: str, node: ast.expr) -> Any:
    """The type an annotation names."""
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        return _type(module, ast.parse(node.value, mode="eval").body)
    if isinstance(node, ast.Name):
        if node.id in BUILTIN_TYPES:
            return BUILTIN_TYPES[node.id]
        where, definition = _resolve(module, node.id)
        return static_dataclass(where, node.id) if isinstance(definition, ast.ClassDef) else _type(where, definition)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_type(module, node.left), _type(module, node.right)]  # noqa: UP007 (types made at run time)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if node.value.id == "Literal":
            return Literal[tuple(ast.literal_eval(item) for item in items)]
        if node.value.id == "tuple":
            args = tuple(... if isinstance(i, ast.Constant) and i.value is Ellipsis else _type(module, i)
                         for i in items)
            return types.GenericAlias(tuple, args)  # tuple[args], made at run time
    raise TypeError(f"{module}: cannot read the annotation {ast.unparse(node)}")


def _docstrings(body: list[ast.stmt]) -> dict[str, str]:
    """Field name -> the string literal right after it (the convention tyro reads)."""
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _is_classvar(annotation: ast.expr) -> bool:
    target = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    return isinstance(target, ast.Name) and target.id == "ClassVar"


@functools.cache
def static_dataclass(module: str, name: str) -> type[Any]:
    """A dataclass with the fields (names, types, defaults, docs) of dataclass `name` in `module`,
    read from the source. Its docstring is the class's; each field's help is its docstring."""
    where, node = _resolve(module, name)
    if not isinstance(node, ast.ClassDef):
        raise TypeError(f"{name} in {module} is not a class")
    fields: dict[str, tuple[Any, Any, str | None]] = {}  # name -> (type, default or factory, doc)
    for base in node.bases:
        if isinstance(base, ast.Name):
            for f in dataclasses.fields(static_dataclass(where, base.id)):
                fields[f.name] = (f.type, f.default_factory if f.default is dataclasses.MISSING else f.default,
                                  f.metadata.get("doc"))
    docs = _docstrings(node.body)
    renamed: dict[str, str | None] = {}
    for base in node.bases:
        if isinstance(base, ast.Name):
            renamed.update(static_dataclass(where, base.id).renamed)
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        if _is_classvar(statement.annotation) and statement.target.id == "renamed" and statement.value is not None:
            renamed.update(ast.literal_eval(statement.value))
        if _is_classvar(statement.annotation) or statement.value is None:
            continue
        field_name, value = statement.target.id, statement.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
            factory = next(k.value for k in value.keywords if k.arg == "default_factory")
            default: Any = _type(where, factory)  # a dataclass: its constructor is the factory
        else:
            default = ast.literal_eval(value)
        doc = docs.get(field_name, fields.get(field_name, (None, None, None))[2])
        fields[field_name] = (_type(where, statement.annotation), default, doc)
    made = []
    for field_name, (kind, default, doc) in fields.items():
        base_type = typing.get_args(kind)[0] if typing.get_origin(kind) is Annotated else kind
        annotated = Annotated[base_type, _arg(doc)] if doc else base_type
        spec = (dataclasses.field(default_factory=default, metadata={"doc": doc}) if isinstance(default, type)
                else dataclasses.field(default=default, metadata={"doc": doc}))
        made.append((field_name, annotated, spec))
    # renamed: Config.renamed of the class and its bases
    stand_in = dataclasses.make_dataclass(name, made, namespace={"renamed": renamed})
    stand_in.__doc__ = ast.get_docstring(node)
    stand_in.__module__ = __name__
    return stand_in


def _arg(doc: str) -> Any:
    import tyro

    return tyro.conf.arg(help=doc)


def literal_assignment(module: str, name: str) -> Any:
    """The value of a module-level assignment of plain data (`PRESETS = {...}`), read from the source."""
    _, value = _resolve(module, name)
    return ast.literal_eval(value)


def print_help(config_class: type, defaults: Any, prog: str, description: str) -> int:
    """tyro's help for `config_class` with `defaults` shown, as the real parser would print it."""
    import tyro

    try:
        tyro.cli(config_class, default=defaults, args=["--help"], prog=prog, description=description)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


# -- bellmax train ALGO --help --------------------------------------------------------------------
TRAIN_FLAGS = "--env ID, --preset NAME, --run-dir DIR, --resume DIR, --no-progress, --no-tensorboard"


def train_description(algo: str, env: str | None, preset: tuple[str, dict[str, Any]] | None,
                      resume: str | None = None) -> str:
    """What `bellmax train ALGO --help` says above the flags: what it does and whose defaults it shows."""
    from bellmax.config import RESUMABLE_FIELDS

    text = f"Train {algo.upper()}. Also: {TRAIN_FLAGS}."
    if resume is not None:
        changeable = ", ".join("--" + name.replace("_", "-") for name in RESUMABLE_FIELDS)
        return text + f" Defaults shown: the settings of the run in {resume}; a resume may change {changeable}."
    if preset is not None:
        name, entry = preset
        return (text + f" Defaults shown: the {algo} preset {name!r}, tuned for {entry['env']} (its source: "
                f"bellmax/presets/{algo}.json); --env or --preset picks another.")
    return text + f" Defaults shown: {algo.upper()}'s own; no {algo} preset is tuned for {env}."


def train_help(algo: str, env: str | None, preset_name: str | None, resume: str | None) -> int:
    """`bellmax train ALGO [--env ID | --preset NAME | --resume DIR] --help`, without torch."""
    from bellmax.algos import ALGORITHMS
    from bellmax.config import find_preset, nested_dataclass, with_new_names
    from bellmax.core.run import read_run_config

    module, _, config_name = ALGORITHMS[algo]
    stand_in = static_dataclass(module, config_name)
    if resume is not None:
        saved = read_run_config(Path(resume)).get("config", {})
        defaults = nested_dataclass(stand_in, with_new_names(saved, stand_in.renamed))
        found = None
    else:
        env = env or stand_in().env
        found = find_preset(algo, env, preset_name)
        values = {**found[1]["values"], "env": found[1]["env"]} if found else {}
        defaults = nested_dataclass(stand_in, {**values, "env": env} if preset_name is None else values)
    return print_help(stand_in, defaults, f"bellmax train {algo}", train_description(algo, env, found, resume))
