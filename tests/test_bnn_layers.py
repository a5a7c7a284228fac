"""Binarized layers, their STEs, and the exactness of the integer export."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from verifriend.app.artifacts import save_bnn
from verifriend.bnn.export import (
    bound_stats,
    cardinality_bounds,
    export_integer,
    fold_threshold,
    load_bnn,
)
from verifriend.bnn.integer import IntBNN
from verifriend.bnn.layers import BinConv2d, BinLinear, InputQuant, step01
from verifriend.bnn.network import BNN, BNNSpec, recompute_batchnorm
from verifriend.errors import UserError


def _inputs(spec: BNNSpec, n: int, seed: int) -> torch.Tensor:
    """Pixels k/255 (as MNIST stores them), exact level edges j*step, 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, *spec.input_shape)
    x = torch.randint(0, 256, shape, generator=g).float() / 255
    levels = math.floor(1 / spec.step + 1e-9)
    edges = torch.randint(0, levels + 1, shape, generator=g).float() * spec.step
    pick = torch.rand(shape, generator=g)
    x = torch.where(pick < 0.3, edges.clamp(max=1), x)
    x = torch.where(pick > 0.95, torch.ones(()), x)
    return torch.where(pick > 0.9, torch.zeros(()), x)


def _randomize(model: BNN, x: torch.Tensor, seed: int) -> None:
    """Random weights and masks; BatchNorm statistics near the real ones, random gammas with
    negative and zero ones, random betas."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.bin_layers():
            m.weight.copy_(torch.randn(m.weight.shape, generator=g))
            if m.mask is not None:
                m.mask.copy_(torch.randn(m.mask.shape, generator=g))
        for bn in model.batchnorms():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            if bn.weight.numel() > 2:
                bn.weight[::4] = 0.0
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.7)
    recompute_batchnorm(model, x)
    with torch.no_grad():
        for bn in model.batchnorms():
            sd = bn.running_var.sqrt()
            bn.running_mean.add_(torch.randn(bn.running_mean.shape, generator=g) * 0.3 * sd)
            bn.running_var.mul_(torch.rand(bn.running_var.shape, generator=g) * 1.5 + 0.5)
            bn.running_var.clamp_(min=1e-3)


SPECS = [
    BNNSpec([40, 30, 10], input_shape=(1, 8, 8), step=1 / 16),
    BNNSpec("mlp", step=0.1),
    BNNSpec("conv-small", step=0.25),
    BNNSpec("conv-small", input_shape=(3, 12, 12), step=1 / 3, sparsity="ternary",
            ternary_threshold=0.5),
    BNNSpec("conv-large", input_shape=(2, 8, 8), step=0.5, sparsity="none"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arch}-{s.sparsity}")
def test_export_matches_torch(spec: BNNSpec) -> None:
    model = BNN(spec, seed=3)
    _randomize(model, _inputs(spec, 200, 1), seed=4)
    model.eval()
    net = export_integer(model)
    assert isinstance(net, IntBNN) and net.levels == model.levels and net.step == model.step
    x = _inputs(spec, 300, 2)
    q = net.quantize(x.numpy())
    assert np.array_equal(q, model.quant(x).flatten(1).numpy().astype(np.int64))
    # hidden activations: identical bit for bit, layer by layer
    a = q
    for layer, h in zip(net.layers, model.hidden(x), strict=True):
        a = layer.forward(a)
        assert np.array_equal(a, h.numpy().astype(np.int64))
    # some neurons are constant (gamma 0), the rest vary
    assert any(len(np.unique(a[:, j])) > 1 for j in range(a.shape[1]))
    with torch.no_grad():
        logits = model(x).double().numpy()
    ours = net.logits(q)
    assert np.allclose(ours, logits, rtol=1e-5, atol=1e-4 * np.abs(logits).max())
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(logits).max()
    assert clear.mean() > 0.9
    assert np.array_equal(net.predict(q)[clear], logits.argmax(1)[clear])


def test_fold_threshold_exact() -> None:
    # gamma > 0: fires iff z >= ceil(mean - beta * sqrt(var + eps) / gamma)
    d, t = fold_threshold(2.0, -3.0, 1.5, 4.0 - 1e-5, 1e-5, -100, 100)
    assert (d, t) == (1, math.ceil(1.5 + 3.0))
    # gamma < 0 negates: fires iff z <= floor(theta), i.e. -z >= -floor(theta)
    d, t = fold_threshold(-2.0, -3.0, 1.5, 4.0 - 1e-5, 1e-5, -100, 100)
    assert (d, t) == (-1, -math.floor(1.5 - 3.0))
    # gamma == 0: constant
    assert fold_threshold(0.0, 0.0, 5.0, 1.0, 1e-5, -3, 3) == (0, 0)
    assert fold_threshold(0.0, -0.1, 5.0, 1.0, 1e-5, -3, 3) == (0, 1)
    # an exact tie: theta = 3 exactly fires at z = 3
    d, t = fold_threshold(1.0, -1.0, 2.0, 1.0, 0.0 + 2 ** -30, -10, 10)
    assert t == 4  # sqrt(1 + 2^-30) > 1, so theta is just above 3
    d, t = fold_threshold(1.0, -1.0, 2.0, 0.75, 0.25, -10, 10)
    assert t == 3
    # out of range: clamped to the attainable range plus one
    assert fold_threshold(1e-30, -1.0, 0.0, 1.0, 1e-5, -4, 6) == (1, 7)
    assert fold_threshold(1e-30, 1.0, 0.0, 1.0, 1e-5, -4, 6) == (1, -4)
    # against brute force on random values
    rng = np.random.default_rng(0)
    for _ in range(300):
        g, b, m = rng.normal(size=3) * [1, 3, 5]
        v = float(np.float32(rng.uniform(0.01, 20)))
        g, b, m = (float(np.float32(u)) for u in (g, b, m))
        d, t = fold_threshold(g, b, m, v, 1e-5, -20, 20)
        for z in range(-20, 21):
            y = Fraction(g) * (z - Fraction(m))
            rhs = -Fraction(b)  # fires iff y / sqrt(v + eps) >= -b
            vv = Fraction(v) + Fraction(1e-5)
            fires = y >= 0 if rhs <= 0 and y >= 0 else (
                False if rhs > 0 and y <= 0 else
                (y * y >= rhs * rhs * vv if y > 0 else y * y <= rhs * rhs * vv))
            assert fires == (d * z >= t), (g, b, m, v, z, d, t)


def test_cardinality_bounds_like_encoder() -> None:
    model = BNN(BNNSpec([20, 10, 10], input_shape=(6,), step=1 / 3), seed=1)
    _randomize(model, _inputs(model.spec, 100, 0), seed=2)
    net = export_integer(model)
    bounds = cardinality_bounds(net)
    for k, (layer, b) in enumerate(zip(net.layers, bounds, strict=True)):
        top = net.levels if k == 0 else 1
        w = layer.weight.toarray()
        assert np.array_equal(b, layer.threshold + top * (w < 0).sum(1))
    stats = bound_stats(net)
    assert len(stats["layers"]) == 2 and stats["max_after_first"] == bounds[1].max()


def test_input_quant_matches_intbnn_and_passes_gradient() -> None:
    quant = InputQuant(0.1)
    assert quant.levels == 10
    x = torch.tensor([[0.0, 0.2, 0.6, 51 / 255, 153 / 255, 0.99, 1.0]], requires_grad=True)
    q = quant(x)
    net = IntBNN((7,), 0.1, 10, [], None)  # type: ignore[arg-type]
    assert np.array_equal(q.detach().numpy().astype(np.int64), net.quantize(x.detach().numpy()))
    q.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 10.0))


def test_gradient_cancelling_matches_autograd() -> None:
    y = torch.linspace(-3, 3, 101, requires_grad=True)
    g = torch.randn(101, generator=torch.Generator().manual_seed(0))
    for alpha in (0.6, 1.0, 3.0):
        out = step01(y, alpha)
        assert torch.equal(out, (y >= 0).float())
        (ours,) = torch.autograd.grad((out * g).sum(), y)
        (ref,) = torch.autograd.grad((torch.tanh(alpha * y) / alpha * g).sum(), y)
        assert torch.allclose(ours, ref, atol=1e-6)
        assert torch.allclose(ours, (1 - torch.tanh(alpha * y) ** 2) * g, atol=1e-6)
    model = BNN(BNNSpec([8, 4], input_shape=(3,)))
    model.set_alpha(2.2)
    assert model.alpha == 2.2 and all(b.act.alpha == 2.2 for b in model.blocks)


def test_binary_weights() -> None:
    lin = BinLinear(50, 40)
    w = lin.binary_weight()
    assert set(w.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert lin.mask is not None and (lin.mask > 0).all()  # |N(0, 0.01)|: every mask on
    assert (w != 0).all()
    with torch.no_grad():
        lin.mask[:10] = -0.1
        lin.mask[10:12] = 0.0  # exactly 0 counts as off
    w = lin.binary_weight()
    assert (w[:12] == 0).all() and (w[12:] != 0).all()
    w.sum().backward()  # straight through to both latent tensors
    assert lin.weight.grad is not None and lin.mask.grad is not None
    tern = BinConv2d(2, 3, 3, sparsity="ternary", threshold=0.01)
    with torch.no_grad():
        tern.weight.copy_(torch.linspace(-0.02, 0.02, tern.weight.numel()).view_as(tern.weight))
    wt = tern.binary_weight()
    assert torch.equal(wt, torch.sign(tern.weight) * (tern.weight.abs() >= 0.01))
    with pytest.raises(UserError):
        BinLinear(3, 3, sparsity="dense")


def test_specs() -> None:
    assert [k for k, *_ in BNNSpec("conv-large").layers] == ["conv"] * 4 + ["fc"] * 3
    d = BNNSpec("digits")
    assert d.input_shape == (1, 8, 8) and d.step == 1 / 16
    m = BNN(BNNSpec("conv-small"))
    assert [b.out_shape for b in m.blocks] == [(16, 14, 14), (32, 7, 7), (100,)]
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert BNNSpec.from_dict(BNNSpec([5, 3], input_shape=(4,), num_classes=3).to_dict()).layers \
        == [("fc", 5), ("fc", 3)]
    with pytest.raises(UserError):
        BNNSpec("resnet")
    with pytest.raises(UserError):
        BNNSpec("conv-small", input_shape=(784,))


def test_recompute_batchnorm_exact() -> None:
    model = BNN(BNNSpec([7, 5, 3], input_shape=(4,), num_classes=3, step=0.25))
    x = torch.rand(250, 4, generator=torch.Generator().manual_seed(0))
    recompute_batchnorm(model, x, batch_size=64)
    z = model.blocks[0].layer(model.quant(x)).detach().double()
    assert torch.allclose(model.blocks[0].bn.running_mean.double(), z.mean(0), atol=1e-5)
    assert torch.allclose(model.blocks[0].bn.running_var.double(), z.var(0, unbiased=False),
                          atol=1e-4)
    assert not model.training


def test_save_load_roundtrip(tmp_path) -> None:
    model = BNN(BNNSpec("conv-small", input_shape=(1, 12, 12)), seed=5)
    _randomize(model, _inputs(model.spec, 50, 0), seed=6)
    model.set_alpha(1.8)
    path = save_bnn(model, tmp_path / "m.pt", meta={"acc": 0.5})
    back = load_bnn(path)
    assert back.alpha == 1.8 and back.meta == {"acc": 0.5}
    x = _inputs(model.spec, 20, 1)
    model.eval()
    assert torch.equal(back(x), model(x))
    with pytest.raises(UserError, match="does not exist"):
        load_bnn(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(UserError, match="not a BNN file"):
        load_bnn(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a BNN file"):
        load_bnn(tmp_path / "other.pt")
    blob = torch.load(path, weights_only=True)
    blob["state"].pop("output.bn.bias")
    torch.save(blob, tmp_path / "damaged.pt")
    with pytest.raises(UserError, match="damaged"):
        load_bnn(tmp_path / "damaged.pt")
