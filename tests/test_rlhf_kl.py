"""The KL lab: each estimator of KL(pi || ref) on a small categorical policy, its value and the
gradient it gives in each placement, against the exact KL and its exact gradient, by enumerating
every outcome (no sampling noise: an expectation under pi is a sum weighted by pi).

Notation: pi = softmax(z) over 6 outcomes, ref fixed, log r(x) = log ref(x) - log pi(x),
E[.] = sum_x pi(x) (.), grad = d/dz, and s(x) = grad log pi(x) the score, with E[s] = sum_x grad pi(x) = 0.

Values:   E[k1] = E[log pi - log ref] = KL(pi || ref)
          E[k3] = E[r] - 1 + KL = sum_x ref(x) - 1 + KL = KL          (both unbiased)
          E[k2] = E[(log r)^2] / 2 = KL + O(|log r|^3)                 (biased)
Exact gradient: grad KL(pi || ref) = sum_x grad pi (log pi - log ref) + sum_x pi s = E[s (log pi - log ref)].

A KL penalty placed in a loss is differentiated at samples from pi, with the sampling frozen:
    in the reward (score function)  E[k1 s]                      = E[s log(pi/ref)]       = grad KL
    in the loss, plain              E[grad k], grad k1 = s       -> E[s] = 0
                                               grad k2 = -log r s -> E[s log(pi/ref)]     = grad KL
                                               grad k3 = (1 - r) s -> E[s] - sum_x ref s
                                                                   = -grad sum_x ref log pi = grad KL(ref || pi)
    in the loss, importance-weighted (pi / pi_old) k with pi_old = pi frozen:
                                    E[k s + grad k] = grad E_pi[k], the gradient of the estimator's mean:
                                    grad KL for k1 and k3 (unbiased), grad E[k2] != grad KL for k2.
"""

import pytest

torch = pytest.importorskip("torch")

from bellmax.rlhf.kl import ESTIMATORS, kl_estimate, kl_loss_term  # noqa: E402

REF_LOGITS = [0.3, -1.2, 0.8, 0.0, -0.4, 1.5]
POLICY_LOGITS = [1.1, 0.2, -0.7, 0.4, -1.5, 0.9]  # far enough from ref that the bias of k2 shows


def distributions(policy_logits=POLICY_LOGITS):
    z = torch.tensor(policy_logits, dtype=torch.float64, requires_grad=True)
    log_pi = torch.log_softmax(z, 0)
    log_ref = torch.log_softmax(torch.tensor(REF_LOGITS, dtype=torch.float64), 0)
    return z, log_pi, log_ref


def exact_kl(log_pi, log_ref):
    return (log_pi.exp() * (log_pi - log_ref)).sum()


def grad_of(value, z):
    return torch.autograd.grad(value, z, retain_graph=True)[0]


def expected(log_pi, per_outcome):
    """E_{x ~ pi}[per_outcome(x)], the sampling distribution frozen (what a sample mean estimates)."""
    return (log_pi.exp().detach() * per_outcome).sum()


def test_exact_kl_gradients_in_closed_form():
    # the references the estimators are judged against, checked once against their own closed forms:
    # d/dz_j KL(pi || ref) = pi_j (log pi_j - log ref_j - KL),  d/dz_j KL(ref || pi) = pi_j - ref_j
    z, log_pi, log_ref = distributions()
    pi, ref = log_pi.exp(), log_ref.exp()
    kl = exact_kl(log_pi, log_ref)
    assert torch.allclose(grad_of(kl, z), (pi * (log_pi - log_ref - kl)).detach())
    reverse = (ref * (log_ref - log_pi)).sum()
    assert torch.allclose(grad_of(reverse, z), (pi - ref).detach())


def test_k1_and_k3_are_unbiased_in_value_and_k2_is_not():
    z, log_pi, log_ref = distributions()
    kl = float(exact_kl(log_pi, log_ref).detach())
    values = {name: float(expected(log_pi, kl_estimate(log_pi, log_ref, name)).detach()) for name in ESTIMATORS}
    assert values["k1"] == pytest.approx(kl, rel=1e-12)
    assert values["k3"] == pytest.approx(kl, rel=1e-12)
    assert abs(values["k2"] - kl) > 0.05 * kl  # biased here: 0.42 against the exact 0.37
    # per sample: k1 goes negative where pi < ref, k2 and k3 never do
    samples = {name: kl_estimate(log_pi, log_ref, name) for name in ESTIMATORS}
    assert (samples["k1"] < 0).any() and (samples["k2"] >= 0).all() and (samples["k3"] >= 0).all()


def test_k2_bias_is_third_order_and_k3_has_lower_variance_than_k1_near_the_reference():
    # pi close to ref: log r = O(d), E[k2] - KL = O(d^3), while KL itself is O(d^2)
    for scale in (0.1, 0.05):
        near = [r + scale * (p - r) for r, p in zip(REF_LOGITS, POLICY_LOGITS)]
        _, log_pi, log_ref = distributions(near)
        kl = float(exact_kl(log_pi, log_ref).detach())
        k = {name: kl_estimate(log_pi, log_ref, name).detach() for name in ESTIMATORS}
        bias = abs(float(expected(log_pi, k["k2"])) - kl)
        assert bias < 0.5 * scale * kl  # relative bias shrinks with the distance
        variance = {name: float(expected(log_pi, (k[name] - kl) ** 2)) for name in ("k1", "k3")}
        assert variance["k3"] < 0.2 * variance["k1"]  # k1's variance is O(d^2), k3's O(d^4)


def test_k1_in_the_reward_gives_the_exact_gradient():
    # a reward r_t -= beta k1 enters the policy gradient as E[k1 grad log pi] (k1 a number, not differentiated)
    z, log_pi, log_ref = distributions()
    k1 = kl_estimate(log_pi, log_ref, "k1").detach()
    score_function = expected(log_pi, k1 * log_pi)
    assert torch.allclose(grad_of(score_function, z), grad_of(exact_kl(log_pi, log_ref), z))


def test_in_the_loss_without_importance_weight_k1_has_zero_mean_gradient_k2_is_exact_k3_follows_kl_ref_pi():
    z, log_pi, log_ref = distributions()
    exact = grad_of(exact_kl(log_pi, log_ref), z)
    reverse = grad_of((log_ref.exp() * (log_ref - log_pi)).sum(), z)
    grads = {name: grad_of(expected(log_pi, kl_loss_term(log_pi, log_ref, log_pi.detach(), name, False)), z)
             for name in ESTIMATORS}
    assert torch.allclose(grads["k1"], torch.zeros_like(exact), atol=1e-15)
    assert torch.allclose(grads["k2"], exact)
    assert torch.allclose(grads["k3"], reverse)
    assert not torch.allclose(grads["k3"], exact, atol=1e-2)  # the two directions differ here


def test_in_the_loss_with_importance_weight_k1_and_k3_are_exact_and_k2_follows_its_own_mean():
    z, log_pi, log_ref = distributions()
    exact = grad_of(exact_kl(log_pi, log_ref), z)
    old = log_pi.detach()  # the sampling policy: pi itself at the first step, with no gradient
    grads = {name: grad_of(expected(log_pi, kl_loss_term(log_pi, log_ref, old, name, True)), z)
             for name in ESTIMATORS}
    assert torch.allclose(grads["k1"], exact)
    assert torch.allclose(grads["k3"], exact)
    k2_mean = (log_pi.exp() * kl_estimate(log_pi, log_ref, "k2")).sum()  # E_pi[k2], pi differentiated too
    assert torch.allclose(grads["k2"], grad_of(k2_mean, z))
    assert not torch.allclose(grads["k2"], exact, atol=1e-2)


def test_a_sampled_k3_loss_gradient_converges_to_the_reverse_kl_gradient():
    # the same fact from samples, as training sees it: the mean of grad k3 over draws from pi
    z, log_pi, log_ref = distributions()
    draws = torch.multinomial(log_pi.exp().detach(), 200_000, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    loss = kl_loss_term(log_pi[draws], log_ref[draws], log_pi[draws].detach(), "k3", False).mean()
    reverse = grad_of((log_ref.exp() * (log_ref - log_pi)).sum(), z)
    assert torch.allclose(grad_of(loss, z), reverse, atol=0.01)
