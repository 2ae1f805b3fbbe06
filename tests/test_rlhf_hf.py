"""The outputs of `bellmax rlhf` the plain Hugging Face way: every stage's directory loads with
`AutoTokenizer` / `AutoModelForCausalLM` / `AutoModelForSequenceClassification` / `pipeline(...)`
and gives the numbers bellmax's own evaluation gives (gold score, reward accuracy, normalized reward),
and the JSONL files tokenize under TRL's prompt + completion concatenation exactly as bellmax trains
on them. The stages run here with the `test` preset (tiny models, seconds)."""

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

from bellmax.rlhf import data, task  # noqa: E402
from bellmax.rlhf.model import (  # noqa: E402
    MODEL_DIR,
    check_model_dir,
    decode_responses,
    encode_prompts,
    generate,
    load_causal_lm,
    load_reward_model,
    prompt_ids,
    response_ids,
    save_pretrained,
)
from bellmax.rlhf.sft import SFT_GOLD_TOKENS, demonstration_parts, sequence_ids  # noqa: E402

SEED = 3
GOLD_PROMPTS = 64  # held-out prompts of the SFT stage's own gold score


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """data -> pretrain -> sft (which reports its gold score) -> compare -> reward, the test preset."""
    from bellmax.rlhf.pipeline import preset
    from bellmax.rlhf.reward import run_compare, run_reward
    from bellmax.rlhf.sft import run_pretrain, run_sft

    config = preset("test")
    config.seed = SEED
    config = config.with_seed()
    config.sft.eval_prompts = GOLD_PROMPTS
    out = tmp_path_factory.mktemp("rlhf-hf")
    data.run_data(config.data, out / "data")
    run_pretrain(config.pretrain, out / "data", out / "pretrain")
    run_sft(config.sft, out / "pretrain", out / "data", out / "sft")
    run_compare(config.compare, out / "sft", out / "data", out / "compare", out / "pretrain")
    run_reward(config.reward, out / "sft", out / "compare", out / "reward")
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def held_out_prompts(run: Path) -> list[str]:
    return [r["prompt"] for r in jsonl(run / "data" / data.EVAL_PROMPTS)][:GOLD_PROMPTS]


# -- the tokenizer and the directory layout -------------------------------------------------------
@pytest.mark.parametrize("stage, padding_side", [("pretrain", "left"), ("sft", "left"), ("reward", "right")])
def test_the_saved_tokenizer_adds_the_bos_every_model_was_trained_with(run, stage, padding_side):
    tokenizer = AutoTokenizer.from_pretrained(run / stage)
    ours = load_causal_lm(run / "sft")[1]
    prompts = held_out_prompts(run)[:8]
    plain = tokenizer(prompts)["input_ids"]
    assert plain == prompt_ids(ours, prompts)  # BOS + prompt: the query bellmax generates from
    assert all(ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1 for ids in plain)
    query, query_mask = encode_prompts(ours, prompts)  # bellmax's own encoders add it once, not twice
    assert (query == ours.bos_token_id).sum() == len(prompts)
    rows, _ = sequence_ids(ours, demonstration_parts(ours, jsonl(run / "data" / data.SFT)[:8]))
    assert all(row.count(ours.bos_token_id) == 1 for row in rows)
    n_positions = json.loads((run / stage / "config.json").read_text())["n_positions"]
    assert tokenizer.padding_side == padding_side and tokenizer.model_max_length == n_positions
    if padding_side == "left":  # padded for generation: every prompt ends in the last column
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        assert torch.equal(batch["input_ids"], query) and torch.equal(batch["attention_mask"], query_mask)


def test_each_stage_directory_is_a_model_directory_and_old_run_directories_still_load(run, tmp_path):
    for stage in ("pretrain", "sft", "reward"):
        assert check_model_dir(run / stage) == run / stage
        assert (run / stage / "report.json").is_file() and (run / stage / "metrics.jsonl").is_file()
        run_config = json.loads((run / stage / "run_config.json").read_text())  # the stage's own config
        assert run_config["algo"] == f"rlhf-{stage}"
    from bellmax.core.run import read_run_config

    assert read_run_config(run / "sft")["algo"] == "rlhf-sft"
    # a run directory of an earlier release: its own config.json at the top, the model in model/
    old = tmp_path / "old-sft"
    shutil.copytree(run / "sft", old / MODEL_DIR)
    (old / "config.json").write_text(json.dumps({"algo": "rlhf-sft", "config": {}}))
    model, _ = load_causal_lm(old)
    ids = torch.tensor([prompt_ids(load_causal_lm(run / "sft")[1], ["sort : 3 1 ="])[0]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, AutoModelForCausalLM.from_pretrained(run / "sft")(ids).logits)


def test_saving_into_a_run_directory_keeps_its_files_and_replaces_the_model(run, tmp_path):
    directory = tmp_path / "stage"
    shutil.copytree(run / "sft", directory)
    (directory / "model-00002-of-00002.safetensors").write_bytes(b"weights of an earlier save")
    model, tokenizer = load_causal_lm(run / "pretrain")
    save_pretrained(directory, model, tokenizer)
    assert (directory / "report.json").read_bytes() == (run / "sft" / "report.json").read_bytes()
    assert (directory / "run_config.json").is_file() and (directory / "metrics.jsonl").is_file()
    assert not (directory / "model-00002-of-00002.safetensors").exists()
    assert (directory / "model.safetensors").read_bytes() == (run / "pretrain" / "model.safetensors").read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary directory left
    check_model_dir(directory)


def test_a_model_saved_with_a_tokenizer_that_adds_no_bos_is_saved_with_one_that_does(run, tmp_path):
    from tokenizers import processors

    model, tokenizer = load_causal_lm(run / "sft")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
    assert tokenizer("sort : 1 =")["input_ids"][0] != tokenizer.bos_token_id  # as earlier releases saved it
    save_pretrained(tmp_path / "model", model, tokenizer)
    plain = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert plain("sort : 1 =")["input_ids"] == prompt_ids(tokenizer, ["sort : 1 ="])[0]
    save_pretrained(tmp_path / "again", model, plain)  # a tokenizer that adds it already is left as it is
    assert AutoTokenizer.from_pretrained(tmp_path / "again")("sort : 1 =")["input_ids"] == \
        prompt_ids(tokenizer, ["sort : 1 ="])[0]


# -- the same numbers ---------------------------------------------------------------------------
def plain_sampled_answers(directory: Path, prompts: list[str], seed: int, max_new_tokens: int) -> list[str]:
    """What a Hugging Face user writes: tokenize the batch, sample with `generate`, decode the new tokens."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    output = model.generate(**batch, do_sample=True, max_new_tokens=max_new_tokens)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:])


def test_the_sft_policy_sampled_with_plain_transformers_has_the_gold_score_bellmax_reports(run):
    # bellmax's own evaluation at the end of SFT: GOLD_PROMPTS held-out prompts, sampled with the seed
    reported = json.loads((run / "sft" / "report.json").read_text())["gold_score"]
    prompts = held_out_prompts(run)
    answers = plain_sampled_answers(run / "sft", prompts, SEED, SFT_GOLD_TOKENS)
    gold = [task.gold_score(p, a) for p, a in zip(prompts, answers)]
    assert sum(gold) / len(gold) == pytest.approx(reported, abs=1e-12)


def test_the_pretrained_policy_sampled_with_plain_transformers_gives_bellmaxs_answers(run):
    from bellmax.rlhf.evaluate import sample_answers

    prompts = held_out_prompts(run)
    model, tokenizer = load_causal_lm(run / "pretrain")
    ours = sample_answers(model.eval(), tokenizer, prompts, seed=7, max_new_tokens=12)["texts"]
    plain = plain_sampled_answers(run / "pretrain", prompts, 7, 12)
    assert [task.gold_score(p, a) for p, a in zip(prompts, plain)] == \
        [task.gold_score(p, a) for p, a in zip(prompts, ours)]


def test_a_text_generation_pipeline_answers_as_bellmax_does(run):
    prompts = held_out_prompts(run)[:24]
    model, tokenizer = load_causal_lm(run / "sft")
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = generate(model.eval(), query, query_mask, SFT_GOLD_TOKENS, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, greedy=True)
    ours = decode_responses(tokenizer, response, response_mask)
    generator = pipeline("text-generation", model=str(run / "sft"))
    # batches of 8 are left-padded by the saved tokenizer; skip_special_tokens=False keeps the EOS
    answers = generator(prompts, batch_size=8, do_sample=False, max_new_tokens=SFT_GOLD_TOKENS,
                        return_full_text=False, skip_special_tokens=False)
    plain = [a[0]["generated_text"] for a in answers]
    assert [task.gold_score(p, a) for p, a in zip(prompts, plain)] == \
        [task.gold_score(p, a) for p, a in zip(prompts, ours)]
    assert [a.replace(task.PAD, "").split() for a in plain] == [a.split() for a in ours]


def test_the_reward_model_as_a_sequence_classifier_has_bellmaxs_accuracy_and_normalized_rewards(run, tmp_path):
    from bellmax.rlhf.ppo import reward_normalization
    from bellmax.rlhf.reward import evaluate_rankings, score_texts

    pairs = jsonl(run / "compare" / data.COMPARISONS)
    tokenizer = AutoTokenizer.from_pretrained(run / "reward")
    classifier = AutoModelForSequenceClassification.from_pretrained(run / "reward").eval()

    def plain_scores(field: str) -> torch.Tensor:  # prompt + response + EOS, the BOS from the tokenizer
        batch = tokenizer([p["prompt"] + p[field] + tokenizer.eos_token for p in pairs], padding=True,
                          return_tensors="pt")
        with torch.no_grad():
            return classifier(**batch).logits[:, 0]

    chosen, rejected = plain_scores("chosen"), plain_scores("rejected")
    plain_accuracy = int((chosen > rejected).sum()) / len(pairs)
    # bellmax's own evaluation of the same pairs (comparisons.jsonl read as bellmax reads it)
    shutil.copy(run / "compare" / data.COMPARISONS, tmp_path)
    reward_model, ours = load_reward_model(run / "reward")
    rows = data.with_eos(data.read_rankings(tmp_path), ours.eos_token).rows
    assert plain_accuracy == evaluate_rankings(reward_model.eval(), ours, rows)["accuracy"]
    # the normalized reward PPO optimizes, from the two numbers in config.json
    config = classifier.config
    normalized = (chosen - config.bellmax_reward_mean) / config.bellmax_reward_std
    mean, std = reward_normalization(reward_model, run / "reward")
    with torch.no_grad():
        expected = (score_texts(reward_model, ours, [r["prompt"] for r in rows], [r["responses"][0] for r in rows])
                    - mean) / std
    assert torch.allclose(normalized, expected, atol=1e-5)
    assert "bellmax_reward_mean" in config.bellmax_reward_normalization


# -- the JSONL files under TRL's concatenation ------------------------------------------------------
def test_the_jsonl_files_follow_trls_prompt_completion_convention(run):
    sft = jsonl(run / "data" / data.SFT)
    pairs = jsonl(run / "compare" / data.COMPARISONS)
    rankings = jsonl(run / "compare" / data.RANKINGS)
    responses = [p[f] for p in pairs for f in ("chosen", "rejected")]  # "": EOS at once
    assert all(c.startswith(" ") for c in [r["completion"] for r in sft] + [r for r in responses if r])
    assert all(task.EOS not in c for c in [r["completion"] for r in sft] + responses)
    assert all(not r["prompt"].endswith(" ") for r in sft + pairs)
    assert all(len(r["finished"]) == len(r["responses"]) and task.EOS not in "".join(r["responses"])
               for r in rankings)
    # the preference pairs are the rankings' pairs whose responses both finished
    expected = [(r["prompt"], r["responses"][w], r["responses"][lo]) for r in rankings
                for w, lo in task.comparisons(r["ranks"]) if r["finished"][w] and r["finished"][lo]]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == expected
    assert any(not all(r["finished"]) for r in rankings)  # the pretrained model's answers run on sometimes


def test_trls_documented_concatenation_gives_the_tokens_bellmax_trains_on(run):
    """TRL tokenizes prompt + completion + eos_token (and the tokenizer adds the BOS); reproduced here
    without TRL, for demonstrations and for preference pairs."""
    tokenizer = AutoTokenizer.from_pretrained(run / "sft")
    sft = jsonl(run / "data" / data.SFT)
    rows, starts = sequence_ids(tokenizer, demonstration_parts(tokenizer, sft))
    for row, ids, start in zip(sft, rows, starts):
        concatenated = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
        assert concatenated == ids and tokenizer(row["prompt"])["input_ids"] == ids[:start]
        assert tokenizer.unk_token_id not in ids and ids.count(tokenizer.eos_token_id) == 1 and \
            ids[-1] == tokenizer.eos_token_id
    for pair in jsonl(run / "compare" / data.COMPARISONS):
        for field in ("chosen", "rejected"):
            concatenated = tokenizer(pair["prompt"] + pair[field] + tokenizer.eos_token)["input_ids"]
            ours = prompt_ids(tokenizer, [pair["prompt"]])[0] + \
                response_ids(tokenizer, [pair[field] + tokenizer.eos_token])[0]
            # no <unk> from the concatenation (a tiny policy samples the token itself now and then)
            assert concatenated == ours and ours.count(tokenizer.unk_token_id) == pair[field].count(task.UNK)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL's own use of deprecated transformers arguments
def test_trl_tokenizes_our_jsonl_as_bellmax_trains_on_it(run, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(run / "sft")
    bos, eos, unk = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id
    common = {"output_dir": str(tmp_path), "report_to": [], "use_cpu": True}
    sft = jsonl(run / "data" / data.SFT)[:32]
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(run / "sft"), processing_class=tokenizer,
                         args=SFTConfig(**common), train_dataset=Dataset.from_list(sft))
    rows, starts = sequence_ids(tokenizer, demonstration_parts(tokenizer, sft))
    processed = list(trainer.train_dataset)
    assert len(processed) == len(sft)
    for example, ids, start in zip(processed, rows, starts):
        assert example["input_ids"] == ids and ids[0] == bos and ids[-1] == eos and unk not in ids
        assert example["labels"] == [-100] * start + ids[start:]  # the loss on completion + EOS, as SFT's

    pairs = jsonl(run / "compare" / data.COMPARISONS)[:32]
    prompt = prompt_ids(tokenizer, [p["prompt"] for p in pairs])
    chosen = response_ids(tokenizer, [p["chosen"] + tokenizer.eos_token for p in pairs])
    rejected = response_ids(tokenizer, [p["rejected"] + tokenizer.eos_token for p in pairs])
    reward_tokenizer = AutoTokenizer.from_pretrained(run / "reward")
    trainer = RewardTrainer(model=AutoModelForSequenceClassification.from_pretrained(run / "reward"),
                            processing_class=reward_tokenizer, args=RewardConfig(**common),
                            train_dataset=Dataset.from_list(pairs))
    processed = list(trainer.train_dataset)
    assert [e["chosen_ids"] for e in processed] == [p + c for p, c in zip(prompt, chosen)]
    assert [e["rejected_ids"] for e in processed] == [p + r for p, r in zip(prompt, rejected)]
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(run / "sft"), processing_class=tokenizer,
                         args=DPOConfig(**common), train_dataset=Dataset.from_list(pairs))
    processed = list(trainer.train_dataset)
    assert [e["prompt_ids"] for e in processed] == prompt
    assert [e["chosen_ids"] for e in processed] == chosen and [e["rejected_ids"] for e in processed] == rejected
    texts = [p[f] for f in ("chosen", "rejected") for p in pairs]
    assert all(ids[-1] == eos and ids.count(eos) == 1 and ids.count(unk) == text.count(task.UNK)
               for ids, text in zip(chosen + rejected, texts))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL's own use of deprecated transformers arguments
def test_trl_sft_trainer_tokenizes_the_rejection_sampling_picks_as_bellmax_trains_on_them(run, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from bellmax.rlhf.pipeline import preset
    from bellmax.rlhf.rs import run_rs

    config = preset("test").rs
    config.steps, config.eval_prompts = 2, 0
    run_rs(config, run / "sft", run / "reward", run / "data", tmp_path / "rs")
    picks = jsonl(tmp_path / "rs" / "best_of_n.jsonl")  # as written: prompt, completion and reward
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "rs")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tmp_path / "rs"), processing_class=tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True),
                         train_dataset=Dataset.from_list(picks))
    rows, starts = sequence_ids(tokenizer, demonstration_parts(tokenizer, picks))
    processed = list(trainer.train_dataset)
    assert len(processed) == len(picks) > 0
    for example, ids, start in zip(processed, rows, starts):
        assert example["input_ids"] == ids and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert ids.count(tokenizer.eos_token_id) == 1 and example["labels"] == [-100] * start + ids[start:]


# -- the conventions, piece by piece ----------------------------------------------------------------
def test_rankings_append_eos_to_finished_responses_only_and_read_earlier_files_alike(tmp_path):
    from bellmax.errors import BellmaxError

    def read(rows: list[dict]) -> list[list[str]]:
        data.write_jsonl(tmp_path / data.RANKINGS, rows)
        return [r["responses"] for r in data.with_eos(data.read_rankings(tmp_path), task.EOS).rows]

    rows = [{"prompt": "sort : 2 1 =", "responses": [" 1 2", " 1 2 2 2", ""], "ranks": [0, 2, 1],
             "finished": [True, False, True]}]
    assert read(rows) == [[" 1 2<eos>", " 1 2 2 2", "<eos>"]]
    assert [task.gold_score("sort : 2 1 =", r) for r in read(rows)[0]] == [1.0, 0.5 * (1 - 0.2), 0.0]
    assert task.gold_score("sort : 2 1 =", " 1 2<eos>") == task.gold_score("sort : 2 1 =", "1 2 <eos>") == 1.0
    assert read([{"prompt": "sort : 2 1 =", "responses": [" 1 2", " 2 1"], "ranks": [0, 1]}]) == \
        [[" 1 2<eos>", " 2 1<eos>"]]  # no finished: every response finished, as in TRL
    # an earlier release spelled the EOS out, and a response without it had not finished
    assert read([{"prompt": "sort : 2 1 =", "responses": ["1 2 <eos>", "2 1"], "ranks": [0, 1]}]) == \
        [["1 2 <eos>", "2 1"]]
    assert data.as_completion("1 2 <eos>", task.EOS) == (" 1 2", True)
    assert data.as_completion("1 2 2 2", task.EOS) == (" 1 2 2 2", False)
    assert data.as_completion("<eos>", task.EOS) == ("", True)
    rows[0]["responses"][1] = " 1 2 2 2 <eos>"  # says it finished, and finished says it did not
    with pytest.raises(BellmaxError, match=r"rankings.jsonl:1: response 1 ends with <eos> but finished says"):
        read(rows)
    rows[0]["finished"] = [True, "no", True]
    with pytest.raises(BellmaxError, match=r"rankings.jsonl:1: field 'finished' must be a list of booleans"):
        read(rows)
    rows[0]["finished"] = [True]
    with pytest.raises(BellmaxError, match=r"field 'finished' holds 1 finished flags for 3 responses"):
        read(rows)
