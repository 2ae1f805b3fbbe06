"""Direct preference optimization (Rafailov et al., 2023): the policy is its own reward model.

The objective PPO maximizes, E[r(x, y)] - beta KL(pi || pi_ref), has its optimum at
pi*(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x), so r(x, y) = beta log(pi*(y | x) / pi_ref(y | x))
+ beta log Z(x). Put into the reward model's loss (the lecture's -log sigma(r(x, y_w) - r(x, y_l))),
Z(x) cancels and the policy is trained on the comparisons directly:

    loss(phi) = -E_{(x, y_w, y_l)}[ log sigma( beta log(pi_phi(y_w | x) / pi_ref(y_w | x))
                                              - beta log(pi_phi(y_l | x) / pi_ref(y_l | x)) ) ]

with log pi(y | x) the sum of the response tokens' log-probabilities (EOS included). No sampling,
no reward model, no critic. The pairs are every (better, worse) pair of the compare stage's K-ranked
lists (tied pairs carry no preference), each prompt's K responses going through the model once
per step; the reference is the SFT model the policy starts from, so the loss starts at log 2.
beta log(pi / pi_ref) is the implicit reward: its held-out pairwise accuracy is logged as the
reward model's is, and answers sampled on held-out prompts give the gold score, KL to SFT and length.
"""

from __future__ import annotations

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
from bellmax.errors import BellmaxError
from bellmax.rlhf import data, task
from bellmax.rlhf.checkpoints import StageCheckpoints, remove_checkpoints, resume_point, resume_step
from bellmax.rlhf.evaluate import sample_answers
from bellmax.rlhf.model import inference_only, load_causal_lm, save_pretrained, sequence_log_probs, setup_torch
from bellmax.rlhf.reward import ranking_batch


@dataclass
class DPOConfig:
    """DPO on ranked comparisons; defaults are for the small models of the tiny preset."""

    seed: int = 0
    """Seed of the held-out split, batch order and the sampled answers."""
    epochs: int = 1
    """Passes over the training prompts."""
    prompts_per_batch: int = 16
    """Prompts per Adam step; each brings all its K responses and every pair among them."""
    beta: float = 0.1
    """beta, the strength of the implicit KL regularization (smaller: further from the reference)."""
    learning_rate: float = 5e-5
    """Adam step size."""
    held_out_fraction: float = 0.1
    """Share of prompts kept out of training to measure the implicit reward's pairwise accuracy."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this."""
    log_every: int = 20
    """Log the training loss and the held-out measures every this many steps."""
    eval_prompts: int = 64
    """Held-out prompts answered at each log, for the gold score, KL to SFT and length (0: none)."""
    max_new_tokens: int = 16
    """Longest sampled answer."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many steps, to resume a killed stage from (0: never)."""
    keep_checkpoints: int = 2
    """Keep the newest this many checkpoints (a damaged newest one falls back to the one before)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.epochs >= 1, "epochs", self.epochs, "at least 1")
        require(self.prompts_per_batch >= 1, "prompts_per_batch", self.prompts_per_batch, "at least 1")
        require(math.isfinite(self.beta) and self.beta > 0, "beta", self.beta, "a positive number (e.g. 0.1)")
        require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number (e.g. 5e-5)")
        require(0 < self.held_out_fraction < 1, "held_out_fraction", self.held_out_fraction, "in (0, 1)")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.log_every >= 1, "log_every", self.log_every, "at least 1")
        require(self.eval_prompts >= 0, "eval_prompts", self.eval_prompts, ">= 0")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")


# -- the loss -------------------------------------------------------------------------------------
def dpo_loss(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, winners: torch.Tensor, losers: torch.Tensor,
             beta: float) -> dict[str, torch.Tensor]:
    """DPO's loss over the pairs (winners[m], losers[m]) and its diagnostics. log_probs, ref_log_probs:
    (N,) log pi(y | x) and log pi_ref(y | x) of every response; winners, losers: (M,) indices into them."""
    implicit_reward = beta * (log_probs - ref_log_probs)  # beta log(pi / pi_ref)
    margin = implicit_reward[winners] - implicit_reward[losers]
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        accuracy = (margin > 0).float().mean()
    return {"loss": loss, "accuracy": accuracy, "margin": margin.detach().mean()}


@torch.no_grad()
def reference_log_probs(reference, tokenizer, rows: list[dict[str, Any]], chunk: int = 64) -> list[torch.Tensor]:
    """log pi_ref(y | x) of every response of every ranked list, computed once: one (K,) tensor per row."""
    result = []
    for start in range(0, len(rows), chunk):
        part = rows[start: start + chunk]
        prompts, responses = ranking_batch(part)[:2]
        values = sequence_log_probs(reference, prompts, responses, tokenizer)
        offset = 0
        for row in part:
            result.append(values[offset: offset + len(row["responses"])])
            offset += len(row["responses"])
    return result


def batch_terms(model, tokenizer, rows: list[dict[str, Any]], ref: list[torch.Tensor], beta: float,
                ) -> dict[str, torch.Tensor]:
    """dpo_loss over every pair of the ranked lists `rows` (ref: their reference log-probs)."""
    prompts, responses, winners, losers, _ = ranking_batch(rows)
    return dpo_loss(sequence_log_probs(model, prompts, responses, tokenizer), torch.cat(ref), winners, losers, beta)


@torch.no_grad()
def held_out_measures(model, tokenizer, rows: list[dict[str, Any]], ref: list[torch.Tensor], beta: float,
                      chunk: int = 64) -> dict[str, float]:
    """Pairwise accuracy and mean margin of the implicit reward on held-out ranked lists."""
    correct = margin_sum = total = 0.0
    for start in range(0, len(rows), chunk):
        terms = batch_terms(model, tokenizer, rows[start: start + chunk], ref[start: start + chunk], beta)
        pairs = len(ranking_batch(rows[start: start + chunk])[2])
        correct += float(terms["accuracy"]) * pairs
        margin_sum += float(terms["margin"]) * pairs
        total += pairs
    return {"accuracy": correct / max(total, 1), "margin": margin_sum / max(total, 1)}


def answer_measures(model, reference, tokenizer, prompts: list[str], config: DPOConfig) -> dict[str, float]:
    """Gold score (for the synthetic task's prompts), KL to the reference and length of sampled answers."""
    answers = sample_answers(model, tokenizer, prompts, config.seed, 1.0, config.max_new_tokens, 128, reference)
    measures = {"objective/kl": sum(answers["kl"]) / len(prompts),
                "rollout/response_length": sum(answers["lengths"]) / len(prompts)}
    try:
        measures["gold/score"] = sum(task.gold_score(p, t) for p, t in zip(prompts, answers["texts"])) / len(prompts)
    except ValueError:  # not the synthetic task: there is no gold labeler
        pass
    return measures


# -- the stage ------------------------------------------------------------------------------------
def run_dpo(config: DPOConfig, model_path: Path, comparisons_dir: Path, run_dir: Path, log=None,
            resume: bool = False) -> dict[str, Any]:
    """DPO from the policy at model_path (the SFT model, also the frozen reference) on the ranked
    lists (or comparisons) in comparisons_dir; resume: continue from run_dir's newest checkpoint (if
    it has one)."""
    config.validate()
    started = time.perf_counter()
    rankings = data.read_rankings(comparisons_dir)
    rows = [r for r in rankings.rows if task.comparisons(r["ranks"])]
    if len(rows) < 2:
        raise BellmaxError(f"{rankings.path} has {len(rows)} ranked prompt(s) with a preference; need at least 2")
    setup_torch(config.seed, config.torch_threads)
    lm, tokenizer = load_causal_lm(model_path)
    rankings = data.with_eos(rankings, tokenizer.eos_token)  # finished responses end with EOS, as TRL reads them
    rows = [r for r in rankings.rows if task.comparisons(r["ranks"])]
    lm.eval()  # no dropout: the implicit reward compares the same network with its reference
    reference = inference_only(load_causal_lm(model_path)[0])
    data.check_rankings_fit(rankings, tokenizer, lm)
    if config.eval_prompts:
        data.check_prompts_fit(rankings, tokenizer, [lm], config.max_new_tokens,
                               "shorten that prompt, set --eval-prompts 0, or use a model with a larger context")
    rng = random.Random(f"{config.seed}:dpo")
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_held_out = max(1, int(len(rows) * config.held_out_fraction))
    held_out = [rows[i] for i in order[:n_held_out]]
    train = [rows[i] for i in order[n_held_out:]]
    eval_prompts = list(dict.fromkeys(r["prompt"] for r in held_out))[: config.eval_prompts]
    ref_train = reference_log_probs(reference, tokenizer, train)
    ref_held_out = reference_log_probs(reference, tokenizer, held_out)
    pairs = sum(len(task.comparisons(r["ranks"])) for r in train)
    optimizer = Adam(lm.parameters(), lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(train) / config.prompts_per_batch)
    total_steps = config.epochs * steps_per_epoch
    batch_order: list[int] = []  # this epoch's order of the training prompts
    metrics: dict[str, float] = {}  # the last logged
    checkpoints = StageCheckpoints(None, config, {"policy": lm}, {"adam": optimizer}, randoms={"order": rng},
                                   running=lambda: {"batch_order": batch_order, "metrics": metrics,
                                                    "seconds": time.perf_counter() - started})
    checkpoint = resume_point(run_dir, "rlhf-dpo", config, resume)
    done = 0
    if checkpoint is not None:
        done, loop = checkpoints.restore(checkpoint)
        batch_order, metrics, started = loop["batch_order"], loop["metrics"], started - loop["seconds"]
    with Run(run_dir, "rlhf-dpo", {"config": data.config_dict(config), "model": str(model_path),
                                   "comparisons": str(comparisons_dir)}, resume_step=resume_step(checkpoint),
             tensorboard=False, config_file=MODEL_RUN_CONFIG_FILE) as run:
        checkpoints.run = run
        with checkpoints:
            for step in range(done + 1, total_steps + 1):
                start = (step - 1) % steps_per_epoch * config.prompts_per_batch
                if start == 0:
                    batch_order = list(range(len(train)))
                    rng.shuffle(batch_order)
                chosen = batch_order[start: start + config.prompts_per_batch]
                terms = batch_terms(lm, tokenizer, [train[i] for i in chosen], [ref_train[i] for i in chosen],
                                    config.beta)
                optimizer.zero_grad()
                terms["loss"].backward()
                clip_grad_norm(lm.parameters(), config.max_grad_norm)
                optimizer.step()
                if step % config.log_every == 0 or step == total_steps:
                    held = held_out_measures(lm, tokenizer, held_out, ref_held_out, config.beta)
                    metrics = {"losses/dpo": float(terms["loss"].detach()), "losses/accuracy": float(terms["accuracy"]),
                               "eval/accuracy": held["accuracy"], "eval/margin": held["margin"]}
                    if eval_prompts:
                        metrics.update(answer_measures(lm, reference, tokenizer, eval_prompts, config))
                    run.log(step, metrics)
                    if log is not None:
                        log(f"dpo {step}/{total_steps}: loss {metrics['losses/dpo']:.3f} held-out accuracy "
                            f"{held['accuracy']:.3f}" + (f" gold {metrics['gold/score']:.3f}"
                                                         if "gold/score" in metrics else ""))
                checkpoints.step_done(step)
        save_pretrained(run_dir, lm, tokenizer)
        report = {"stage": "dpo", "beta": config.beta, "train_prompts": len(train), "train_pairs": pairs,
                  "held_out_prompts": len(held_out), "steps": total_steps, "final_loss": metrics["losses/dpo"],
                  "held_out_accuracy": metrics["eval/accuracy"], "held_out_margin": metrics["eval/margin"],
                  "gold_score": metrics.get("gold/score"), "kl_to_sft": metrics.get("objective/kl"),
                  "seconds": time.perf_counter() - started}
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report
