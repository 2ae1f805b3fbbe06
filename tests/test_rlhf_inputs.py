"""Bad RLHF inputs, through the command line: each is one line naming the file, the line and the
field (or the model file), exit status 2, no traceback, and no run directory left behind, because
every stage checks its inputs before it trains. Tiny models made here, nothing downloaded."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.cli import main  # noqa: E402
from bellmax.errors import BellmaxError  # noqa: E402
from bellmax.rlhf import data, task  # noqa: E402
from bellmax.rlhf.model import (  # noqa: E402
    CHECKSUMS_FILE,
    ModelConfig,
    build_tokenizer,
    encode_prompts,
    encode_responses,
    load_causal_lm,
    load_reward_model,
    new_causal_lm,
    response_logits,
    save_pretrained,
)

CONTEXT = 16  # n_positions of the tiny model
GOOD = {
    data.CORPUS: {"text": "sort : 2 1 = 1 2 <eos>"},
    data.SFT: {"prompt": "sort : 2 1 =", "completion": " 1 2"},
    data.PROMPTS: {"prompt": "sort : 3 1 2 ="},
    data.EVAL_PROMPTS: {"prompt": "sort : 3 1 2 ="},
    data.RANKINGS: {"prompt": "sort : 2 1 =", "responses": [" 1 2", " 2 1"], "ranks": [0, 1], "finished": [True, True]},
    data.COMPARISONS: {"prompt": "sort : 2 1 =", "chosen": " 1 2", "rejected": " 2 1"},
}
LONG_PROMPT = "sort : 1 2 3 4 5 6 7 8 9 ="  # 12 tokens, 13 with BOS


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(task.vocabulary())


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny GPT-2 with a 16-token context, saved the Hugging Face way."""
    torch.manual_seed(0)
    model = new_causal_lm(tokenizer, ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=CONTEXT))
    return save_pretrained(tmp_path_factory.mktemp("lm") / "model", model, tokenizer)


def data_dir(tmp_path: Path, tokenizer=None, **files: list) -> Path:
    """A data directory holding the good row of every file, except `files` (name with '.' as '_'):
    lines given as dicts (written as JSON), str or bytes (written as they are)."""
    directory = tmp_path / "data"
    directory.mkdir(exist_ok=True)
    for name, row in GOOD.items():
        lines = files.get(name.replace(".", "_"), [row])
        raw = b"".join((line if isinstance(line, bytes) else
                        (line if isinstance(line, str) else json.dumps(line)).encode()) + b"\n" for line in lines)
        (directory / name).write_bytes(raw)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / data.TOKENIZER_DIR))
    return directory


def fails(args: list[str], tmp_path: Path, capsys) -> str:
    """Run `bellmax rlhf ARGS --run-dir tmp/out`: exit status 2, one line, no traceback, no run dir."""
    out = tmp_path / "out"
    assert main(["rlhf", *args, "--run-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()  # checked before anything was written
    return err


def sft_args(lm_dir: Path, directory: Path) -> list[str]:
    return ["sft", "--model", str(lm_dir), "--data", str(directory), "--steps", "2", "--batch-size", "2",
            "--eval-prompts", "0"]


# -- JSONL files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_line, message", [
    (b'{"prompt": "caf\xe9 =", "completion": "1"}', "is not UTF-8 text (byte 0xe9 at column 16); save the file as "
                                                   "UTF-8"),
    ('{"prompt": "sort : 2 1 =", "completion": ', "is not valid JSON (Expecting value, column 42)"),
    ('["sort : 2 1 =", "1 2"]', 'holds ["sort : 2 1 =", "1 2"] (a list), not a JSON object'),
    ('{"prompt": "sort : 2 1 ="}', "lacks field 'completion'; each line needs {\"prompt\": \"...\", \"completion\""),
    ('{"prompt": 42, "completion": "1 2"}', ": field 'prompt' must be a string, not 42 (a number)"),
    ('{"prompt": "sort : 2 1 =", "completion": null}', ": field 'completion' must be a string, not null"),
    ('{"prompt": ["sort"], "completion": "1 2"}', ": field 'prompt' must be a string, not [\"sort\"] (a list)"),
    ('{"prompt": "sort : 2 1 =", "completion": "  "}', ": field 'completion' is empty; it needs text"),
])
def test_a_bad_demonstration_names_the_file_the_line_and_the_field(bad_line, message, lm_dir, tmp_path, capsys):
    directory = data_dir(tmp_path, sft_jsonl=[GOOD[data.SFT], "", bad_line])  # line 2 is blank: line 3 is bad
    err = fails(sft_args(lm_dir, directory), tmp_path, capsys)
    assert f"{directory / data.SFT}:3" in err and message in err


@pytest.mark.parametrize("files, message", [
    ({"rankings_jsonl": [{"prompt": "p =", "responses": ["1 <eos>"], "ranks": [0]}]},
     "rankings.jsonl:1: field 'responses' holds 1 response(s); a ranking needs at least 2"),
    ({"rankings_jsonl": [GOOD[data.RANKINGS], {"prompt": "p =", "responses": ["a", "b", "c"], "ranks": [0, 1]}]},
     "rankings.jsonl:2: field 'ranks' holds 2 ranks for 3 responses; give one per response"),
    ({"rankings_jsonl": [{"prompt": "p =", "responses": ["a", "b"], "ranks": [0, "1"]}]},
     "rankings.jsonl:1: field 'ranks' must be a list of integers"),
    ({"rankings_jsonl": [{"prompt": "p =", "responses": ["a", 7], "ranks": [0, 1]}]},
     "rankings.jsonl:1: field 'responses' item 1 must be a string, not 7 (a number)"),
    ({"rankings_jsonl": [], "comparisons_jsonl": [GOOD[data.COMPARISONS], {"prompt": "p =", "chosen": "a",
                                                                           "rejected": False}]},
     "comparisons.jsonl:2: field 'rejected' must be a string, not false (a boolean)"),
])
def test_bad_rankings_and_comparisons_name_the_line_and_the_field(files, message, lm_dir, tmp_path, capsys):
    directory = data_dir(tmp_path, **files)
    if files.get("rankings_jsonl") == []:
        (directory / data.RANKINGS).unlink()  # comparisons.jsonl is read when there are no rankings
    err = fails(["reward", "--model", str(lm_dir), "--comparisons", str(directory)], tmp_path, capsys)
    assert message in err


def test_bad_prompts_name_the_line_for_every_stage_that_reads_them(lm_dir, tmp_path, capsys):
    directory = data_dir(tmp_path, prompts_jsonl=[GOOD[data.PROMPTS], {"prompt": ""}],
                         eval_prompts_jsonl=[{"prompt": None}], corpus_jsonl=[{"text": 3.5}])
    err = fails(["ppo", "--model", str(lm_dir), "--reward-model", str(lm_dir), "--data", str(directory)], tmp_path,
                capsys)
    assert f"{directory / data.PROMPTS}:2: field 'prompt' is empty" in err
    err = fails(["compare", "--model", str(lm_dir), "--data", str(directory), "--k-extra", "0"], tmp_path, capsys)
    assert f"{directory / data.PROMPTS}:2: field 'prompt' is empty" in err
    err = fails(["evaluate", "--sft", str(lm_dir), "--data", str(directory)], tmp_path, capsys)
    assert f"{directory / data.EVAL_PROMPTS}:1: field 'prompt' must be a string, not null" in err
    # PPO-ptx also reads the corpus, before it trains
    (directory / data.PROMPTS).write_text(json.dumps(GOOD[data.PROMPTS]) + "\n")
    err = fails(["ppo", "--model", str(lm_dir), "--reward-model", str(lm_dir), "--data", str(directory),
                 "--ptx-coef", "0.1"], tmp_path, capsys)
    assert f"{directory / data.CORPUS}:1: field 'text' must be a string, not 3.5 (a number)" in err


# -- records longer than the model's context ------------------------------------------------------
def test_a_demonstration_longer_than_the_context_is_refused_before_sft_trains(lm_dir, tmp_path, capsys):
    # BOS + 12 prompt tokens + 9 completion tokens + EOS = 23 > 16: SFT used to crash in its first step
    long_demo = {"prompt": LONG_PROMPT, "completion": "1 2 3 4 5 6 7 8 9"}
    directory = data_dir(tmp_path, sft_jsonl=[GOOD[data.SFT], long_demo, long_demo])
    err = fails(sft_args(lm_dir, directory), tmp_path, capsys)
    assert (f"{directory / data.SFT}:2: BOS + prompt + completion + EOS come to 23 tokens, more than the model's "
            f"context of 16 (n_positions) (and 1 more line(s)); shorten that demonstration") in err


def test_a_sequence_that_exactly_fills_the_context_is_accepted(lm_dir, tokenizer, tmp_path):
    demo = {"prompt": LONG_PROMPT, "completion": "1 2"}  # BOS + 12 + 2 + EOS = 16
    directory = data_dir(tmp_path, sft_jsonl=[demo])
    assert main(["rlhf", *sft_args(lm_dir, directory), "--run-dir", str(tmp_path / "sft")]) == 0
    # a 13-token query and 3 response tokens use positions 0..15: the model computes them, and the check agrees
    lm, _ = load_causal_lm(lm_dir)
    query, query_mask = encode_prompts(tokenizer, [LONG_PROMPT])
    response, response_mask = encode_responses(tokenizer, ["1 2 3"])
    assert response_logits(lm, query, query_mask, response, response_mask).shape[1] == 3
    records = data.Records(tmp_path / "prompts.jsonl", [{"prompt": LONG_PROMPT}], [1])
    data.check_prompts_fit(records, tokenizer, [lm], max_new_tokens=3)
    with pytest.raises(BellmaxError, match="come to 17 tokens"):
        data.check_prompts_fit(records, tokenizer, [lm], max_new_tokens=4)


def test_a_corpus_text_longer_than_the_new_models_context_is_refused_before_pretraining(tokenizer, tmp_path, capsys):
    directory = data_dir(tmp_path, tokenizer, corpus_jsonl=[GOOD[data.CORPUS], GOOD[data.CORPUS],
                                                            {"text": f"{LONG_PROMPT} 1 2 3 4 5 6 7 8 9 <eos>"}])
    err = fails(["pretrain", "--data", str(directory), "--model.n-positions", "16", "--model.n-layer", "1",
                 "--model.n-embd", "16", "--model.n-head", "2"], tmp_path, capsys)
    assert (f"{directory / data.CORPUS}:3: BOS + text come to 23 tokens, more than the model's context of 16 "
            "(n_positions); shorten that text or raise --model.n-positions") in err


@pytest.mark.parametrize("stage", ["compare", "ppo", "evaluate"])
def test_a_prompt_that_leaves_no_room_for_the_response_is_refused(stage, lm_dir, tmp_path, capsys):
    # BOS + 12 prompt tokens + up to 4 sampled tokens = 17 > 16
    directory = data_dir(tmp_path, prompts_jsonl=[GOOD[data.PROMPTS], {"prompt": LONG_PROMPT}],
                         eval_prompts_jsonl=[GOOD[data.PROMPTS], {"prompt": LONG_PROMPT}])
    inputs = {"compare": ["--model", str(lm_dir), "--k-extra", "0"], "evaluate": ["--sft", str(lm_dir)],
              "ppo": ["--model", str(lm_dir), "--reward-model", str(lm_dir)]}[stage]
    err = fails([stage, *inputs, "--data", str(directory), "--max-new-tokens", "4"], tmp_path, capsys)
    name = data.EVAL_PROMPTS if stage == "evaluate" else data.PROMPTS
    assert (f"{directory / name}:2: BOS + prompt + 4 response tokens come to 17 tokens, more than the model's "
            "context of 16 (n_positions); shorten that prompt, lower --max-new-tokens, or use a model with a "
            "larger context") in err


def test_a_ranked_response_longer_than_the_reward_models_context_is_refused(lm_dir, tmp_path, capsys):
    long_ranking = {"prompt": LONG_PROMPT, "responses": [" 1 2", " 1 2 3 4"], "ranks": [1, 0]}
    directory = data_dir(tmp_path, rankings_jsonl=[GOOD[data.RANKINGS], GOOD[data.RANKINGS], long_ranking])
    err = fails(["reward", "--model", str(lm_dir), "--comparisons", str(directory)], tmp_path, capsys)
    assert f"{directory / data.RANKINGS}:3: BOS + prompt + its longest response come to 18 tokens" in err


# -- model directories ------------------------------------------------------------------------------
def _edit_config(directory: Path, drop: str) -> None:
    config = json.loads((directory / "config.json").read_text())
    del config[drop]
    (directory / "config.json").write_text(json.dumps(config))


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {  # damage -> (how, what the message says)
    "config.json not JSON": (lambda d: (d / "config.json").write_text('{"model_type": "gpt2",\n "n_embd": 16,\n oops}'),
                             "config.json line 3 is not valid JSON (Expecting property name enclosed in double "
                             "quotes, column 2)"),
    "config.json without model_type": (lambda d: _edit_config(d, "model_type"),
                                       "config.json is not a model config transformers can read (Unrecognized model"),
    "config.json without n_embd": (lambda d: _edit_config(d, "n_embd"),
                                   "is (48,) in model.safetensors but (2304,) by config.json: config.json lacks a "
                                   "size or holds a wrong one"),
    "config.json without n_layer": (lambda d: _edit_config(d, "n_layer"),
                                    "config.json describes 132 tensor(s) the weights lack (e.g. transformer.h.1."),
    "model.safetensors cut short": (lambda d: _cut_in_half(d / "model.safetensors"),
                                    "model.safetensors is damaged or cut short (Error while deserializing header"),
    "tokenizer.json not JSON": (lambda d: (d / "tokenizer.json").write_text("{not json"),
                                "tokenizer.json line 1 is not valid JSON"),
    "tokenizer.json without its vocabulary": (lambda d: (d / "tokenizer.json").write_text("{}"),
                                              "the tokenizer (tokenizer.json, tokenizer_config.json) cannot be loaded"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_model_directory_is_one_line_naming_the_directory_and_the_file(damage, lm_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(lm_dir, broken)
    (broken / CHECKSUMS_FILE).unlink()  # as a model from elsewhere: only its readability can be checked
    how, message = DAMAGE[damage]
    how(broken)
    err = fails(sft_args(broken, data_dir(tmp_path)), tmp_path, capsys)
    assert f"--model {broken}: " in err and message in err and "save the model again" in err
    if damage in ("config.json not JSON", "model.safetensors cut short"):  # the reward model's flag is named too
        err = fails(["ppo", "--model", str(lm_dir), "--reward-model", str(broken), "--data", str(data_dir(tmp_path))],
                    tmp_path, capsys)
        assert f"--reward-model {broken}: " in err and message in err


def test_library_loads_wrap_damaged_weights_too(lm_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(lm_dir, broken)
    (broken / CHECKSUMS_FILE).unlink()
    _cut_in_half(broken / "model.safetensors")
    with pytest.raises(BellmaxError, match="model.safetensors is damaged or cut short"):
        load_reward_model(broken)


def test_a_flipped_byte_in_a_saved_models_weights_is_caught_by_its_checksums(lm_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    broken = tmp_path / "broken"
    shutil.copytree(lm_dir, broken)
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x10  # inside the last tensor's data: safetensors alone loads it, changed
    weights.write_bytes(bytes(data))
    assert any(not torch.equal(a, load_file(lm_dir / "model.safetensors")[k]) for k, a in load_file(weights).items())
    err = fails(sft_args(broken, data_dir(tmp_path)), tmp_path, capsys)
    assert f"--model {broken}: model.safetensors is damaged: its content does not match the SHA-256 saved" in err
    with pytest.raises(BellmaxError, match="model.safetensors is damaged: its content does not match"):
        load_causal_lm(broken)


def test_a_saved_model_names_its_format_and_refuses_a_newer_one(lm_dir, tmp_path):
    record = json.loads((lm_dir / CHECKSUMS_FILE).read_text())
    assert record["format"] == 1 and set(record["sha256"]) == {"model.safetensors"}
    newer = tmp_path / "newer"
    shutil.copytree(lm_dir, newer)
    (newer / CHECKSUMS_FILE).write_text(json.dumps({**record, "format": 2}))
    with pytest.raises(BellmaxError, match="has model format 2, written by a newer bellmax"):
        load_causal_lm(newer)


def test_a_reward_model_with_garbage_normalization_statistics_is_refused(lm_dir, tmp_path, capsys):
    reward = tmp_path / "reward"
    shutil.copytree(lm_dir, reward)
    config = json.loads((reward / "config.json").read_text())
    (reward / "config.json").write_text(json.dumps({**config, "bellmax_reward_mean": 0.5,
                                                    "bellmax_reward_std": "wide"}))
    directory = data_dir(tmp_path)
    err = fails(["ppo", "--model", str(lm_dir), "--reward-model", str(reward), "--data", str(directory)], tmp_path,
                capsys)
    assert "bellmax_reward_std in config.json is 'wide', not a finite number >= 0" in err
    assert "--no-normalize-reward" in err


# -- PPO metrics read back by evaluate ----------------------------------------------------------------
def _ppo_run(tmp_path: Path, lines: list[str]) -> Path:
    run = tmp_path / "ppo"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


def _row(step: int) -> str:
    return json.dumps({"step": step, "objective/scores": 0.1 * step, "gold/score": 0.5, "objective/kl": 0.01,
                       "rollout/response_length": 3.0})


def test_damaged_ppo_metrics_lines_are_skipped_and_reported_like_every_metrics_reader(lm_dir, tmp_path, capsys):
    run = _ppo_run(tmp_path, [_row(1), "{\"step\": 2, \"objective/sc", "[1, 2]", _row(3),
                              json.dumps({"step": "four", "objective/scores": 0.4}),
                              json.dumps({"step": 5, "objective/scores": "high"}), _row(6)])
    out = tmp_path / "out"
    assert main(["rlhf", "evaluate", "--sft", str(lm_dir), "--data", str(data_dir(tmp_path)), "--ppo-run", str(run),
                 "--prompts", "2", "--max-new-tokens", "3", "--run-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"{run / 'metrics.jsonl'}: skipped 4 damaged line(s) (line 2, 3, 5, 6); the rows around them are kept"
            in err) and "Traceback" not in err
    curves = json.loads((out / "report.json").read_text())["ppo_curves"]["ppo"]
    assert curves["objective/scores"] == pytest.approx([0.1, 0.3, 0.6])


def test_ppo_metrics_with_no_usable_line_are_refused_before_evaluation(lm_dir, tmp_path, capsys):
    run = _ppo_run(tmp_path, ["garbage", json.dumps({"objective/scores": 1.0})])
    err = fails(["evaluate", "--sft", str(lm_dir), "--data", str(data_dir(tmp_path)), "--ppo-run", str(run),
                 "--prompts", "2", "--max-new-tokens", "3"], tmp_path, capsys)
    assert f"--ppo-run {run}: {run / 'metrics.jsonl'} holds no usable PPO metrics (damaged lines: 1, 2)" in err


# -- the loader, property-tested ---------------------------------------------------------------------
def _not_a_string() -> st.SearchStrategy:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.lists(st.text(max_size=3),
                                                                                                   max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _blank_text() -> st.SearchStrategy:
    return st.text(alphabet=" \t\r\u00a0\u2003", max_size=3)


def _bad_value(field: str) -> st.SearchStrategy:
    """Values a field must refuse, made wrong by construction (not by asking the checks)."""
    text = st.text(min_size=1, max_size=5).filter(str.strip)
    if field == "responses":  # a response may be empty (EOS at once), but it is a string
        return st.one_of(_not_a_string().filter(lambda v: not isinstance(v, list)), st.text(max_size=3),
                         st.lists(text, max_size=1),  # fewer than two
                         st.tuples(text, _not_a_string()).map(list))
    if field in ("chosen", "rejected"):
        return _not_a_string()
    if field == "ranks":
        return st.one_of(st.none(), st.text(max_size=3), st.integers(),
                         st.lists(st.one_of(st.booleans(), st.floats(), st.text(max_size=2), st.none()), min_size=2,
                                  max_size=2))
    return st.one_of(_not_a_string(), _blank_text())


@st.composite
def _file_with_one_bad_line(draw) -> tuple[str, list[str], int, str]:
    """(file name, lines, the bad line's number, the bad field): good rows, blank lines, then one row
    whose field is missing or holds a value the field must refuse."""
    name = draw(st.sampled_from(sorted(data.SCHEMAS)))
    lines = [draw(st.sampled_from([json.dumps(GOOD[name]), "", "   "])) for _ in range(draw(st.integers(0, 4)))]
    field = draw(st.sampled_from(sorted(data.SCHEMAS[name].fields)))
    row = dict(GOOD[name])
    if draw(st.booleans()):
        del row[field]
    else:
        row[field] = draw(_bad_value(field))
    lines.append(json.dumps(row))
    return name, lines + [json.dumps(GOOD[name])], len(lines), field


@settings(max_examples=150, deadline=None)
@given(case=_file_with_one_bad_line())
def test_the_loader_names_the_line_and_the_field_of_any_bad_value(case, tmp_path_factory):
    name, lines, bad_line, field = case
    path = tmp_path_factory.getbasetemp() / name
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BellmaxError) as raised:
        data.read_jsonl(path, data.SCHEMAS[name])
    assert f"{path}:{bad_line}" in str(raised.value) and f"'{field}'" in str(raised.value)
    path.write_text("\n".join(lines[: bad_line - 1] + lines[bad_line:]) + "\n")  # the rest is fine
    assert all(row == GOOD[name] for row in data.read_jsonl(path, data.SCHEMAS[name]).rows)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(data.SCHEMAS)),
       content=st.one_of(st.binary(max_size=80),
                         st.lists(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                                               lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                                               max_leaves=8), max_size=4)
                         .map(lambda rows: "\n".join(map(json.dumps, rows)).encode())))
def test_the_loader_raises_nothing_but_bellmax_error_on_any_bytes(name, content, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / f"any-{name}"
    path.write_bytes(content)
    try:
        records = data.read_jsonl(path, data.SCHEMAS[name])
    except BellmaxError as error:
        assert str(error).startswith(str(path)) and "\n" not in str(error)
    else:
        assert len(records) == len(records.lines) >= 1
