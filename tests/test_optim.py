"""Our Adam does exactly what torch.optim.Adam does (it exists only to skip torch._dynamo's
import cost), and gradient clipping matches torch's."""

import pytest
import torch

from bellmax.core.optim import Adam, RMSprop, clip_grad_norm


def make_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def train_together(pairs, steps, batch=32, seed=1, lr_at=None):
    """The same minibatches, loss (model(x)^2).mean() and steps for every (model, optimizer) pair;
    lr_at = (step, lr) changes the learning rate mid-way, as a schedule does."""
    torch.manual_seed(seed)
    for step in range(steps):
        x = torch.randn(batch, 5)
        for model, opt in pairs:
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            if lr_at is not None and step == lr_at[0]:
                opt.param_groups[0]["lr"] = lr_at[1]
            opt.step()


@pytest.mark.parametrize("foreach", [False, True])
def test_adam_matches_torch_adam_exactly_over_many_steps(foreach):
    ours, theirs = make_model(0), make_model(0)
    train_together([(ours, Adam(ours.parameters(), lr=3e-3, eps=1e-5)),
                    (theirs, torch.optim.Adam(theirs.parameters(), lr=3e-3, eps=1e-5, foreach=foreach))],
                   steps=50, lr_at=(25, 1e-3))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("make_optimizer", [lambda ps: Adam(ps, lr=1e-2), lambda ps: RMSprop(ps)],
                         ids=["adam", "rmsprop"])
def test_state_dict_round_trip_continues_identically(make_optimizer):
    model, clone = make_model(2), make_model(2)
    opt = make_optimizer(model.parameters())
    train_together([(model, opt)], steps=3, batch=4)
    with torch.no_grad():
        for p, q in zip(clone.parameters(), model.parameters()):
            p.copy_(q)
    opt_clone = make_optimizer(clone.parameters())
    opt_clone.param_groups[0]["lr"] = 99.0  # overwritten by the loaded state
    opt_clone.load_state_dict(opt.state_dict())
    train_together([(model, opt), (clone, opt_clone)], steps=2, batch=4)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_clip_grad_norm_matches_torch():
    a, b = make_model(3), make_model(3)
    x = torch.randn(8, 5) * 10
    for m in (a, b):
        (m(x) ** 2).sum().backward()
    norm_ours = clip_grad_norm(a.parameters(), 0.5)
    norm_torch = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    assert abs(norm_ours - float(norm_torch)) < 1e-4 * float(norm_torch)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def test_rmsprop_is_the_tensorflow_variant_written_out():
    # v_0 = 1, v_t = alpha v_{t-1} + (1 - alpha) g^2, theta -= lr g / sqrt(v_t + eps): one tensor at a time
    ours, reference = make_model(4), make_model(4)
    opt = RMSprop(ours.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
    square_avg = [torch.ones_like(p) for p in reference.parameters()]
    torch.manual_seed(5)
    for _ in range(30):
        x = torch.randn(16, 5)
        opt.zero_grad()
        (ours(x) ** 2).mean().backward()
        opt.step()
        reference.zero_grad()
        (reference(x) ** 2).mean().backward()
        with torch.no_grad():
            for p, v in zip(reference.parameters(), square_avg):
                v.mul_(0.99).add_(0.01 * p.grad * p.grad)
                p.sub_(7e-4 * p.grad / torch.sqrt(v + 1e-5))
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_rmsprop_matches_stable_baselines3s_rmsprop_tf_like_exactly():
    rmsprop_tf_like = pytest.importorskip("stable_baselines3.common.sb2_compat.rmsprop_tf_like")
    ours, theirs = make_model(6), make_model(6)
    train_together([(ours, RMSprop(ours.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)),
                    (theirs, rmsprop_tf_like.RMSpropTFLike(theirs.parameters(), lr=7e-4, alpha=0.99, eps=1e-5))],
                   steps=40, batch=8, seed=7)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


@pytest.mark.parametrize("make_optimizer", [lambda p: Adam(p, lr=0.1), lambda p: RMSprop(p, lr=0.1)])
def test_a_step_with_non_finite_gradients_is_skipped_only_when_asked(make_optimizer):
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer([param])
    param.grad = torch.tensor([1.0, float("nan"), 1.0])
    optimizer.skip_nonfinite = True
    optimizer.step()
    assert torch.equal(param.detach(), torch.ones(3)) and optimizer.skipped == 1 and optimizer.step_count == 0
    assert optimizer.state_dict()["skipped"] == 1
    param.grad = torch.tensor([1.0, 1.0, 1.0])
    optimizer.step()  # finite gradients step as always
    assert (param.detach() < 1).all() and optimizer.skipped == 1 and optimizer.step_count == 1
    param.grad = torch.tensor([float("inf"), 1.0, 1.0])
    optimizer.skip_nonfinite = False
    optimizer.step()
    assert not torch.isfinite(param.detach()).all()  # without the option the step is taken
