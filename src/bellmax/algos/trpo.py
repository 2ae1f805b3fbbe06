"""Trust Region Policy Optimization (Schulman et al., 2015), with a GAE critic.

Maximize the surrogate L(theta) = E_t[ pi_theta(a_t|s_t) / pi_old(a_t|s_t) A_t ] subject to the
trust region E_s[ KL(pi_old(.|s) || pi_theta(.|s)) ] <= delta. Linearizing L and taking the
quadratic model of the KL with the Fisher matrix F gives the natural-gradient step

    theta <- theta_old + alpha^j sqrt(2 delta / (x^T F x)) x,     x = F^-1 g,  g = grad L

with x found by conjugate gradient using only Fisher-vector products F v = grad (grad KL . v),
and the backtracking factor alpha^j the first (j = 0, 1, ...) whose step both keeps the exact KL
within delta and improves L; if none does, the policy is left unchanged. V_phi is fit by
regression on the GAE returns (Adam, minibatches), as in the lecture's Algorithm 1, step 8.

On image or board observations pi_theta and V_phi each get their own CNN torso: with one shared
torso the critic's Adam steps would move the policy after the trust-region step, outside the
trust region and with no KL check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch

from bellmax.config import OnPolicyConfig, require, require_step_size
from bellmax.core.onpolicy import OnPolicyAlgorithm
from bellmax.core.optim import Adam
from bellmax.core.returns import explained_variance, standardize
from bellmax.core.rollout import advantages_and_returns, minibatches, valid_samples


@dataclass
class TRPOConfig(OnPolicyConfig):
    """TRPO; defaults follow sb3-contrib's (delta 0.01, damping 0.1, 0.8 backtracking)."""

    algo: ClassVar[str] = "trpo"
    renamed: ClassVar[dict[str, str | None]] = {"learning_rate": "value_learning_rate"}

    value_learning_rate: float = 1e-3
    """Adam step size of the critic V_phi (the policy's step comes from the trust region, not a rate)."""
    num_envs: int = 8
    n_steps: int = 256
    max_kl: float = 0.01
    """delta, the trust-region radius on the mean over states of KL(pi_old || pi_theta), the KL of the
    whole action distribution (summed over a Gaussian's dimensions). sb3-contrib averages over the
    dimensions as well, so its target_kl and cg_damping give the same proposed step as max_kl and
    cg_damping d times larger here, for d action dimensions."""
    cg_iterations: int = 15
    """Conjugate-gradient iterations for x = F^-1 g."""
    cg_damping: float = 0.1
    """Damping added to the Fisher matrix (F + damping I) for stability."""
    line_search_steps: int = 10
    """Backtracking tries before giving up on a step."""
    line_search_shrink: float = 0.8
    """alpha, the factor by which each backtracking try shrinks the step."""
    value_epochs: int = 10
    """Passes over the batch when regressing V_phi on the returns."""
    batch_size: int = 128
    """Minibatch size of the critic regression."""
    normalize_advantages: bool = True
    """Standardize advantages over the batch."""

    def validate(self) -> None:
        super().validate()
        require_step_size("value_learning_rate", self.value_learning_rate)
        require(self.max_kl > 0, "max_kl", self.max_kl, "positive")
        require(self.cg_iterations >= 1, "cg_iterations", self.cg_iterations, "at least 1")
        require(self.cg_damping >= 0, "cg_damping", self.cg_damping, ">= 0")
        require(self.line_search_steps >= 1, "line_search_steps", self.line_search_steps, "at least 1")
        require(0 < self.line_search_shrink < 1, "line_search_shrink", self.line_search_shrink, "in (0, 1)")
        require(self.value_epochs >= 1, "value_epochs", self.value_epochs, "at least 1 (the critic GAE needs is fit "
                "every iteration)")
        self.require_minibatch("batch_size", self.batch_size)


def conjugate_gradient(matrix_vector: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iterations: int, residual_tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only v -> A v."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iterations):
        Ap = matrix_vector(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def flat_vector(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The tensors' elements in one vector, each in its logical (row-major) order whatever its
    memory layout: torch's parameters_to_vector uses view(-1), which fails on the Nature CNN's
    channels-last weights."""
    return torch.cat([t.reshape(-1) for t in tensors])


@torch.no_grad()
def set_flat_params(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    """Copy a flat vector into the parameters in place (torch's vector_to_parameters rebinds
    .data to views of one vector, which changes memory alignment and so, via BLAS, the last bits
    of later results: a resumed run would then drift from an uninterrupted one). The vector is in
    flat_vector's order; copy_ writes it into any memory layout, channels-last included."""
    offset = 0
    for p in params:
        p.copy_(flat[offset: offset + p.numel()].view_as(p))
        offset += p.numel()


class TRPO(OnPolicyAlgorithm):
    name = "trpo"
    config_class = TRPOConfig
    config: TRPOConfig

    def build(self) -> None:
        cfg = self.config
        self.policy, self.value = self.make_policy_and_value(share_torso=False)
        self.buffer = self.make_rollout_buffer(cfg.n_steps)
        self.value_optimizer = Adam(self.value.parameters(), lr=cfg.value_learning_rate)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "value": self.value}

    def optimizers(self) -> dict[str, Adam]:
        return {"value": self.value_optimizer}

    def train_iteration(self, max_steps: int) -> dict[str, float]:
        cfg = self.config
        self.collect_rollout(self.buffer, self.rollout_length(max_steps), self.value)
        advantages, returns = advantages_and_returns(self.buffer, cfg.gamma, cfg.gae_lambda)
        batch = self.to_device(valid_samples(self.buffer, advantages=advantages, returns=returns))
        if cfg.normalize_advantages:
            batch["advantages"] = standardize(batch["advantages"])
        metrics = self.policy_step(batch["obs"], batch["actions"], batch["log_probs"], batch["advantages"])
        metrics.update(self.fit_value(batch["obs"], batch["returns"]))
        metrics["losses/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        return metrics

    def policy_step(self, obs: torch.Tensor, actions: torch.Tensor, old_log_prob: torch.Tensor,
                    advantages: torch.Tensor) -> dict[str, float]:
        """One natural-gradient step inside the KL trust region, by CG and backtracking."""
        cfg = self.config
        params = [p for p in self.policy.parameters() if p.requires_grad]
        with torch.no_grad():
            old_dist = self.policy.distribution(obs)

        def surrogate() -> torch.Tensor:  # L(theta) = E[pi_theta / pi_old A]
            dist = self.policy.distribution(obs)
            return ((self.policy.log_prob(dist, actions) - old_log_prob).exp() * advantages).mean()

        def mean_kl() -> torch.Tensor:  # E_s[KL(pi_old || pi_theta)]
            return self.policy.kl(old_dist, self.policy.distribution(obs)).mean()

        loss_before = surrogate()
        g = flat_vector(torch.autograd.grad(loss_before, params))
        kl_grad = flat_vector(torch.autograd.grad(mean_kl(), params, create_graph=True))

        def fisher_vector(v: torch.Tensor) -> torch.Tensor:  # (F + damping I) v
            fv = torch.autograd.grad(kl_grad @ v, params, retain_graph=True)
            return flat_vector(fv) + cfg.cg_damping * v

        x = conjugate_gradient(fisher_vector, g, cfg.cg_iterations)
        xFx = x @ fisher_vector(x)
        full_step = torch.sqrt(2 * cfg.max_kl / (xFx + 1e-12)) * x

        old_params = flat_vector(params).detach()
        accepted, kl, improvement = False, 0.0, 0.0
        with torch.no_grad():
            for j in range(cfg.line_search_steps):
                set_flat_params(params, old_params + cfg.line_search_shrink**j * full_step)
                kl = mean_kl().item()
                improvement = (surrogate() - loss_before).item()
                if kl <= cfg.max_kl and improvement > 0:
                    accepted = True
                    break
            if not accepted:
                set_flat_params(params, old_params)
                kl, improvement = 0.0, 0.0
        return {"losses/kl": kl, "losses/surrogate_improvement": improvement, "losses/step_accepted": float(accepted),
                "losses/line_search_tries": j + 1, "losses/loss_policy": -loss_before.item()}

    def fit_value(self, obs: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """phi <- argmin E[(V_phi(s_t) - R_t)^2] by minibatch Adam."""
        total, updates = 0.0, 0
        for _ in range(self.config.value_epochs):
            for obs_mb, returns_mb in minibatches(self.config.batch_size, obs, returns):
                loss = 0.5 * ((self.value(obs_mb) - returns_mb) ** 2).mean()
                self.value_optimizer.zero_grad()
                loss.backward()
                self.value_optimizer.step()
                total += loss.item()
                updates += 1
        return {"losses/loss_value": total / max(updates, 1)}
