"""PGD against closed-form worst cases of linear classifiers and against clean accuracy."""

import pytest
import torch
from torch import nn

from verifriend.attack import margin_loss, pgd_accuracy, pgd_attack
from verifriend.errors import UserError


def _linear(d: int, k: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).eval()


def _exact_min_margin(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor,
                      eps: torch.Tensor) -> torch.Tensor:
    """min over the (unclipped) Linf ball of the margin: min_j m_j(x) - eps * ||w_y - w_j||_1."""
    w = model[1].weight.detach()
    with torch.no_grad():
        logits = model(x)
    own = logits.gather(1, y[:, None])
    per_j = own - logits - eps[:, None] * (w[y][:, None, :] - w[None]).abs().sum(-1)
    per_j[torch.arange(len(y)), y] = float("inf")
    return per_j.min(1).values


def _data(n: int, d: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # inside [0.25, 0.75] so that balls of radius <= 0.25 are not clipped
    return 0.25 + 0.5 * torch.rand(n, 1, d, generator=g)


def test_margin_loss_matches_definition():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, -1.0]])
    y = torch.tensor([0, 2])
    assert torch.allclose(margin_loss(logits, y), torch.tensor([0.5, -3.0]))


@pytest.mark.parametrize("schedule", ["cosine", "constant", "step"])
def test_pgd_finds_closed_form_minimum_binary(schedule):
    model = _linear(12, 2)
    x = _data(64, 12)
    y = model(x).argmax(1)
    eps = torch.full((64,), 0.1)
    x_adv = pgd_attack(model, x, y, 0.1, steps=50, schedule=schedule, early_stop=False,
                       generator=torch.Generator().manual_seed(0))
    found = margin_loss(model(x_adv), y).detach()
    exact = _exact_min_margin(model, x, y, eps)
    assert torch.allclose(found, exact, atol=1e-4)


def test_pgd_multiclass_is_sound_and_close():
    model = _linear(16, 4)
    x = _data(100, 16)
    y = model(x).argmax(1)
    g = torch.Generator().manual_seed(0)
    eps = 0.02 + 0.1 * torch.rand(100, generator=g)  # one radius per example
    x_adv = pgd_attack(model, x, y, eps, steps=60, restarts=3, early_stop=False, generator=g)
    found = margin_loss(model(x_adv), y).detach()
    exact = _exact_min_margin(model, x, y, eps)
    gap = found - exact
    assert (gap >= -1e-5).all()  # nothing beats the true minimum: the ball is respected
    # the untargeted margin can settle on a locally worst class; most examples still hit it
    assert (gap < 1e-4).float().mean() >= 0.85
    assert ((x_adv - x).abs().amax(dim=(1, 2)) <= eps + 1e-6).all()


def test_adversarial_inputs_stay_in_ball_and_box():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(40, 1, 4, 4)  # many pixels close to 0 or 1: the box clips the ball
    y = torch.randint(0, 3, (40,))
    for loss in ("margin", "ce"):
        x_adv = pgd_attack(model, x, y, 0.3, steps=20, loss=loss, restarts=2)
        assert ((x_adv - x).abs() <= 0.3 + 1e-6).all()
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_pgd_accuracy_equals_exact_robust_accuracy_binary():
    model = _linear(10, 2)
    x = _data(200, 10, seed=3)
    y = torch.randint(0, 2, (200,), generator=torch.Generator().manual_seed(4))
    for eps in (0.01, 0.05):
        exact = (_exact_min_margin(model, x, y, torch.full((200,), eps)) > 0).float().mean()
        assert pgd_accuracy(model, x, y, eps, steps=40, batch_size=64) == pytest.approx(
            exact.item())


def test_pgd_accuracy_bounded_by_clean_and_eps_zero_is_clean():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.rand(150, 1, 20)
    with torch.no_grad():
        logits = model(x)
    y = torch.where(torch.rand(150) < 0.7, logits.argmax(1), torch.randint(0, 4, (150,)))
    clean = (logits.argmax(1) == y).float().mean().item()
    assert pgd_accuracy(model, x, y, 0.0, steps=5) == pytest.approx(clean)
    robust = pgd_accuracy(model, x, y, 0.1, steps=30, batch_size=50)
    assert robust <= clean
    assert robust < clean  # a 0.1 ball on 20 inputs flips some of these points


def test_early_stop_keeps_misclassified_inputs_and_respects_model_state():
    model = _linear(8, 3)
    x = _data(30, 8)
    with torch.no_grad():
        wrong = (model(x).argmax(1) + 1) % 3
    for p in model.parameters():
        p.grad = None
    x_adv = pgd_attack(model, x, wrong, 0.1, steps=10)
    assert torch.equal(x_adv, x)  # misclassified from the start: nothing to search
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_pgd_works_inside_no_grad_and_is_reproducible():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x, y = torch.rand(20, 1, 9), torch.randint(0, 3, (20,))
    with torch.no_grad():
        a = pgd_attack(model, x, y, 0.2, steps=15, generator=torch.Generator().manual_seed(5))
    b = pgd_attack(model, x, y, 0.2, steps=15, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_bad_arguments_raise_user_error():
    model = _linear(4, 2)
    x, y = torch.rand(3, 4), torch.tensor([0, 1, 0])
    with pytest.raises(UserError):
        pgd_attack(model, x, y, -0.1)
    with pytest.raises(UserError):
        pgd_attack(model, x, y, 0.1, loss="hinge")
    with pytest.raises(UserError):
        pgd_attack(model, x, y, 0.1, schedule="linear")
    with pytest.raises(UserError):
        pgd_attack(model, x, y, torch.tensor([0.1, 0.2]))
    with pytest.raises(UserError):
        pgd_accuracy(model, x[:0], y[:0], 0.1)


class _Bowl(nn.Module):
    """logits = [(x - 0.5)^2, 0]: for class 0 the margin is smallest at x = 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([(x.flatten(1) - 0.5) ** 2, torch.zeros(len(x), 1)], dim=1)


def test_pgd_returns_best_iterate_not_last():
    # constant steps of 0.07 from 0.40 oscillate: 0.47, 0.54, 0.47, 0.54 (last)
    x = torch.tensor([[0.40]])
    x_adv = pgd_attack(_Bowl(), x, torch.tensor([0]), 0.2, steps=4, step_size=0.07,
                       schedule="constant", random_start=False)
    assert x_adv.item() == pytest.approx(0.47, abs=1e-6)
