"""BNN training: PGD, adaptive gradient cancelling, CBD, BinMask decay, digits accuracy."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from verifriend.bnn.export import bound_stats, cardinality_bounds, export_integer
from verifriend.bnn.network import BNN, BNNSpec, recompute_batchnorm
from verifriend.bnn.train import (
    BNNTrainConfig,
    apply_sparse_decay,
    cbd_loss,
    evaluate,
    load_digits_data,
    pgd_attack,
    train_bnn,
)
from verifriend.errors import UserError


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared machine two threads are many times slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _small(seed: int = 0, **kw) -> BNN:
    return BNN(BNNSpec([100, 50, 10], input_shape=(1, 8, 8), step=1 / 16, **kw), seed=seed)


def test_digits_bnn_trains(digits) -> None:
    xtr, ytr, xte, yte = digits
    assert xtr.shape[1:] == (1, 8, 8) and float(xtr.max()) == 1.0 and len(xte) == 359
    model = BNN(BNNSpec("digits"))
    t0 = time.perf_counter()
    hist = train_bnn(model, (xtr, ytr), BNNTrainConfig(epochs=6), progress=False)
    took = time.perf_counter() - t0
    acc = evaluate(model, xte, yte)
    net = export_integer(model)
    int_acc = float((net.predict(net.quantize(xte.numpy())) == yte.numpy()).mean())
    print(f"digits BNN: {took:.1f} s, test accuracy {acc:.4f} (integer form {int_acc:.4f})")
    assert len(hist) == 6 and hist[-1]["train_acc"] > 0.9
    assert acc >= 0.9 and int_acc == acc


def test_training_is_deterministic(digits) -> None:
    xtr, ytr, *_ = digits
    cfg = BNNTrainConfig(epochs=2, limit=256, batch_size=64, eps=0.05, pgd_steps=2,
                         alpha_batches=2, cbd=1e-3, mask_decay=1e-4)
    states = []
    for _ in range(2):
        model = _small()
        hist = train_bnn(model, (xtr, ytr), cfg, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # the attack ramped in, and alpha was chosen at the start of epoch 2
    assert hist[0]["eps"] > 0 and "alpha_scores" not in hist[0]
    scores = hist[1]["alpha_scores"]
    assert len(scores) == 7 and hist[1]["alpha"] in cfg.alpha_candidates
    assert scores[str(hist[1]["alpha"])] == max(scores.values())


def test_pgd_stays_in_ball(digits) -> None:
    xtr, ytr, *_ = digits
    model = _small()
    model.eval()
    x, y = xtr[:64], ytr[:64]
    adv = pgd_attack(model, x, y, 0.1, 5, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)
    # the attack, through the STEs, hurts more than random noise of the same size
    noise = (x + (torch.rand(x.shape) * 0.2 - 0.1)).clamp(0, 1)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy
        assert loss(model(adv), y) > loss(model(noise), y)


def test_mask_decay_raises_sparsity(digits) -> None:
    xtr, ytr, *_ = digits
    sparsity = {}
    for decay in (0.0, 3e-4):
        model = _small()
        train_bnn(model, (xtr, ytr), BNNTrainConfig(epochs=3, mask_decay=decay),
                  progress=False)
        sparsity[decay] = model.sparsity()["total"]
    print(f"BinMask sparsity without / with decay: {sparsity}")
    assert sparsity[3e-4] > sparsity[0.0] + 0.2


def test_sparse_decay_only_on_positive_masks() -> None:
    model = _small()
    with torch.no_grad():
        for m in model.mask_parameters():
            m[::2] = -m[::2]
    apply_sparse_decay(model, 0.5)
    for m in model.mask_parameters():
        assert torch.equal(m.grad, 0.5 * (m > 0).float())
    tern = _small(sparsity="ternary")
    apply_sparse_decay(tern, 0.5)
    for layer in tern.bin_layers():
        assert torch.equal(layer.weight.grad, 0.5 * layer.binary_weight().detach())


@pytest.mark.parametrize("spec", [
    BNNSpec([60, 40, 10], input_shape=(1, 8, 8), step=0.25),
    BNNSpec("conv-small", input_shape=(1, 12, 12), step=0.5),
], ids=["mlp", "conv"])
def test_surrogate_bound_tracks_exact_bound(spec) -> None:
    """In eval mode the surrogate is the exact bound without its ceiling: exact - soft in
    [0, 1) wherever the threshold lies inside the attainable range."""
    model = BNN(spec, seed=1)
    x = torch.rand(300, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in model.batchnorms():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g))
    recompute_batchnorm(model, x)
    net = export_integer(model)
    for block, layer, exact in zip(model.blocks, net.layers, cardinality_bounds(net),
                                   strict=True):
        with torch.no_grad():
            soft = block.soft_bounds().double().numpy()
        lits = block.top * np.diff(layer.weight.indptr)
        inside = (exact > 0) & (exact <= lits) & (np.repeat(
            block.bn.weight.detach().abs().numpy(), len(exact) // block.bn.num_features) > 1e-3)
        assert inside.sum() > len(exact) // 4
        diff = exact[inside] - soft[inside]
        assert (diff > -1e-3).all() and (diff < 1 + 1e-3).all()


def test_cbd_lowers_cardinality_bounds(digits) -> None:
    xtr, ytr, xte, yte = digits
    result = {}
    for eta in (0.0, 3e-3):
        model = _small()
        hist = train_bnn(model, (xtr, ytr), BNNTrainConfig(epochs=4, cbd=eta),
                         progress=False)
        stats = bound_stats(export_integer(model))
        result[eta] = (stats["mean_after_first"], evaluate(model, xte, yte))
        if eta:
            assert hist[-1]["cbd"] < hist[0]["cbd"]
            with torch.no_grad():
                model.train()
                model(xtr[:500])
                assert float(cbd_loss(model, 5.0)) >= 0
    print(f"mean bound after the first layer, test accuracy (cbd 0 / 3e-3): {result}")
    assert result[3e-3][0] < 0.5 * result[0.0][0]
    assert result[3e-3][1] > 0.85


def test_bad_training_data() -> None:
    model = _small()
    with pytest.raises(UserError, match="shape"):
        train_bnn(model, (torch.rand(10, 1, 9, 9), torch.zeros(10, dtype=torch.long)),
                  progress=False)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        train_bnn(model, (torch.rand(10, 1, 8, 8) * 2, torch.zeros(10, dtype=torch.long)),
                  progress=False)
    with pytest.raises(UserError):
        BNNTrainConfig(lr_schedule="step")


def test_verifier_examples_are_real_and_used_in_training():
    from verifriend.bnn.verify import find_attacks

    xtr, ytr, _, _ = load_digits_data()
    model = BNN(BNNSpec([40, 10], input_shape=(1, 8, 8), step=1 / 16), seed=0)
    cfg = BNNTrainConfig(epochs=2, eps=0.1, pgd_steps=2, verifier_epochs=1, verifier_images=120,
                         verifier_time=1.0, alpha_batches=2, limit=400)
    history = train_bnn(model, (xtr, ytr), cfg, progress=False)
    assert "verifier" not in history[0]
    v = history[1]["verifier"]
    assert 0 < v["attacks"] <= v["pgd_held"] <= 120
    # what the verifier returns: inputs in the ball that the exact network gets wrong
    net = export_integer(model)
    x, y = xtr[:40].numpy().astype(np.float64), ytr[:40].numpy()
    found = find_attacks(net, x, y, 0.1, time_limit=0.5)  # some queries of this net are hard
    assert found
    for i, adv in found.items():
        assert np.abs(adv - x[i]).max() <= 0.1 + 1e-12 and 0 <= adv.min() and adv.max() <= 1
        assert net.misclassified(net.quantize(adv), int(y[i]))
        assert not net.misclassified(net.quantize(x[i]), int(y[i]))
