"""Critic-free policy gradients for RLHF: RLOO, GRPO (with DAPO's and Dr. GRPO's loss forms) and REINFORCE++.

The lecture's policy gradient with a baseline (option 3): grad J = E[sum_t grad log pi(a_t | s_t)
(R - b)]. PPO learns the baseline as a critic V(s_t). These methods need no critic: they sample
G responses y_1..y_G for each prompt x, score each with the reward model, and take the baseline
from the group (or the batch):

    RLOO         A_i = R_i - 1/(G-1) sum_{j != i} R_j            leave-one-out mean: unbiased, as b
                                                                   does not depend on y_i
                 (Ahmadian et al., 2024, "Back to Basics")
    GRPO         A_i = (R_i - mean_j R_j) / (std_j R_j + eps)     group mean and std (Shao et al.,
                                                                   2024); --scale-rewards none: Dr. GRPO
    REINFORCE++  A_t = (G_t - mean) / std over every token of the batch, with G_t = sum_{t' >= t} r_t'
                 and r_t = -beta k1_t + [t = last] R          (Hu, 2025; OpenRLHF's `reinforce`)

where R_i = r_theta(x, y_i), minus beta sum_t k1_t when the KL goes in the reward. Every token of a
response gets its response's advantage (REINFORCE++: its own), and the policy takes the clipped
surrogate of PPO, min(rho A, clip(rho, 1 - eps, 1 + eps) A) with rho = pi / pi_old, minus the KL
term beta k_t when the KL goes in the loss (see `rlhf/kl.py` for the estimators and their
gradients). How the per-token terms become one loss is a switch, because it decides how much each
token of a long or a short response weighs (the length bias of Liu et al., 2025, "Dr. GRPO"):

    seq-mean-token-mean      1/B sum_i 1/|y_i| sum_t l_it     GRPO: a token of a short response
                                                                weighs more than one of a long response
    token-mean               sum_it l_it / sum_i |y_i|         DAPO: every token weighs the same
    seq-mean-token-sum       1/B sum_i sum_t l_it              RLOO: a response is one action,
                                                                log pi(y | x) = sum_t log pi(y_t | ...)
    seq-mean-token-sum-norm  sum_it l_it / (B L_max)           Dr. GRPO: a constant normalizer
                                                                (L_max = max_new_tokens)

Each iteration: rollout (P prompts x G samples) -> score (log pi_old, log pi_SFT; r_theta) ->
advantages -> update (n_epochs of minibatch Adam steps) -> log. The policy stays in eval mode
throughout, so the log-probabilities of the update and of the rollout come from the same network.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch

from bellmax.config import require
from bellmax.core.optim import Adam, clip_grad_norm
from bellmax.core.run import MODEL_RUN_CONFIG_FILE, Run
from bellmax.rlhf import data, task
from bellmax.rlhf.checkpoints import StageCheckpoints, remove_checkpoints, resume_point, resume_step
from bellmax.rlhf.kl import ESTIMATORS, KLEstimator, kl_estimate, kl_loss_term
from bellmax.rlhf.model import (
    anchor_log_probs,
    encode_prompts,
    entropy,
    generate,
    inference_only,
    load_causal_lm,
    load_reward_model,
    response_logits,
    save_pretrained,
    setup_torch,
    sharpen,
    token_log_probs,
)
from bellmax.rlhf.ppo import (
    kl_penalized_rewards,
    normalized_reward_scores,
    per_token_kl,
    progress_line,
    reward_normalization,
    rollout_gold_scores,
    summary,
)

Algo = Literal["rloo", "grpo", "reinforce_pp"]
KLPlacement = Literal["reward", "loss"]
Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
RewardScale = Literal["group", "batch", "none"]

AGGREGATIONS: tuple[Aggregation, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                                         "seq-mean-token-sum-norm")
# each algorithm as its paper (or its reference implementation) defines it; every field can be overridden.
# The KL estimator follows the placement: k1 in the reward, k3 in the loss (GRPO's).
ALGORITHM_DEFAULTS: dict[str, dict[str, str]] = {
    "rloo": {"kl_placement": "reward", "loss_aggregation": "seq-mean-token-sum"},
    "grpo": {"kl_placement": "loss", "loss_aggregation": "seq-mean-token-mean"},
    "reinforce_pp": {"kl_placement": "reward", "loss_aggregation": "token-mean"},
}
GROUP_STD_EPS = 1e-4  # GRPO's eps in (R - mean) / (std + eps), as TRL's


@dataclass
class RLConfig:
    """A critic-free policy gradient against the reward model; defaults are for the tiny preset's models."""

    algo: Algo = "grpo"
    """rloo, grpo or reinforce_pp (`bellmax rlhf rl --algo ppo` runs the PPO stage instead, with its flags)."""
    seed: int = 0
    """Seed of prompt order, sampling and minibatch order."""
    iterations: int = 60
    """Rollout + update cycles."""
    prompts_per_batch: int = 16
    """Prompts per rollout; each is answered group_size times."""
    group_size: int = 4
    """G, the responses sampled for each prompt: the group the baseline comes from."""
    minibatch_size: int = 32
    """Responses per Adam step."""
    n_epochs: int = 2
    """Passes over each rollout."""
    learning_rate: float = 5e-5
    """Adam step size."""
    clip_range: float = 0.2
    """eps in clip(pi / pi_old, 1 - eps, 1 + eps)."""
    kl_coef: float = 0.05
    """beta, the KL penalty's weight (0: no KL penalty)."""
    ref_temperature: float = 1.0
    """tau of the KL anchor softmax(z_SFT / tau): 1 is pi_SFT itself; below 1 a sharpened SFT (as rlhf ppo's)."""
    start_at_anchor: bool = True
    """Start the policy at its KL anchor, SFT with its logits divided by ref_temperature, so that the penalty
    starts at zero as with the lecture's anchor (False: start at SFT itself; the same at ref_temperature 1)."""
    kl_placement: KLPlacement | None = None
    """Where beta KL goes: reward (k1 in each response's reward) or loss (beta k per token in the loss);
    None: the algorithm's own (reward for rloo and reinforce_pp, loss for grpo)."""
    kl_estimator: KLEstimator | None = None
    """k1, k2 or k3 for the KL term in the loss (the reward takes k1 only); None: k3 in the loss (GRPO),
    k1 in the reward."""
    kl_importance: bool = False
    """Weight the KL term in the loss by pi / pi_old, which makes the gradients of k1 and k3 unbiased."""
    loss_aggregation: Aggregation | None = None
    """token-mean (DAPO), seq-mean-token-mean (GRPO), seq-mean-token-sum (RLOO) or seq-mean-token-sum-norm
    (Dr. GRPO: divided by batch x max_new_tokens); None: the algorithm's own."""
    scale_rewards: RewardScale = "group"
    """GRPO: divide the centered rewards by the std of the group (GRPO), of the batch, or not at all (none: Dr.
    GRPO); rloo and reinforce_pp take only group (they do not scale by a group's std)."""
    normalize_reward: bool = True
    """Use (r - mean) / std with the reward model's stored training statistics."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (log-probabilities are taken at the same temperature)."""
    max_new_tokens: int = 16
    """Longest response (also L_max of seq-mean-token-sum-norm)."""
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
        require(self.algo in ALGORITHM_DEFAULTS, "algo", self.algo, "rloo, grpo or reinforce_pp")
        require(self.seed >= 0, "seed", self.seed, "a non-negative integer")
        require(self.iterations >= 1, "iterations", self.iterations, "at least 1")
        require(self.prompts_per_batch >= 1, "prompts_per_batch", self.prompts_per_batch, "at least 1")
        require(self.group_size >= 2, "group_size", self.group_size, "at least 2 (the baseline comes from the group)")
        batch = self.prompts_per_batch * self.group_size
        require(1 <= self.minibatch_size <= batch, "minibatch_size", self.minibatch_size,
                f"in [1, prompts_per_batch x group_size = {batch}]")
        require(self.n_epochs >= 1, "n_epochs", self.n_epochs, "at least 1")
        require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate,
                "a positive number (e.g. 5e-5)")
        require(0 < self.clip_range < 1, "clip_range", self.clip_range, "in (0, 1)")
        require(math.isfinite(self.kl_coef) and self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        require(math.isfinite(self.ref_temperature) and self.ref_temperature > 0, "ref_temperature",
                self.ref_temperature, "a positive number (1: pi_SFT itself; 0.5: SFT sharpened to temperature 0.5)")
        require(self.kl_placement in (None, "reward", "loss"), "kl_placement", self.kl_placement, "reward or loss")
        require(self.kl_estimator in (None, *ESTIMATORS), "kl_estimator", self.kl_estimator, "k1, k2 or k3")
        placement = self.kl_placement or ALGORITHM_DEFAULTS[self.algo]["kl_placement"]
        require(placement == "loss" or self.kl_estimator in (None, "k1"), "kl_estimator", self.kl_estimator,
                "k1 when the KL goes in the reward (k1 sums to the sequence's log-ratio); set --kl-placement loss "
                "for k2 or k3")
        require(placement == "loss" or not self.kl_importance, "kl_importance", self.kl_importance,
                "False when the KL goes in the reward (the correction is for the KL term of the loss)")
        require(self.loss_aggregation in (None, *AGGREGATIONS), "loss_aggregation", self.loss_aggregation,
                ", ".join(AGGREGATIONS))
        require(self.scale_rewards in ("group", "batch", "none"), "scale_rewards", self.scale_rewards,
                "group, batch or none")
        require(self.algo == "grpo" or self.scale_rewards == "group", "scale_rewards", self.scale_rewards,
                "group (the default) unless --algo grpo: rloo and reinforce_pp do not scale by a std")
        require(self.temperature > 0, "temperature", self.temperature, "positive")
        require(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "at least 1")
        require(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "positive")
        require(self.torch_threads >= 1, "torch_threads", self.torch_threads, "at least 1")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "at least 1")

    def settings(self) -> Settings:
        """The switches in force: each one given, or the algorithm's own."""
        own = ALGORITHM_DEFAULTS[self.algo]
        placement = self.kl_placement or cast(KLPlacement, own["kl_placement"])
        estimator: KLEstimator = self.kl_estimator or ("k1" if placement == "reward" else "k3")
        return Settings(self.algo, placement, estimator, self.kl_importance and placement == "loss",
                        self.loss_aggregation or cast(Aggregation, own["loss_aggregation"]),
                        self.scale_rewards if self.algo == "grpo" else "none")


@dataclass(frozen=True)
class Settings:
    """The switches of one run, resolved (RLConfig.settings)."""

    algo: Algo
    kl_placement: KLPlacement
    kl_estimator: KLEstimator
    kl_importance: bool
    loss_aggregation: Aggregation
    scale_rewards: RewardScale


# -- advantages -----------------------------------------------------------------------------------
def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = R_i - mean of the other G - 1 rewards of its group; rewards: (P, G), one row per prompt."""
    group_size = rewards.shape[1]
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (group_size - 1)
    return rewards - baseline


def grpo_advantages(rewards: torch.Tensor, scale: RewardScale = "group") -> torch.Tensor:
    """A_i = (R_i - group mean) / (std + eps), the std of the group (GRPO), of the batch, or none
    (Dr. GRPO: A_i = R_i - group mean); rewards: (P, G). std is the sample std, as in TRL."""
    centered = rewards - rewards.mean(1, keepdim=True)
    if scale == "group":
        return centered / (rewards.std(1, keepdim=True) + GROUP_STD_EPS)
    if scale == "batch":
        return centered / (rewards.std() + GROUP_STD_EPS)
    return centered


def reinforce_pp_advantages(token_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE++: the return to go G_t = sum_{t' >= t} r_t' of each response token (gamma = 1),
    standardized over all response tokens of the batch; token_rewards, mask: (B, R)."""
    valid = mask.bool()
    returns = (token_rewards * mask).flip(1).cumsum(1).flip(1)
    mean = returns[valid].mean()
    std = returns[valid].std() if valid.sum() > 1 else returns.new_tensor(0.0)
    return (returns - mean) / (std + 1e-8) * mask


def response_advantages(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, settings: Settings,
                        kl_coef: float, group_size: int) -> torch.Tensor:
    """The advantage of every response token, (B, R), from the reward-model scores (B,) and the k1
    estimates (B, R); rows are grouped by prompt, group_size rows at a time."""
    beta = kl_coef if settings.kl_placement == "reward" else 0.0
    if settings.algo == "reinforce_pp":
        return reinforce_pp_advantages(kl_penalized_rewards(scores, kl, mask, beta), mask)
    rewards = (scores - beta * kl.sum(1)).view(-1, group_size)
    if settings.algo == "rloo":
        advantages = rloo_advantages(rewards)
    else:
        advantages = grpo_advantages(rewards, settings.scale_rewards)
    return advantages.reshape(-1, 1) * mask


# -- the loss -------------------------------------------------------------------------------------
def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: Aggregation, max_length: int) -> torch.Tensor:
    """One number from per-token terms (B, R) on the response tokens (mask), weighting tokens as `how` says."""
    mask = mask.to(per_token.dtype)
    summed = (per_token * mask).sum(1)  # (B,)
    if how == "token-mean":
        return summed.sum() / mask.sum().clamp(min=1)
    if how == "seq-mean-token-mean":
        return (summed / mask.sum(1).clamp(min=1)).mean()
    if how == "seq-mean-token-sum":
        return summed.mean()
    if how == "seq-mean-token-sum-norm":
        return summed.sum() / (per_token.shape[0] * max_length)
    raise ValueError(f"unknown loss aggregation {how!r}; one of {', '.join(AGGREGATIONS)}")


def group_loss(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, ref_log_probs: torch.Tensor,
               advantages: torch.Tensor, mask: torch.Tensor, settings: Settings, kl_coef: float,
               clip_range: float, max_length: int) -> dict[str, torch.Tensor]:
    """The loss (to minimize) and its named terms, all (B, R) inputs over response tokens:

        l_t = -min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) [+ beta k_t, KL in the loss],
        rho_t = pi(a_t | s_t) / pi_old(a_t | s_t),   loss = aggregate(l)
    """
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages)
    loss_policy = aggregate(-surrogate, mask, settings.loss_aggregation, max_length)
    terms = {"loss_policy": loss_policy}
    loss = loss_policy
    if settings.kl_placement == "loss":
        kl_term = kl_loss_term(new_log_probs, ref_log_probs, old_log_probs, settings.kl_estimator,
                               settings.kl_importance)
        terms[f"kl_{settings.kl_estimator}"] = aggregate(kl_term, mask, settings.loss_aggregation, max_length)
        loss = loss + kl_coef * terms[f"kl_{settings.kl_estimator}"]
    with torch.no_grad():
        valid = mask.bool()
        terms["approx_kl"] = ((ratio - 1) - log_ratio)[valid].mean()  # k3 of KL(pi_old || pi), the step size
        terms["clip_fraction"] = ((ratio - 1).abs() > clip_range)[valid].float().mean()
    terms["loss"] = loss
    return terms


# -- the pieces of one iteration ------------------------------------------------------------------
@dataclass
class Samples:
    """One rollout: P prompts, each answered G times (rows i G .. i G + G - 1 share prompt i), and
    everything scored on it. Shapes: (B, P) for the query, (B, R) per response token, (B,) per response."""

    prompts: list[str]
    query: torch.Tensor
    query_mask: torch.Tensor
    response: torch.Tensor
    response_mask: torch.Tensor
    # set by score(), and the reward (model) scores
    old_log_probs: torch.Tensor = field(init=False, repr=False)
    ref_log_probs: torch.Tensor = field(init=False, repr=False)
    """log-probs of the KL anchor pi_SFT,tau (pi_SFT itself at tau = 1)."""
    sft_log_probs: torch.Tensor = field(init=False, repr=False)
    entropy: torch.Tensor = field(init=False, repr=False)
    scores: torch.Tensor = field(init=False, repr=False)


def group_rollout(lm, tokenizer, prompts: list[str], group_size: int, config: RLConfig,
                  generator: torch.Generator) -> Samples:
    """group_size sampled responses for each prompt."""
    repeated = [p for p in prompts for _ in range(group_size)]
    query, query_mask = encode_prompts(tokenizer, repeated)
    response, response_mask = generate(lm, query, query_mask, config.max_new_tokens, tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, generator, config.temperature)
    return Samples(repeated, query, query_mask, response, response_mask)


def sampled_log_probs(model, batch: Samples, rows: torch.Tensor | slice, temperature: float,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi_T(a_t | s_t) of the sampled tokens, at the sampling temperature, and the raw logits: (B, R), (B, R, V)."""
    logits = response_logits(model, batch.query[rows], batch.query_mask[rows], batch.response[rows],
                             batch.response_mask[rows])
    return token_log_probs(logits, batch.response[rows], temperature), logits


@torch.no_grad()
def score(batch: Samples, lm, reference, temperature: float, ref_temperature: float = 1.0) -> None:
    """Fill in log pi_old, the entropy, log pi_SFT and the KL anchor's log pi_SFT,tau (the same at tau = 1)
    of the sampled responses."""
    everything = slice(None)
    batch.old_log_probs, logits = sampled_log_probs(lm, batch, everything, temperature)
    batch.entropy = entropy(logits, temperature)
    ref_logits = response_logits(reference, batch.query, batch.query_mask, batch.response, batch.response_mask)
    batch.sft_log_probs, batch.ref_log_probs = anchor_log_probs(ref_logits, batch.response, temperature,
                                                                ref_temperature)


def group_update(lm, optimizer: Adam, batch: Samples, advantages: torch.Tensor, settings: Settings,
                 config: RLConfig, generator: torch.Generator) -> dict[str, float]:
    """n_epochs of minibatch Adam steps on `group_loss`; the mean of each term over the steps."""
    mask = batch.response_mask
    sums: dict[str, float] = {}
    steps = 0
    for _ in range(config.n_epochs):
        order = torch.randperm(len(batch.response), generator=generator)
        for start in range(0, len(order), config.minibatch_size):
            rows = order[start: start + config.minibatch_size]
            new_log_probs = sampled_log_probs(lm, batch, rows, config.temperature)[0]
            terms = group_loss(new_log_probs, batch.old_log_probs[rows], batch.ref_log_probs[rows], advantages[rows],
                               mask[rows], settings, config.kl_coef, config.clip_range, config.max_new_tokens)
            optimizer.zero_grad()
            terms["loss"].backward()
            clip_grad_norm(lm.parameters(), config.max_grad_norm)
            optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
    return {f"losses/{k}": v / steps for k, v in sums.items() if k != "loss"}


def iteration_metrics(batch: Samples, kl_coef: float, gold: list[float] | None) -> dict[str, float]:
    """Reward, KL (each estimator summed over a response's tokens, averaged over responses), the
    objective r - beta KL (whichever placement optimizes it), length, entropy."""
    mask = batch.response_mask
    per_response = {name: (kl_estimate(batch.old_log_probs, batch.ref_log_probs, name) * mask).sum(1).mean()
                    for name in ESTIMATORS}
    metrics = {
        "objective/scores": float(batch.scores.mean()),
        "objective/kl": float(per_response["k1"]),
        "objective/kl_k2": float(per_response["k2"]),
        "objective/kl_k3": float(per_response["k3"]),
        "objective/kl_sft": float(per_token_kl(batch.old_log_probs, batch.sft_log_probs, mask).sum(1).mean()),
        "objective/kl_coef": kl_coef,
        "objective/rlhf_reward": float(batch.scores.mean() - kl_coef * per_response["k1"]),
        "rollout/response_length": float(mask.sum(1).float().mean()),
        "rollout/entropy": float(batch.entropy[mask.bool()].mean()),
    }
    if gold is not None:
        metrics["gold/score"] = sum(gold) / len(gold)
    return metrics


# -- the stage ------------------------------------------------------------------------------------
def run_rl(config: RLConfig, model_path: Path, reward_path: Path, data_dir: Path, run_dir: Path,
           log=None, resume: bool = False) -> dict[str, Any]:
    """The RL stage with a critic-free estimator: from the policy at model_path (the SFT model, also
    the frozen reference) against the reward model at reward_path, on data_dir/prompts.jsonl; resume:
    continue from run_dir's newest checkpoint (if it has one)."""
    config.validate()
    settings = config.settings()
    started = time.perf_counter()
    records = data.load(data_dir, data.PROMPTS)
    prompts = records.column("prompt")
    setup_torch(config.seed, config.torch_threads)
    lm, tokenizer = load_causal_lm(model_path)
    if config.start_at_anchor:
        sharpen(lm, config.ref_temperature, f"--model {model_path}")
    lm.eval()  # rollout and update see the same network (no dropout in one and not the other)
    reference = inference_only(load_causal_lm(model_path)[0])
    reward_model = inference_only(load_reward_model(reward_path)[0])
    normalization = reward_normalization(reward_model, reward_path) if config.normalize_reward else (0.0, 1.0)
    data.check_prompts_fit(records, tokenizer, [lm, reward_model], config.max_new_tokens)
    optimizer = Adam(lm.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    rng = random.Random(f"{config.seed}:{config.algo}")
    meta = {"config": data.config_dict(config), "settings": data.config_dict(settings), "model": str(model_path),
            "reward_model": str(reward_path), "data": str(data_dir)}
    first: dict[str, float] = {}  # the metrics of the first and the last iteration
    last: dict[str, float] = {}
    checkpoints = StageCheckpoints(None, config, {"policy": lm}, {"adam": optimizer}, {"sampling": generator},
                                   {"prompts": rng}, running=lambda: {"first": first, "last": last,
                                                                      "seconds": time.perf_counter() - started})
    checkpoint = resume_point(run_dir, f"rlhf-{config.algo}", config, resume)
    done = 0
    if checkpoint is not None:
        done, loop = checkpoints.restore(checkpoint)
        first, last, started = loop["first"], loop["last"], started - loop["seconds"]
    with Run(run_dir, f"rlhf-{config.algo}", meta, resume_step=resume_step(checkpoint), tensorboard=False,
             config_file=MODEL_RUN_CONFIG_FILE) as run:
        checkpoints.run = run
        use_gold = config.log_gold and task.is_task_prompt(prompts[0])
        with checkpoints:
            for iteration in range(done + 1, config.iterations + 1):
                tick = time.perf_counter()
                batch_prompts = [rng.choice(prompts) for _ in range(config.prompts_per_batch)]
                batch = group_rollout(lm, tokenizer, batch_prompts, config.group_size, config, generator)
                score(batch, lm, reference, config.temperature, config.ref_temperature)
                batch.scores = normalized_reward_scores(batch, reward_model, normalization)
                k1 = kl_estimate(batch.old_log_probs, batch.ref_log_probs, "k1") * batch.response_mask
                advantages = response_advantages(batch.scores, k1, batch.response_mask, settings, config.kl_coef,
                                                 config.group_size)
                gold = rollout_gold_scores(tokenizer, batch) if use_gold else None
                metrics = iteration_metrics(batch, config.kl_coef, gold)
                metrics.update(group_update(lm, optimizer, batch, advantages, settings, config, generator))
                metrics["time/iteration_seconds"] = time.perf_counter() - tick
                run.log(iteration, metrics)
                first = first or metrics
                last = metrics
                if log is not None:
                    log(progress_line(config.algo, iteration, config.iterations, metrics))
                checkpoints.step_done(iteration)
        save_pretrained(run_dir, lm, tokenizer)
        report = {"stage": "rl", "algo": config.algo, "settings": data.config_dict(settings),
                  "iterations": config.iterations, "kl_coef": config.kl_coef, "first": summary(first),
                  "last": summary(last), "seconds": time.perf_counter() - started}
        data.write_report(run_dir, report)
        remove_checkpoints(run_dir)
    return report
