"""The study's DeepPose network, described once for every framework.

Toshev & Szegedy (2014) regress joint coordinates with an AlexNet (Krizhevsky et al. 2012). The
study used one tower without local response normalisation (LRN), because PyTorch 0.1 lacked it;
deeppose keeps LRN off by default and offers it as an option. Backends build their models from
`LAYERS` and from *neutral weights*: a dict of float32 numpy arrays named `<layer>.W` and
`<layer>.b`, with convolution kernels (out, in, kh, kw) and linear weights (out, in), the layout
both PyTorch and Chainer use. Neutral weights let every framework start from the same model.

Input (N, 3, 227, 227) float32 in [0, 1]; output (N, 2 * joints): (x, y) per joint, / 227.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 227
N_JOINTS = 14


@dataclass(frozen=True)
class ModelConfig:
    """What can vary in the network; everything else is the study's architecture."""

    dropout: float = 0.5  # the study's fc6/fc7 dropout ratio; 0 switches dropout off
    lrn: bool = False  # AlexNet's LRN after conv1 and conv2 (size 5, alpha 1e-4, beta 0.75, k 2)
    n_joints: int = N_JOINTS

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class Conv:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    pad: int
    pool: bool  # max-pool 3x3 stride 2 after the ReLU
    lrn: bool  # LRN after the ReLU, before the pool, when ModelConfig.lrn is on


@dataclass(frozen=True)
class Linear:
    name: str
    in_features: int
    out_features: int
    relu_dropout: bool  # ReLU then dropout after it (fc6, fc7); fc8 is the plain regressor


CONVS: tuple[Conv, ...] = (
    Conv("conv1", 3, 96, 11, 4, 0, pool=True, lrn=True),
    Conv("conv2", 96, 256, 5, 1, 2, pool=True, lrn=True),
    Conv("conv3", 256, 384, 3, 1, 1, pool=False, lrn=False),
    Conv("conv4", 384, 384, 3, 1, 1, pool=False, lrn=False),
    Conv("conv5", 384, 256, 3, 1, 1, pool=True, lrn=False),
)
POOL_KERNEL, POOL_STRIDE = 3, 2
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


def linears(n_joints: int = N_JOINTS) -> tuple[Linear, ...]:
    return (
        Linear("fc6", 256 * 6 * 6, 4096, relu_dropout=True),
        Linear("fc7", 4096, 4096, relu_dropout=True),
        Linear("fc8", 4096, 2 * n_joints, relu_dropout=False),
    )


def weight_shapes(n_joints: int = N_JOINTS) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every neutral weight, in the fixed order the initialiser draws them."""
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in CONVS:
        shapes[f"{conv.name}.W"] = (conv.out_channels, conv.in_channels, conv.kernel, conv.kernel)
        shapes[f"{conv.name}.b"] = (conv.out_channels,)
    for fc in linears(n_joints):
        shapes[f"{fc.name}.W"] = (fc.out_features, fc.in_features)
        shapes[f"{fc.name}.b"] = (fc.out_features,)
    return shapes


OUTPUT_PRIOR = 0.5  # the crop's centre in target units: where a joint is before any training


def init_weights(seed: int, n_joints: int = N_JOINTS) -> dict[str, np.ndarray]:
    """Seeded, framework-neutral initial weights.

    Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases: PyTorch's default for Conv2d
    and Linear, so a PyTorch user recognises the starting point; drawn from one PCG64 stream in the
    order of `weight_shapes`, so a seed fixes every array on every platform. The regressor's bias
    (fc8.b) then starts at OUTPUT_PRIOR, the centre of the crop in target units (joint / 227): the
    crop is centred on the joints, so the network starts at the right offset instead of spending
    its first hundred Adam steps (each moves a parameter by at most lr) on learning it.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    weights = {}
    for name, shape in weight_shapes(n_joints).items():
        layer = name.split(".")[0]
        fan_in = int(np.prod(weight_shapes(n_joints)[f"{layer}.W"][1:]))
        bound = 1.0 / np.sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    weights["fc8.b"] = np.full_like(weights["fc8.b"], OUTPUT_PRIOR)
    return weights


def check_weights(weights: dict[str, np.ndarray], n_joints: int = N_JOINTS) -> None:
    """Raise ValueError unless `weights` has exactly the neutral names and shapes."""
    expected = weight_shapes(n_joints)
    if set(weights) != set(expected):
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        raise ValueError(f"neutral weights: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"neutral weight {name}: shape {weights[name].shape}, expected {shape}")


def feature_sizes() -> list[int]:
    """Spatial size after each conv block (after its pool, if any), for FLOP counts."""
    size, sizes = INPUT_SIZE, []
    for conv in CONVS:
        size = (size + 2 * conv.pad - conv.kernel) // conv.stride + 1
        conv_out = size
        if conv.pool:
            size = (size - POOL_KERNEL) // POOL_STRIDE + 1
        sizes.append(conv_out)
    return sizes


def layer_flops(batch: int, n_joints: int = N_JOINTS) -> dict[str, dict[str, int]]:
    """Analytic multiply-add FLOPs (2 per MAC) of each conv/linear layer, forward and backward.

    Backward counts the gradient with respect to the input and to the weights, each costing as much
    as the forward; conv1's input gradient is skipped (the image needs none), as frameworks do.
    Element-wise layers (ReLU, pooling, dropout, loss) are negligible next to these and not counted.
    """
    flops: dict[str, dict[str, int]] = {}
    for conv, out in zip(CONVS, feature_sizes()):
        forward = 2 * batch * conv.out_channels * out * out * conv.in_channels * conv.kernel**2
        backward = forward * (1 if conv.name == "conv1" else 2)
        flops[conv.name] = {"forward": forward, "backward": backward}
    for fc in linears(n_joints):
        forward = 2 * batch * fc.in_features * fc.out_features
        flops[fc.name] = {"forward": forward, "backward": 2 * forward}
    return flops


def total_flops(batch: int, n_joints: int = N_JOINTS) -> int:
    """Forward + backward FLOPs of the network for a batch (see `layer_flops`)."""
    return sum(f["forward"] + f["backward"] for f in layer_flops(batch, n_joints).values())
