"""The KL estimators of RLHF, and the two places a KL penalty can go: the reward or the loss.

At a token a sampled from the policy pi in state s, with the log-ratio to the reference
log r = log pi_ref(a | s) - log pi(a | s) (Schulman, "Approximating KL divergence", 2020):

    k1 = -log r                unbiased for KL(pi || ref); negative on some samples
    k2 = (log r)^2 / 2         biased (by a third-order term: small while pi stays near ref), >= 0
    k3 = (r - 1) - log r       unbiased (E_pi[r] = 1), >= 0, and of lower variance near ref

Their gradients are another matter. In expectation over a ~ pi (on-policy), for one state
(the derivations are in tests/test_rlhf_kl.py, which checks each one exactly):

    placement                                   k1             k2                  k3
    in the reward, r_t -= beta k (score func.)  grad KL(pi||ref)   -                   -
    in the loss, beta k                         0              grad KL(pi||ref)    grad KL(ref||pi)
    in the loss, beta (pi / pi_old) k           grad KL(pi||ref)   grad E_pi[k2], biased   grad KL(pi||ref)

So k1 in the loss does nothing but add noise; GRPO's k3 in the loss (no importance weight)
follows the other direction of the KL; with the importance weight pi / pi_old, the loss gradient
is the gradient of E_pi[k], exact for the unbiased k1 and k3. Over whole responses, a KL term in
the loss acts on each token's own distribution only, while a KL in the reward also reaches the
tokens before it through the return, as the sequence-level KL(pi(. | x) || pi_ref(. | x)) asks.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
ESTIMATORS: tuple[KLEstimator, ...] = ("k1", "k2", "k3")


def kl_estimate(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """k1, k2 or k3 at each sampled token, from log pi(a | s) and log pi_ref(a | s) (any shape)."""
    log_r = ref_log_probs - log_probs
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r**2
    if estimator == "k3":
        return torch.expm1(log_r) - log_r  # (r - 1) - log r, accurate near r = 1
    raise ValueError(f"unknown KL estimator {estimator!r}; one of {', '.join(ESTIMATORS)}")


def kl_loss_term(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, old_log_probs: torch.Tensor,
                 estimator: KLEstimator, importance: bool) -> torch.Tensor:
    """The per-token KL term of a loss: k(a) or, with the importance correction, (pi(a) / pi_old(a)) k(a),
    where pi_old sampled a; gradients flow through log_probs only."""
    estimate = kl_estimate(log_probs, ref_log_probs.detach(), estimator)
    if importance:
        return torch.exp(log_probs - old_log_probs.detach()) * estimate
    return estimate
