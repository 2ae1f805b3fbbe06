"""RLHF pieces against their equations, on tiny GPT-2s made in the test (no downloads)."""

import math
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bellmax.errors import BellmaxError  # noqa: E402
from bellmax.rlhf import data, task  # noqa: E402
from bellmax.rlhf.model import (  # noqa: E402
    ModelConfig,
    PolicyWithValue,
    encode_prompts,
    encode_responses,
    generate,
    inference_only,
    load_causal_lm,
    load_reward_model,
    new_causal_lm,
    response_logits,
    reward_scores,
    save_pretrained,
    token_log_probs,
)
from bellmax.rlhf.ppo import (  # noqa: E402
    KLController,
    RLHFPPOConfig,
    critic_from_reward_model,
    iteration_metrics,
    kl_penalized_rewards,
    per_token_kl,
    ppo_update,
    rollout,
    score,
    token_advantages,
)
from bellmax.rlhf.reward import ranking_batch, reward_loss  # noqa: E402
from bellmax.rlhf.sft import demonstration_tensors, lm_loss  # noqa: E402

TINY = ModelConfig(n_layer=2, n_embd=32, n_head=2, n_positions=40)


@pytest.fixture(scope="module")
def tokenizer():
    from bellmax.rlhf.model import build_tokenizer

    return build_tokenizer(task.vocabulary())


def tiny_lm(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    model = new_causal_lm(tokenizer, TINY)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    return model.eval()


# -- the task and its simulated labelers ---------------------------------------------------------
def test_gold_labeler_gives_full_credit_only_to_the_exact_answer_with_eos():
    prompt = "sort : 3 1 2 ="
    assert task.answer(prompt) == ["1", "2", "3"]
    assert task.gold_score(prompt, "1 2 3 <eos>") == 1.0
    assert task.gold_score(prompt, "1 2 3") == 0.5  # never stopped: halved
    assert task.gold_score(prompt, "1 2 9 <eos>") == pytest.approx(2 / 3)  # partial credit per token in place
    assert task.gold_score(prompt, "1 2 <eos>") == pytest.approx(2 / 3)  # stopping early costs
    assert task.gold_score(prompt, "1 2 3 3 3 <eos>") == pytest.approx(0.8)  # padding costs 0.1 a token
    assert task.gold_score(prompt, "1 2 3 3 <eos>") > task.gold_score(prompt, "1 2 9 <eos>")  # content first
    assert task.gold_score(prompt, "1 2 3 <eos> <pad> <pad>") == 1.0
    assert task.gold_score("count : cat dog cat =", "3 <eos>") == 1.0
    assert task.gold_score("count : cat dog cat =", "4 <eos>") == pytest.approx(2 / 3)  # close counts earn some
    assert task.gold_score("repeat : red fish =", "red fish red fish <eos>") == 1.0
    assert task.gold_score("reverse : cat dog sun =", "sun dog cat <eos>") == 1.0


def test_poor_responses_score_below_good_ones():
    rng = random.Random(0)
    mistakes = 0
    for _ in range(200):
        prompt = task.make_prompt(rng)
        good = f"{task.good_response(prompt)} {task.EOS}"
        assert task.gold_score(prompt, good) == 1.0
        assert task.gold_score(prompt, task.good_response(prompt)) == 0.5  # right, but never stopped
        assert task.gold_score(prompt, task.EOS) == 0.0  # stopped at once: no credit
        poor = task.poor_response(prompt, rng)
        if poor.split() != good.split():  # a "mistake" can come out right (copying a sorted list)
            mistakes += 1
            assert task.gold_score(prompt, poor) < 1.0, (prompt, poor)
    assert mistakes > 150


def test_labelers_rank_with_ties_and_a_ranking_of_k_gives_its_untied_pairs():
    prompt = "sort : 3 1 2 ="
    responses = ["1 2 <eos>", "1 2 <eos>", "1 2 3", "1 2 3 <eos>"]  # A = B < C < D in gold: 2/3, 2/3, 0.5, 1
    gold = [task.gold_score(prompt, r) for r in responses]
    assert gold[0] == gold[1] and gold[3] == 1.0
    ranks = task.LabelerPanel(noise=0.0, tie_margin=0.05).rank(prompt, responses, random.Random(0))
    assert ranks[3] == 0 and ranks[0] == ranks[1]
    pairs = task.comparisons(ranks)
    assert len(pairs) == math.comb(4, 2) - 1  # the tied pair A = B carries no preference
    assert all(ranks[w] < ranks[lo] for w, lo in pairs)
    # noisy labelers disagree with the gold order sometimes, but mostly agree
    panel, rng = task.LabelerPanel(noise=0.1), random.Random(1)
    ranks = [panel.rank(prompt, ["1 2 3 <eos>", "1 2 3 3 3 3 <eos>"], rng) for _ in range(1000)]  # gold 1 vs 0.7
    agree = sum(r[0] < r[1] for r in ranks) / len(ranks)
    assert 0.85 < agree < 0.99


def test_win_rate_counts_ties_as_half():
    assert task.win_rate([1.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.9, 0.7]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    scores = [0.0, 1.0, 0.3, 0.9, 0.5]
    assert task.win_rate(scores, scores) == 0.5  # a policy against itself: every prompt a tie
    assert task.win_rate(scores, [0.0] * 5) == pytest.approx((0.5 + 4) / 5)  # against a policy that scores 0


def test_win_rate_stderr_is_the_standard_error_of_the_per_prompt_outcomes():
    # outcomes 1, 0.5, 0, 0.5: mean 0.5, squared deviations 0.25 + 0 + 0.25 + 0 = 0.5; s^2 = 0.5 / 3; se^2 = s^2 / 4
    assert task.win_rate_stderr([1.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.9, 0.7]) == pytest.approx(math.sqrt(0.5 / 3 / 4))
    # win or lose only: the binomial form sqrt(p (1 - p) / (n - 1)), here p = 3/4, n = 4
    assert task.win_rate_stderr([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]) == pytest.approx(math.sqrt(0.75 * 0.25 / 3))
    assert task.win_rate_stderr([0.3] * 7, [0.3] * 7) == 0.0  # all ties: no spread
    assert task.win_rate_stderr([1.0], [0.0]) is None  # one prompt: no spread to measure
    with pytest.raises(ValueError):
        task.win_rate_stderr([1.0, 0.0], [1.0])


def test_jsonl_round_trip_and_clear_errors(tmp_path):
    from bellmax.errors import BellmaxError

    rows = [{"prompt": "sort : 2 1 =", "completion": "1 2"}]
    data.write_jsonl(tmp_path / "sft.jsonl", rows)
    assert data.load(tmp_path, data.SFT).rows == rows
    with pytest.raises(BellmaxError, match="sft.jsonl:1 lacks fields 'chosen', 'rejected'"):
        data.read_jsonl(tmp_path / "sft.jsonl", data.SCHEMAS[data.COMPARISONS])
    with pytest.raises(BellmaxError, match="does not exist"):
        data.load(tmp_path, data.PROMPTS)
    (tmp_path / "comparisons.jsonl").write_text('\n{"prompt": "p =", "chosen": "a", "rejected": "b"}\n')
    rankings = data.read_rankings(tmp_path)
    assert rankings.rows == [{"prompt": "p =", "responses": ["a", "b"], "ranks": [0, 1]}]
    assert rankings.where(0).endswith("comparisons.jsonl:2")  # blank lines count: messages point at the line


# -- the reward model's loss ---------------------------------------------------------------------
def test_reward_loss_equals_the_lecture_formula_on_hand_computed_values():
    # one prompt, K = 3, ranking y0 > y1 > y2; rewards 1, 0, -1: margins 1, 2, 1 over the C(3,2) = 3 pairs
    rewards = torch.tensor([1.0, 0.0, -1.0])
    _, _, winners, losers, pair_k = ranking_batch([{"prompt": "p", "responses": ["a", "b", "c"], "ranks": [0, 1, 2]}])
    terms = reward_loss(rewards, winners, losers, pair_k, num_prompts=1)
    sigma = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    expected = -(math.log(sigma(1)) + math.log(sigma(2)) + math.log(sigma(1))) / 3
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(terms["accuracy"]) == 1.0 and float(terms["margin"]) == pytest.approx(4 / 3)
    # two prompts (K = 3 and K = 2): the mean over prompts of each prompt's 1/C(K,2)-weighted sum
    rows = [{"prompt": "p", "responses": ["a", "b", "c"], "ranks": [0, 1, 2]},
            {"prompt": "q", "responses": ["d", "e"], "ranks": [1, 0]}]
    rewards = torch.tensor([1.0, 0.0, -1.0, 0.5, 2.0])
    _, _, winners, losers, pair_k = ranking_batch(rows)
    second = -math.log(sigma(2.0 - 0.5))
    assert float(reward_loss(rewards, winners, losers, pair_k, 2)["loss"]) == pytest.approx((expected + second) / 2)


def test_reward_loss_is_invariant_to_adding_a_constant_to_all_rewards():
    rows = [{"prompt": "p", "responses": list("abcd"), "ranks": [2, 0, 2, 1]}]
    _, _, winners, losers, pair_k = ranking_batch(rows)
    rewards = torch.randn(4, generator=torch.Generator().manual_seed(0))
    base = reward_loss(rewards, winners, losers, pair_k, 1)["loss"]
    for constant in (-3.0, 0.5, 100.0):
        assert float(reward_loss(rewards + constant, winners, losers, pair_k, 1)["loss"]) == pytest.approx(
            float(base), abs=1e-5)


def _unpadded_score(reward_model, tokenizer, prompt: str, response: str) -> float:
    """r_theta of one unpadded sequence BOS + prompt + response, read by Hugging Face itself: with one
    row and no pad id, a sequence classifier reads the row's last token."""
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(f"{prompt} {response}", add_special_tokens=False)[
        "input_ids"]])
    pad = reward_model.config.pad_token_id
    reward_model.config.pad_token_id = None
    try:
        return float(reward_model(ids).logits[0, 0])
    finally:
        reward_model.config.pad_token_id = pad


def _right_padded(ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same rows with their padding moved to the right."""
    out, out_mask = torch.full_like(ids, pad_id), torch.zeros_like(mask)
    for i in range(len(ids)):
        row = ids[i][mask[i].bool()]
        out[i, : len(row)], out_mask[i, : len(row)] = row, 1
    return out, out_mask


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_reward_model_reads_the_last_real_token_whatever_the_padding(tokenizer, tmp_path, pad_is_eos):
    save_dir = save_pretrained(tmp_path / "sft", tiny_lm(tokenizer), tokenizer)
    reward_model = inference_only(load_reward_model(save_dir)[0])
    if pad_is_eos:  # GPT-2's convention (load_tokenizer pads with EOS when a tokenizer has no pad token)
        reward_model.config.pad_token_id = tokenizer.eos_token_id
    prompts = ["sort : 3 1 2 =", "reverse : cat dog sun moon tree fish =", "count : cat ="]
    responses = ["1 2 3 <eos>", "fish <eos>", "1"]
    alone = torch.tensor([_unpadded_score(reward_model, tokenizer, p, r) for p, r in zip(prompts, responses)])
    query, query_mask = encode_prompts(tokenizer, prompts)
    assert query_mask[0, 0] == 0 and query_mask[2, 0] == 0  # left-padded prompts
    response, response_mask = encode_responses(tokenizer, responses)
    assert response_mask[1, -1] == 0  # right-padded responses
    with torch.no_grad():
        left = reward_scores(reward_model, query, query_mask, response, response_mask)
        right = reward_scores(reward_model, *_right_padded(query, query_mask, tokenizer.pad_token_id), response,
                              response_mask)  # padding between prompt and response
        padded = reward_scores(reward_model, query, query_mask,  # more padding after the responses
                               torch.cat([response, torch.full((3, 3), tokenizer.pad_token_id)], 1),
                               torch.cat([response_mask, torch.zeros((3, 3), dtype=torch.long)], 1))
    for scores in (left, right, padded):
        assert torch.allclose(scores, alone, atol=1e-5), (scores, alone)
    with pytest.raises(BellmaxError, match="no linear `score` head"):  # a causal LM is no reward model
        reward_scores(tiny_lm(tokenizer), query, query_mask, response, response_mask)


def test_score_texts_groups_rows_by_length_and_returns_them_in_order_with_their_gradients(tokenizer, tmp_path,
                                                                                        monkeypatch):
    from bellmax.rlhf import reward as reward_module

    save_dir = save_pretrained(tmp_path / "sft", tiny_lm(tokenizer), tokenizer)
    reward_model = load_reward_model(save_dir)[0].eval()
    rng = random.Random(0)
    prompts = [task.make_prompt(rng) for _ in range(70)]
    responses = [" ".join(rng.choice(task.WORDS) for _ in range(rng.randint(1, 12))) + tokenizer.eos_token
                 for _ in prompts]
    widths = []
    real_forward = reward_module.reward_scores
    monkeypatch.setattr(reward_module, "reward_scores",
                        lambda model, q, qm, r, rm: widths.append((len(q), r.shape[1])) or real_forward(model, q, qm,
                                                                                                         r, rm))
    grouped = reward_module.score_texts(reward_model, tokenizer, prompts, responses)
    # 70 rows: groups of 32, 38 (a last group under 16 rows joins the one before), shortest responses first
    assert [rows for rows, _ in widths] == [32, 38] and widths[0][1] < widths[1][1]
    grouped.sum().backward()
    grouped_grad = [p.grad.clone() for p in reward_model.parameters()]
    reward_model.zero_grad()
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = encode_responses(tokenizer, responses)
    together = real_forward(reward_model, query, query_mask, response, response_mask)  # one forward, as before
    assert torch.allclose(grouped, together, atol=1e-5)  # row i is still prompt i's response's score
    together.sum().backward()
    for a, b in zip(grouped_grad, (p.grad for p in reward_model.parameters())):
        assert torch.allclose(a, b, atol=1e-4)


# -- generation -----------------------------------------------------------------------------------
def test_generation_masks_left_padding(tokenizer):
    lm = tiny_lm(tokenizer)
    prompts = ["count : cat =", "reverse : cat dog sun moon tree fish ="]
    query, query_mask = encode_prompts(tokenizer, prompts)
    assert query_mask[0, 0] == 0 and query[0, 0] == tokenizer.pad_token_id  # the short prompt is left-padded
    response, response_mask = generate(lm, query, query_mask, 8, tokenizer.eos_token_id, tokenizer.pad_token_id,
                                       greedy=True)
    logits = response_logits(lm, query, query_mask, response, response_mask)
    q, qm = encode_prompts(tokenizer, prompts[:1])
    alone, alone_mask = generate(lm, q, qm, 8, tokenizer.eos_token_id, tokenizer.pad_token_id, greedy=True)
    n = int(alone_mask.sum())
    assert torch.equal(alone[0, :n], response[0, :n])
    alone_logits = response_logits(lm, q, qm, alone, alone_mask)
    assert torch.allclose(alone_logits[0, :n], logits[0, :n], atol=1e-4)


def test_generation_stops_at_eos_and_pads_after_it(tokenizer):
    lm = tiny_lm(tokenizer)
    lm.lm_head = torch.nn.Linear(TINY.n_embd, len(tokenizer), bias=False)  # untied from the input embeddings
    with torch.no_grad():
        lm.lm_head.weight.zero_()  # uniform next-token distribution: EOS comes at random steps
    query, query_mask = encode_prompts(tokenizer, ["sort : 3 1 2 ="] * 64)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    response, mask = generate(lm, query, query_mask, 30, eos, pad, torch.Generator().manual_seed(0))
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()  # rows stopped at different steps
    for row, row_mask in zip(response, mask):
        n = int(row_mask.sum())
        assert row_mask[:n].all() and not row_mask[n:].any()
        if (row == eos).any():
            first = int((row == eos).nonzero()[0])
            assert n == first + 1  # the mask keeps EOS itself
            assert (row[first + 1:] == pad).all()  # nothing but padding after EOS
    with torch.no_grad():
        lm.transformer.ln_f.weight.zero_()
        lm.transformer.ln_f.bias.fill_(1.0)  # every final hidden state is all ones
        lm.lm_head.weight[eos] = 1.0  # so EOS's logit is n_embd = 32, the others 0: EOS first, for every row
    response, mask = generate(lm, query, query_mask, 30, eos, pad, torch.Generator().manual_seed(0))
    assert response.shape[1] == 1 and (response == eos).all() and mask.sum() == 64


# -- KL, rewards, advantages, ptx -----------------------------------------------------------------
def _manual_log_prob(model, tokenizer, prompt: str, tokens: list[int], t: int) -> float:
    """log pi(tokens[t] | prompt, tokens[:t]) from an unpadded forward pass of that prefix alone."""
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"] + tokens[:t]
    logits = model(torch.tensor([ids])).logits[0, -1]
    return float(torch.log_softmax(logits, -1)[tokens[t]])


def test_per_token_kl_is_the_log_ratio_of_policy_and_reference_on_each_response_token(tokenizer):
    policy, reference = tiny_lm(tokenizer, seed=1), tiny_lm(tokenizer, seed=2)
    prompts = ["sort : 3 1 2 =", "repeat : red ="]
    responses = ["1 2 3 <eos>", "red <eos>"]
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = encode_responses(tokenizer, responses)
    with torch.no_grad():
        log_p = token_log_probs(response_logits(policy, query, query_mask, response, response_mask), response)
        log_ref = token_log_probs(response_logits(reference, query, query_mask, response, response_mask), response)
        kl = per_token_kl(log_p, log_ref, response_mask)
        for i, (prompt, text) in enumerate(zip(prompts, responses)):
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            for t in range(len(tokens)):
                expected = (_manual_log_prob(policy, tokenizer, prompt, tokens, t)
                            - _manual_log_prob(reference, tokenizer, prompt, tokens, t))
                assert float(kl[i, t]) == pytest.approx(expected, abs=1e-4)
            assert (kl[i, len(tokens):] == 0).all()  # padding carries no KL
    # r_t = -beta kl_t, plus r_theta(x, y) on the last token only
    scores = torch.tensor([2.0, -1.0])
    rewards = kl_penalized_rewards(scores, kl, response_mask, kl_coef=0.1)
    expected = -0.1 * kl
    expected[0, 3] += 2.0
    expected[1, 1] += -1.0
    assert torch.allclose(rewards, expected)


def test_gae_over_tokens_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 1.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.2, 0.1, 9.0], [0.4, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    advantages, returns = token_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(advantages[0, :3], torch.tensor([0.9 - 0.3, 0.8 - 0.2, 1.0 - 0.1]))
    assert torch.allclose(advantages[1, :1], torch.tensor([0.5 - 0.4]))
    assert (advantages[mask == 0] == 0).all()
    assert torch.allclose(returns[0, :3], torch.tensor([0.9, 0.8, 1.0]))
    # lambda = 0: the one-step TD residual r_t + V(s_{t+1}) - V(s_t), with no bootstrap past the last token
    advantages, _ = token_advantages(rewards, values, mask, gamma=1.0, lam=0.0)
    assert torch.allclose(advantages[0, :3], torch.tensor([0.1 + 0.2 - 0.3, -0.2 + 0.1 - 0.2, 1.0 - 0.1]))


def test_ptx_term_is_the_mean_negative_log_likelihood_of_the_pretraining_tokens(tokenizer):
    from bellmax.rlhf.sft import corpus_tensors

    lm = tiny_lm(tokenizer)
    rows = [{"text": "sort : 3 1 2 = 1 2 3 <eos>"}, {"text": "count : cat = 1 <eos>"}]
    ids, attention_mask, loss_mask = corpus_tensors(tokenizer, rows)
    with torch.no_grad():
        ours = float(lm_loss(lm(ids, attention_mask=attention_mask).logits, ids, loss_mask))
        by_hand, count = 0.0, 0
        for row in rows:
            tokens = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
            for t in range(len(tokens)):
                by_hand -= _manual_log_prob(lm, tokenizer, "", tokens, t)
                count += 1
        labels = ids.masked_fill(loss_mask == 0, -100)  # Hugging Face's own causal-LM loss agrees
        theirs = float(lm(ids, attention_mask=attention_mask, labels=labels).loss)
    assert ours == pytest.approx(by_hand / count, abs=1e-4)
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_sft_loss_counts_only_the_completion_and_eos(tokenizer):
    ids, _, loss_mask = demonstration_tensors(tokenizer, [{"prompt": "sort : 3 1 2 =", "completion": "1 2 3"}])
    targets = [tokenizer.convert_ids_to_tokens(int(i)) for i, m in zip(ids[0], loss_mask[0]) if m]
    assert targets == ["1", "2", "3", "<eos>"]


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    fixed = KLController(0.1)
    fixed.update(kl=10.0, n_responses=64)
    assert fixed.value == 0.1
    high, low = KLController(0.1, True, target=2.0, horizon=640), KLController(0.1, True, target=2.0, horizon=640)
    high.update(kl=10.0, n_responses=64)  # error clipped to +0.2: beta * (1 + 0.2 * 64 / 640)
    low.update(kl=1.8, n_responses=64)  # error -0.1
    assert high.value == pytest.approx(0.1 * 1.02) and low.value == pytest.approx(0.1 * 0.99)


# -- the PPO step ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value_model", ["shared", "reward"])
def test_reference_and_reward_model_keep_no_gradients_and_ppo_updates_every_policy_tensor(tokenizer, tmp_path,
                                                                                           value_model):
    from bellmax.rlhf.sft import corpus_tensors

    directory = tmp_path
    save_pretrained(directory / "sft", tiny_lm(tokenizer, seed=4), tokenizer)
    lm, _ = load_causal_lm(directory / "sft")
    reference = inference_only(load_causal_lm(directory / "sft")[0])
    reward_model = inference_only(load_reward_model(directory / "sft")[0])
    assert not any(p.requires_grad for p in [*reference.parameters(), *reward_model.parameters()])
    critic = load_reward_model(directory / "sft")[0] if value_model == "reward" else None
    policy = PolicyWithValue(lm, critic)
    config = RLHFPPOConfig(batch_size=8, minibatch_size=4, n_epochs=1, ptx_coef=0.5, ptx_batch_size=2,
                           max_new_tokens=6)
    generator = torch.Generator().manual_seed(0)
    batch = rollout(policy, tokenizer, ["sort : 3 1 2 =", "count : cat cat ="] * 4, config, generator)
    score(batch, policy, reference, reward_model, (0.0, 1.0))
    for tensor in (batch.old_log_probs, batch.ref_log_probs, batch.values, batch.scores):
        assert tensor.grad_fn is None and not tensor.requires_grad
    kl = per_token_kl(batch.old_log_probs, batch.ref_log_probs, batch.response_mask)
    assert torch.allclose(kl, torch.zeros_like(kl), atol=1e-5)  # policy == reference before any update
    rewards = kl_penalized_rewards(batch.scores, kl, batch.response_mask, 0.05)
    advantages, returns = token_advantages(rewards, batch.values, batch.response_mask, 1.0, 0.95)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    ref_before = [p.detach().clone() for p in reference.parameters()]
    ptx = corpus_tensors(tokenizer, [{"text": "sort : 3 1 2 = 1 2 3 <eos>"}, {"text": "count : cat = 1 <eos>"}])
    metrics = ppo_update(policy, optimizer_for(policy), batch, advantages, returns, config, generator, ptx)
    assert {"losses/loss_policy", "losses/loss_value", "losses/loss_ptx", "losses/clip_fraction",
            "losses/approx_kl"} <= set(metrics)
    unchanged = [name for name, p in policy.named_parameters() if torch.equal(p.detach(), before[name])]
    assert unchanged == []
    assert all(torch.equal(a, b) for a, b in zip(ref_before, reference.parameters()))


def optimizer_for(module):
    from bellmax.core.optim import Adam

    return Adam(module.parameters(), lr=1e-3)


def _unpadded_logits(model, tokenizer, prompt: str, tokens: list[int]) -> torch.Tensor:
    """Logits (len(tokens), V) that chose each response token, from one unpadded forward pass of
    BOS + prompt + tokens (causal: position t sees only the prefix before token t)."""
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"] + tokens
    return model(torch.tensor([ids])).logits[0, -len(tokens) - 1: -1]


def _log_probs_at(logits: torch.Tensor, tokens: list[int], temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) of the tokens, written out: logits / T - logsumexp(logits / T)."""
    scaled = logits / temperature
    return (scaled - scaled.logsumexp(-1, keepdim=True))[torch.arange(len(tokens)), tokens]


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_log_probs_and_kl_are_those_of_the_distribution_sampled_at_the_temperature(tokenizer, tmp_path,
                                                                                    temperature):
    from bellmax.rlhf.evaluate import sample_answers

    save_pretrained(tmp_path / "sft", tiny_lm(tokenizer, seed=2), tokenizer)
    policy = PolicyWithValue(tiny_lm(tokenizer, seed=1))
    reference = inference_only(load_causal_lm(tmp_path / "sft")[0])
    reward_model = inference_only(load_reward_model(tmp_path / "sft")[0])
    prompts = ["sort : 3 1 2 =", "count : cat cat =", "repeat : red ="]
    config = RLHFPPOConfig(batch_size=3, minibatch_size=3, temperature=temperature, max_new_tokens=5)
    batch = rollout(policy, tokenizer, prompts, config, torch.Generator().manual_seed(0))
    score(batch, policy, reference, reward_model, (0.0, 1.0))
    untempered_error = 0.0
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            tokens = batch.response[i][batch.response_mask[i].bool()].tolist()
            n = len(tokens)
            # the log-probs PPO uses are log_softmax(logits / T) of the tokens sampled at T
            logits = _unpadded_logits(policy.lm, tokenizer, prompt, tokens)
            old = _log_probs_at(logits, tokens, temperature)
            ref = _log_probs_at(_unpadded_logits(reference, tokenizer, prompt, tokens), tokens, temperature)
            assert torch.allclose(batch.old_log_probs[i, :n], old, atol=1e-4)
            assert torch.allclose(batch.ref_log_probs[i, :n], ref, atol=1e-4)
            untempered_error = max(untempered_error, float((old - _log_probs_at(logits, tokens, 1.0)).abs().max()))
        # evaluation's KL to SFT: sum_t log pi_T - log pi_SFT,T over the responses sampled at T
        kl = sample_answers(policy.lm, tokenizer, prompts, seed=5, temperature=temperature, max_new_tokens=5,
                            reference=reference)["kl"]
        query, query_mask = encode_prompts(tokenizer, prompts)
        response, response_mask = generate(policy.lm, query, query_mask, 5, tokenizer.eos_token_id,
                                           tokenizer.pad_token_id, torch.Generator().manual_seed(5), temperature)
        for i, prompt in enumerate(prompts):
            tokens = response[i][response_mask[i].bool()].tolist()
            log_ratio = (_log_probs_at(_unpadded_logits(policy.lm, tokenizer, prompt, tokens), tokens, temperature)
                         - _log_probs_at(_unpadded_logits(reference, tokenizer, prompt, tokens), tokens, temperature))
            assert kl[i] == pytest.approx(float(log_ratio.sum()), abs=1e-4)
    if temperature == 1.0:
        assert untempered_error == 0.0  # at T = 1 nothing changes
    else:
        assert untempered_error > 0.05  # at T = 0.7 the untempered log-probs would have been wrong


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_kl_anchor_is_sft_sharpened_to_ref_temperature_and_kl_sft_stays_the_kl_to_sft(tokenizer, tmp_path,
                                                                                          temperature):
    from bellmax.rlhf import group
    from bellmax.rlhf.evaluate import sample_answers

    save_pretrained(tmp_path / "sft", tiny_lm(tokenizer, seed=2), tokenizer)
    policy = PolicyWithValue(load_causal_lm(tmp_path / "sft")[0])  # the policy before its first step: SFT itself
    reference = inference_only(load_causal_lm(tmp_path / "sft")[0])
    reward_model = inference_only(load_reward_model(tmp_path / "sft")[0])
    prompts = ["sort : 3 1 2 =", "count : cat cat =", "repeat : red ="]
    config = RLHFPPOConfig(batch_size=3, minibatch_size=3, temperature=temperature, max_new_tokens=5,
                           ref_temperature=0.5)
    batch = rollout(policy, tokenizer, prompts, config, torch.Generator().manual_seed(0))
    score(batch, policy, reference, reward_model, (0.0, 1.0))
    samples = group.Samples(prompts, batch.query, batch.query_mask, batch.response, batch.response_mask)
    group.score(samples, policy.lm, reference, temperature, 0.5)
    samples.scores = torch.zeros(len(prompts))
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            tokens = batch.response[i][batch.response_mask[i].bool()].tolist()
            n = len(tokens)
            logits = _unpadded_logits(reference, tokenizer, prompt, tokens)
            # the anchor is softmax(z_SFT / (T tau)); SFT itself stays at the sampling temperature T
            for log_probs in (batch.ref_log_probs, samples.ref_log_probs):
                assert torch.allclose(log_probs[i, :n], _log_probs_at(logits, tokens, temperature * 0.5), atol=1e-4)
            for log_probs in (batch.sft_log_probs, samples.sft_log_probs):
                assert torch.allclose(log_probs[i, :n], _log_probs_at(logits, tokens, temperature), atol=1e-4)
    mask = batch.response_mask
    kl = per_token_kl(batch.old_log_probs, batch.ref_log_probs, mask)
    metrics = iteration_metrics(batch, kl, torch.zeros_like(kl), 0.1, None)
    assert metrics["objective/kl_sft"] == pytest.approx(0.0, abs=1e-5)  # the policy is SFT: no KL to SFT
    # objective/kl is the KL to the anchor, the one penalized: sum_t log pi_old - log pi_SFT,T tau
    assert metrics["objective/kl"] == pytest.approx(float(kl.sum(1).mean()))
    assert abs(metrics["objective/kl"]) > 1e-3
    assert group.iteration_metrics(samples, 0.1, None)["objective/kl_sft"] == pytest.approx(0.0, abs=1e-5)
    # the evaluation's KL of SFT sampled at T tau to SFT at T: sum_t log pi_SFT,T tau - log pi_SFT,T
    query, query_mask = encode_prompts(tokenizer, prompts)
    kls = sample_answers(reference, tokenizer, prompts, seed=5, temperature=temperature * 0.5, max_new_tokens=5,
                         reference=reference, reference_temperature=temperature)["kl"]
    response, response_mask = generate(reference, query, query_mask, 5, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, torch.Generator().manual_seed(5), temperature * 0.5)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            tokens = response[i][response_mask[i].bool()].tolist()
            logits = _unpadded_logits(reference, tokenizer, prompt, tokens)
            log_ratio = _log_probs_at(logits, tokens, temperature * 0.5) - _log_probs_at(logits, tokens, temperature)
            assert kls[i] == pytest.approx(float(log_ratio.sum()), abs=1e-4)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_sharpen_divides_the_logits_by_tau_and_leaves_the_input_embedding_alone(architecture, tied):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from bellmax.rlhf.model import sharpen

    torch.manual_seed(0)
    if architecture == "gpt2":
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                        tie_word_embeddings=tied))
    else:
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=30, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, max_position_embeddings=16, tie_word_embeddings=tied))
    lm.eval()
    ids = torch.tensor([[3, 7, 1, 29, 12]])
    embedding = lm.get_input_embeddings().weight.clone()
    with torch.no_grad():
        before = lm(ids).logits
        sharpen(lm, 0.7, "--model M")
        after = lm(ids).logits
    assert torch.allclose(after, before / 0.7, atol=1e-5)
    assert torch.equal(lm.get_input_embeddings().weight, embedding)  # the prompt is read as before
    assert torch.allclose(torch.softmax(after, -1), torch.softmax(before / 0.7, -1), atol=1e-6)


def test_sharpen_refuses_a_model_whose_logits_it_cannot_divide():
    from transformers import GemmaConfig, GemmaForCausalLM

    from bellmax.rlhf.model import sharpen

    # Gemma's final norm multiplies by 1 + weight, so scaling its weight does not divide the logits
    lm = GemmaForCausalLM(GemmaConfig(vocab_size=30, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                      max_position_embeddings=16))
    with pytest.raises(BellmaxError, match=r"--model M: cannot start the policy at SFT sharpened to temperature "
                                           r"0.5.*GemmaForCausalLM.*--no-start-at-anchor"):
        sharpen(lm, 0.5, "--model M")


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_with_dropout_the_ratio_is_one_before_the_first_step(tokenizer, tmp_path, monkeypatch, temperature):
    import copy

    from transformers import GPT2LMHeadModel

    from bellmax.rlhf import ppo

    save_pretrained(tmp_path / "sft", tiny_lm(tokenizer, seed=2), tokenizer)
    reward_model = inference_only(load_reward_model(tmp_path / "sft")[0])
    config = copy.deepcopy(tiny_lm(tokenizer).config)
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.3  # a user's model, trained with dropout
    torch.manual_seed(3)
    policy = PolicyWithValue(GPT2LMHeadModel(config))
    ppo_config = RLHFPPOConfig(batch_size=4, minibatch_size=2, n_epochs=1, temperature=temperature,
                               max_new_tokens=5)
    generator = torch.Generator().manual_seed(0)
    batch = rollout(policy, tokenizer, ["sort : 3 1 2 =", "count : cat cat ="] * 2, ppo_config, generator)
    score(batch, policy, inference_only(load_causal_lm(tmp_path / "sft")[0]), reward_model, (0.0, 1.0))
    kl = per_token_kl(batch.old_log_probs, batch.ref_log_probs, batch.response_mask)
    advantages, returns = token_advantages(kl_penalized_rewards(batch.scores, kl, batch.response_mask, 0.05),
                                           batch.values, batch.response_mask, 1.0, 0.95)
    log_ratios = []

    def recording_loss(new_log_prob, old_log_prob, *args):
        log_ratios.append((new_log_prob - old_log_prob).detach())
        return ppo.algos_ppo_loss(new_log_prob, old_log_prob, *args)

    monkeypatch.setattr(ppo, "algos_ppo_loss", ppo.ppo_loss, raising=False)
    monkeypatch.setattr(ppo, "ppo_loss", recording_loss)
    ppo.ppo_update(policy, optimizer_for(policy), batch, advantages, returns, ppo_config, generator, None)
    assert len(log_ratios) == 2
    assert log_ratios[0].abs().max() < 1e-6  # ratio 1: the first minibatch sees the policy that sampled
    assert log_ratios[1].abs().max() > 1e-4  # the second one sees the policy after one step


def test_critic_from_the_reward_model_predicts_the_normalized_reward(tokenizer, tmp_path):
    save_pretrained(tmp_path / "sft", tiny_lm(tokenizer, seed=6), tokenizer)
    save_pretrained(tmp_path / "reward", load_reward_model(tmp_path / "sft")[0], tokenizer)  # head saved with it
    reward_model = inference_only(load_reward_model(tmp_path / "reward")[0])
    mean, std = 0.3, 2.5
    critic = critic_from_reward_model(load_reward_model(tmp_path / "reward")[0], (mean, std))
    policy = PolicyWithValue(tiny_lm(tokenizer, seed=1), critic).eval()
    query, query_mask = encode_prompts(tokenizer, ["sort : 3 1 2 =", "reverse : cat dog sun moon ="])
    response, response_mask = encode_responses(tokenizer, ["1 2 3 <eos>", "moon <eos>"])
    with torch.no_grad():
        # V of a whole sequence is its normalized reward (r - mean) / std, the reward PPO's returns use
        raw = reward_scores(reward_model, query, query_mask, response, response_mask)
        assert torch.allclose(reward_scores(critic, query, query_mask, response, response_mask), (raw - mean) / std,
                              atol=1e-5)
        # and V(s_t), the value before response token t, is the normalized reward of prompt + response[:t]
        _, values = policy(query, query_mask, response, response_mask)
        for t in range(response.shape[1]):
            prefix = reward_scores(reward_model, query, query_mask, response[:, :t], response_mask[:, :t])
            prefix = (prefix - mean) / std
            rows = response_mask[:, t].bool()
            assert torch.allclose(values[rows, t], prefix[rows], atol=1e-5)


def test_the_ptx_term_inside_an_update_raises_the_likelihood_of_the_pretraining_batch(tokenizer):
    from bellmax.rlhf.sft import corpus_tensors

    policy = PolicyWithValue(tiny_lm(tokenizer, seed=7))
    config = RLHFPPOConfig(batch_size=4, minibatch_size=4, n_epochs=1, learning_rate=1e-3, vf_coef=0.0,
                           ptx_coef=1.0, ptx_batch_size=8, max_new_tokens=4)
    generator = torch.Generator().manual_seed(0)
    batch = rollout(policy, tokenizer, ["sort : 3 1 2 =", "count : cat ="] * 2, config, generator)
    with torch.no_grad():
        logits, values = policy(batch.query, batch.query_mask, batch.response, batch.response_mask)
    batch.old_log_probs, batch.values = token_log_probs(logits, batch.response), values
    zeros = torch.zeros_like(values)  # no advantage and no value loss: the ptx term alone moves the policy
    ptx = corpus_tensors(tokenizer, [{"text": "sort : 3 1 2 = 1 2 3 <eos>"}, {"text": "count : cat = 1 <eos>"}])

    def nll() -> float:
        with torch.no_grad():
            return float(lm_loss(policy.lm(ptx[0], attention_mask=ptx[1]).logits, ptx[0], ptx[2]))

    before = nll()
    metrics = ppo_update(policy, optimizer_for(policy), batch, zeros, zeros, config, generator, ptx)
    assert metrics["losses/loss_policy"] == 0.0
    assert nll() < before - 0.01  # gamma_ptx E[log pi(x)] is maximized: the pretraining NLL went down


# -- Hugging Face save / load ---------------------------------------------------------------------
def test_save_pretrained_and_from_pretrained_round_trip(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = tiny_lm(tokenizer, seed=5)
    save_pretrained(tmp_path / "model", lm, tokenizer)
    save_pretrained(tmp_path / "model", lm, tokenizer)  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    loaded, loaded_tokenizer = load_causal_lm(tmp_path)  # a stage's run dir holds model/
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))  # and plain transformers reads it
    assert AutoTokenizer.from_pretrained(str(tmp_path / "model"))("sort : 1 =")["input_ids"] == \
        tokenizer("sort : 1 =")["input_ids"]
    assert loaded_tokenizer.eos_token_id == tokenizer.eos_token_id and loaded.config.eos_token_id == \
        tokenizer.eos_token_id and loaded.config.pad_token_id == tokenizer.pad_token_id
    ids = torch.tensor([tokenizer("sort : 3 1 =")["input_ids"]])  # the tokenizer adds the BOS
    assert ids[0].tolist().count(tokenizer.bos_token_id) == 1 and ids[0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        assert torch.equal(lm(ids).logits, loaded(ids).logits) and torch.equal(lm(ids).logits, plain(ids).logits)
    reward_model, _ = load_reward_model(tmp_path / "model")
    reward_model.config.bellmax_reward_mean = 0.25
    save_pretrained(tmp_path / "reward", reward_model, tokenizer)
    again, _ = load_reward_model(tmp_path / "reward")
    assert again.config.bellmax_reward_mean == 0.25
    query, query_mask = encode_prompts(tokenizer, ["sort : 3 1 ="])
    response, response_mask = encode_responses(tokenizer, ["1 3 <eos>"])
    with torch.no_grad():
        assert torch.equal(reward_scores(reward_model.eval(), query, query_mask, response, response_mask),
                           reward_scores(again.eval(), query, query_mask, response, response_mask))


def test_every_token_of_the_task_is_in_the_tokenizer(tokenizer):
    rng = random.Random(0)
    for prompt in (task.make_prompt(rng) for _ in range(50)):
        text = f"{prompt} {task.poor_response(prompt, rng)}"
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}) == 3
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in task.vocabulary())
