"""The data sets of the RLHF workflow, as JSONL in the conventions users know (TRL's):

    corpus.jsonl        {"text": "sort : 3 1 2 = 1 2 3 <eos>"}                pretraining text
    sft.jsonl           {"prompt": "sort : 3 1 2 =", "completion": "1 2 3"}   demonstrations (EOS added)
    prompts.jsonl       {"prompt": "..."}                                     RL prompts
    eval_prompts.jsonl  {"prompt": "..."}                                     held-out prompts for evaluation
    rankings.jsonl      {"prompt", "responses": [...], "ranks": [...]}        K ranked samples (0 = best, ties equal)
    comparisons.jsonl   {"prompt", "chosen", "rejected"}                      the pairs derived from the rankings

`make_task_data` writes the first four (plus the tokenizer) for our synthetic task; a user can
bring their own files in the same format instead.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellmax.config import require
from bellmax.core.run import atomic_write_text
from bellmax.errors import BellmaxError
from bellmax.rlhf import task

CORPUS, SFT, PROMPTS, EVAL_PROMPTS = "corpus.jsonl", "sft.jsonl", "prompts.jsonl", "eval_prompts.jsonl"
RANKINGS, COMPARISONS = "rankings.jsonl", "comparisons.jsonl"
TOKENIZER_DIR = "tokenizer"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a missing file, bad JSON or a row without one of `fields` is a BellmaxError."""
    path = Path(path)
    if not path.is_file():
        raise BellmaxError(f"{path} does not exist (expected JSONL rows with fields {', '.join(fields)})")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BellmaxError(f"{path}:{number} is not valid JSON ({exc.msg})") from None
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise BellmaxError(f"{path}:{number} lacks field(s) {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise BellmaxError(f"{path} holds no rows")
    return rows


def config_dict(config) -> dict[str, Any]:
    """A stage config as plain data (for config.json)."""
    return dataclasses.asdict(config)


def write_report(run_dir: Path, report: dict[str, Any]) -> None:
    """A stage's summary, run_dir/report.json, written atomically."""
    atomic_write_text(Path(run_dir) / "report.json", json.dumps(report, indent=2) + "\n")


def tokenizer_dir(data_dir: Path) -> Path:
    """The tokenizer saved with a data directory; a clear error if there is none."""
    path = Path(data_dir) / TOKENIZER_DIR
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        if not Path(data_dir).is_dir():
            raise BellmaxError(f"--data {data_dir} does not exist; make it with `bellmax rlhf data --run-dir DIR`")
        raise BellmaxError(f"--data {data_dir} has no tokenizer in {path}; make it with `bellmax rlhf data`")
    return path


def read_rankings(directory: Path) -> list[dict[str, Any]]:
    """Ranked lists from rankings.jsonl, or else each prompt/chosen/rejected row of comparisons.jsonl
    as a ranked list of two."""
    directory = Path(directory)
    if (directory / RANKINGS).is_file():
        rows = read_jsonl(directory / RANKINGS, ("prompt", "responses", "ranks"))
        for number, row in enumerate(rows, start=1):
            if len(row["responses"]) != len(row["ranks"]) or len(row["responses"]) < 2:
                raise BellmaxError(f"{directory / RANKINGS}:{number}: responses and ranks must be equally long (>= 2)")
        return rows
    if (directory / COMPARISONS).is_file():
        rows = read_jsonl(directory / COMPARISONS, ("prompt", "chosen", "rejected"))
        return [{"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"]], "ranks": [0, 1]} for r in rows]
    raise BellmaxError(f"{directory} holds neither {RANKINGS} nor {COMPARISONS}; "
                       "make them with `bellmax rlhf compare` or bring your own")


@dataclass
class DataConfig:
    """How much of each data set to generate for the synthetic task."""

    seed: int = 0
    """Seed of the task generator."""
    corpus_size: int = 20_000
    """Pretraining sequences (prompt + response)."""
    good_fraction: float = 0.3
    """Share of correct responses in the pretraining corpus (the rest are typical mistakes)."""
    sft_size: int = 1_000
    """Demonstrations (prompt + completion): few, as demonstrations are expensive."""
    sloppy_demo_fraction: float = 0.5
    """Share of demonstrations whose writer padded the correct answer with filler words: SFT imitates
    the demonstrators, flaws included; the rankings reveal that the padding is not wanted."""
    rl_prompts: int = 4_000
    """Prompts for comparisons and PPO."""
    eval_prompts: int = 500
    """Held-out prompts for the win rates."""
    min_items: int = 2
    """Fewest items in a task list."""
    max_items: int = 6
    """Most items in a task list."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        for name in ("corpus_size", "sft_size", "rl_prompts", "eval_prompts"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "at least 1")
        require(0.0 <= self.good_fraction <= 1.0, "good_fraction", self.good_fraction, "in [0, 1]")
        require(0.0 <= self.sloppy_demo_fraction <= 1.0, "sloppy_demo_fraction", self.sloppy_demo_fraction,
                "in [0, 1]")
        require(1 <= self.min_items <= self.max_items <= 12, "max_items", (self.min_items, self.max_items),
                "1 <= min_items <= max_items <= 12")

    def task_config(self) -> task.TaskConfig:
        return task.TaskConfig(min_items=self.min_items, max_items=self.max_items)


def make_task_data(config: DataConfig) -> dict[str, list[dict[str, Any]]]:
    """The four data sets of the synthetic task, each from its own seeded stream."""
    config.validate()
    sizes = config.task_config()

    def stream(name: str) -> random.Random:
        return random.Random(f"{config.seed}:{name}")

    rng = stream("corpus")
    corpus = []
    for _ in range(config.corpus_size):
        prompt = task.make_prompt(rng, sizes)
        if rng.random() < config.good_fraction:
            response = f"{task.good_response(prompt)} {task.EOS}"
        else:
            response = task.poor_response(prompt, rng)
        corpus.append({"text": f"{prompt} {response}"})
    rng = stream("sft")
    sft = []
    for _ in range(config.sft_size):
        prompt = task.make_prompt(rng, sizes)
        completion = task.good_response(prompt)
        if rng.random() < config.sloppy_demo_fraction:
            completion = task.padded_response(prompt, rng)
        sft.append({"prompt": prompt, "completion": completion})
    rng = stream("prompts")
    prompts = [{"prompt": task.make_prompt(rng, sizes)} for _ in range(config.rl_prompts)]
    rng = stream("eval")
    eval_prompts = [{"prompt": task.make_prompt(rng, sizes)} for _ in range(config.eval_prompts)]
    return {CORPUS: corpus, SFT: sft, PROMPTS: prompts, EVAL_PROMPTS: eval_prompts}


def run_data(config: DataConfig, run_dir: Path) -> dict[str, Any]:
    """Stage "data": the synthetic task's data sets and tokenizer, and a report of their sizes."""
    report = {"stage": "data", "rows": write_task_data(config, run_dir), "config": config_dict(config)}
    write_report(run_dir, report)
    return report


def write_task_data(config: DataConfig, directory: Path) -> dict[str, int]:
    """Write the data sets and the task's tokenizer into `directory`; return the row counts."""
    from bellmax.rlhf.model import build_tokenizer

    directory = Path(directory)
    sets = make_task_data(config)
    for name, rows in sets.items():
        write_jsonl(directory / name, rows)
    build_tokenizer(task.vocabulary()).save_pretrained(str(directory / TOKENIZER_DIR))
    return {name: len(rows) for name, rows in sets.items()}
