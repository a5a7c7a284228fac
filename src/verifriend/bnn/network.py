"""The trainable binarized network: its recipe (`BNNSpec`: architecture, input, quantization,
sparsity), the `BNN` module built from `layers`, and the exact recomputation of its BatchNorm
statistics. See `layers` for the network's definition and `export` for its integer form.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from verifriend.bnn.layers import (
    DEFAULT_ALPHA,
    SPARSITY_MODES,
    BinBatchNorm,
    BinBlock,
    BinConv2d,
    BinLinear,
    BinOutput,
    CollectDone,
    InputQuant,
)
from verifriend.errors import UserError

# layer lists: ("conv", out_channels, kernel, stride, padding) or ("fc", width); the last
# ("fc", classes) is the output layer
ARCHITECTURES: dict[str, list[tuple]] = {
    "mlp": [("fc", 500), ("fc", 300), ("fc", 200), ("fc", 100), ("fc", 10)],
    "digits": [("fc", 500), ("fc", 300), ("fc", 200), ("fc", 100), ("fc", 10)],
    "conv-small": [("conv", 16, 4, 2, 1), ("conv", 32, 4, 2, 1), ("fc", 100), ("fc", 10)],
    "conv-large": [("conv", 32, 3, 1, 1), ("conv", 32, 4, 2, 1), ("conv", 64, 3, 1, 1),
                   ("conv", 64, 4, 2, 1), ("fc", 512), ("fc", 512), ("fc", 10)],
}
_DEFAULT_INPUT = {"digits": (1, 8, 8)}
_DEFAULT_STEP = {"digits": 1 / 16}


@dataclass
class BNNSpec:
    """What a `BNN` is built from (saved with it): architecture, input, quantization, sparsity.

    ``arch`` is a name in `ARCHITECTURES` or a list of fully connected widths ending with the
    number of classes (e.g. [500, 300, 200, 100, 10]). ``input_shape`` and ``step`` default per
    architecture: (1, 28, 28) and 1/4 (MNIST), digits (1, 8, 8) and 1/16 (lossless there).

    Why step 1/4 for MNIST: the encoder spends ``levels`` thermometer variables per pixel and
    the first layer's bounds grow with it, so fewer levels verify faster, and MNIST loses
    little: conv-small trained naturally on 10k images for 5 epochs reaches 95.6% test
    accuracy at steps 1/2 and 1/4 and 95.8% at 1/10 (EEV itself used 0.61, i.e. 2-3 levels,
    for its MNIST conv nets and 0.1 for its MLP). Note floor quantization: level L = 1/step is
    only reached at x = 1 exactly.
    """

    arch: str | list[int] = "mlp"
    input_shape: tuple[int, ...] | None = None
    num_classes: int = 10
    step: float | None = None
    sparsity: str = "binmask"
    ternary_threshold: float = 0.005
    bn_eps: float = 1e-5
    layers: list[tuple] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.arch, str):
            if self.arch not in ARCHITECTURES:
                raise UserError(f"Unknown BNN architecture {self.arch!r}: use one of "
                                f"{', '.join(ARCHITECTURES)} or a list of widths.")
            layers = [tuple(x) for x in ARCHITECTURES[self.arch]]
            name = self.arch
        else:
            widths = [int(w) for w in self.arch]
            if len(widths) < 2 or min(widths) < 1:
                raise UserError("A BNN needs at least one hidden width and the class count, "
                                f"all positive; got {widths}.")
            self.arch = widths
            layers = [("fc", w) for w in widths]
            name = "mlp"
        layers[-1] = ("fc", int(self.num_classes))
        self.layers = layers
        if self.input_shape is None:
            self.input_shape = _DEFAULT_INPUT.get(name, (1, 28, 28))
        self.input_shape = tuple(int(d) for d in self.input_shape)
        if self.step is None:
            self.step = _DEFAULT_STEP.get(name, 0.25)
        self.step = float(self.step)
        if any(kind == "conv" for kind, *_ in layers) and len(self.input_shape) != 3:
            raise UserError(f"A convolutional BNN needs (C, H, W) inputs, got {self.input_shape}.")
        if self.sparsity not in SPARSITY_MODES:
            raise UserError(f"Unknown sparsity mode {self.sparsity!r}: use one of "
                            f"{', '.join(SPARSITY_MODES)}.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("layers")
        d["input_shape"] = list(self.input_shape or ())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BNNSpec:
        return cls(**{k: v for k, v in d.items() if k != "layers"})


class BNN(nn.Module):
    """A binarized network built from a `BNNSpec` (see the module docstring)."""

    def __init__(self, spec: BNNSpec | None = None, seed: int = 0, **kwargs):
        super().__init__()
        spec = spec if spec is not None else BNNSpec(**kwargs)
        self.spec = spec
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.quant = InputQuant(spec.step)  # type: ignore[arg-type]
            shape: tuple[int, ...] = spec.input_shape  # type: ignore[assignment]
            blocks = []
            for i, (kind, *args) in enumerate(spec.layers[:-1]):
                top = self.quant.levels if i == 0 else 1
                if kind == "conv":
                    if len(shape) != 3:
                        raise UserError("A convolution cannot follow a fully connected layer.")
                    out, k, stride, pad = args
                    layer = BinConv2d(shape[0], out, k, stride, pad, spec.sparsity,
                                      spec.ternary_threshold)
                else:
                    layer = BinLinear(math.prod(shape), args[0], spec.sparsity,
                                      spec.ternary_threshold)
                block = BinBlock(layer, shape, top, spec.bn_eps)
                blocks.append(block)
                shape = block.out_shape
            self.blocks = nn.ModuleList(blocks)
            self.output = BinOutput(math.prod(shape), spec.num_classes, spec.sparsity,
                                    spec.ternary_threshold, spec.bn_eps)

    @property
    def levels(self) -> int:
        return self.quant.levels

    @property
    def step(self) -> float:
        return self.quant.step

    @property
    def alpha(self) -> float:
        return self.blocks[0].act.alpha if len(self.blocks) else DEFAULT_ALPHA

    def set_alpha(self, alpha: float) -> None:
        """Set the gradient-cancelling sharpness of every activation."""
        for b in self.blocks:
            b.act.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        h = self.quant(x)
        for block in self.blocks:
            if isinstance(block.layer, BinLinear):
                h = h.flatten(1)
            h = block(h)
        return self.output(h.flatten(1))

    @torch.no_grad()
    def hidden(self, x: Tensor) -> list[Tensor]:
        """Every block's activations (flattened, C order) for inputs x, in the current mode."""
        out = []
        h = self.quant(x)
        for block in self.blocks:
            if isinstance(block.layer, BinLinear):
                h = h.flatten(1)
            h = block(h)
            out.append(h.flatten(1))
        return out

    def bin_layers(self) -> list[BinLinear | BinConv2d]:
        return [b.layer for b in self.blocks] + [self.output.layer]

    def batchnorms(self) -> list[BinBatchNorm]:
        return [b.bn for b in self.blocks] + [self.output.bn]

    def mask_parameters(self) -> list[nn.Parameter]:
        """The BinMask latent masks M (empty unless sparsity is binmask)."""
        return [m.mask for m in self.bin_layers() if m.mask is not None]

    def latent_weights(self) -> list[nn.Parameter]:
        return [m.weight for m in self.bin_layers()]

    def clip_(self, bound: float = 1.0) -> None:
        """Clip latent weights and masks to [-bound, bound] (after each optimizer step)."""
        for m in self.bin_layers():
            m.clip_(bound)

    def set_frozen(self, frozen: bool) -> None:
        """Frozen BatchNorm: batch statistics without touching the running ones."""
        for bn in self.batchnorms():
            bn.frozen = bool(frozen)

    @torch.no_grad()
    def sparsity(self) -> dict:
        """Share of zero effective weights, overall and per layer."""
        per = []
        zeros = total = 0
        for m in self.bin_layers():
            w = m.int_weight()
            z = int((w == 0).sum())
            per.append(z / w.numel())
            zeros += z
            total += w.numel()
        return {"total": zeros / total, "layers": per}


@torch.no_grad()
def recompute_batchnorm(model: BNN, x: Tensor, batch_size: int = 1000) -> None:
    """Set every BatchNorm's running statistics to its input's exact mean and (population)
    variance over x, layer by layer: each layer's statistics are taken with the layers before
    it already in eval mode, so they are the statistics the eval-mode network really sees.
    Leaves the model in eval mode.
    """
    model.eval()
    for bn in model.batchnorms():
        n = bn.running_mean.numel()
        bn._collect = [torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                       0]
        try:
            for i in range(0, x.shape[0], batch_size):
                try:
                    model(x[i:i + batch_size])
                except CollectDone:
                    pass
            total, sq, count = bn._collect
        finally:
            bn._collect = None
        if count == 0:
            continue
        mean = total / count
        var = (sq / count - mean * mean).clamp_(min=0)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
