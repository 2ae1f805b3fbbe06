"""The diagnostic vocabulary: every scalar bellmax logs (metrics.jsonl, metrics.csv, TensorBoard),
one name per idea, the same in every algorithm, grouped by namespace as CleanRL and
Stable-Baselines3 do. Training returns (the stochastic policy's, raw) and evaluation returns
(the deterministic policy's) live in different namespaces so nobody confuses them.
"""

from __future__ import annotations

NAMESPACES: dict[str, str] = {
    "rollout": "what the acting (training) policy experienced while collecting data",
    "losses": "the updates: loss terms, their diagnostics, and the optimizer settings they used",
    "eval": "deterministic evaluation in separate environments (and held-out evaluation of RLHF models)",
    "time": "wall-clock costs and throughput",
    "objective": "RLHF: the terms of the objective r - beta KL (TRL's names)",
    "gold": "RLHF: the hidden gold labeler's judgement, which training never sees",
}

METRICS: dict[str, str] = {
    # rollout/
    "rollout/ep_return": "mean return of the last 100 training episodes: raw, never normalized or clipped",
    "rollout/ep_length": "mean length of the last 100 training episodes",
    "rollout/episodes": "training episodes finished so far",
    "rollout/buffer_size": "transitions in the replay buffer",
    "rollout/epsilon": "DQN's exploration rate epsilon at the end of the iteration",
    "rollout/response_length": "RLHF: mean response length in tokens",
    "rollout/entropy": "RLHF: mean per-token entropy of the policy on its sampled responses",
    # losses/: loss terms
    "losses/loss_policy": "the policy's loss term (e.g. -L_clip for PPO, -E[log pi A] for A2C and VPG)",
    "losses/loss_value": "the critic's regression loss E[(V(s) - R)^2] / 2 (VPG: also Q's, summed)",
    "losses/loss_q": "the Q critics' TD regression loss (summed over twin critics)",
    "losses/loss_actor": "the deterministic or squashed-Gaussian actor's loss (DDPG, TD3, SAC)",
    "losses/loss_alpha": "SAC's temperature loss -E[log alpha (log pi + H_target)]",
    "losses/loss_ptx": "RLHF: the pretraining NLL term weighted by ptx_coef",
    "losses/lm": "RLHF: the language-modelling (next-token) loss of pretraining and SFT",
    "losses/reward": "RLHF: the reward model's ranking loss -log sigmoid(r_chosen - r_rejected)",
    "losses/dpo": "RLHF: DPO's loss -log sigmoid(beta log(pi/pi_ref)(chosen) - beta log(pi/pi_ref)(rejected))",
    "losses/kl_k1": "RLHF, critic-free RL: the k1 KL estimator in the loss, aggregated as the loss aggregates"
                    " (times pi/pi_old with the importance correction)",
    "losses/kl_k2": "RLHF, critic-free RL: the k2 KL estimator in the loss, aggregated as the loss aggregates"
                    " (times pi/pi_old with the importance correction)",
    "losses/kl_k3": "RLHF, critic-free RL: the k3 KL estimator in the loss, aggregated as the loss aggregates"
                    " (times pi/pi_old with the importance correction)",
    # losses/: diagnostics
    "losses/entropy": "mean entropy H[pi(.|s)] of the policy in nats (SAC: the estimate -E[log pi(a|s)])",
    "losses/approx_kl": "approximate KL(pi_old || pi_theta) over an update (k3 estimator)",
    "losses/kl": "TRPO: exact mean KL(pi_old || pi_theta) of the accepted step",
    "losses/clip_fraction": "share of samples whose probability ratio lies outside the clip range",
    "losses/explained_variance": "1 - Var[R - V] / Var[R] of the critic's predictions on the batch",
    "losses/q_values": "mean Q(s, a) of the sampled transitions",
    "losses/grad_norm": "global gradient norm before clipping",
    "losses/accuracy": "RLHF: pairwise accuracy on the training batch (the reward model's; DPO's implicit reward's)",
    "losses/surrogate_improvement": "TRPO: improvement of the surrogate objective by the accepted step",
    "losses/step_accepted": "TRPO: 1 if the line search found a step inside the trust region that improves, else 0",
    "losses/line_search_tries": "TRPO: backtracking steps tried",
    # losses/: the optimizer and its schedules
    "losses/learning_rate": "the step size used (after annealing)",
    "losses/clip_range": "PPO's clip range epsilon used (after annealing)",
    "losses/alpha": "SAC's entropy temperature alpha",
    "losses/priority_beta": "prioritized replay's importance-weight exponent beta",
    "losses/epochs": "PPO: passes over the batch (fewer when target_kl stopped early)",
    "losses/updates": "PPO: minibatch gradient steps in the iteration",
    "losses/gradient_steps": "off-policy: gradient steps in the iteration",
    # eval/
    "eval/return": "mean return of the policy (deterministic unless eval_deterministic is off) over eval_episodes"
                   " episodes",
    "eval/return_std": "standard deviation of those returns",
    "eval/episodes": "episodes in the evaluation",
    "eval/accuracy": "RLHF: pairwise accuracy on held-out comparisons (reward model; DPO: its implicit reward)",
    "eval/margin": "RLHF: mean score margin r_chosen - r_rejected on held-out comparisons (DPO: implicit reward)",
    "eval/gold_accuracy": "RLHF: held-out accuracy against the gold labeler's preferences",
    # time/
    "time/sps": "environment steps per second since learn() started",
    "time/iteration_seconds": "seconds the iteration took",
    "time/rollout_seconds": "seconds spent acting in the environments in the iteration",
    "time/eval_seconds": "seconds the evaluation took",
    "time/tokens_per_s": "RLHF: training tokens per second",
    # objective/, gold/
    "objective/scores": "RLHF: mean reward-model score of the responses (normalized)",
    "objective/kl": "RLHF: mean KL(pi_RL || pi_SFT) of a response, summed over its tokens (the k1 estimator); with "
                    "--ref-temperature tau < 1, the KL to the anchor, SFT sharpened to temperature tau",
    "objective/kl_sft": "RLHF: the k1 KL to pi_SFT itself (equal to objective/kl unless the anchor is a sharpened SFT)",
    "objective/kl_k2": "RLHF: the k2 estimator (log r)^2/2 of the same KL, summed over a response's tokens (biased)",
    "objective/kl_k3": "RLHF: the k3 estimator (r - 1) - log r of the same KL, summed over a response's tokens"
                       " (unbiased, >= 0)",
    "objective/kl_coef": "RLHF: beta, the KL penalty's weight",
    "objective/rlhf_reward": "RLHF: mean score - beta KL, what PPO maximizes",
    "gold/score": "RLHF: mean gold score of the responses",
}
