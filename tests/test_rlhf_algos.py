"""The critic-free estimators (RLOO, GRPO and its loss forms, REINFORCE++) and DPO against their
equations on hand-computed numbers, then the `rl` and `dpo` stages through the command line on the
`test` preset's models."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.cli import main  # noqa: E402
from bellmax.errors import ConfigError  # noqa: E402
from bellmax.rlhf.dpo import dpo_loss  # noqa: E402
from bellmax.rlhf.group import (  # noqa: E402
    RLConfig,
    Settings,
    aggregate,
    group_loss,
    grpo_advantages,
    reinforce_pp_advantages,
    response_advantages,
    rloo_advantages,
)
from bellmax.rlhf.reward import ranking_batch  # noqa: E402


def settings(algo="grpo", **overrides) -> Settings:
    return RLConfig(algo=algo, **overrides).settings()


# -- the baseline from the group ----------------------------------------------------------------
def test_rloo_baseline_is_the_mean_of_the_other_rewards_in_the_group():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 4.0]])
    # response 0 of prompt 0: baseline (2 + 3 + 6) / 3 = 11/3, so A = 1 - 11/3 = -8/3
    expected = torch.tensor([[1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3], [-4 / 3, -4 / 3, -4 / 3, 4.0]])
    advantages = rloo_advantages(rewards)
    assert torch.allclose(advantages, expected)
    # the same as G / (G - 1) (R_i - group mean): no response is its own baseline
    assert torch.allclose(advantages, 4 / 3 * (rewards - rewards.mean(1, keepdim=True)))


def test_grpo_advantages_are_rewards_centered_on_the_group_mean_and_scaled_by_its_std():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # sample std of 1, 2, 3, 6 around their mean 3
    grouped = grpo_advantages(rewards, "group")
    assert torch.allclose(grouped[0], torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (std + 1e-4))
    assert torch.equal(grouped[1], torch.zeros(4))  # a group of equal rewards teaches nothing (and is no NaN)
    assert torch.allclose(grpo_advantages(rewards, "none")[0], torch.tensor([-2.0, -1.0, 0.0, 3.0]))  # Dr. GRPO
    assert torch.allclose(grpo_advantages(rewards, "batch"), (rewards - rewards.mean(1, keepdim=True))
                          / (rewards.std() + 1e-4))


def test_response_advantages_spread_each_responses_advantage_over_its_tokens_with_the_kl_in_the_reward():
    scores = torch.tensor([1.0, 0.0, 2.0, 1.0])  # one prompt, G = 4
    kl = torch.tensor([[0.2, 0.3, 0.0], [0.5, 0.0, 0.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    rewards = scores - 0.5 * kl.sum(1)  # R_i = r_theta - beta sum_t k1_t, beta = 0.5
    advantages = response_advantages(scores, kl, mask, settings("rloo"), kl_coef=0.5, group_size=4)
    expected = rloo_advantages(rewards.view(1, 4)).view(4, 1) * mask
    assert torch.allclose(advantages, expected)
    # with the KL in the loss, the advantages see the scores only
    in_loss = response_advantages(scores, kl, mask, settings("grpo"), kl_coef=0.5, group_size=4)
    assert torch.allclose(in_loss, grpo_advantages(scores.view(1, 4)).view(4, 1) * mask)


def test_reinforce_pp_standardizes_the_returns_to_go_of_kl_penalized_token_rewards_over_the_batch():
    scores = torch.tensor([1.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.0], [0.3, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # r_t = -0.5 k1_t, plus the score on the last token: [-0.05, 0.9] and [-1.15]; returns to go: [0.85, 0.9], [-1.15]
    returns = torch.tensor([0.85, 0.9, -1.15])
    mean, std = 0.2, math.sqrt((0.65**2 + 0.7**2 + 1.35**2) / 2)
    advantages = response_advantages(scores, kl, mask, settings("reinforce_pp"), kl_coef=0.5, group_size=2)
    assert torch.allclose(advantages[mask.bool()], (returns - mean) / std, atol=1e-6)
    assert (advantages[~mask.bool()] == 0).all()
    token_rewards = torch.tensor([[-0.05, 0.9, 7.0], [-1.15, 7.0, 7.0]])  # padding ignored, whatever it holds
    assert torch.allclose(reinforce_pp_advantages(token_rewards, mask), advantages, atol=1e-6)


# -- the loss and its length bias ------------------------------------------------------------------
SHORT_AND_LONG = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])  # a 1-token and a 4-token response


@pytest.mark.parametrize("how, short, long", [
    ("seq-mean-token-mean", 1 / 2, 1 / 8),  # GRPO: 1/B * 1/|y_i|: the short response's token weighs 4x
    ("token-mean", 1 / 5, 1 / 5),  # DAPO: every token 1 / (tokens in the batch)
    ("seq-mean-token-sum", 1 / 2, 1 / 2),  # RLOO: 1/B per token, a response's log-prob summed
    ("seq-mean-token-sum-norm", 1 / 8, 1 / 8),  # Dr. GRPO: 1 / (B L_max), L_max = 4
])
def test_each_loss_aggregation_weights_tokens_as_its_formula_says(how, short, long):
    per_token = torch.zeros(2, 4, requires_grad=True)
    aggregate(per_token, SHORT_AND_LONG, how, max_length=4).backward()
    weights = per_token.grad
    assert weights[0, 0] == pytest.approx(short) and torch.allclose(weights[1], torch.full((4,), long))
    assert (weights[0, 1:] == 0).all()  # padding weighs nothing


def test_grpos_per_sequence_mean_pushes_short_answers_harder_and_long_wrong_answers_less():
    # two responses on the old policy (ratio 1), the short one good (A = +1), the long one bad (A = -1)
    log_probs = torch.full((2, 4), -1.0, requires_grad=True)
    advantages = torch.tensor([[1.0], [-1.0]]) * SHORT_AND_LONG
    pushes = {}
    for how in ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"):
        loss = group_loss(log_probs, log_probs.detach(), log_probs.detach(), advantages, SHORT_AND_LONG,
                          settings("grpo", kl_coef=0.0, loss_aggregation=how), 0.0, 0.2, 4)["loss"]
        (gradient,) = torch.autograd.grad(loss, log_probs)
        pushes[how] = -gradient  # how much gradient descent raises each token's log-probability
    grpo = pushes["seq-mean-token-mean"]
    # per token, the good short answer is raised by 1/2, each token of the bad long answer lowered by only 1/8:
    # the per-sequence mean makes length cheap for wrong answers (the Dr. GRPO paper's length bias)
    assert grpo[0, 0] == pytest.approx(0.5) and torch.allclose(grpo[1], torch.full((4,), -0.125))
    for unbiased in ("token-mean", "seq-mean-token-sum-norm"):
        assert pushes[unbiased][0, 0] == pytest.approx(-float(pushes[unbiased][1, 0]))  # same weight per token


def test_group_loss_clips_the_ratio_and_adds_the_kl_term_only_in_the_loss():
    mask = torch.tensor([[1, 1]])
    old = torch.tensor([[-1.0, -1.0]])
    ref = torch.tensor([[-1.5, -0.8]])
    new = torch.tensor([[-1.0 + math.log(1.5), -1.0]], requires_grad=True)  # token 0: ratio 1.5 > 1 + eps
    advantages = torch.tensor([[2.0, 2.0]])
    in_loss = settings("grpo", loss_aggregation="token-mean")
    terms = group_loss(new, old, ref, advantages, mask, in_loss, kl_coef=0.1, clip_range=0.2, max_length=2)
    # l_t = -min(rho A, clip(rho) A) + beta k3_t; token 0 is clipped at 1.2 A, token 1 has rho = 1
    k3 = [math.exp(-1.5 - (-1.0 + math.log(1.5))) - 1 - (-1.5 - (-1.0 + math.log(1.5))),
          math.exp(-0.8 + 1.0) - 1 - (-0.8 + 1.0)]
    terms = {key: float(value.detach()) for key, value in terms.items()}
    assert terms["loss_policy"] == pytest.approx(-(1.2 * 2.0 + 1.0 * 2.0) / 2)
    assert terms["kl_k3"] == pytest.approx(sum(k3) / 2)
    assert terms["loss"] == pytest.approx(-(2.4 + 2.0) / 2 + 0.1 * sum(k3) / 2)
    assert terms["clip_fraction"] == pytest.approx(0.5)
    policy_only = group_loss(new, old, ref, advantages, mask, in_loss, 0.1, 0.2, 2)["loss_policy"]
    (gradient,) = torch.autograd.grad(policy_only, new)
    assert gradient[0, 0] == 0 and gradient[0, 1] != 0  # the clipped token passes no policy gradient
    in_reward = group_loss(new, old, ref, advantages, mask, settings("rloo"), 0.1, 0.2, 2)
    assert not any(key.startswith("kl_") for key in in_reward)
    assert torch.equal(in_reward["loss"], in_reward["loss_policy"])


def test_each_algorithm_defaults_to_its_papers_settings_and_bad_combinations_are_config_errors():
    assert settings("grpo") == Settings("grpo", "loss", "k3", False, "seq-mean-token-mean", "group")
    assert settings("rloo") == Settings("rloo", "reward", "k1", False, "seq-mean-token-sum", "none")
    assert settings("reinforce_pp") == Settings("reinforce_pp", "reward", "k1", False, "token-mean", "none")
    assert settings("rloo", kl_placement="loss").kl_estimator == "k3"
    assert settings("grpo", kl_estimator="k1", kl_importance=True).kl_importance
    for bad, message in [({"kl_estimator": "k3", "algo": "rloo"}, "invalid kl_estimator='k3'"),
                         ({"kl_importance": True, "kl_placement": "reward"}, "invalid kl_importance=True"),
                         ({"scale_rewards": "none", "algo": "rloo"}, "invalid scale_rewards='none'"),
                         ({"group_size": 1}, "invalid group_size=1"),
                         ({"minibatch_size": 65}, "invalid minibatch_size=65")]:
        with pytest.raises(ConfigError, match=message):
            RLConfig(**bad).validate()


# -- DPO ------------------------------------------------------------------------------------------
def test_dpo_loss_is_the_papers_formula_on_hand_computed_log_probs():
    # one pair: log pi = -2.0 (chosen), -3.5 (rejected); log pi_ref = -2.5, -3.0; beta = 0.1
    # margin = 0.1 ((-2.0 + 2.5) - (-3.5 + 3.0)) = 0.1; loss = -log sigma(0.1) = log(1 + e^-0.1)
    terms = dpo_loss(torch.tensor([-2.0, -3.5]), torch.tensor([-2.5, -3.0]), torch.tensor([0]), torch.tensor([1]),
                     beta=0.1)
    assert float(terms["loss"]) == pytest.approx(math.log(1 + math.exp(-0.1)))
    assert float(terms["margin"]) == pytest.approx(0.1) and float(terms["accuracy"]) == 1.0
    # a ranked list of three, y1 > y0 > y2: every (better, worse) pair, the loss their mean
    _, _, winners, losers, _ = ranking_batch([{"prompt": "p", "responses": ["a", "b", "c"], "ranks": [1, 0, 2]}])
    log_pi, log_ref = torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-1.5, -1.0, -3.0])
    ratios = log_pi - log_ref  # 0.5, -1, -1
    pairs = [(1, 0), (1, 2), (0, 2)]
    expected = sum(math.log(1 + math.exp(-0.5 * (float(ratios[w]) - float(ratios[lo])))) for w, lo in pairs) / 3
    assert sorted(zip(winners.tolist(), losers.tolist())) == sorted(pairs)
    assert float(dpo_loss(log_pi, log_ref, winners, losers, 0.5)["loss"]) == pytest.approx(expected)


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference(tmp_path):
    from bellmax.rlhf import task
    from bellmax.rlhf.dpo import batch_terms, reference_log_probs
    from bellmax.rlhf.model import ModelConfig, build_tokenizer, new_causal_lm

    tokenizer = build_tokenizer(task.vocabulary())
    torch.manual_seed(0)
    lm = new_causal_lm(tokenizer, ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=32)).eval()
    rows = [{"prompt": "sort : 3 1 2 =", "responses": ["1 2 3 <eos>", "3 1 2 <eos>", "1 2"], "ranks": [0, 1, 2]},
            {"prompt": "count : cat =", "responses": ["1 <eos>", "2 <eos>"], "ranks": [1, 0]}]
    terms = batch_terms(lm, tokenizer, rows, reference_log_probs(lm, tokenizer, rows), beta=0.1)
    assert float(terms["loss"].detach()) == pytest.approx(math.log(2), abs=1e-6)
    terms["loss"].backward()  # and yet the gradient is not zero: -beta/2 (grad log pi(y_w) - grad log pi(y_l))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lm.parameters())


# -- the stages through the command line --------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`bellmax rlhf run --preset test --also rloo dpo`: every stage, and RLOO and DPO judged beside PPO."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rlhf-algos") / "run"
    args = ["rlhf", "run", "--preset", "test", "--run-dir", str(root), "--seed", "2", "--also", "rloo", "dpo"]
    assert main(args) == 0
    yield root
    torch.set_num_threads(threads)


def test_run_also_trains_and_judges_the_other_estimators_beside_ppo(base):
    report = json.loads((base / "report.json").read_text())
    assert {"rl_vs_sft", "rloo_vs_sft", "dpo_vs_sft"} <= set(report["win_rates"])
    assert {"rloo", "dpo"} <= set(report["gold_scores"]) and "rloo" in report["stage_seconds"]
    assert json.loads((base / "rloo" / "report.json").read_text())["algo"] == "rloo"
    assert json.loads((base / "dpo" / "report.json").read_text())["stage"] == "dpo"
    for stage in ("rloo", "dpo"):  # with the run's seed (the stage's config; config.json is the model's)
        assert json.loads((base / stage / "run_config.json").read_text())["config"]["config"]["seed"] == 2


def rl_args(base, *more):
    return ["rlhf", "rl", "--preset", "test", "--model", str(base / "sft"), "--reward-model", str(base / "reward"),
            "--data", str(base / "data"), "--iterations", "2", *more]


def metric_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algo, more, kl_name", [
    ("rloo", [], None),
    ("grpo", [], "losses/kl_k3"),
    ("grpo", ["--loss-aggregation", "token-mean", "--kl-estimator", "k2"], "losses/kl_k2"),
    ("reinforce_pp", ["--kl-placement", "loss", "--kl-estimator", "k1", "--kl-importance"], "losses/kl_k1"),
])
def test_rl_stage_writes_a_model_metrics_and_report_like_the_ppo_stage(base, tmp_path, algo, more, kl_name):
    from bellmax.core.metrics import METRICS

    run_dir = tmp_path / algo
    assert main([*rl_args(base, "--algo", algo, *more), "--run-dir", str(run_dir)]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stage"] == "rl" and report["algo"] == algo and report["iterations"] == 2
    assert (run_dir / "config.json").is_file() and (run_dir / "model.safetensors").is_file()  # HF layout
    rows = metric_rows(run_dir)
    keys = {key for row in rows for key in row} - {"step"}
    assert keys <= set(METRICS), sorted(keys - set(METRICS))
    assert {"objective/scores", "objective/kl", "objective/kl_k2", "objective/kl_k3", "gold/score",
            "rollout/response_length", "losses/loss_policy", "losses/clip_fraction"} <= keys
    assert {k for k in keys if k.startswith("losses/kl_")} == ({kl_name} if kl_name else set())
    assert every_tensor_changed(base / "sft", run_dir)


def every_tensor_changed(before, after) -> bool:
    from bellmax.rlhf.model import load_causal_lm

    old, new = (load_causal_lm(path)[0].state_dict() for path in (before, after))
    return all(not torch.equal(old[name], new[name]) for name in old if not name.endswith(".attn.bias"))


def test_rl_algo_ppo_runs_the_ppo_stage_with_its_flags(base, tmp_path):
    assert main([*rl_args(base, "--algo", "ppo", "--kl-coef", "0.3"), "--run-dir", str(tmp_path / "ppo")]) == 0
    report = json.loads((tmp_path / "ppo" / "report.json").read_text())
    assert report["stage"] == "ppo" and report["kl_coef"] == 0.3 and report["iterations"] == 2


@pytest.mark.parametrize("algo", ["ppo", "rloo"])
def test_with_a_sharpened_anchor_the_policy_starts_at_the_anchor_unless_told_to_start_at_sft(base, tmp_path, algo):
    first = {}
    for start in ("--start-at-anchor", "--no-start-at-anchor"):
        run_dir = tmp_path / start
        args = rl_args(base, "--algo", algo, "--ref-temperature", "0.5", start, "--iterations", "1")
        assert main([*args, "--run-dir", str(run_dir)]) == 0
        first[start] = metric_rows(run_dir)[0]
    # at the anchor, SFT with its logits divided by 0.5: no KL to the anchor, but some to SFT itself
    assert abs(first["--start-at-anchor"]["objective/kl"]) < 1e-4
    assert first["--start-at-anchor"]["objective/kl_sft"] > 0.05
    # at SFT itself: the other way round
    assert abs(first["--no-start-at-anchor"]["objective/kl_sft"]) < 1e-4
    assert first["--no-start-at-anchor"]["objective/kl"] > 0.05


def test_rl_same_seed_same_numbers(base, tmp_path):
    for name in "ab":
        assert main([*rl_args(base, "--algo", "grpo", "--seed", "5"), "--run-dir", str(tmp_path / name)]) == 0
    rows = [[{k: v for k, v in row.items() if not k.startswith("time/")} for row in metric_rows(tmp_path / name)]
            for name in "ab"]
    assert rows[0] == rows[1]


def test_dpo_stage_trains_on_every_ranked_pair_and_evaluate_judges_it(base, tmp_path):
    from bellmax.core.metrics import METRICS
    from bellmax.rlhf import task

    assert main(["rlhf", "dpo", "--preset", "test", "--model", str(base / "sft"), "--comparisons",
                 str(base / "compare"), "--beta", "0.2", "--run-dir", str(tmp_path / "dpo")]) == 0
    report = json.loads((tmp_path / "dpo" / "report.json").read_text())
    rankings = [json.loads(line) for line in (base / "compare" / "rankings.jsonl").read_text().splitlines()]
    all_pairs = sum(len(task.comparisons(r["ranks"])) for r in rankings)
    assert report["stage"] == "dpo" and report["beta"] == 0.2
    assert 0.8 * all_pairs < report["train_pairs"] < all_pairs  # all pairs but the held-out prompts'
    rows = metric_rows(tmp_path / "dpo")
    keys = {key for row in rows for key in row} - {"step"}
    assert keys <= set(METRICS) and {"losses/dpo", "eval/accuracy", "gold/score", "objective/kl"} <= keys
    assert every_tensor_changed(base / "sft", tmp_path / "dpo")
    assert main(["rlhf", "evaluate", "--preset", "test", "--sft", str(base / "sft"), "--data", str(base / "data"),
                 "--rl", str(tmp_path / "dpo"), "--run-dir", str(tmp_path / "evaluate")]) == 0
    assert "rl_vs_sft" in json.loads((tmp_path / "evaluate" / "report.json").read_text())["win_rates"]


@pytest.mark.parametrize("args, message", [
    (["rl", "--algo", "grpo", "--kl-placement", "reward", "--kl-estimator", "k3"], "invalid kl_estimator='k3'"),
    (["rl", "--algo", "rloo", "--scale-rewards", "batch"], "invalid scale_rewards='batch'"),
    (["rl", "--group-size", "1"], "invalid group_size=1"),
    (["dpo", "--beta", "0"], "invalid beta=0.0"),
    (["dpo", "--model", "{tmp}"], "--comparisons DIR is required"),
    (["rs", "--samples", "0"], "invalid samples=0"),
    (["ppo", "--ref-temperature", "0"], "invalid ref_temperature=0.0"),
    (["rl", "--ref-temperature", "-0.5"], "invalid ref_temperature=-0.5"),
    (["evaluate", "--sharpened-sft", "0"], "invalid sharpened_sft=0.0"),
    (["rs", "--ref-coef", "-0.1"], "invalid ref_coef=-0.1"),
    (["rs", "--model", "{tmp}"], "--reward-model DIR and --data DIR are required"),
    (["run", "--also", "grpo", "ppo"], "invalid also=('grpo', 'ppo'): must be distinct names among rloo, grpo"),
    (["compare-algos", "--seeds", "0"], "--seeds 0: give a whole number of seeds, at least 1"),
    (["compare-algos", "--seed", "3"], "compare-algos sets --seed itself"),
])
def test_user_mistakes_are_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["rlhf", *args, "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "x").exists()


# -- learning -------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["rloo", "grpo", "reinforce_pp"])
def test_one_update_moves_probability_toward_the_better_responses_of_a_group(algo):
    from bellmax.core.optim import Adam
    from bellmax.rlhf import task
    from bellmax.rlhf.group import Samples, group_update, score
    from bellmax.rlhf.model import ModelConfig, build_tokenizer, encode_prompts, encode_responses, new_causal_lm

    tokenizer = build_tokenizer(task.vocabulary())
    torch.manual_seed(0)
    lm = new_causal_lm(tokenizer, ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=32)).eval()
    prompts = ["sort : 3 1 2 ="] * 4  # one group of four
    responses = ["1 2 3 <eos>", "3 2 1 <eos>", "cat <eos>", "9 9 9 9 <eos>"]  # no two share a first token
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = encode_responses(tokenizer, responses)
    batch = Samples(prompts, query, query_mask, response, response_mask)
    score(batch, lm, lm, temperature=1.0)
    batch.scores = torch.tensor([2.0, 0.0, -1.0, -1.0])
    config = RLConfig(algo=algo, prompts_per_batch=1, group_size=4, minibatch_size=4, n_epochs=1, learning_rate=1e-3)
    advantages = response_advantages(batch.scores, torch.zeros_like(batch.old_log_probs), response_mask,
                                     config.settings(), config.kl_coef, config.group_size)
    before = (batch.old_log_probs * response_mask).sum(1)
    group_update(lm, Adam(lm.parameters(), lr=1e-3), batch, advantages, config.settings(), config,
                 torch.Generator().manual_seed(0))
    score(batch, lm, lm, temperature=1.0)
    change = (batch.old_log_probs * response_mask).sum(1) - before  # log pi(y | x) after - before
    assert change[0] > 0 and change[2] < 0 and change[3] < 0  # the best response gained, the worst lost
    assert change[0] == change.max()


@pytest.mark.slow
def test_grpo_raises_the_gold_score_of_a_small_sft_model(small_sft):
    # GRPO on a small SFT model (tests/conftest.py) with the gold labeler as the reward: the estimator
    # alone, without a reward model's errors
    import random

    from bellmax.core.optim import Adam
    from bellmax.rlhf import data, task
    from bellmax.rlhf.evaluate import sample_answers
    from bellmax.rlhf.group import group_rollout, group_update, score
    from bellmax.rlhf.model import decode_responses, inference_only, load_causal_lm

    tmp_path = small_sft
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lm, tokenizer = load_causal_lm(tmp_path / "sft")
        reference = inference_only(load_causal_lm(tmp_path / "sft")[0])
        held_out = data.load(tmp_path / "data", data.EVAL_PROMPTS).column("prompt")
        prompts = data.load(tmp_path / "data", data.PROMPTS).column("prompt")

        def gold_score() -> float:
            texts = sample_answers(lm.eval(), tokenizer, held_out, seed=1, max_new_tokens=10)["texts"]
            return sum(task.gold_score(p, t) for p, t in zip(held_out, texts)) / len(held_out)

        rl = RLConfig(algo="grpo", prompts_per_batch=8, group_size=4, minibatch_size=32, n_epochs=1,
                      learning_rate=1e-3, max_new_tokens=10)
        sft_gold = gold_score()
        optimizer, generator, rng = Adam(lm.parameters(), lr=rl.learning_rate), torch.Generator().manual_seed(0), \
            random.Random(0)
        for _ in range(200):
            batch = group_rollout(lm, tokenizer, [rng.choice(prompts) for _ in range(8)], 4, rl, generator)
            score(batch, lm, reference, rl.temperature)
            texts = decode_responses(tokenizer, batch.response, batch.response_mask)
            batch.scores = torch.tensor([task.gold_score(p, t) for p, t in zip(batch.prompts, texts)])
            k1 = (batch.old_log_probs - batch.ref_log_probs) * batch.response_mask
            advantages = response_advantages(batch.scores, k1, batch.response_mask, rl.settings(), rl.kl_coef, 4)
            group_update(lm, optimizer, batch, advantages, rl.settings(), rl, generator)
        final = gold_score()  # 0.20 -> 0.31 when written
        assert final > sft_gold + 0.05, (sft_gold, final)
    finally:
        torch.set_num_threads(threads)


# -- compare-algos --------------------------------------------------------------------------------
def test_mean_interval_is_students_t_over_seeds():
    from bellmax.rlhf.compare_algos import mean_interval

    mean, half_width = mean_interval([0.7, 0.8, 0.75])  # sd 0.05, t_{0.975, 2} = 4.303
    assert mean == pytest.approx(0.75) and half_width == pytest.approx(4.303 * 0.05 / math.sqrt(3))
    assert mean_interval([0.6]) == (0.6, None)  # one seed gives no interval


def test_compare_algos_summarizes_each_method_over_the_seed_directories(tmp_path):
    from bellmax.rlhf.compare_algos import METHODS, seed_measures, summarize, table

    per_seed = []
    for seed, shift in enumerate((0.0, 0.1)):
        seed_dir = tmp_path / f"seed{seed}"
        (seed_dir / "evaluate").mkdir(parents=True)
        names = [name for name, _ in METHODS.values()]
        (seed_dir / "report.json").write_text(json.dumps({
            "win_rates": {f"{name}_vs_sft": 0.6 + shift for name in names},
            "stage_seconds": {stage: 10.0 + 10 * shift for _, stage in METHODS.values()}}))
        (seed_dir / "evaluate" / "report.json").write_text(json.dumps({"policies": {
            name: {"kl_to_sft": 1.0 + shift, "response_length": 3.0} for name in names}}))
        per_seed.append(seed_measures(seed_dir))
    summary = summarize(per_seed)
    assert summary["GRPO"]["win_rate"]["values"] == [0.6, 0.7]
    assert summary["PPO"]["seconds"]["mean"] == pytest.approx(10.5)
    assert summary["DPO"]["response_length"]["ci"] == 0.0  # equal values: a zero-width interval
    half_width = 12.706 * math.sqrt(0.005) / math.sqrt(2)  # sd of 0.6, 0.7; t_{0.975, 1} = 12.706
    assert f"| RLOO | 0.650 +- {half_width:.3f} | 1.05 +- {half_width:.2f} | 3.00 +- 0.00 |" in table(summary, 2)


@pytest.mark.slow
def test_compare_algos_runs_every_method_for_each_seed_and_writes_table_and_figure(tmp_path, capsys):
    run_dir = tmp_path / "algos"
    assert main(["rlhf", "compare-algos", "--preset", "test", "--seeds", "2", "--run-dir", str(run_dir)]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["seeds"] == [0, 1] and set(report["methods"]) == {"PPO", "RLOO", "GRPO", "REINFORCE++", "DPO", "RS"}
    for seed in (0, 1):
        win_rates = json.loads((run_dir / f"seed{seed}" / "report.json").read_text())["win_rates"]
        assert report["methods"]["GRPO"]["win_rate"]["values"][seed] == win_rates["grpo_vs_sft"]
        assert report["methods"]["PPO"]["win_rate"]["values"][seed] == win_rates["rl_vs_sft"]
    assert (run_dir / "algos.png").stat().st_size > 1000
    assert (run_dir / "algos.md").read_text() in capsys.readouterr().out
