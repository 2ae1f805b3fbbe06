"""PPO for a language model against a learned reward, with a KL penalty and a pretraining term.

The lecture's objective (InstructGPT, "PPO-ptx"):

    objective(phi) = E_{(x, y) ~ pi_RL}[ r_theta(x, y) - beta log(pi_RL(y | x) / pi_SFT(y | x)) ]
                     + gamma_ptx E_{x ~ D_pretrain}[ log pi_RL(x) ]

As an MDP: the state s_t is the prompt plus the response tokens so far, the action a_t is the
next token, the episode ends at EOS (or after max_new_tokens), and the environment is the
prompt distribution plus the frozen reward model. The reward of each token is

    r_t = -beta kl_t + [t = last] r_theta(x, y),   kl_t = log pi_old(a_t | s_t) - log pi_SFT(a_t | s_t)

The KL penalty holds an entropy bonus: KL(pi || pi_SFT) = E_pi[-log pi_SFT] - H(pi), so the penalized
objective pays beta H(pi) for staying as random as SFT, and its optimum pi* ~ pi_SFT exp(r_theta / beta)
keeps SFT's temperature wherever the reward model cannot tell answers apart. `ref_temperature` tau < 1
anchors the KL at SFT sharpened to temperature tau, softmax(z_SFT / tau), instead: the optimum becomes
pi* ~ pi_SFT,tau exp(r_theta / beta), SFT's likelier answers made likelier still (tau = 1: the lecture's
objective). `objective/kl` is then the KL to that anchor, `objective/kl_sft` the KL to SFT itself.
As the lecture's policy starts at its anchor pi_SFT, the policy starts at the sharpened anchor too
(`start_at_anchor`: SFT with its logits divided by tau): the penalty starts at zero, and the policy
has the anchor's sharpness from its first step instead of having to reach it in small steps.

KL estimator: kl_t is the "k1" estimator; sum_t kl_t is an unbiased single-sample estimate of
KL(pi_RL(. | x) || pi_SFT(. | x)) over whole responses. It is the one that enters the reward, and
`objective/kl` logs exactly that sum (averaged over the batch), so the logged KL is the optimized
one. (`losses/approx_kl`, the "k3" estimate of KL(pi_old || pi_phi) inside an update, is PPO's
step-size diagnostic, not the penalty.)

Each iteration: rollout (sample responses) -> score (old log-probs, values, reference log-probs,
reward model) -> advantages (per-token rewards, GAE(gamma, lambda) from core.returns) -> update
(n_epochs of the clipped surrogate of algos.ppo.ppo_loss on the response tokens, plus gamma_ptx
times the pretraining negative log-likelihood) -> log. The adaptive KL controller (Ziegler et
al., 2019) moves beta so that the KL tracks a target.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from bellmax.algos.ppo import ppo_loss
from bellmax.config import require
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.returns import explained_variance, gae, standardize
from bellmax.core.run import MODEL_RUN_CONFIG_FILE, Run
from bellmax.errors import BellmaxError
from bellmax.rlhf import data, task
from bellmax.rlhf.checkpoints import StageCheckpoints, remove_checkpoints, resume_point, resume_step
from bellmax.rlhf.model import (
    PolicyWithValue,
    anchor_log_probs,
    context_length,
    decode_responses,
    encode_prompts,
    entropy,
    generate,
    inference_only,
    load_causal_lm,
    load_reward_model,
    response_logits,
    reward_scores,
    save_pretrained,
    score_head,
    setup_torch,
    sharpen,
    token_log_probs,
)
from bellmax.rlhf.sft import checked_tensors, corpus_parts, lm_loss, sample_batch


@dataclass
class RLHFPPOConfig:
    """PPO against the reward model; defaults are for the small models of the tiny preset."""

    seed: int = 0
    """Seed of prompt order, sampling and minibatch order."""
    iterations: int = 100
    """Rollout + update cycles."""
    batch_size: int = 64
    """Prompts (and sampled responses) per rollout."""
    minibatch_size: int = 32
    """Responses per Adam step."""
    n_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 1e-4
    """Adam step size."""
    clip_range: float = 0.2
    """eps in clip(ratio, 1 - eps, 1 + eps)."""
    clip_range_vf: float | None = 0.2
    """Clip value predictions to within this of the rollout's (None: no value clipping)."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    value_model: Literal["reward", "shared"] = "reward"
    """reward: a separate value model initialized from the reward model (InstructGPT, TRL), its head rescaled
    to the normalized reward; shared: a value head on the policy's trunk (cheaper: one pass instead of two)."""
    gamma: float = 1.0
    """Discount over response tokens (1: the reward at EOS counts fully for every token)."""
    gae_lambda: float = 0.95
    """lambda of GAE over tokens."""
    kl_coef: float = 0.05
    """beta, the per-token KL penalty's weight (0: no KL penalty)."""
    ref_temperature: float = 1.0
    """tau of the KL anchor softmax(z_SFT / tau): 1 is pi_SFT itself (the lecture's objective); below 1 a sharpened
    SFT, which the policy may approach without the KL penalty's entropy bonus pulling it back (module docstring)."""
    start_at_anchor: bool = True
    """Start the policy at its KL anchor, SFT with its logits divided by ref_temperature, so that the penalty
    starts at zero as with the lecture's anchor (False: start at SFT itself; the same at ref_temperature 1)."""
    adaptive_kl: bool = False
    """Adapt beta so that the KL tracks target_kl (Ziegler et al., 2019)."""
    target_kl: float = 2.0
    """KL (nats per response) the adaptive controller aims for."""
    kl_horizon: int = 2_000
    """Responses over which the adaptive controller halves the KL error."""
    ptx_coef: float = 0.0
    """gamma_ptx, weight of the pretraining log-likelihood term (0: plain PPO, > 0: PPO-ptx)."""
    ptx_batch_size: int = 32
    """Pretraining sequences per Adam step for the ptx term."""
    normalize_reward: bool = True
    """Use (r - mean) / std with the reward model's stored training statistics."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    max_new_tokens: int = 16
    """Longest response."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this."""
    log_gold: bool = True
    """Also log the gold labeler's score of each rollout (evaluation only, never a training signal)."""
    torch_threads: int = 1
    """Threads torch may use (more than the idle cores makes it much slower)."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations, to resume a killed stage from (0: never)."""
    keep_checkpoints: int = 2
    """Keep the newest this many checkpoints (a damaged newest one falls back to the one before)."""

    def validate(self) -> None:
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.iterations >= 1, "iterations", self.iterations, "at least 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        require(1 <= self.minibatch_size <= self.batch_size, "minibatch_size", self.minibatch_size,
                f"in [1, batch_size={self.batch_size}]")
        require(self.n_epochs >= 1, "n_epochs", self.n_epochs, "at least 1")
        require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number (e.g. 1e-4)")
        require(0 < self.clip_range < 1, "clip_range", self.clip_range, "in (0, 1)")
        require(self.clip_range_vf is None or self.clip_range_vf > 0, "clip_range_vf", self.clip_range_vf,
                "positive or None")
        require(self.vf_coef >= 0, "vf_coef", self.vf_coef, ">= 0")
        require(self.value_model in ("reward", "shared"), "value_model", self.value_model, "reward or shared")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
        require(0 <= self.gae_lambda <= 1, "gae_lambda", self.gae_lambda, "in [0, 1]")
        require(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        require(math.isfinite(self.ref_temperature) and self.ref_temperature > 0, "ref_temperature",
                self.ref_temperature, "a positive number (1: pi_SFT itself; 0.5: SFT sharpened to temperature 0.5)")
        require(self.target_kl > 0, "target_kl", self.target_kl, "positive")
        require(self.kl_horizon >= 1, "kl_horizon", self.kl_horizon, "at least 1")
        require(self.ptx_coef >= 0, "ptx_coef", self.ptx_coef, ">= 0")
        require(self.ptx_batch_size >= 1, "ptx_batch_size", self.ptx_batch_size, "at least 1")
        require(self.temperature > 0, "temperature", self.temperature, "positive")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")


class KLController:
    """beta of the KL penalty: fixed, or adaptive: beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon)."""

    def __init__(self, kl_coef: float, adaptive: bool = False, target: float = 2.0, horizon: int = 2_000):
        self.value, self.adaptive, self.target, self.horizon = kl_coef, adaptive, target, horizon

    def update(self, kl: float, n_responses: int) -> None:
        if self.adaptive:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_responses / self.horizon


@dataclass
class Rollout:
    """One batch of prompts and sampled responses, and everything scored on it. Shapes: (B, P) for
    the query, (B, R) per response token, (B,) per response."""

    prompts: list[str]
    query: torch.Tensor
    query_mask: torch.Tensor
    response: torch.Tensor
    response_mask: torch.Tensor
    temperature: float
    """The sampling temperature T: every log-prob of these responses is taken from pi_T = softmax(logits / T)."""
    ref_temperature: float
    """tau: the KL anchor is softmax(z_SFT / (T tau)), SFT sharpened by tau."""
    # set by score(), on the batch rollout() sampled
    old_log_probs: torch.Tensor = field(init=False, repr=False)
    ref_log_probs: torch.Tensor = field(init=False, repr=False)
    """log-probs of the KL anchor pi_SFT,tau (pi_SFT itself at tau = 1)."""
    sft_log_probs: torch.Tensor = field(init=False, repr=False)
    """log-probs of pi_SFT (at T), for the KL to SFT itself; the anchor's when tau = 1."""
    values: torch.Tensor = field(init=False, repr=False)
    entropy: torch.Tensor = field(init=False, repr=False)
    scores: torch.Tensor = field(init=False, repr=False)


# -- the pieces of one iteration ----------------------------------------------------------------
def rollout(policy: PolicyWithValue, tokenizer, prompts: list[str], config: RLHFPPOConfig,
            generator: torch.Generator) -> Rollout:
    query, query_mask = encode_prompts(tokenizer, prompts)
    response, response_mask = generate(policy.lm, query, query_mask, config.max_new_tokens, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, generator, config.temperature)
    return Rollout(prompts, query, query_mask, response, response_mask, config.temperature, config.ref_temperature)


@torch.no_grad()
def score(batch: Rollout, policy: PolicyWithValue, reference, reward_model, normalization: tuple[float, float]) -> None:
    """Fill in log pi_old, V(s_t), log pi_SFT (and the anchor's, log pi_SFT,tau) and the (normalized)
    reward-model score r_theta(x, y). The log-probs of policy and reference are both at the sampling
    temperature (as TRL takes them), so the KL penalty is KL(pi_T || pi_SFT,T) of the distribution that
    produced the responses (the anchor's at T tau)."""
    policy.eval()  # no dropout: the mode of the update too (see ppo_update)
    logits, values = policy(batch.query, batch.query_mask, batch.response, batch.response_mask)
    batch.old_log_probs = token_log_probs(logits, batch.response, batch.temperature)
    batch.values = values
    batch.entropy = entropy(logits, batch.temperature)
    ref_logits = response_logits(reference, batch.query, batch.query_mask, batch.response, batch.response_mask)
    batch.sft_log_probs, batch.ref_log_probs = anchor_log_probs(ref_logits, batch.response, batch.temperature,
                                                                batch.ref_temperature)
    batch.scores = normalized_reward_scores(batch, reward_model, normalization)


@torch.no_grad()
def normalized_reward_scores(batch, reward_model, normalization: tuple[float, float]) -> torch.Tensor:
    """(r_theta(x, y) - mean) / std of each sampled response of a rollout (ppo's or rlhf/group.py's): (B,)."""
    mean, std = normalization
    raw = reward_scores(reward_model, batch.query, batch.query_mask, batch.response, batch.response_mask)
    return (raw - mean) / std


def per_token_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """k1 estimator kl_t = log pi(a_t | s_t) - log pi_SFT(a_t | s_t) on response tokens, 0 on padding: (B, R)."""
    return (log_probs - ref_log_probs) * mask


def kl_penalized_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """r_t = -beta kl_t, plus r_theta(x, y) on the last response token: (B, R)."""
    rewards = -kl_coef * kl
    last = (mask.sum(1) - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores * (mask.sum(1) > 0)
    return rewards * mask


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                     lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over response tokens with core.returns.gae (time-major); the episode terminates at the last
    response token, padding is cut off. Returns (advantages, returns = advantages + V), both (B, R)."""
    valid = mask.bool()
    values = values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    next_valid = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], 1)
    terminated = valid & ~next_valid  # the last token of each response
    cut = terminated | ~valid
    advantages = gae(rewards.T, values.T, next_values.T, terminated.T, cut.T, gamma, lam).T * mask
    return advantages, advantages + values


def ppo_update(policy: PolicyWithValue, optimizer: Adam, batch: Rollout, advantages: torch.Tensor,
               returns: torch.Tensor, config: RLHFPPOConfig, generator: torch.Generator,
               ptx_tensors: tuple[torch.Tensor, ...] | None) -> dict[str, float]:
    """n_epochs of minibatch Adam steps on the clipped surrogate (+ value loss, + gamma_ptx * ptx NLL).

    The policy stays in eval mode, the mode `score` took log pi_old and V_old in: dropout off in both,
    so the ratio pi_phi / pi_old is exactly 1 before the first step and moves only with the
    parameters. TRL's PPO trainer gets the same by setting every dropout probability to 0; eval mode
    also covers attention dropout that a model applies without an nn.Dropout module."""
    policy.eval()
    mask = batch.response_mask.bool()
    advantages = advantages.clone()
    advantages[mask] = standardize(advantages[mask])
    sums: dict[str, float] = {}
    steps = 0
    for _ in range(config.n_epochs):
        order = torch.randperm(len(batch.response), generator=generator)
        for start in range(0, len(order), config.minibatch_size):
            rows = order[start: start + config.minibatch_size]
            m = mask[rows]
            logits, values = policy(batch.query[rows], batch.query_mask[rows], batch.response[rows],
                                    batch.response_mask[rows])
            new_log_probs = token_log_probs(logits, batch.response[rows], batch.temperature)
            terms = ppo_loss(new_log_probs[m], batch.old_log_probs[rows][m], advantages[rows][m], values[m],
                             batch.values[rows][m], returns[rows][m], entropy(logits, batch.temperature)[m],
                             config.clip_range, config.clip_range_vf, config.vf_coef, 0.0)
            loss = terms["loss"]
            if ptx_tensors is not None and config.ptx_coef > 0:
                # gamma_ptx E_{x ~ D_pretrain}[log pi_RL(x)] is maximized: add gamma_ptx * NLL to the loss
                ids, attention_mask, loss_mask = sample_batch(ptx_tensors, config.ptx_batch_size, generator)
                terms["loss_ptx"] = lm_loss(policy.lm(ids, attention_mask=attention_mask).logits, ids, loss_mask)
                loss = loss + config.ptx_coef * terms["loss_ptx"]
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
    return {f"losses/{k}": v / steps for k, v in sums.items() if k != "loss"}


def iteration_metrics(batch: Rollout, kl: torch.Tensor, returns: torch.Tensor, kl_coef: float,
                      gold: list[float] | None) -> dict[str, float]:
    """What the lecture says to watch: reward, KL, length (reward hacking), entropy, value quality."""
    mask = batch.response_mask.bool()
    kl_per_response = kl.sum(1)
    metrics = {
        "objective/scores": float(batch.scores.mean()),
        "objective/kl": float(kl_per_response.mean()),
        # k1 to pi_SFT itself: the same as objective/kl unless the anchor is a sharpened SFT (ref_temperature < 1)
        "objective/kl_sft": float(per_token_kl(batch.old_log_probs, batch.sft_log_probs, batch.response_mask)
                                  .sum(1).mean()),
        "objective/kl_coef": kl_coef,
        "objective/rlhf_reward": float((batch.scores - kl_coef * kl_per_response).mean()),
        "rollout/response_length": float(batch.response_mask.sum(1).float().mean()),
        "rollout/entropy": float(batch.entropy[mask].mean()),
        "losses/explained_variance": explained_variance(batch.values[mask], returns[mask]),
    }
    if gold is not None:
        metrics["gold/score"] = sum(gold) / len(gold)
    return metrics


# -- the stage ----------------------------------------------------------------------------------
def run_ppo(config: RLHFPPOConfig, model_path: Path, reward_path: Path, data_dir: Path, run_dir: Path,
            log=None, resume: bool = False) -> dict[str, Any]:
    """Stage 4: PPO from the policy at model_path (the SFT model, also the frozen reference) against
    the reward model at reward_path, on data_dir/prompts.jsonl (and corpus.jsonl for ptx); resume:
    continue from run_dir's newest checkpoint (if it has one)."""
    config.validate()
    started = time.perf_counter()
    records = data.load(data_dir, data.PROMPTS)
    corpus = data.load(data_dir, data.CORPUS) if config.ptx_coef > 0 else None
    prompts = records.column("prompt")
    setup_torch(config.seed, config.torch_threads)
    lm, tokenizer = load_causal_lm(model_path)
    if config.start_at_anchor:
        sharpen(lm, config.ref_temperature, f"--model {model_path}")
    reference = inference_only(load_causal_lm(model_path)[0])
    reward_model = inference_only(load_reward_model(reward_path)[0])
    normalization = reward_normalization(reward_model, reward_path) if config.normalize_reward else (0.0, 1.0)
    data.check_prompts_fit(records, tokenizer, [lm, reward_model], config.max_new_tokens)
    ptx_tensors = None
    if corpus is not None:
        ptx_tensors = checked_tensors(tokenizer, corpus, corpus_parts(corpus.rows), context_length(lm),
                                      "BOS + text come to", "shorten that text, set --ptx-coef 0, or use a model "
                                      "with a larger context")
    critic = (critic_from_reward_model(load_reward_model(reward_path)[0], normalization)
              if config.value_model == "reward" else None)
    policy = PolicyWithValue(lm, critic).eval()
    optimizer = Adam(policy.parameters(), lr=config.learning_rate)
    controller = KLController(config.kl_coef, config.adaptive_kl, config.target_kl, config.kl_horizon)
    generator = torch.Generator().manual_seed(config.seed)
    rng = random.Random(f"{config.seed}:ppo")
    first: dict[str, float] = {}  # the metrics of the first and the last iteration
    last: dict[str, float] = {}
    checkpoints = StageCheckpoints(None, config, {"policy": policy}, {"adam": optimizer}, {"sampling": generator},
                                   {"prompts": rng},
                                   running=lambda: {"kl_coef": controller.value, "first": first, "last": last,
                                                    "seconds": time.perf_counter() - started})
    checkpoint = resume_point(run_dir, "rlhf-ppo", config, resume)
    done = 0
    if checkpoint is not None:
        done, loop = checkpoints.restore(checkpoint)
        controller.value, first, last, started = loop["kl_coef"], loop["first"], loop["last"], started - loop["seconds"]
    with Run(run_dir, "rlhf-ppo", {"config": data.config_dict(config), "model": str(model_path),
                                   "reward_model": str(reward_path), "data": str(data_dir)},
             resume_step=resume_step(checkpoint), tensorboard=False, config_file=MODEL_RUN_CONFIG_FILE) as run:
        checkpoints.run = run
        use_gold = config.log_gold and task.is_task_prompt(prompts[0])
        with checkpoints:
            for iteration in range(done + 1, config.iterations + 1):
                tick = time.perf_counter()
                batch_prompts = [rng.choice(prompts) for _ in range(config.batch_size)]
                batch = rollout(policy, tokenizer, batch_prompts, config, generator)
                score(batch, policy, reference, reward_model, normalization)
                kl = per_token_kl(batch.old_log_probs, batch.ref_log_probs, batch.response_mask)
                rewards = kl_penalized_rewards(batch.scores, kl, batch.response_mask, controller.value)
                advantages, returns = token_advantages(rewards, batch.values, batch.response_mask, config.gamma,
                                                       config.gae_lambda)
                gold = rollout_gold_scores(tokenizer, batch) if use_gold else None
                metrics = iteration_metrics(batch, kl, returns, controller.value, gold)
                metrics.update(ppo_update(policy, optimizer, batch, advantages, returns, config, generator,
                                          ptx_tensors))
                controller.update(metrics["objective/kl"], config.batch_size)
                metrics["time/iteration_seconds"] = time.perf_counter() - tick
                run.log(iteration, metrics)
                first = first or metrics
                last = metrics
                if log is not None:
                    log(progress_line("ppo", iteration, config.iterations, metrics))
                checkpoints.step_done(iteration)
        save_pretrained(run_dir, policy.lm, tokenizer)
        report = {"stage": "ppo", "iterations": config.iterations, "kl_coef": config.kl_coef,
                  "final_kl_coef": controller.value, "ptx_coef": config.ptx_coef,
                  "first": summary(first), "last": summary(last), "seconds": time.perf_counter() - started}
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report


def reward_normalization(reward_model, reward_path: Path) -> tuple[float, float]:
    """(mean, std) of the reward model's training rewards, as the reward stage stored them in its
    config.json; (0, 1) for a reward model without them, and std 1 where they were all equal."""
    mean = getattr(reward_model.config, "bellmax_reward_mean", 0.0)
    std = getattr(reward_model.config, "bellmax_reward_std", 1.0)
    for name, value, least in (("bellmax_reward_mean", mean, -math.inf), ("bellmax_reward_std", std, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not least <= value < math.inf:
            raise BellmaxError(f"--reward-model {reward_path}: {name} in config.json is {value!r}, not a finite "
                               f"number{' >= 0' if least == 0 else ''}; restore config.json, rerun `bellmax rlhf "
                               "reward`, or set --no-normalize-reward")
    return float(mean), float(std) or 1.0


def critic_from_reward_model(reward_model: PreTrainedModel, normalization: tuple[float, float]) -> PreTrainedModel:
    """The value model, initialized from r_theta (InstructGPT) on the scale of the reward PPO optimizes:
    its scalar head h -> w h + b becomes h -> (w h + b - mean) / std = (w / std) h + (b - mean) / std,
    so that at the start V of a whole response is its normalized reward, as the returns are."""
    head = score_head(reward_model)
    mean, std = normalization
    bias = head.bias.detach() if head.bias is not None else torch.zeros_like(head.weight[:, 0])
    normalized = nn.Linear(head.in_features, head.out_features, bias=True, device=head.weight.device,
                           dtype=head.weight.dtype)
    with torch.no_grad():
        normalized.weight.copy_(head.weight / std)
        normalized.bias.copy_((bias - mean) / std)
    reward_model.score = normalized
    return reward_model


# -- what every RL stage (this one and rlhf/group.py) reports of an iteration ----------------------
def rollout_gold_scores(tokenizer, batch) -> list[float]:
    """The gold labeler's score of each sampled response (evaluation only, never a training signal)."""
    texts = decode_responses(tokenizer, batch.response, batch.response_mask)
    return [task.gold_score(p, t) for p, t in zip(batch.prompts, texts)]


def progress_line(name: str, iteration: int, iterations: int, metrics: dict[str, float]) -> str:
    gold = f" gold {metrics['gold/score']:.3f}" if "gold/score" in metrics else ""
    return (f"{name} {iteration}/{iterations}: score {metrics['objective/scores']:+.3f} "
            f"kl {metrics['objective/kl']:.3f} len {metrics['rollout/response_length']:.1f}{gold}")


def summary(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics of one iteration that a stage's report keeps (its first and its last)."""
    keys = ("objective/scores", "objective/kl", "objective/kl_sft", "objective/kl_k3", "rollout/response_length",
            "gold/score", "rollout/entropy")
    return {k: metrics[k] for k in keys if k in metrics}
