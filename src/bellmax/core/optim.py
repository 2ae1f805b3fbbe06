"""Adam and RMSprop, written out (about 40 lines each) because `torch.optim` costs a second of start-up.

Every `torch.optim.Optimizer.step()` imports `torch._dynamo` (and with it sympy and the FX
tracer): about 1.1 s on this project's machine, a quarter of the time PPO needs to solve
CartPole. This Adam performs exactly the arithmetic of `torch.optim.Adam` (`tests/test_optim.py`
checks equality with both of its code paths), keeps `param_groups[0]["lr"]` for schedules, and has
`state_dict` / `load_state_dict` for checkpoints. Each line below is one `torch._foreach_*` call
over all parameters (as torch's `foreach=True` path does), not one call per parameter tensor:
small networks step in a third of the time. RMSprop (below) is the TensorFlow variant that A2C
was published with; its test checks it against the equations written out and against SB3's.

    m_t = beta1 m_{t-1} + (1 - beta1) g_t
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    theta_t = theta_{t-1} - lr * (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class Optimizer:
    """What both optimizers share: the trainable parameters, `param_groups[0]["lr"]` for schedules,
    the indices of the parameters that received a gradient this step, and the option to skip a
    step whose gradients are not finite (`skip_nonfinite`, counted in `skipped`)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], **group: Any):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no trainable parameters")
        self.param_groups = [group]
        self.step_count = 0
        self.skip_nonfinite = False
        self.skipped = 0

    def step(self) -> None:
        """One update from the parameters' gradients; with `skip_nonfinite`, a step whose gradients
        hold a nan or inf changes nothing (parameters, moments, step count) and is counted."""
        if self.skip_nonfinite and not self.finite_gradients():
            self.skipped += 1
            return
        self.apply()

    def apply(self) -> None:
        raise NotImplementedError

    def finite_gradients(self) -> bool:
        grads = [p.grad for p in self.params if p.grad is not None]
        return not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    moments: tuple[str, ...] = ()
    """Names of the per-parameter state lists a subclass keeps (saved in checkpoints)."""

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.params) if p.grad is not None]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"param_groups": [dict(g) for g in self.param_groups], "step": self.step_count,
                                 "skipped": self.skipped}
        return state | {name: [t.clone() for t in getattr(self, name)] for name in self.moments}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.param_groups = [dict(g) for g in state["param_groups"]]
        self.step_count = state["step"]
        self.skipped = state.get("skipped", 0)
        for name in self.moments:
            for dst, src in zip(getattr(self, name), state[name]):
                dst.copy_(src)


class Adam(Optimizer):
    moments = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def apply(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        self.step_count += 1
        bias_correction1 = 1 - beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)
        step_size = lr / bias_correction1
        live = self.live()
        params: list[torch.Tensor] = [self.params[i] for i in live]
        grads = [p.grad for p in params if p.grad is not None]  # all of them: live() keeps those with one
        m = [self.exp_avg[i] for i in live]
        v = [self.exp_avg_sq[i] for i in live]
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, -step_size)


class RMSprop(Optimizer):
    """RMSprop as the A2C paper's TensorFlow code runs it (and Stable-Baselines3's `RMSpropTFLike`,
    which rl-zoo3 gives A2C on Atari): the running mean of g^2 starts at 1 and epsilon sits inside
    the square root,

        v_t = alpha v_{t-1} + (1 - alpha) g_t^2,    v_0 = 1
        theta_t = theta_{t-1} - lr g_t / sqrt(v_t + eps)

    (`torch.optim.RMSprop` starts v at 0 and adds eps outside the root, so its first steps are
    about 1/sqrt(1 - alpha) = 10 times larger for alpha = 0.99)."""

    moments = ("square_avg",)

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 7e-4, alpha: float = 0.99,
                 eps: float = 1e-5):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)
        self.square_avg = [torch.ones_like(p) for p in self.params]

    @torch.no_grad()
    def apply(self) -> None:
        group = self.param_groups[0]
        self.step_count += 1
        live = self.live()
        params: list[torch.Tensor] = [self.params[i] for i in live]
        grads = [p.grad for p in params if p.grad is not None]  # all of them: live() keeps those with one
        v = [self.square_avg[i] for i in live]
        torch._foreach_mul_(v, group["alpha"])
        torch._foreach_addcmul_(v, grads, grads, 1 - group["alpha"])
        denom = torch._foreach_add(v, group["eps"])
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(params, grads, denom, -group["lr"])


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale gradients so their global L2 norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, scale)
    return float(total)
