"""Rejection-sampling fine-tuning (Llama 2): the reward model picks the best of N samples, SFT learns them.

For each prompt x, N responses are sampled from the SFT policy and the reward model keeps its best,

    y*(x) = argmax_{i = 1..N} r_theta(x, y_i),    y_1 .. y_N ~ pi_SFT(. | x)      (best-of-N)

and the policy is fine-tuned on the picks with the SFT loss (completion tokens + EOS only),

    L(phi) = -E_x[ 1/|y*| sum_t log pi_phi(y*_t | x, y*_<t) ].

Best-of-N is itself a policy, the simplest way to spend a reward model: at KL(pi_BoN || pi_SFT) of at
most log N - (N - 1) / N nats (Stiennon et al., 2020; Beirami et al., 2024) it raises the reward as far
as the reward model's ranking of SFT's own samples allows, and it can only ever choose among them, so it
moves toward the reward model's blind spots no faster than SFT samples them. The fine-tuning distils it
into one sample per prompt, as Llama 2 did before (and between) its PPO rounds. There is no critic and
no KL term: the distance from SFT comes only from how far the picks are from SFT's typical samples.

Responses that never emitted EOS, and empty ones, are never picked (a prompt with none to pick is skipped). The
picks are written to best_of_n.jsonl in the usual prompt/completion form, so they are SFT data for any
trainer, with the reward model's (normalized) score of each.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bellmax.config import require
from bellmax.core.run import MODEL_RUN_CONFIG_FILE, Run, atomic_write_text
from bellmax.rlhf import data, task
from bellmax.rlhf.checkpoints import remove_checkpoints, resume_point, resume_step, resumed_seconds
from bellmax.rlhf.evaluate import mean_gold_score
from bellmax.rlhf.model import (
    decode_responses,
    encode_prompts,
    generate,
    inference_only,
    load_causal_lm,
    load_reward_model,
    response_log_likelihood,
    save_pretrained,
    setup_torch,
)
from bellmax.rlhf.ppo import reward_normalization
from bellmax.rlhf.reward import score_texts
from bellmax.rlhf.sft import SFT_GOLD_TOKENS, LMTrainConfig, demonstration_tensors, train_lm

# in the run directory: the best-of-N picks ({"prompt", "completion", "reward"}) and the sampling's summary
PICKS, PICKS_SUMMARY = "best_of_n.jsonl", "best_of_n.json"
Reward = Callable[[list[str], list[str]], list[float]]  # (prompts, sampled texts) -> one reward each


@dataclass
class RSConfig(LMTrainConfig):
    """Rejection sampling: best-of-N picks by the reward model, then fine-tuning on them."""

    samples: int = 8
    """N: responses sampled per prompt, of which the reward model keeps the best."""
    prompts: int = 2000
    """Prompts of the data's prompts.jsonl to sample for (a seeded choice without repeats; at most all)."""
    temperature: float = 1.0
    """Sampling temperature of the N responses."""
    max_new_tokens: int = 16
    """Longest sampled response."""
    sample_batch_size: int = 128
    """Responses sampled together."""
    ref_coef: float = 0.0
    """beta of regularized best-of-N (Jinnai et al., 2024): pick the answer with the highest
    r_theta(x, y) + beta log pi_SFT(y | x) (the reward normalized, the log-probability summed over the
    answer's tokens and EOS), which prefers SFT's likelier answers among those the reward model scores
    alike; 0: plain best-of-N."""
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_steps: int = 20
    eval_prompts: int = 200
    """Held-out prompts sampled at the end to report the gold score (0: skip)."""

    def validate(self) -> None:
        super().validate()
        require(self.samples >= 1, "samples", self.samples, "at least 1 (N of best-of-N)")
        require(self.prompts >= 1, "prompts", self.prompts, "at least 1")
        require(math.isfinite(self.temperature) and self.temperature > 0, "temperature", self.temperature,
                "a positive number (1: the policy's own distribution)")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.sample_batch_size >= 1, "sample_batch_size", self.sample_batch_size, "at least 1")
        require(math.isfinite(self.ref_coef) and self.ref_coef >= 0, "ref_coef", self.ref_coef,
                ">= 0 (0: plain best-of-N)")
        require(self.eval_prompts >= 0, "eval_prompts", self.eval_prompts, ">= 0")


def best_of_n_kl_bound(n: int) -> float:
    """The upper bound log n - (n - 1) / n on KL(best-of-n || the sampled policy), in nats: reached when
    no two answers tie in reward and none has a noticeable probability of its own (the continuous limit);
    repeated answers, as a small policy samples them, bring the KL below it."""
    return math.log(n) - (n - 1) / n


def pickable(text: str, eos_token: str) -> bool:
    """Whether a sampled answer may be picked: it emitted EOS and has text (SFT data needs a completion)."""
    completion, finished = data.as_completion(text, eos_token)
    return finished and bool(completion)


def best_finished(rewards: list[float], finished: list[bool]) -> int | None:
    """Index of the highest reward among the finished responses (the first on a tie); None if none finished."""
    candidates = [i for i, done in enumerate(finished) if done]
    return max(candidates, key=lambda i: rewards[i]) if candidates else None


def reward_model_scores(reward_model, tokenizer, normalization: tuple[float, float]) -> Reward:
    """The reward model's normalized score of (prompt, sampled text) pairs, (r_theta(x, y) - mean) / std."""
    mean, std = normalization
    return lambda prompts, texts: ((score_texts(reward_model, tokenizer, prompts, texts) - mean) / std).tolist()


@torch.no_grad()
def best_of_n(model, tokenizer, prompts: list[str], config: RSConfig,
              reward: Reward) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The picks ({"prompt", "completion", "reward"}, one per prompt with a finished, non-empty sample) and the
    means of the picked and of all sampled rewards and, on the synthetic task, gold scores. `reward`
    scores (prompt, sampled text) pairs, the texts with EOS where the policy emitted it."""
    generator = torch.Generator().manual_seed(config.seed)
    batch = max(1, config.sample_batch_size // config.samples)  # prompts per sampling batch
    picks: list[dict[str, Any]] = []
    sampled_rewards: list[float] = []
    sampled_gold: list[float] = []
    picked_gold: list[float] = []
    judged = task.is_task_prompt(prompts[0])
    for start in range(0, len(prompts), batch):
        chunk = prompts[start: start + batch]
        repeated = [p for p in chunk for _ in range(config.samples)]
        query, query_mask = encode_prompts(tokenizer, repeated)
        response, response_mask = generate(model, query, query_mask, config.max_new_tokens, tokenizer.eos_token_id,
                                           tokenizer.pad_token_id, generator, config.temperature)
        texts = decode_responses(tokenizer, response, response_mask)
        rewards = reward(repeated, texts)
        if config.ref_coef:  # regularized best-of-N: + beta log pi_SFT(y | x), the policy's own likelihood
            likelihood = response_log_likelihood(model, query, query_mask, response, response_mask).tolist()
            choose = [r + config.ref_coef * lp for r, lp in zip(rewards, likelihood)]
        else:
            choose = rewards
        sampled_rewards += rewards
        for j, prompt in enumerate(chunk):
            group = slice(j * config.samples, (j + 1) * config.samples)
            completions = [data.as_completion(t, tokenizer.eos_token)[0] for t in texts[group]]
            if judged:
                sampled_gold += [task.gold_score(prompt, t) for t in texts[group]]
            best = best_finished(choose[group], [pickable(t, tokenizer.eos_token) for t in texts[group]])
            if best is None:
                continue
            picks.append({"prompt": prompt, "completion": completions[best], "reward": rewards[group][best]})
            if judged:
                picked_gold.append(task.gold_score(prompt, texts[group][best]))
    stats = {"prompts": len(prompts), "sampled_reward": sum(sampled_rewards) / len(sampled_rewards),
             "picked_reward": sum(p["reward"] for p in picks) / max(1, len(picks))}
    if judged and picked_gold:
        stats |= {"sampled_gold_score": sum(sampled_gold) / len(sampled_gold),
                  "picked_gold_score": sum(picked_gold) / len(picked_gold)}
    return picks, stats


def run_rs(config: RSConfig, model_path: Path, reward_path: Path, data_dir: Path, run_dir: Path,
           log=None, resume: bool = False) -> dict[str, Any]:
    """The rejection-sampling stage: best-of-N picks from the policy at model_path (the SFT model) by the
    reward model at reward_path, on data_dir/prompts.jsonl, then fine-tuning on them; resume: continue the
    fine-tuning from run_dir's newest checkpoint (the picks are read back from best_of_n.jsonl)."""
    config.validate()
    started = time.perf_counter()
    records = data.load(data_dir, data.PROMPTS)
    held_out = data.load(data_dir, data.EVAL_PROMPTS) if config.eval_prompts else None
    setup_torch(config.seed, config.torch_threads)
    model, tokenizer = load_causal_lm(model_path)
    model.eval()
    reward_model = inference_only(load_reward_model(reward_path)[0])
    data.check_prompts_fit(records, tokenizer, [model, reward_model], config.max_new_tokens)
    if held_out is not None:
        data.check_prompts_fit(held_out, tokenizer, [model], SFT_GOLD_TOKENS,
                               "shorten that prompt, set --eval-prompts 0, or use a model with a larger context")
    checkpoint = resume_point(run_dir, "rlhf-rs", config, resume)
    meta = {"config": data.config_dict(config), "model": str(model_path), "reward_model": str(reward_path),
            "data": str(data_dir)}
    with Run(run_dir, "rlhf-rs", meta, resume_step=resume_step(checkpoint), tensorboard=False,
             config_file=MODEL_RUN_CONFIG_FILE) as run:
        picks_file, summary_file = Path(run_dir) / PICKS, Path(run_dir) / PICKS_SUMMARY
        if checkpoint is not None:  # fine-tuning had begun: on the picks it wrote then
            picks = data.read_jsonl(picks_file, data.SCHEMAS[data.SFT]).rows
            stats = json.loads(summary_file.read_text())
        else:
            all_prompts = records.column("prompt")
            prompts = random.Random(f"{config.seed}:rs").sample(all_prompts, min(config.prompts, len(all_prompts)))
            reward = reward_model_scores(reward_model, tokenizer, reward_normalization(reward_model, reward_path))
            picks, stats = best_of_n(model, tokenizer, prompts, config, reward)
            if not picks:
                from bellmax.errors import BellmaxError

                raise BellmaxError(f"none of the {config.samples} samples of any of the {len(prompts)} prompts "
                                   "emitted EOS: there is nothing to fine-tune on; raise --max-new-tokens or "
                                   "start from a policy that finishes its answers (an SFT model)")
            data.write_jsonl(picks_file, picks)
            atomic_write_text(summary_file, json.dumps(stats, indent=2) + "\n")
            if log is not None:
                log(f"rs: {len(picks)} best-of-{config.samples} picks of {len(prompts)} prompts, reward "
                    f"{stats['sampled_reward']:+.3f} sampled -> {stats['picked_reward']:+.3f} picked")
        stats = {**stats, **train_lm(model, demonstration_tensors(tokenizer, picks), config, run, checkpoint)}
        save_pretrained(run_dir, model, tokenizer)
        report = {"stage": "rs", "samples": config.samples, "picks": len(picks),
                  "kl_bound_best_of_n": best_of_n_kl_bound(config.samples), **stats}
        if held_out is not None:
            report["gold_score"] = mean_gold_score(model, tokenizer, held_out.column("prompt")[: config.eval_prompts],
                                                   seed=config.seed, max_new_tokens=SFT_GOLD_TOKENS)
        report["seconds"] = time.perf_counter() - started + resumed_seconds(checkpoint)
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report
