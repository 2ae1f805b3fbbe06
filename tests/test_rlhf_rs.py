"""Rejection sampling (best-of-N picks by the reward model, then fine-tuning on them): the best-of-N KL
against its closed form, the picks against their definition, the stage through the command line on the
`test` preset's models, and that fine-tuning on gold-judged picks raises the gold score."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.cli import main  # noqa: E402
from bellmax.rlhf import data, task  # noqa: E402
from bellmax.rlhf.rs import RSConfig, best_finished, best_of_n, best_of_n_kl_bound  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def best_of_n_distribution(probs: list[float], n: int) -> list[float]:
    """Exact law of the best of n draws from a categorical whose outcomes are listed worst to best (distinct
    rewards): P(best = k) = F(k)^n - F(k-1)^n with F the cumulative distribution."""
    cumulative = [sum(probs[: k + 1]) for k in range(len(probs))]
    return [cumulative[k] ** n - (cumulative[k - 1] if k else 0.0) ** n for k in range(len(probs))]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_best_of_n_kl_is_log_n_minus_n_minus_1_over_n_for_many_distinct_outcomes_and_below_it_for_few():
    assert best_of_n_kl_bound(1) == 0.0  # best of one is the policy itself
    assert best_of_n_kl_bound(8) == pytest.approx(math.log(8) - 7 / 8)  # 1.204 nats: the tiny preset's N
    for n in (2, 4, 8, 16):
        fine = [1 / 20_000] * 20_000  # a near-continuum of distinct rewards: the bound is the KL
        assert kl(best_of_n_distribution(fine, n), fine) == pytest.approx(best_of_n_kl_bound(n), abs=1e-3)
        coarse = [0.1, 0.2, 0.3, 0.4]  # few outcomes: the best of n repeats the same text often, and KL is smaller
        assert kl(best_of_n_distribution(coarse, n), coarse) < best_of_n_kl_bound(n)


def test_best_finished_takes_the_highest_reward_among_finished_responses():
    assert best_finished([0.1, 0.9, 0.5], [True, False, True]) == 2  # 0.9 never emitted EOS
    assert best_finished([0.5, 0.5, 0.1], [True, True, True]) == 0  # a tie goes to the first
    assert best_finished([1.0, 2.0], [False, False]) is None  # nothing finished: nothing to pick


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`bellmax rlhf run --preset test --also rs`: every stage, and rejection sampling judged beside PPO."""
    root = tmp_path_factory.mktemp("rlhf-rs") / "run"
    assert main(["rlhf", "run", "--preset", "test", "--run-dir", str(root), "--seed", "3", "--also", "rs",
                 "--no-no-kl-baseline"]) == 0
    return root


def test_run_also_rs_trains_and_judges_it_beside_ppo(base):
    report = json.loads((base / "report.json").read_text())
    assert {"rl_vs_sft", "rs_vs_sft"} <= set(report["win_rates"]) and "rs" in report["stage_seconds"]
    rs_report = json.loads((base / "rs" / "report.json").read_text())
    assert rs_report["stage"] == "rs" and rs_report["samples"] == 4
    assert json.loads((base / "rs" / "run_config.json").read_text())["config"]["config"]["seed"] == 3


def test_the_win_rate_figure_has_a_bar_for_rejection_sampling(base, tmp_path, monkeypatch):
    from bellmax.rlhf import evaluate
    from bellmax.rlhf.pipeline import preset

    drawn = {}
    monkeypatch.setattr(evaluate, "plot_win_rates", lambda rates, output, stderr=None: drawn.update(rates) or output)
    evaluate.run_evaluate(preset("test").evaluate, base / "sft", {"rl": base / "ppo", "rs": base / "rs"},
                          base / "data", tmp_path / "evaluate")
    assert {"RL (PPO)", "RS"} <= set(drawn)


def test_picks_are_each_prompts_best_finished_sample_by_the_reward(base):
    from bellmax.rlhf.model import load_causal_lm

    model, tokenizer = load_causal_lm(base / "sft")
    prompts = list(dict.fromkeys(data.load(base / "data", data.PROMPTS).column("prompt")))[:24]  # distinct
    seen: dict[str, list[tuple[str, float]]] = {}

    def reward(batch_prompts, texts):  # a reward anyone can check: fewer tokens is better
        scores = [-len(t.split()) + 0.01 * i for i, t in enumerate(texts)]  # distinct within a batch
        for p, t, s in zip(batch_prompts, texts, scores):
            seen.setdefault(p, []).append((t, s))
        return scores

    config = RSConfig(samples=4, max_new_tokens=10, sample_batch_size=32)
    picks, stats = best_of_n(model.eval(), tokenizer, prompts, config, reward)
    assert len(seen) == len(prompts) and all(len(samples) == 4 for samples in seen.values())
    picked = {p["prompt"]: p for p in picks}
    for prompt, samples in seen.items():
        finished = [(t, s) for t, s in samples if tokenizer.eos_token in t and data.as_completion(t, task.EOS)[0]]
        if not finished:
            assert prompt not in picked
            continue
        text, score = max(finished, key=lambda pair: pair[1])
        assert picked[prompt]["reward"] == score
        assert picked[prompt]["completion"] == data.as_completion(text, tokenizer.eos_token)[0]  # " a b", no EOS
    all_scores = [s for samples in seen.values() for _, s in samples]
    assert stats["sampled_reward"] == pytest.approx(sum(all_scores) / len(all_scores))
    assert stats["picked_reward"] > stats["sampled_reward"]
    again, _ = best_of_n(model.eval(), tokenizer, prompts, config, reward)  # same seed, same picks
    assert again == picks


def test_regularized_best_of_n_adds_beta_times_the_sft_log_likelihood_to_the_reward(base):
    from bellmax.rlhf.model import load_causal_lm, sequence_log_probs

    model, tokenizer = load_causal_lm(base / "sft")
    model.eval()
    prompts = list(dict.fromkeys(data.load(base / "data", data.PROMPTS).column("prompt")))[:16]
    seen: dict[str, list[str]] = {}

    def reward(batch_prompts, texts):  # one reward for every answer: only the likelihood term can choose
        for p, t in zip(batch_prompts, texts):
            seen.setdefault(p, []).append(t)
        return [0.0] * len(texts)

    picks, _ = best_of_n(model, tokenizer, prompts, RSConfig(samples=4, max_new_tokens=10, ref_coef=0.5), reward)
    picked = {p["prompt"]: p for p in picks}
    checked = 0
    for prompt, texts in seen.items():
        pickable = [t for t in texts if task.EOS in t and data.as_completion(t, task.EOS)[0]]
        if not pickable:
            continue
        with torch.no_grad():
            likelihood = sequence_log_probs(model, [prompt] * len(pickable), pickable, tokenizer)
        best = pickable[int(likelihood.argmax())]
        assert picked[prompt]["completion"] == data.as_completion(best, task.EOS)[0]
        assert picked[prompt]["reward"] == 0.0  # the reward as the reward model gave it, without the term
        checked += 1
    assert checked >= 8


def test_rs_stage_writes_picks_as_sft_data_and_fine_tunes_toward_them(base, tmp_path):
    from bellmax.rlhf.model import load_causal_lm
    from bellmax.rlhf.sft import demonstration_tensors, lm_loss

    run_dir = tmp_path / "rs"
    assert main(["rlhf", "rs", "--preset", "test", "--model", str(base / "sft"), "--reward-model",
                 str(base / "reward"), "--data", str(base / "data"), "--samples", "6", "--run-dir", str(run_dir)]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "best_of_n.jsonl").read_text().splitlines()]
    assert len(data.read_jsonl(run_dir / "best_of_n.jsonl", data.SCHEMAS[data.SFT])) == len(rows)  # SFT data
    assert report["picks"] == len(rows) and 0 < len(rows) <= 48  # the test preset's 48 prompts
    assert report["kl_bound_best_of_n"] == pytest.approx(math.log(6) - 5 / 6)
    assert report["picked_reward"] > report["sampled_reward"]  # the reward model's best beats its average
    assert all(r["completion"].startswith(" ") and task.EOS not in r["completion"] for r in rows)
    assert (run_dir / "config.json").is_file() and (run_dir / "model.safetensors").is_file()  # HF layout
    # the fine-tuned model gives its picks a higher likelihood than SFT did
    sft_model, tokenizer = load_causal_lm(base / "sft")
    rs_model, _ = load_causal_lm(run_dir)
    ids, attention_mask, loss_mask = demonstration_tensors(tokenizer, rows)
    with torch.no_grad():
        before, after = (float(lm_loss(m.eval()(ids, attention_mask=attention_mask).logits, ids, loss_mask))
                         for m in (sft_model, rs_model))
    assert after < before - 0.1, (before, after)


@pytest.mark.slow
def test_fine_tuning_on_gold_judged_best_of_n_raises_the_gold_score(small_sft):
    # one round of rejection sampling on a small SFT model (tests/conftest.py) with the gold labeler as
    # the judge: the method alone, without a reward model's errors
    from bellmax.rlhf.evaluate import sample_answers
    from bellmax.rlhf.model import load_causal_lm
    from bellmax.rlhf.sft import demonstration_tensors, train_lm

    tmp_path = small_sft
    lm, tokenizer = load_causal_lm(tmp_path / "sft")
    held_out = data.load(tmp_path / "data", data.EVAL_PROMPTS).column("prompt")
    prompts = data.load(tmp_path / "data", data.PROMPTS).column("prompt")

    def gold_score() -> float:
        texts = sample_answers(lm.eval(), tokenizer, held_out, seed=1, max_new_tokens=10)["texts"]
        return sum(task.gold_score(p, t) for p, t in zip(held_out, texts)) / len(held_out)

    rs = RSConfig(samples=8, max_new_tokens=10, steps=150, batch_size=32, learning_rate=1e-3)
    sft_gold = gold_score()
    picks, stats = best_of_n(lm.eval(), tokenizer, prompts, rs,
                             lambda ps, texts: [task.gold_score(p, t) for p, t in zip(ps, texts)])
    assert stats["picked_gold_score"] > stats["sampled_gold_score"] + 0.1
    train_lm(lm, demonstration_tensors(tokenizer, picks), rs)
    final = gold_score()
    assert final > sft_gold + 0.05, (sft_gold, final)
