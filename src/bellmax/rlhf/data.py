"""The data sets of the RLHF workflow, as JSONL in the conventions users know (TRL's):

    corpus.jsonl        {"text": "sort : 3 1 2 = 1 2 3 <eos>"}                 pretraining text
    sft.jsonl           {"prompt": "sort : 3 1 2 =", "completion": " 1 2 3"}   demonstrations (EOS added)
    prompts.jsonl       {"prompt": "..."}                                      RL prompts
    eval_prompts.jsonl  {"prompt": "..."}                                      held-out prompts for evaluation
    rankings.jsonl      {"prompt", "responses": [...], "ranks": [...],         K ranked samples (0 = best, ties
                         "finished": [...]}                                    equal); finished is optional
    comparisons.jsonl   {"prompt", "chosen": " 1 2 3", "rejected": " 3 2 1"}   the pairs derived from the rankings

As in TRL's prompt-completion and preference data sets, a completion, chosen, rejected or ranked
response starts with a space and holds no EOS: the model reads prompt + completion + EOS, the EOS
appended by tokenization (TRL appends the tokenizer's EOS to a text that does not already end with
it, and so does `with_eos`, which also reads the files of earlier releases, where the EOS was
spelled out), and the tokenizer adds the BOS. A ranked response that the policy did
not finish (it ran out of tokens before its EOS) is marked false in `finished`; TRL's preference
format cannot say so, so comparisons.jsonl holds only the pairs of finished responses.

`make_task_data` writes the first four (plus the tokenizer) for our synthetic task; a user can
bring their own files in the same format instead.

Every stage reads its files with `load` (or `read_rankings`), which checks each line against the
file's `Schema` before any training: a line that is not UTF-8, not a JSON object, lacks a field or
holds the wrong kind of value is a `BellmaxError` naming the file, the line and the field.
`check_context` then checks each record's length in tokens against the model's context.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellmax.config import require
from bellmax.core.run import atomic_write_text
from bellmax.errors import BellmaxError
from bellmax.rlhf import task
from bellmax.rlhf.model import context_length, prompt_ids, response_ids

CORPUS, SFT, PROMPTS, EVAL_PROMPTS = "corpus.jsonl", "sft.jsonl", "prompts.jsonl", "eval_prompts.jsonl"
RANKINGS, COMPARISONS = "rankings.jsonl", "comparisons.jsonl"
TOKENIZER_DIR = "tokenizer"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(row) + "\n" for row in rows))


# -- what each file holds -----------------------------------------------------------------------
FieldCheck = Callable[[Any], str | None]  # what is wrong with a field's value, or None if nothing


def describe(value: Any) -> str:
    """A JSON value as a user wrote it, cut short, with its JSON type: `42 (a number)`."""
    kinds = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return shown if value is None else f"{shown} ({kinds.get(type(value), type(value).__name__)})"


def text_field(value: Any) -> str | None:
    """A string with some text in it."""
    if not isinstance(value, str):
        return f"must be a string, not {describe(value)}"
    if not value.strip():
        return "is empty; it needs text"
    return None


def response_field(value: Any) -> str | None:
    """A string: a response, which may be empty (a response that stopped at once is its EOS alone)."""
    if not isinstance(value, str):
        return f"must be a string, not {describe(value)}"
    return None


def responses_field(value: Any) -> str | None:
    """At least two strings: the responses of a ranking."""
    if not isinstance(value, list):
        return f"must be a list of strings, not {describe(value)}"
    if len(value) < 2:
        return f"holds {len(value)} response(s); a ranking needs at least 2"
    for index, item in enumerate(value):
        problem = response_field(item)
        if problem is not None:
            return f"item {index} {problem}"
    return None


def ranks_field(value: Any) -> str | None:
    """A list of integers: the ranks of a ranking (0 = best, ties equal)."""
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"must be a list of integers (0 = best, ties equal), not {describe(value)}"
    return None


def finished_field(value: Any) -> str | None:
    """A list of booleans: whether each ranked response ended with EOS (true) or ran out of tokens."""
    if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
        return f"must be a list of booleans (true: the response ended with EOS), not {describe(value)}"
    return None


def one_rank_per_response(row: dict[str, Any]) -> tuple[str, str] | None:
    """(field, problem) if a ranking's ranks (or finished flags) and responses differ in number."""
    for name, what in (("ranks", "ranks"), ("finished", "finished flags")):
        if name in row and len(row[name]) != len(row["responses"]):
            return name, (f"holds {len(row[name])} {what} for {len(row['responses'])} responses; give one per "
                          "response")
    return None


@dataclass(frozen=True)
class Schema:
    """The fields every line of a JSONL file must hold (other fields are ignored)."""

    fields: dict[str, FieldCheck]
    """Field name -> its check."""
    example: str
    """One valid line, shown in the error messages."""
    row_check: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None
    """A check across fields, given a row whose fields each passed: (field, problem) or None."""
    optional: dict[str, FieldCheck] = field(default_factory=dict)
    """Fields a line may hold, checked where present."""


SCHEMAS: dict[str, Schema] = {
    CORPUS: Schema({"text": text_field}, '{"text": "..."}'),
    SFT: Schema({"prompt": text_field, "completion": text_field}, '{"prompt": "...", "completion": "..."}'),
    PROMPTS: Schema({"prompt": text_field}, '{"prompt": "..."}'),
    EVAL_PROMPTS: Schema({"prompt": text_field}, '{"prompt": "..."}'),
    RANKINGS: Schema({"prompt": text_field, "responses": responses_field, "ranks": ranks_field},
                     '{"prompt": "...", "responses": ["...", "..."], "ranks": [0, 1]}', one_rank_per_response,
                     {"finished": finished_field}),
    COMPARISONS: Schema({"prompt": text_field, "chosen": response_field, "rejected": response_field},
                        '{"prompt": "...", "chosen": "...", "rejected": "..."}'),
}


# -- reading and checking -----------------------------------------------------------------------
@dataclass
class Records:
    """The rows of a JSONL file, each with its line number, so that later checks can point at the line."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        return [row[name] for row in self.rows]

    def where(self, index: int) -> str:
        """`path:line` of the row at `index`."""
        return f"{self.path}:{self.lines[index]}"


def load(directory: Path, name: str) -> Records:
    """The checked rows of `directory/name`, one of the files in SCHEMAS."""
    return read_jsonl(Path(directory) / name, SCHEMAS[name])


def read_jsonl(path: Path, schema: Schema) -> Records:
    """Every non-blank line of `path`, checked against `schema`; the first bad line is a BellmaxError
    that names the file, the line, the field and the expected form. Lines end at "\\n" only (a JSON
    string may hold U+2028), and a UTF-8 byte-order mark is allowed."""
    path = Path(path)
    if not path.is_file():
        raise BellmaxError(f"{path} does not exist (expected JSONL lines like {schema.example})")
    records = Records(path)
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = _decode_line(path, number, raw)
        if line.strip():
            records.rows.append(_parse_line(f"{path}:{number}", line, schema))
            records.lines.append(number)
    if not records.rows:
        raise BellmaxError(f"{path} holds no rows (expected JSONL lines like {schema.example})")
    return records


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    raw = raw.removesuffix(b"\r")
    if number == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BellmaxError(f"{path}:{number} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                           f"{exc.start + 1}); save the file as UTF-8") from None


def _parse_line(where: str, line: str, schema: Schema) -> dict[str, Any]:
    """One line as a row that passed every check of `schema`; `where` is `path:line` for the messages."""
    try:
        row = json.loads(line)
    except RecursionError:
        raise BellmaxError(f"{where} nests JSON too deeply; each line must be one object like {schema.example}") \
            from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer of more than 4,300 digits
        reason = f"{exc.msg}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise BellmaxError(f"{where} is not valid JSON ({reason}); each line must be one object like "
                           f"{schema.example}") from None
    if not isinstance(row, dict):
        raise BellmaxError(f"{where} holds {describe(row)}, not a JSON object; each line must be one object like "
                           f"{schema.example}")
    missing = [name for name in schema.fields if name not in row]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise BellmaxError(f"{where} lacks field{'s' if len(missing) > 1 else ''} {names}; each line needs "
                           f"{schema.example}")
    for name, check in [*schema.fields.items(), *((n, c) for n, c in schema.optional.items() if n in row)]:
        problem = check(row[name])
        if problem is not None:
            raise BellmaxError(f"{where}: field {name!r} {problem}; each line needs {schema.example}")
    across = schema.row_check(row) if schema.row_check is not None else None
    if across is not None:
        raise BellmaxError(f"{where}: field {across[0]!r} {across[1]}")
    return row


def check_context(records: Records, lengths: Sequence[int], context: int, what: str, fix: str) -> None:
    """Each record fits the model's context: `lengths[i]`, the tokens the stage feeds the model for
    record i (prompt, response and special tokens), is at most `context` (the model's n_positions).
    A longer one would index past the position embeddings in the middle of training."""
    too_long = [i for i, length in enumerate(lengths) if length > context]
    if too_long:
        first = too_long[0]
        more = f" (and {len(too_long) - 1} more line(s))" if len(too_long) > 1 else ""
        raise BellmaxError(f"{records.where(first)}: {what} {lengths[first]} tokens, more than the model's context "
                           f"of {context} (n_positions){more}; {fix}")


def check_prompts_fit(records: Records, tokenizer, models: list, max_new_tokens: int,
                      fix: str = "shorten that prompt, lower --max-new-tokens, or use a model with a larger context",
                      ) -> None:
    """Every prompt plus the longest response the models may sample fits each model's context."""
    contexts = [c for c in map(context_length, models) if c is not None]
    if contexts:
        lengths = [len(ids) + max_new_tokens for ids in prompt_ids(tokenizer, records.column("prompt"))]
        check_context(records, lengths, min(contexts), f"BOS + prompt + {max_new_tokens} response tokens come to", fix)


def check_rankings_fit(rankings: Records, tokenizer, reward_model) -> None:
    """Every prompt with its longest response fits the reward model's context."""
    context = context_length(reward_model)
    if context is not None:
        prompts = prompt_ids(tokenizer, rankings.column("prompt"))
        lengths = [len(p) + max(map(len, response_ids(tokenizer, r["responses"])))
                   for p, r in zip(prompts, rankings.rows)]
        check_context(rankings, lengths, context, "BOS + prompt + its longest response come to",
                      "shorten that prompt or its responses, or use a model with a larger context")


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


def read_rankings(directory: Path) -> Records:
    """Ranked lists from rankings.jsonl, or else each prompt/chosen/rejected row of comparisons.jsonl
    as a ranked list of two (keeping its line number). Responses are as the file holds them: give
    them to `with_eos` before the model reads them."""
    directory = Path(directory)
    if (directory / RANKINGS).is_file():
        return load(directory, RANKINGS)
    if (directory / COMPARISONS).is_file():
        pairs = load(directory, COMPARISONS)
        rows = [{"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"]], "ranks": [0, 1]} for r in pairs.rows]
        return Records(pairs.path, rows, pairs.lines)
    raise BellmaxError(f"{directory} holds neither {RANKINGS} nor {COMPARISONS}; "
                       "make them with `bellmax rlhf compare` or bring your own")


def with_eos(rankings: Records, eos_token: str) -> Records:
    """The rankings with each finished response as the model reads it: the completion with the EOS
    token appended, as TRL appends it. A response marked unfinished (`finished`) stays as it is.

    A file without `finished` in which responses spell the EOS out (as earlier bellmax releases
    wrote them, "1 2 3 <eos>") is read as written: a response that ends with the EOS keeps the one it
    has, and one that does not never finished."""
    spelled_out = not any("finished" in row for row in rankings.rows) and any(
        response.endswith(eos_token) for row in rankings.rows for response in row["responses"])
    rows = []
    for index, row in enumerate(rankings.rows):
        default = [r.endswith(eos_token) if spelled_out else True for r in row["responses"]]
        responses = []
        for number, (response, finished) in enumerate(zip(row["responses"], row.get("finished", default))):
            if not finished and response.rstrip().endswith(eos_token):
                raise BellmaxError(f"{rankings.where(index)}: response {number} ends with {eos_token} but finished "
                                   f"says it did not finish; drop the {eos_token} or mark it finished")
            responses.append(response + eos_token if finished and not response.endswith(eos_token) else response)
        rows.append({**row, "responses": responses})
    return Records(rankings.path, rows, rankings.lines)


def as_completion(response: str, eos_token: str) -> tuple[str, bool]:
    """A sampled response's text (EOS written out where the policy finished it) in the files'
    convention: (the text before the EOS, starting with a space unless empty, whether it finished)."""
    head, eos, _ = response.partition(eos_token)
    head = head.rstrip()
    return (head if not head or head[0].isspace() else f" {head}"), bool(eos)


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
        sft.append({"prompt": prompt, "completion": f" {completion}"})  # TRL's convention: the space starts it
    rng = stream("prompts")
    prompts = [{"prompt": task.make_prompt(rng, sizes)} for _ in range(config.rl_prompts)]
    rng = stream("eval")
    eval_prompts = [{"prompt": task.make_prompt(rng, sizes)} for _ in range(config.eval_prompts)]
    return {CORPUS: corpus, SFT: sft, PROMPTS: prompts, EVAL_PROMPTS: eval_prompts}


def run_data(config: DataConfig, run_dir: Path) -> dict[str, Any]:
    """Stage "data": the synthetic task's data sets and tokenizer, and a report of their sizes."""
    started = time.perf_counter()
    rows = write_task_data(config, run_dir)
    report = {"stage": "data", "rows": rows, "config": config_dict(config), "seconds": time.perf_counter() - started}
    write_report(run_dir, report)
    return report


def write_task_data(config: DataConfig, directory: Path) -> dict[str, int]:
    """Write the data sets and the task's tokenizer into `directory`; return the row counts."""
    from bellmax.rlhf.model import build_tokenizer  # tokenizers, needed by this stage only

    directory = Path(directory)
    sets = make_task_data(config)
    for name, rows in sets.items():
        write_jsonl(directory / name, rows)
    build_tokenizer(task.vocabulary()).save_pretrained(str(directory / TOKENIZER_DIR))
    return {name: len(rows) for name, rows in sets.items()}
