"""Graph IR: conversion from nn.Module, forward equivalence, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.ops import AddNode, AffineNode, ReLUNode
from verifriend.errors import UnsupportedLayerError, UserError
from verifriend.models.layers import Normalize, Residual


def random_bn(cls, n: int, gen: torch.Generator) -> nn.Module:
    """A batch norm layer with random running stats and affine parameters."""
    bn = cls(n)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=gen))
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return bn


ALL_KINDS = ("conv", "conv", "relu", "bn", "avg", "max", "res")


@st.composite
def networks(draw, max_conv_layers: int = 4, max_fc_layers: int = 3, kinds=ALL_KINDS):
    """A random small nn.Sequential over every supported layer kind, and its input shape.

    Returns (module, input_shape). Weights come from a seeded torch generator.
    """
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    ch = draw(st.integers(1, 2))
    hw = draw(st.integers(4, 7))
    input_shape = (ch, hw, hw)
    layers: list[nn.Module] = []
    if draw(st.booleans()):
        layers.append(Normalize([0.3] * ch, [0.7] * ch))
    for _ in range(draw(st.integers(0, max_conv_layers))):
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            k = draw(st.integers(1, min(3, hw)))
            s = draw(st.integers(1, 2))
            p = draw(st.integers(0, k // 2 + 1)) if k > 1 else 0
            d = 2 if k > 1 and 2 * (k - 1) < hw + 2 * p and draw(st.booleans()) else 1
            out = draw(st.integers(1, 3))
            layers.append(nn.Conv2d(ch, out, k, s, p, d, bias=draw(st.booleans())))
            ch, hw = out, (hw + 2 * p - d * (k - 1) - 1) // s + 1
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "bn":
            layers.append(random_bn(nn.BatchNorm2d, ch, gen))
        elif kind in ("avg", "max") and hw >= 2:
            s = draw(st.integers(1, 2))
            p = draw(st.integers(0, 1))
            cls = nn.AvgPool2d if kind == "avg" else nn.MaxPool2d
            layers.append(cls(2, s, p))
            hw = (hw + 2 * p - 2) // s + 1
        elif kind == "res":
            main = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1))
            if draw(st.booleans()):
                out = draw(st.integers(1, 3))
                main[2] = nn.Conv2d(ch, out, 3, 1, 1)
                shortcut = nn.Sequential(nn.Conv2d(ch, out, 1))
                ch = out
            else:
                shortcut = None
            layers += [Residual(main, shortcut), nn.ReLU()]
    layers.append(nn.Flatten())
    n = ch * hw * hw
    for _ in range(draw(st.integers(0, max_fc_layers))):
        out = draw(st.integers(2, 8))
        layers.append(nn.Linear(n, out))
        if draw(st.booleans()):
            layers.append(random_bn(nn.BatchNorm1d, out, gen))
        layers.append(nn.ReLU())
        n = out
    layers.append(nn.Linear(n, draw(st.integers(1, 4))))
    net = nn.Sequential(*layers)
    with torch.no_grad():  # deterministic weights; BN stats were drawn above
        for mod in net.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) / fan_in**0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.1)
    return net.eval(), input_shape


@settings(max_examples=60, deadline=None)
@given(networks())
def test_forward_matches_module(case):
    net, shape = case
    graph = from_module(net, shape)
    x = torch.rand(16, *shape)
    with torch.no_grad():
        want = net(x)
        got = graph.forward(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # forward_all ends with the output and has one value per node
    outs = graph.forward_all(x)
    assert len(outs) == len(graph.nodes)
    assert all(tuple(v.shape[1:]) == n.shape for v, n in zip(outs, graph.nodes))


def test_residual_becomes_add_and_nested_sequential_flattens():
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()),
        Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1)), None),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Identity(),
        nn.Linear(2 * 5 * 5, 3),
    )
    graph = from_module(net, (1, 5, 5))
    kinds = [type(n).__name__ for n in graph.nodes]
    assert kinds == [
        "InputNode", "Conv2dNode", "ReLUNode", "Conv2dNode", "AddNode",
        "ReLUNode", "FlattenNode", "LinearNode",
    ]  # fmt: skip
    add = graph.nodes[4]
    assert isinstance(add, AddNode) and add.inputs == (3, 2)  # main branch, identity shortcut
    assert graph.relu_nodes() == [2, 5]
    assert graph.output_shape == (3,) and graph.num_outputs == 3
    assert graph.nodes[1].name == "0.0" and graph.nodes[3].name == "1.main.0"
    net.train()  # dropout and BN must still follow eval semantics in the graph
    x = torch.rand(4, 1, 5, 5)
    assert torch.allclose(graph(x), net.eval()(x), atol=1e-6)


def test_batchnorm_uses_running_stats_even_in_train_mode():
    gen = torch.Generator().manual_seed(0)
    bn = random_bn(nn.BatchNorm2d, 3, gen)
    net = nn.Sequential(bn).train()
    graph = from_module(net, (3, 4, 4))
    assert isinstance(graph.nodes[1], AffineNode)
    x = torch.rand(8, 3, 4, 4)
    assert torch.allclose(graph(x), net.eval()(x), atol=1e-6)


def test_graph_is_a_detached_snapshot():
    net = nn.Sequential(nn.Linear(3, 2))
    graph = from_module(net, (3,))
    assert not graph.nodes[1].weight.requires_grad
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.allclose(graph.nodes[1].weight, net[0].weight)
    live = from_module(net, (3,), detach=False)
    live(torch.rand(2, 3)).sum().backward()
    assert net[0].weight.grad is not None


def test_to_float64_matches_double_module():
    torch.manual_seed(0)
    net = nn.Sequential(
        Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16, 5),
    )  # fmt: skip
    graph = from_module(net, (1, 8, 8)).to(dtype=torch.float64)
    assert graph.dtype == torch.float64
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(graph(x), net.double()(x), atol=1e-12)


@pytest.mark.parametrize(
    "net, shape, fragment",
    [
        (nn.Sequential(nn.Linear(2, 3), nn.Softplus()), (2,), "layer '1' (Softplus)"),
        (nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ELU())), (2,), "layer '0.1' (ELU)"),
        (nn.Sequential(nn.Conv2d(2, 2, 1, groups=2)), (2, 3, 3), "groups=2"),
        (nn.Sequential(nn.Flatten(0)), (2, 3, 3), "Flatten"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), (1, 5, 5), "MaxPool2d"),
        (nn.GELU(), (3,), "(GELU)"),
    ],
)
def test_unsupported_layers_are_named(net, shape, fragment):
    with pytest.raises(UnsupportedLayerError) as err:
        from_module(net, shape)
    assert fragment in str(err.value)
    assert "not supported" in str(err.value)


def test_sigmoid_and_tanh_modules_convert():
    from verifriend.bounds.crown import crown
    from verifriend.bounds.ops.s_shaped import SigmoidNode, TanhNode

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Sigmoid(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    graph = from_module(net, (3,))
    kinds = [type(n) for n in graph.nodes]
    assert SigmoidNode in kinds and TanhNode in kinds
    x = torch.rand(4, 3)
    assert torch.allclose(graph(x), net(x), atol=1e-6)
    b = crown(graph, x - 0.1, x + 0.1)
    pts = x.unsqueeze(1) + 0.1 * (2 * torch.rand(4, 2000, 3) - 1)
    vals = net(pts)
    assert torch.all(vals.amin(1) >= b.lower - 1e-5) and torch.all(vals.amax(1) <= b.upper + 1e-5)


def test_shape_mistakes_are_user_errors():
    with pytest.raises(UserError, match="Linear"):
        from_module(nn.Sequential(nn.Linear(4, 2)), (1, 2, 2))  # needs a Flatten
    with pytest.raises(UserError):
        from_module(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 5, 5))
    graph = from_module(nn.Sequential(nn.ReLU()), (3,))
    assert isinstance(graph.nodes[-1], ReLUNode)
    with pytest.raises(UserError):
        graph.forward(torch.zeros(2, 4))
