"""Training config, the NBC loss pieces and the training loop (real learning, determinism)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from verifriend.app.train import train_model
from verifriend.errors import UserError
from verifriend.models.layers import Normalize, Residual
from verifriend.train import (
    LOSSES,
    METHODS,
    TrainConfig,
    find_nbc_neighbour,
    hidden_preactivations,
    layer_gammas,
    nbc_loss,
    nbc_score,
)


def _mlp(d: int = 20, k: int = 3, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, k))


def _separable(n: int = 600, d: int = 20, k: int = 3, seed: int = 0):
    """Points in [0,1]^d labelled by a fixed linear teacher, keeping only clear margins."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=g)
    x = torch.rand(4 * n, d, generator=g)
    scores = (x - 0.5) @ w.T
    top2 = scores.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 0.3
    return x[keep][:n].view(-1, 1, d), scores[keep][:n].argmax(1)


# ---------------------------------------------------------------- config

def test_config_round_trip_and_defaults():
    cfg = TrainConfig(method="nbc", epochs=3, eps=0.2, limit=50)
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.alpha == pytest.approx(0.02)
    assert TrainConfig(nbc_alpha=0.5).alpha == 0.5
    assert set(LOSSES) == set(METHODS)


@pytest.mark.parametrize("bad", [
    {"method": "magic"}, {"optimizer": "lbfgs"}, {"eps": -0.1}, {"epochs": 0},
    {"batch_size": 0}, {"lr": 0.0}, {"nbc_gamma": "cubic"}, {"nbc_k": -1},
    {"nbc_alpha": 0.0}, {"limit": 0}, {"device": "warp-drive"}, {"epochs": 2.5},
    {"unknown_key": 1}, {"lr": "fast"},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(UserError):
        TrainConfig.from_dict(bad)


def test_config_accepts_numeric_strings_from_yaml():
    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == 1e-3


# ---------------------------------------------------------------- NBC pieces

def test_layer_gammas_rank_and_one():
    assert layer_gammas([100, 50, 200]) == [4.0, 2.0, 8.0]
    assert layer_gammas([10, 10, 5]) == [4.0, 4.0, 2.0]  # equal widths share a rank
    assert layer_gammas([100, 50, 200], "one") == [1.0, 1.0, 1.0]
    assert layer_gammas([100, 50, 200], "rank-width") == [400.0, 100.0, 1600.0]
    with pytest.raises(UserError):
        layer_gammas([3], "cubic")


def test_hidden_preactivations_nested_and_residual_in_forward_order():
    torch.manual_seed(0)
    lin1, lin2, lin3, head = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
    model = nn.Sequential(
        Normalize([0.5], [0.25]), lin1, nn.ReLU(inplace=True),
        Residual(nn.Sequential(lin2, nn.ReLU(), lin3)), nn.ReLU(), head)
    x = torch.rand(5, 4)
    logits, pre = hidden_preactivations(model, x)
    z1 = lin1((x - 0.5) / 0.25)
    z2 = lin2(z1.relu())
    z3 = lin3(z2.relu()) + z1.relu()
    assert len(pre) == 3
    for got, want in zip(pre, [z1, z2, z3]):
        assert torch.allclose(got, want, atol=1e-6)  # the in-place ReLU did not overwrite z1
    assert torch.allclose(logits, head(z3.relu()), atol=1e-6)
    assert not model[0]._forward_pre_hooks and not model[2]._forward_pre_hooks  # hooks removed


def test_nbc_score_of_input_with_itself_is_sum_of_weights():
    model = _mlp()
    x = torch.rand(8, 1, 20)
    gammas = layer_gammas([32, 16])
    assert gammas == [4.0, 2.0]
    score = nbc_score(model, x, x, gammas)
    assert torch.allclose(score, torch.full((8,), 1 / 4 + 1 / 2), atol=1e-5)


def _hand_nbc(model: nn.Sequential, x, x_p, gammas, detach_p: bool = False):
    """NBC of the two-hidden-layer MLP written out layer by layer."""
    a1, b1 = model[1](x.flatten(1)), model[1](x_p.flatten(1))
    a2, b2 = model[3](a1.relu()), model[3](b1.relu())
    la, lb = model[5](a2.relu()), model[5](b2.relu())
    if detach_p:
        b1, b2, lb = b1.detach(), b2.detach(), lb.detach()
    p, q = la.softmax(1), lb.softmax(1)
    return (F.cosine_similarity(a1, b1) / gammas[0] + F.cosine_similarity(a2, b2) / gammas[1]
            - (p * (p.log() - q.log())).sum(1))


def test_nbc_score_matches_hand_computation():
    model = _mlp()
    with torch.no_grad():
        model[5].weight.mul_(30)  # confident outputs, so that KL's direction matters
    x, x_p = torch.rand(6, 1, 20), torch.rand(6, 1, 20)
    want = _hand_nbc(model, x, x_p, [3.0, 5.0])
    assert torch.allclose(nbc_score(model, x, x_p, [3.0, 5.0]), want, atol=1e-5)
    with pytest.raises(UserError):
        nbc_score(model, x, x_p, [1.0])


def test_find_nbc_neighbour_stays_in_ball_and_lowers_score():
    model = _mlp().eval()
    x = torch.rand(64, 1, 20)
    gammas = layer_gammas([32, 16])
    start = find_nbc_neighbour(model, x, 0.1, 0, 0.01, generator=torch.Generator().manual_seed(3))
    x_p = find_nbc_neighbour(model, x, 0.1, 10, 0.01, generator=torch.Generator().manual_seed(3))
    for pt in (start, x_p):
        assert ((pt - x).abs() <= 0.1 + 1e-6).all() and pt.min() >= 0 and pt.max() <= 1
    assert not x_p.requires_grad
    with torch.no_grad():
        s0, s1 = nbc_score(model, x, start, gammas), nbc_score(model, x, x_p, gammas)
    assert s1.mean() < s0.mean() - 1e-3
    assert (s1 <= s0 + 1e-6).float().mean() > 0.9


def test_nbc_gradient_steps_move_by_alpha_times_the_gradient():
    """nbc_step="gradient" (Algorithm 2 read literally) moves x' by -alpha * dNBC/dx', where
    "sign" moves every pixel by alpha; both stay in the ball."""
    from verifriend.train.nbc import _descend, _random_start, hidden_preactivations

    model = _mlp().eval()
    x = torch.rand(8, 1, 20) * 0.5 + 0.25
    gammas = layer_gammas([32, 16])
    x_p, lo, hi = _random_start(x, 0.1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, pre = hidden_preactivations(model, x)
    xq = x_p.clone().requires_grad_(True)
    from verifriend.train.nbc import _score_from_parts

    lp, pp = hidden_preactivations(model, xq)
    (grad,) = torch.autograd.grad(_score_from_parts(logits, pre, lp, pp, gammas).sum(), xq)
    alpha = 1e-3
    stepped = _descend(model, x_p.clone(), lo, hi, logits, pre, gammas, 1, alpha, "gradient")
    assert torch.allclose(stepped, torch.minimum(torch.maximum(x_p - alpha * grad, lo), hi),
                          atol=1e-7)
    signed = _descend(model, x_p.clone(), lo, hi, logits, pre, gammas, 1, alpha, "sign")
    moved = (signed - x_p).abs()
    assert ((moved - alpha).abs() < 1e-6)[(signed > lo) & (signed < hi)].all()
    # the gradient is small here, so the literal step barely leaves the random start
    assert (stepped - x_p).abs().max() < moved.max()
    with pytest.raises(UserError):
        TrainConfig(nbc_step="newton")


def test_nbc_loss_gradient_is_ce_minus_beta_score_through_both_inputs():
    model = _mlp()
    x, y = torch.rand(16, 1, 20), torch.randint(0, 3, (16,))
    cfg = TrainConfig(method="nbc", eps=0.1, nbc_k=3, nbc_beta=2.0)
    loss, logits = nbc_loss(model, x, y, cfg, generator=torch.Generator().manual_seed(7))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert logits.shape == (16, 3)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)

    # the same x' (same generator seed) and the loss written out by hand
    x_p = find_nbc_neighbour(model, x, 0.1, 3, 0.01, generator=torch.Generator().manual_seed(7))
    params = list(model.parameters())
    manual = F.cross_entropy(model(x), y) - 2.0 * _hand_nbc(model, x, x_p, [4.0, 2.0]).mean()
    assert torch.allclose(loss, manual, atol=1e-6)
    for g, w in zip(grads, torch.autograd.grad(manual, params)):
        assert torch.allclose(g, w, atol=1e-5)
    # the f(x') side contributes: cutting it off changes the gradient
    one_sided = (F.cross_entropy(model(x), y)
                 - 2.0 * _hand_nbc(model, x, x_p, [4.0, 2.0], detach_p=True).mean())
    diff = [(g - w).abs().max() for g, w in zip(grads, torch.autograd.grad(one_sided, params))]
    assert max(diff) > 1e-4


# ---------------------------------------------------------------- trainer

def test_natural_training_learns_a_separable_problem():
    xs, ys = _separable(n=900)
    x, y, x_test, y_test = xs[:600], ys[:600], xs[600:], ys[600:]
    model = _mlp()
    cfg = TrainConfig(epochs=15, batch_size=64, lr=1e-2)
    seen = []
    history = train_model(model, x, y, cfg, progress=False,
                          on_epoch_end=lambda e, m, h: seen.append((e, m.training)))
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert set(history[0]) == {"epoch", "loss", "train_acc", "lr", "time_s"}
    assert seen == [(e, False) for e in range(1, 16)]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["train_acc"] > 0.95
    assert not model.training
    with torch.no_grad():  # it generalizes to held-out points of the same teacher
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.9


def test_nbc_training_learns_and_is_deterministic():
    x, y = _separable(n=300)
    cfg = TrainConfig(method="nbc", epochs=8, batch_size=50, lr=1e-2, eps=0.05, nbc_k=3, seed=4)
    weights = []
    for _ in range(2):
        model = _mlp()
        history = train_model(model, x, y, cfg, progress=False)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    assert history[-1]["train_acc"] > 0.9
    assert all(math.isfinite(h["loss"]) for h in history)


def test_seed_changes_the_shuffle_and_limit_is_respected():
    x, y = _separable(n=200)
    runs = {}
    for seed in (0, 1):
        model = _mlp()
        train_model(model, x, y, TrainConfig(epochs=1, batch_size=20, lr=1e-2, seed=seed,
                                             optimizer="sgd"), progress=False)
        runs[seed] = model[1].weight.detach().clone()
    assert not torch.equal(runs[0], runs[1])
    limited, sliced = _mlp(), _mlp()
    train_model(limited, x, y, TrainConfig(epochs=2, batch_size=8, limit=30), progress=False)
    train_model(sliced, x[:30], y[:30], TrainConfig(epochs=2, batch_size=8), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(limited.parameters(), sliced.parameters()))


def test_progress_bar_runs(capsys):
    x, y = _separable(n=40)
    history = train_model(_mlp(), x, y, TrainConfig(epochs=1, batch_size=16), progress=True)
    assert len(history) == 1
    assert "natural epoch 1/1" in capsys.readouterr().out


def test_trainer_rejects_bad_data():
    model = _mlp()
    with pytest.raises(UserError):
        train_model(model, torch.rand(10, 1, 20), torch.zeros(9, dtype=torch.long),
                    TrainConfig(epochs=1), progress=False)
    with pytest.raises(UserError):
        train_model(model, torch.rand(10, 1, 20), torch.rand(10), TrainConfig(epochs=1),
                    progress=False)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does():
    """Stop after epoch 2 of 4 (the state is all a restart gets), resume: same weights."""
    xs, ys = _separable(n=300)
    cfg = TrainConfig(method="madry+nbc", epochs=4, batch_size=64, lr=1e-2, eps=0.05,
                      pgd_steps=2, nbc_k=2, lr_schedule="cosine", val_split=0.2)
    full = _mlp(seed=1)
    h_full = train_model(full, xs, ys, cfg, progress=False)

    states = []
    first = _mlp(seed=1)

    class Stop(Exception):
        pass

    def keep(state):
        states.append(state)
        if state.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_model(first, xs, ys, cfg, progress=False, on_state=keep)
    torch.manual_seed(123)  # the restart's own global RNG state must not matter
    resumed = _mlp(seed=7)  # nor its initial weights
    h_res = train_model(resumed, xs, ys, cfg, progress=False, resume=states[-1])
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in h_full] == [h["loss"] for h in h_res]
    assert all("val_acc" in h for h in h_res)


def test_lr_schedules_and_validation_split():
    xs, ys = _separable(n=200)
    for schedule, last in (("constant", 1e-2), ("step", 1e-4)):
        cfg = TrainConfig(epochs=4, batch_size=50, lr=1e-2, lr_schedule=schedule,
                          val_split=0.25)
        h = train_model(_mlp(), xs, ys, cfg, progress=False)
        assert h[-1]["lr"] == pytest.approx(last)
        assert 0 <= h[-1]["val_acc"] <= 1
    with pytest.raises(UserError):
        TrainConfig(val_split=1.0)
    with pytest.raises(UserError):
        TrainConfig(lr_schedule="warp")


def test_augmentation_crops_and_flips_within_the_padding():
    from verifriend.train.trainer import augment_batch

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = augment_batch(x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(0))
    assert out.shape == (100, 3, 8, 8)
    # every output pixel is zero padding or a pixel of the same image and channel
    for i in range(0, 100, 7):
        src = x[i % 2]
        for c in range(3):
            vals = set(out[i, c].flatten().tolist()) - {0.0}
            assert vals <= set(src[c].flatten().tolist())
    # both flips and several offsets occur
    assert len({tuple(o[0, 4].tolist()) for o in out[::2]}) > 5


def test_method_sums_and_their_weights():
    cfg = TrainConfig(method="madry+nbc", method_weights=[1.0, 0.5])
    assert cfg.methods == ["madry", "nbc"]
    for bad in ({"method": "madry+magic"}, {"method": "madry+nbc", "method_weights": [1.0]},
                {"method": "nbc", "method_weights": [-1.0]}):
        with pytest.raises(UserError):
            TrainConfig.from_dict(bad)


def test_accuracy_band_stops_fine_tuning_and_a_resume_stays_stopped():
    from verifriend.train.trainer import TrainState

    xs, ys = _separable(n=200)
    cfg = TrainConfig(epochs=5, batch_size=50, lr=1e-2, val_split=0.25, stop_acc_band=[0.0, 1.0])
    states: list[TrainState] = []
    h = train_model(_mlp(), xs, ys, cfg, progress=False, on_state=states.append)
    assert len(h) == 1 and h[0]["stopped"] and h[0]["in_band"]
    assert states[-1].stopped
    again = train_model(_mlp(), xs, ys, cfg, progress=False, resume=states[-1])
    assert len(again) == 1
    # a band never reached: all epochs run
    never = TrainConfig(epochs=2, batch_size=50, lr=1e-2, val_split=0.25,
                        stop_acc_band=[0.0, 0.0])
    assert len(train_model(_mlp(), xs, ys, never, progress=False)) == 2


def test_eps_ramp_grows_the_training_radius_from_zero():
    """eps_ramp: at the start the attack-based losses see radius 0 (Madry's loss is the
    clean CE), after the ramp the full eps (the same loss as without a ramp)."""
    from verifriend.train.losses import loss_for

    model = _mlp()
    x, y = torch.rand(16, 1, 20), torch.randint(0, 3, (16,))
    ramped = TrainConfig(method="madry", eps=0.3, eps_ramp=0.5)
    fixed = TrainConfig(method="madry", eps=0.3)
    start, _ = loss_for(ramped)(model, x, y, ramped, generator=torch.Generator().manual_seed(1),
                                progress=0.0)
    assert torch.allclose(start, F.cross_entropy(model(x), y))
    late, _ = loss_for(ramped)(model, x, y, ramped, generator=torch.Generator().manual_seed(1),
                               progress=0.6)
    full, _ = loss_for(fixed)(model, x, y, fixed, generator=torch.Generator().manual_seed(1),
                              progress=0.6)
    assert torch.allclose(late, full) and late > start
    with pytest.raises(UserError):
        TrainConfig(eps_ramp=1.5)
