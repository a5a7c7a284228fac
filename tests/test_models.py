"""Model zoo shapes against the papers' layer lists, checkpoints and ONNX export."""

import os
import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from verifriend.app.artifacts import export_onnx, save_model
from verifriend.errors import UserError
from verifriend.models import (
    Normalize,
    Residual,
    build_model,
    describe_architecture,
    list_architectures,
    load_model,
)
from verifriend.models import io as model_io

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
CASES = [
    ("cnn_4layer", MNIST), ("cnn_4layer", CIFAR), ("relu_stable", MNIST),
    ("conv_big", MNIST), ("conv_big", CIFAR), ("marabou_medium", CIFAR),
    ("marabou_large", CIFAR), ("conv_small", MNIST), ("conv_small", CIFAR),
    ("conv_large", CIFAR), ("fc_2x50", MNIST), ("fc_8x200", CIFAR), ("resnet6", CIFAR),
]
VOCABULARY = (Normalize, nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten, nn.BatchNorm1d,
              nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d, Residual)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _lin(i: int, o: int) -> int:
    return i * o + o


def _conv(i: int, o: int, k: int, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def _assert_vocabulary(seq: nn.Sequential) -> None:
    for layer in seq:
        assert isinstance(layer, VOCABULARY), type(layer)
        if isinstance(layer, Residual):
            _assert_vocabulary(layer.main)
            _assert_vocabulary(layer.shortcut)


def _with_bn_statistics(model: nn.Sequential, shape) -> nn.Sequential:
    """Give BatchNorm layers non-trivial running statistics, so exports and round trips
    are checked with buffers that matter."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model.train()
        with torch.no_grad():
            model(torch.rand(8, *shape))
    return model.eval()


# ---------------------------------------------------------------- zoo

@pytest.mark.parametrize("arch,shape", CASES)
def test_every_architecture_builds_and_classifies(arch, shape):
    model = build_model(arch, shape, 10, [0.4] * shape[0], [0.3] * shape[0])
    assert isinstance(model, nn.Sequential) and isinstance(model[0], Normalize)
    _assert_vocabulary(model)
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    assert build_model(arch, shape, num_classes=3)(torch.rand(2, *shape)).shape == (2, 3)


def test_parameter_counts_match_the_papers_layer_lists():
    # alpha-beta-CROWN mnist_cnn_4layer / cnn_4layer (cifar_model_wide)
    assert _n_params(build_model("cnn_4layer", MNIST)) == (
        _conv(1, 16, 4) + _conv(16, 32, 4) + _lin(1568, 100) + _lin(100, 10))
    assert _n_params(build_model("cnn_4layer", CIFAR)) == (
        _conv(3, 16, 4) + _conv(16, 32, 4) + _lin(32 * 8 * 8, 100) + _lin(100, 10))
    # MadryLab/relu_stable: filters [16, 32, 100], 5x5, stride 2, 'SAME'
    assert _n_params(build_model("relu_stable", MNIST)) == (
        _conv(1, 16, 5) + _conv(16, 32, 5) + _lin(32 * 7 * 7, 100) + _lin(100, 10))
    big = _conv(32, 32, 4) + _conv(32, 64, 3) + _conv(64, 64, 4) + _lin(512, 512) + _lin(512, 10)
    assert _n_params(build_model("conv_big", MNIST)) == _conv(1, 32, 3) + _lin(3136, 512) + big
    assert _n_params(build_model("conv_big", CIFAR)) == _conv(3, 32, 3) + _lin(4096, 512) + big
    assert _n_params(build_model("conv_large", CIFAR)) == _conv(3, 32, 3) + _lin(4096, 512) + big
    head = _lin(128, 64) + _lin(64, 10)
    assert _n_params(build_model("marabou_medium", CIFAR)) == (
        _conv(3, 16, 4) + _conv(16, 32, 4) + _lin(1152, 128) + head)
    assert _n_params(build_model("marabou_large", CIFAR)) == (
        _conv(3, 32, 4) + _conv(32, 64, 4) + _lin(2304, 128) + head)
    assert _n_params(build_model("fc_2x50", MNIST)) == _lin(784, 50) + _lin(50, 50) + _lin(50, 10)
    assert _n_params(build_model("fc_8x200", CIFAR)) == (
        _lin(3072, 200) + 7 * _lin(200, 200) + _lin(200, 10))
    # MN-BaB resnet2b2(bn=True): bias-free convs, each followed by BatchNorm (2 params/channel)
    block1 = _conv(16, 32, 3, False) + _conv(32, 32, 3, False) + _conv(16, 32, 1, False) + 3 * 64
    block2 = _conv(32, 64, 3, False) + _conv(64, 64, 3, False) + _conv(32, 64, 1, False) + 3 * 128
    assert _n_params(build_model("resnet6", CIFAR)) == (
        _conv(3, 16, 3, False) + 32 + block1 + block2 + _lin(64 * 4 * 4, 100) + _lin(100, 10))


def test_layer_geometry_of_conv_big_and_relu_stable():
    def convs(model):
        return [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
                for m in model.modules() if isinstance(m, nn.Conv2d)]

    assert convs(build_model("conv_big", CIFAR)) == [(32, 3, 1, 1), (32, 4, 2, 1),
                                                      (64, 3, 1, 1), (64, 4, 2, 1)]
    assert convs(build_model("relu_stable", MNIST)) == [(16, 5, 2, 2), (32, 5, 2, 2)]
    assert convs(build_model("marabou_large", CIFAR)) == [(32, 4, 2, 0), (64, 4, 2, 0)]
    resnet = build_model("resnet6", CIFAR)
    assert sum(isinstance(m, Residual) for m in resnet) == 2
    # a ReLU follows every residual sum
    assert all(isinstance(resnet[i + 1], nn.ReLU) for i, m in enumerate(resnet)
               if isinstance(m, Residual))


def test_normalize_is_the_first_layer_and_uses_mean_and_std():
    model = build_model("fc_1x4", CIFAR, 10, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = torch.rand(2, *CIFAR)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(model[0](x), expected)


@pytest.mark.parametrize("kwargs,match", [
    ({"arch": "cnn_4layr"}, "cnn_4layer"),
    ({"arch": "lenet"}, "known"),
    ({"arch": "fc_2x"}, "fc_<L>x<W>"),
    ({"arch": "fc_0x50"}, "hidden layer"),
    ({"arch": "fc_2x0"}, "hidden layer"),
    ({"arch": "marabou_medium", "input_shape": MNIST}, "3x32x32"),
    ({"arch": "resnet6", "input_shape": MNIST}, "3x32x32"),
    ({"arch": "relu_stable", "input_shape": CIFAR}, "1x28x28"),
    ({"arch": "conv_big", "input_shape": (1, 2, 2)}, "too small"),
    ({"arch": "cnn_4layer", "input_shape": (28, 28)}, "input_shape"),
    ({"arch": "cnn_4layer", "num_classes": 1}, "num_classes"),
    ({"arch": "cnn_4layer", "mean": (0.1, 0.2)}, "one value per channel"),
    ({"arch": "cnn_4layer", "std": (0.0,)}, "positive"),
    ({"arch": "cnn_4layer", "mean": (float("nan"),)}, "finite"),
])
def test_bad_requests_raise_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        build_model(**kwargs)


def test_listing_and_descriptions():
    names = list_architectures()
    for name in ["cnn_4layer", "relu_stable", "conv_big", "marabou_medium", "marabou_large",
                 "conv_small", "conv_large", "resnet6", "fc_<L>x<W>"]:
        assert name in names
        text = describe_architecture(name)
        assert text and "\n" not in text
    assert "3 hidden" in describe_architecture("fc_3x20")
    assert "width 20" in describe_architecture("fc_3x20")
    with pytest.raises(UserError):
        describe_architecture("vgg16")


# ---------------------------------------------------------------- checkpoints

def _meta(arch="resnet6", shape=CIFAR):
    mean, std = ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)) if shape == CIFAR else ((0.13,), (0.31,))
    return {"arch": arch, "input_shape": shape, "num_classes": 10, "dataset": "cifar10",
            "mean": mean, "std": std, "config": {"method": "nbc", "eps": 0.01, "layers": (1, 2)},
            "metrics": {"history": [{"epoch": 1, "loss": np.float32(0.5)}]}}


def test_save_load_round_trip_keeps_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    meta = _meta()
    model = _with_bn_statistics(build_model("resnet6", CIFAR, 10, meta["mean"], meta["std"]),
                                CIFAR)
    path = tmp_path / "model.pt"
    save_model(model, path, **meta)
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left behind

    loaded, got = load_model(path)
    assert not loaded.training
    x = torch.rand(4, *CIFAR)
    assert torch.equal(loaded(x), model(x))
    assert got == {"arch": "resnet6", "input_shape": CIFAR, "num_classes": 10,
                   "dataset": "cifar10", "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26],
                   "config": {"method": "nbc", "eps": 0.01, "layers": [1, 2]},
                   "metrics": {"history": [{"epoch": 1, "loss": 0.5}]}}
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["format"] == "verifriend-model" and raw["version"] == 1


def test_save_rejects_weights_of_another_architecture(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        save_model(build_model("fc_1x8", MNIST), tmp_path / "m.pt", **_meta("fc_1x9", MNIST))
    assert not list(tmp_path.iterdir())


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    model = build_model("fc_1x8", MNIST)
    save_model(model, path, **_meta("fc_1x8", MNIST))
    before = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(model_io.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_model(build_model("fc_1x8", MNIST), path, **_meta("fc_1x8", MNIST))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]


def test_foreign_and_missing_files_raise_user_errors(tmp_path):
    model = build_model("fc_1x8", MNIST)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    pickled = tmp_path / "module.pt"
    with open(pickled, "wb") as f:
        pickle.dump(model, f)
    other = tmp_path / "other.pt"
    torch.save({"format": "someone-else", "state_dict": model.state_dict()}, other)
    for path in (bare, text, pickled, other, tmp_path):
        with pytest.raises(UserError, match="not a verifriend checkpoint"):
            load_model(path)
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_damaged_checkpoint_raises_user_error(tmp_path):
    path = tmp_path / "m.pt"
    save_model(build_model("fc_1x8", MNIST), path, **_meta("fc_1x8", MNIST))
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "fc_1x9"
    torch.save(payload, path)
    with pytest.raises(UserError, match="damaged"):
        load_model(path)


# ---------------------------------------------------------------- ONNX

@pytest.mark.parametrize("arch,shape", CASES)
def test_onnx_export_matches_torch(arch, shape, tmp_path):
    torch.manual_seed(1)
    model = _with_bn_statistics(
        build_model(arch, shape, 10, [0.45] * shape[0], [0.22] * shape[0]), shape)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, shape)

    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"Sub", "Div"} <= ops  # the normalization travels with the network
    assert ("Add" in ops) == (arch == "resnet6")
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["output"]

    x = torch.rand(2, *shape)  # exported with batch 1: batch 2 checks the dynamic axis
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_onnx_export_restores_training_mode(tmp_path):
    model = build_model("fc_1x8", MNIST).train()
    export_onnx(model, tmp_path / "m.onnx", MNIST)
    assert model.training
