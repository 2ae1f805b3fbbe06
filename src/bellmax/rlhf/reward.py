"""Comparison data and the reward model: the human-preference proxy r_theta(x, y).

compare: for each prompt, sample K responses from the SFT policy and let the simulated labelers
rank them (ties allowed: D > C > A = B); a ranking of K gives up to C(K, 2) comparisons.

reward: the SFT transformer with a scalar head, trained on the lecture's loss

    loss(theta) = -1/C(K,2) E_{(x, y_w, y_l) ~ D}[ log sigma(r_theta(x, y_w) - r_theta(x, y_l)) ]

with all C(K, 2) pairs of one prompt in the same batch (as in InstructGPT): each of the K
responses goes through the model once, and the pairs are differences of those K scores. Tied
pairs carry no preference and are left out. The loss only sees differences, so adding a constant
to every reward leaves it unchanged; after training we store the mean and std of the rewards of
the training responses in the model's config (`bellmax_reward_mean/std`) so PPO can use a
normalized reward, (r - mean) / std (`bellmax_reward_normalization` there says so in words).
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bellmax.config import require
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.run import MODEL_RUN_CONFIG_FILE, Run
from bellmax.rlhf import data, task
from bellmax.rlhf.checkpoints import StageCheckpoints, remove_checkpoints, resume_point, resume_step
from bellmax.rlhf.model import (
    decode_responses,
    encode_prompts,
    encode_responses,
    generate,
    load_causal_lm,
    load_reward_model,
    response_ids,
    reward_scores,
    save_pretrained,
    setup_torch,
)


@dataclass
class CompareConfig:
    """Sampling K responses per prompt from the SFT policy and ranking them."""

    seed: int = 0
    """Seed of prompt choice, sampling and labeler noise."""
    prompts: int = 800
    """Prompts to rank responses for."""
    k: int = 4
    """Responses per prompt from the policy (a ranking of K gives C(K, 2) comparisons)."""
    k_extra: int = 0
    """More responses per prompt from a second policy (--extra-model, e.g. the pretrained model), ranked
    together with the K: comparisons from several policies, as in InstructGPT, show the reward
    model mistakes the first policy rarely makes (answers cut short, for one)."""
    temperature: float = 1.0
    """Sampling temperature."""
    max_new_tokens: int = 16
    """Longest response."""
    labeler_noise: float = 0.1
    """Standard deviation of a labeler's error on the [0, 1] gold scale."""
    tie_margin: float = 0.05
    """Responses perceived closer than this are ranked equal."""
    batch_size: int = 64
    """Prompts sampled together."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.prompts >= 1, "prompts", self.prompts, "at least 1")
        require(self.k >= 1 and self.k_extra >= 0 and self.k + self.k_extra >= 2, "k", self.k,
                "at least 1, with k + k_extra >= 2 (a ranking needs two responses)")
        require(self.temperature > 0, "temperature", self.temperature, "positive")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.labeler_noise >= 0, "labeler_noise", self.labeler_noise, ">= 0")
        require(self.tie_margin >= 0, "tie_margin", self.tie_margin, ">= 0")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")


@dataclass
class RewardConfig:
    """Training the reward model from ranked responses."""

    seed: int = 0
    """Seed of the held-out split and batch order."""
    epochs: int = 2
    """Passes over the training prompts."""
    prompts_per_batch: int = 16
    """Prompts per Adam step; each brings all its K responses and their pairs."""
    learning_rate: float = 2e-4
    """Adam step size."""
    held_out_fraction: float = 0.1
    """Share of prompts kept out of training to measure pairwise accuracy."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this."""
    log_every: int = 20
    """Log training loss and held-out accuracy every this many steps."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""
    checkpoint_every: int = 100
    """Save a checkpoint every this many steps, to resume a killed stage from (0: never)."""
    keep_checkpoints: int = 2
    """Keep the newest this many checkpoints (a damaged newest one falls back to the one before)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.epochs >= 1, "epochs", self.epochs, "at least 1")
        require(self.prompts_per_batch >= 1, "prompts_per_batch", self.prompts_per_batch, "at least 1")
        require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number (e.g. 2e-4)")
        require(0 < self.held_out_fraction < 1, "held_out_fraction", self.held_out_fraction, "in (0, 1)")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.log_every >= 1, "log_every", self.log_every, "at least 1")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")


# config.json of a reward model says, next to the two numbers, what they are and how to use them
NORMALIZATION_NOTE = ("reward = (logits[:, 0] - bellmax_reward_mean) / bellmax_reward_std, where logits[:, 0] is "
                      "the score of AutoModelForSequenceClassification on prompt + response + EOS (the tokenizer "
                      "adds the BOS); mean and std are those of the training responses' scores")


# -- the loss -----------------------------------------------------------------------------------
def reward_loss(rewards: torch.Tensor, winners: torch.Tensor, losers: torch.Tensor, pair_k: torch.Tensor,
                num_prompts: int) -> dict[str, torch.Tensor]:
    """The ranking loss over a batch of prompts, and its diagnostics.

    rewards: (N,) r_theta of every response in the batch; winners, losers: (M,) indices into it of
    each preferred / rejected response; pair_k: (M,) K of the prompt each pair comes from.
    """
    margin = rewards[winners] - rewards[losers]
    # loss = -1/C(K,2) E_x[ sum over the pairs of x of log sigma(r(x, y_w) - r(x, y_l)) ]
    pairs_per_prompt = pair_k * (pair_k - 1) / 2
    loss = -(F.logsigmoid(margin) / pairs_per_prompt).sum() / num_prompts
    with torch.no_grad():
        accuracy = (margin > 0).float().mean()
    return {"loss": loss, "accuracy": accuracy, "margin": margin.detach().mean()}


def ranking_batch(rows: list[dict[str, Any]]) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten ranked lists: (prompt per response, responses, winners, losers, pair_k)."""
    prompts, winners, losers, pair_k = [], [], [], []
    responses: list[str] = []
    for row in rows:
        offset = len(responses)
        k = len(row["responses"])
        prompts += [row["prompt"]] * k
        responses += list(row["responses"])
        for w, loser in task.comparisons(row["ranks"]):
            winners.append(offset + w)
            losers.append(offset + loser)
            pair_k.append(k)
    return (prompts, responses, torch.tensor(winners, dtype=torch.long), torch.tensor(losers, dtype=torch.long),
            torch.tensor(pair_k, dtype=torch.float32))


ROWS_PER_FORWARD = 32  # responses scored together; fewer makes the matrix products too small to run fast


def score_texts(reward_model, tokenizer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """r_theta(x, y) for text pairs: (N,), differentiable.

    The K responses of a prompt range from one token to max_new_tokens, and a batch is as wide as
    its longest prompt plus its longest response, so one forward over all of them would spend about
    half its work on padding. The pairs go through the model in groups of ROWS_PER_FORWARD of
    similar length instead (each padded only to its own longest): padding is masked, so a row's
    score does not depend on the rows beside it (up to float rounding), and the work drops by about
    a third.
    """
    lengths = [len(r) for r in response_ids(tokenizer, responses)]
    order = sorted(range(len(responses)), key=lambda i: lengths[i])
    groups = [order[start: start + ROWS_PER_FORWARD] for start in range(0, len(order), ROWS_PER_FORWARD)]
    if len(groups) > 1 and len(groups[-1]) < ROWS_PER_FORWARD // 2:  # no small last group: it would run slowly
        groups[-2:] = [groups[-2] + groups[-1]]
    scores = []
    for group in groups:
        query, query_mask = encode_prompts(tokenizer, [prompts[i] for i in group])
        response, response_mask = encode_responses(tokenizer, [responses[i] for i in group])
        scores.append(reward_scores(reward_model, query, query_mask, response, response_mask))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return torch.cat(scores)[inverse]


@torch.no_grad()
def evaluate_rankings(reward_model, tokenizer, rows: list[dict[str, Any]], batch_prompts: int = 64) -> dict[str, float]:
    """Held-out pairwise accuracy and mean margin of the reward model against the labelers' pairs,
    and against the gold labeler's order where the prompts are the synthetic task's."""
    correct = total = gold_correct = gold_total = 0
    margin_sum = 0.0
    for start in range(0, len(rows), batch_prompts):
        chunk = rows[start: start + batch_prompts]
        prompts, responses, winners, losers, _ = ranking_batch(chunk)
        rewards = score_texts(reward_model, tokenizer, prompts, responses)
        margin = rewards[winners] - rewards[losers]
        correct += int((margin > 0).sum())
        total += len(margin)
        margin_sum += float(margin.sum())
        try:
            gold = [task.gold_score(p, r) for p, r in zip(prompts, responses)]
        except ValueError:  # not the synthetic task: there is no gold labeler
            continue
        offset = 0
        for row in chunk:
            for i, j in itertools.combinations(range(offset, offset + len(row["responses"])), 2):
                if gold[i] != gold[j]:
                    gold_total += 1
                    gold_correct += int((rewards[i] > rewards[j]) == (gold[i] > gold[j]))
            offset += len(row["responses"])
    result = {"accuracy": correct / max(total, 1), "margin": margin_sum / max(total, 1), "pairs": total}
    if gold_total:
        result["gold_accuracy"] = gold_correct / gold_total
    return result


# -- stages -------------------------------------------------------------------------------------
def _sample(model, tokenizer, prompts: list[str], k: int, config: CompareConfig,
            generator: torch.Generator) -> list[list[str]]:
    """k sampled responses for each prompt."""
    query, query_mask = encode_prompts(tokenizer, [p for p in prompts for _ in range(k)])
    response, response_mask = generate(model, query, query_mask, config.max_new_tokens, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, generator, config.temperature)
    texts = decode_responses(tokenizer, response, response_mask)
    return [texts[i * k: (i + 1) * k] for i in range(len(prompts))]


def run_compare(config: CompareConfig, model_path: Path, data_dir: Path, run_dir: Path,
                extra_model_path: Path | None = None) -> dict[str, Any]:
    """Stage 2: K samples per prompt from the policy at model_path (plus k_extra from the one at
    extra_model_path), ranked together by the simulated labelers. The responses are written in the
    data files' convention (a leading space, no EOS, `finished` where the policy emitted it; see
    `data`), and comparisons.jsonl gets the pairs of finished responses."""
    config.validate()
    if config.k_extra and extra_model_path is None:
        from bellmax.errors import ConfigError

        raise ConfigError(f"k_extra={config.k_extra} needs --extra-model DIR (the second policy to sample from)")
    started = time.perf_counter()
    records = data.load(data_dir, data.PROMPTS)
    all_prompts = records.column("prompt")
    setup_torch(config.seed, config.torch_threads)
    model, tokenizer = load_causal_lm(model_path)
    extra = (load_causal_lm(extra_model_path, "--extra-model")[0].eval()
             if config.k_extra and extra_model_path is not None else None)
    model.eval()
    data.check_prompts_fit(records, tokenizer, [model] if extra is None else [model, extra], config.max_new_tokens)
    rng = random.Random(f"{config.seed}:compare")
    prompts = [rng.choice(all_prompts) for _ in range(config.prompts)]
    generator = torch.Generator().manual_seed(config.seed)
    panel = task.LabelerPanel(noise=config.labeler_noise, tie_margin=config.tie_margin)
    rankings, comparisons = [], []
    untied = 0  # pairs with a preference
    for start in range(0, len(prompts), config.batch_size):
        chunk = prompts[start: start + config.batch_size]
        samples = _sample(model, tokenizer, chunk, config.k, config, generator)
        if extra is not None:
            samples = [a + b for a, b in zip(samples, _sample(extra, tokenizer, chunk, config.k_extra, config,
                                                              generator))]
        for prompt, responses in zip(chunk, samples):
            ranks = panel.rank(prompt, responses, rng)
            completions, finished = zip(*(data.as_completion(r, tokenizer.eos_token) for r in responses))
            rankings.append({"prompt": prompt, "responses": list(completions), "ranks": ranks,
                             "finished": list(finished)})
            pairs = task.comparisons(ranks)
            untied += len(pairs)
            # TRL's preference format cannot mark a response that never stopped: only finished pairs go there
            comparisons += [{"prompt": prompt, "chosen": completions[w], "rejected": completions[lo]}
                            for w, lo in pairs if finished[w] and finished[lo]]
    data.write_jsonl(Path(run_dir) / data.RANKINGS, rankings)
    data.write_jsonl(Path(run_dir) / data.COMPARISONS, comparisons)
    k = config.k + config.k_extra
    possible = len(rankings) * k * (k - 1) // 2
    report = {"stage": "compare", "prompts": len(rankings), "k": k, "comparisons": untied,
              "tied_pairs": possible - untied, "unfinished_pairs": untied - len(comparisons),
              "seconds": time.perf_counter() - started}
    data.write_report(run_dir, report)
    return report


def run_reward(config: RewardConfig, model_path: Path, comparisons_dir: Path, run_dir: Path,
               resume: bool = False) -> dict[str, Any]:
    """Stage 3: the reward model, initialized from the (SFT) model at model_path; resume: continue
    from run_dir's newest checkpoint (if it has one)."""
    config.validate()
    started = time.perf_counter()
    rankings = data.read_rankings(comparisons_dir)
    preferred = sum(1 for r in rankings.rows if task.comparisons(r["ranks"]))
    if preferred < 2:
        from bellmax.errors import BellmaxError

        raise BellmaxError(f"{rankings.path} has {preferred} ranked prompt(s) with a preference; need at least 2")
    setup_torch(config.seed, config.torch_threads)
    reward_model, tokenizer = load_reward_model(model_path, "--model")
    rankings = data.with_eos(rankings, tokenizer.eos_token)
    rows = [r for r in rankings.rows if task.comparisons(r["ranks"])]
    data.check_rankings_fit(rankings, tokenizer, reward_model)
    rng = random.Random(f"{config.seed}:reward")
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_held_out = max(1, int(len(rows) * config.held_out_fraction))
    held_out = [rows[i] for i in order[:n_held_out]]
    train_order = order[n_held_out:]  # the training prompts (indices into rows), shuffled at each epoch
    steps_per_epoch = math.ceil(len(train_order) / config.prompts_per_batch)
    total_steps = config.epochs * steps_per_epoch
    optimizer = Adam(reward_model.parameters(), lr=config.learning_rate)
    checkpoints = StageCheckpoints(None, config, {"reward_model": reward_model}, {"adam": optimizer},
                                   randoms={"order": rng},
                                   running=lambda: {"train_order": train_order,
                                                    "seconds": time.perf_counter() - started})
    checkpoint = resume_point(run_dir, "rlhf-reward", config, resume)
    done = 0
    if checkpoint is not None:
        done, loop = checkpoints.restore(checkpoint)
        train_order, started = loop["train_order"], started - loop["seconds"]
    with Run(run_dir, "rlhf-reward", {"config": data.config_dict(config), "model": str(model_path),
                                      "comparisons": str(comparisons_dir)}, resume_step=resume_step(checkpoint),
             tensorboard=False, config_file=MODEL_RUN_CONFIG_FILE) as run:
        checkpoints.run = run
        with checkpoints:
            for step in range(done + 1, total_steps + 1):
                start = (step - 1) % steps_per_epoch * config.prompts_per_batch
                if start == 0:
                    rng.shuffle(train_order)
                chunk = [rows[i] for i in train_order[start: start + config.prompts_per_batch]]
                prompts, responses, winners, losers, pair_k = ranking_batch(chunk)
                reward_model.train()
                terms = reward_loss(score_texts(reward_model, tokenizer, prompts, responses), winners, losers, pair_k,
                                    len(chunk))
                optimizer.zero_grad()
                terms["loss"].backward()
                clip_grad_norm(reward_model.parameters(), config.max_grad_norm)
                optimizer.step()
                if step % config.log_every == 0:
                    reward_model.eval()
                    held = evaluate_rankings(reward_model, tokenizer, held_out)
                    gold = {"eval/gold_accuracy": held["gold_accuracy"]} if "gold_accuracy" in held else {}
                    run.log(step, {"losses/reward": float(terms["loss"].detach()),
                                   "losses/accuracy": float(terms["accuracy"]),
                                   "eval/accuracy": held["accuracy"], "eval/margin": held["margin"], **gold})
                checkpoints.step_done(step)
        reward_model.eval()
        held = evaluate_rankings(reward_model, tokenizer, held_out)
        train = [rows[i] for i in train_order]
        with torch.no_grad():
            train_rewards = torch.cat([score_texts(reward_model, tokenizer, *ranking_batch(train[s: s + 64])[:2])
                                       for s in range(0, len(train), 64)])
        reward_model.config.bellmax_reward_mean = float(train_rewards.mean())
        reward_model.config.bellmax_reward_std = float(train_rewards.std())
        reward_model.config.bellmax_reward_normalization = NORMALIZATION_NOTE
        save_pretrained(run_dir, reward_model, tokenizer, padding_side="right")
        report = {"stage": "reward", "train_prompts": len(train), "held_out_prompts": len(held_out),
                  "steps": total_steps, "held_out_accuracy": held["accuracy"],
                  "held_out_margin": held["margin"], "held_out_pairs": held["pairs"],
                  "gold_accuracy": held.get("gold_accuracy"), "reward_mean": reward_model.config.bellmax_reward_mean,
                  "reward_std": reward_model.config.bellmax_reward_std, "seconds": time.perf_counter() - started}
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report
