"""Work and memory traffic of each conv/fc layer, for the report's roofline (Williams et al. 2009).

A layer's arithmetic intensity is its FLOPs (deeppose.model.layer_flops) over the bytes it must
move at least once, in float32:

- forward: weights and bias, the input activations, the output activations;
- backward: the output gradient, the weights and the input activations are read; the weight and
  bias gradients are written, and the input gradient too, except for conv1 (the image needs none,
  as `layer_flops` also counts).

Caches may keep some of this traffic on chip and im2col buffers add to it, so the intensity is a
model, not a measurement. Only the report imports this module: changing it reruns no measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeppose import model

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Traffic:
    flops: int
    bytes: int

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes


def _sizes(batch: int, n_joints: int) -> dict[str, tuple[int, int, int]]:
    """Layer -> (parameters, input values, output values) for a batch."""
    sizes, spatial = {}, model.INPUT_SIZE
    for conv, out in zip(model.CONVS, model.feature_sizes()):
        weights = conv.out_channels * conv.in_channels * conv.kernel**2 + conv.out_channels
        sizes[conv.name] = (
            weights,
            batch * conv.in_channels * spatial**2,
            batch * conv.out_channels * out**2,
        )
        spatial = (out - model.POOL_KERNEL) // model.POOL_STRIDE + 1 if conv.pool else out
    for fc in model.linears(n_joints):
        sizes[fc.name] = (
            fc.in_features * fc.out_features + fc.out_features,
            batch * fc.in_features,
            batch * fc.out_features,
        )
    return sizes


def layer_traffic(batch: int, n_joints: int = model.N_JOINTS) -> dict[tuple[str, str], Traffic]:
    """(layer, phase) -> its FLOPs and the bytes it moves, phase "forward" or "backward"."""
    flops = model.layer_flops(batch, n_joints)
    found = {}
    for layer, (weights, inputs, outputs) in _sizes(batch, n_joints).items():
        input_gradient = 0 if layer == model.CONVS[0].name else inputs
        values = {
            "forward": weights + inputs + outputs,
            "backward": outputs + weights + inputs + weights + input_gradient,
        }
        for phase, count in values.items():
            found[layer, phase] = Traffic(flops[layer][phase], BYTES_PER_VALUE * count)
    return found
