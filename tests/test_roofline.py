"""deeppose.roofline: a conv and an fc layer's FLOPs, bytes and intensity against hand-computed values."""

from __future__ import annotations

import pytest

from deeppose.roofline import layer_traffic


def test_conv2_at_batch_1():
    """conv2: 96 -> 256 channels, 5x5, on 27x27 (pad 2): 256*96*25 + 256 parameters."""
    weights, inputs, outputs = 256 * 96 * 25 + 256, 96 * 27 * 27, 256 * 27 * 27
    forward, backward = layer_traffic(1)["conv2", "forward"], layer_traffic(1)["conv2", "backward"]
    assert forward.flops == 2 * 256 * 27 * 27 * 96 * 25 == 895_795_200
    assert forward.bytes == 4 * (weights + inputs + outputs) == 3_485_056
    assert forward.intensity == pytest.approx(895_795_200 / 3_485_056)  # about 257 FLOP/byte
    assert backward.flops == 2 * forward.flops
    assert backward.bytes == 4 * (outputs + weights + inputs + weights + inputs) == 6_223_616


def test_fc7_at_batch_8_is_about_4_flop_per_byte():
    """fc7: 4096 x 4096 weights read once for only 8 images: the intensity stays near 2 * batch / 4."""
    weights, activations = 4096 * 4096 + 4096, 8 * 4096
    forward, backward = layer_traffic(8)["fc7", "forward"], layer_traffic(8)["fc7", "backward"]
    assert forward.flops == 2 * 8 * 4096 * 4096
    assert forward.bytes == 4 * (weights + 2 * activations) == 67_387_392
    assert forward.intensity == pytest.approx(3.983, abs=1e-3)
    assert backward.bytes == 4 * (2 * weights + 3 * activations) == 134_643_712


def test_conv1_backward_writes_no_input_gradient():
    t = layer_traffic(2)
    weights = 96 * 3 * 11 * 11 + 96
    assert t["conv1", "backward"].bytes == 4 * (2 * 96 * 55 * 55 + 2 * weights + 2 * 3 * 227 * 227)
