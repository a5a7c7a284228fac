"""Each training loss against its defining property."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from verifriend.app.train import train_model
from verifriend.attack.pgd import pgd_attack
from verifriend.bounds.result import linf_box
from verifriend.train import LOSSES, METHODS, TrainConfig
from verifriend.train.losses import (
    crown_ibp_loss,
    ibp_loss,
    l1_penalty,
    madry_loss,
    natural_loss,
    pgd_examples,
    rs_loss,
    rs_penalty,
    trades_examples,
    trades_loss,
    trades_objective,
)


def _net(seed=0, d=6, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                         nn.Linear(12, k))


def _data(n=32, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, d, generator=g), torch.randint(0, k, (n,), generator=g)


def test_every_method_has_a_loss():
    assert set(LOSSES) == set(METHODS)


def test_rs_penalty_falls_as_bounds_move_away_from_zero():
    base = torch.tensor([[-0.5, 0.2, -2.0]]), torch.tensor([[0.5, 1.0, -0.1]])
    values = []
    for shift in (0.0, 0.3, 0.6, 1.0):
        lo, up = base[0].clone(), base[1].clone()
        # move every interval away from 0 on its own side: positive ones up, negative down
        side = torch.sign(lo + up)
        values.append(float(rs_penalty([(lo + side * shift, up + side * shift)])))
    assert all(a > b for a, b in itertools.pairwise(values)), values
    # a stable neuron costs less than an unstable one of the same width
    assert float(rs_penalty([(torch.tensor([[0.5]]), torch.tensor([[1.5]]))])) < float(
        rs_penalty([(torch.tensor([[-0.5]]), torch.tensor([[0.5]]))]))


def test_trades_equals_ce_when_the_neighbour_is_the_input():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(trades_objective(logits, logits, y, 6.0), F.cross_entropy(logits, y))
    # and the KL term is what separates it from CE otherwise
    other = logits + torch.randn(8, 5)
    assert float(trades_objective(logits, other, y, 6.0)) > float(F.cross_entropy(logits, y))


def test_trades_neighbour_stays_in_the_ball_and_raises_the_kl():
    net, (x, _) = _net(), _data()
    cfg = TrainConfig(method="trades", eps=0.1)
    x_p = trades_examples(net, x, cfg, torch.Generator().manual_seed(0))
    lo, hi = linf_box(x, 0.1)
    assert torch.all(x_p >= lo - 1e-7) and torch.all(x_p <= hi + 1e-7)
    with torch.no_grad():
        p = F.log_softmax(net(x), 1)
        kl_adv = F.kl_div(F.log_softmax(net(x_p), 1), p, log_target=True, reduction="sum")
        x_r = torch.minimum(torch.maximum(x + 0.1 * (2 * torch.rand_like(x) - 1), lo), hi)
        kl_rand = F.kl_div(F.log_softmax(net(x_r), 1), p, log_target=True, reduction="sum")
    assert float(kl_adv) > float(kl_rand)
    loss, logits = trades_loss(net, x, _data()[1], cfg, generator=torch.Generator().manual_seed(0))
    assert float(loss.detach()) > float(F.cross_entropy(logits.detach(), _data()[1]))


@pytest.mark.parametrize("loss_fn", [ibp_loss, crown_ibp_loss])
def test_certified_loss_upper_bounds_the_robust_ce(loss_fn):
    """At the end of the ramp with kappa_end = 0 the loss is the robust CE of the bounds,
    which is at least the CE of every input in the ball: random points and PGD points."""
    net, (x, y) = _net(1), _data(16)
    eps = 0.05
    cfg = TrainConfig(method="ibp", eps=eps, kappa_end=0.0, ramp=0.5)
    with torch.no_grad():
        loss, _ = loss_fn(net, x, y, cfg, progress=1.0)
    lo, hi = linf_box(x, eps)
    worst = torch.zeros(x.shape[0])
    with torch.no_grad():
        for _ in range(200):
            xs = lo + (hi - lo) * torch.rand_like(x)
            worst = torch.maximum(worst, F.cross_entropy(net(xs), y, reduction="none"))
    x_adv = pgd_attack(net, x, y, eps, steps=50, loss="ce")
    with torch.no_grad():
        worst = torch.maximum(worst, F.cross_entropy(net(x_adv), y, reduction="none"))
    assert float(loss) >= float(worst.mean()) - 1e-6
    # per example too: the robust CE of one example bounds that example's CE
    for i in range(4):
        with torch.no_grad():
            li, _ = loss_fn(net, x[i:i + 1], y[i:i + 1], cfg, progress=1.0)
        assert float(li) >= float(worst[i]) - 1e-6


@pytest.mark.parametrize("loss_fn", [ibp_loss, crown_ibp_loss])
def test_certified_loss_starts_as_plain_ce_and_has_parameter_gradients(loss_fn):
    net, (x, y) = _net(2), _data()
    cfg = TrainConfig(method="ibp", eps=0.1)
    start, _ = loss_fn(net, x, y, cfg, progress=0.0)  # eps ramped to 0, kappa = 1
    assert torch.allclose(start, F.cross_entropy(net(x), y))
    loss, _ = loss_fn(net, x, y, cfg, progress=0.8)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in net.parameters())


def test_crown_ibp_bound_is_tighter_than_ibp_early_in_the_ramp():
    net, (x, y) = _net(3), _data()
    cfg = TrainConfig(method="crown-ibp", eps=0.1, kappa_end=0.0, ramp=1.0)
    # at progress 0.2: eps = 0.02, CROWN-IBP share 0.8; kappa = 0.8 for both
    with torch.no_grad():
        assert float(crown_ibp_loss(net, x, y, cfg, progress=0.2)[0]) <= float(
            ibp_loss(net, x, y, cfg, progress=0.2)[0]) + 1e-6


def test_madry_trains_on_points_of_the_ball():
    net, (x, y) = _net(4), _data()
    cfg = TrainConfig(method="madry", eps=0.1)
    x_adv = pgd_examples(net, x, y, cfg, cfg.eps, torch.Generator().manual_seed(0))
    lo, hi = linf_box(x, 0.1)
    assert torch.all(x_adv >= lo - 1e-7) and torch.all(x_adv <= hi + 1e-7)
    with torch.no_grad():
        assert float(F.cross_entropy(net(x_adv), y)) > float(F.cross_entropy(net(x), y))
    loss, logits = madry_loss(net, x, y, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(loss, F.cross_entropy(net(x_adv), y))
    assert torch.allclose(logits, net(x))
    # eps 0: the clean loss
    zero = TrainConfig(method="madry", eps=0.0)
    assert torch.allclose(madry_loss(net, x, y, zero)[0], natural_loss(net, x, y, zero)[0])


def test_rs_loss_is_madry_plus_the_penalties():
    net, (x, y) = _net(5), _data()
    plain = TrainConfig(method="rs", eps=0.1, rs_weight=0.0, l1_weight=0.0)
    m, _ = madry_loss(net, x, y, plain, generator=torch.Generator().manual_seed(0))
    r, _ = rs_loss(net, x, y, plain, generator=torch.Generator().manual_seed(0), progress=1.0)
    assert torch.allclose(m, r)
    cfg = TrainConfig(method="rs", eps=0.1, rs_weight=0.5, l1_weight=1e-3)
    full, _ = rs_loss(net, x, y, cfg, generator=torch.Generator().manual_seed(0), progress=1.0)
    assert full.item() != pytest.approx(m.item())
    full.backward()
    assert l1_penalty(net).item() > 0
    # the weight ramps: at the start only the L1 term is added
    start, _ = rs_loss(net, x, y, cfg, generator=torch.Generator().manual_seed(0), progress=0.0)
    assert torch.allclose(start, m + 1e-3 * l1_penalty(net))


def _separable(n=400, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=g)
    x = torch.rand(4 * n, d, generator=g)
    s = (x - 0.5) @ w.T
    top = s.topk(2, 1).values
    keep = (top[:, 0] - top[:, 1]) > 0.4
    return x[keep][:n].view(-1, 1, d), s[keep][:n].argmax(1)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_learns(method):
    x, y = _separable()
    net = _net(6)
    cfg = TrainConfig(method=method, epochs=10, lr=1e-2, batch_size=32, eps=0.02, pgd_steps=3,
                      nbc_k=3)
    history = train_model(net, x, y, cfg, progress=False)
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    assert history[-1]["loss"] < history[0]["loss"]
    assert acc > 0.9, (method, acc)
