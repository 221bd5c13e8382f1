"""Does this torch's Inductor still give zero gradients through relu then max-pool?

    .venv/bin/python benchmarks/inductor_relu_pool_gradient.py

Found when the float64 comparison of compiled PyTorch ran on AlexNet with fc6 and fc7 64 wide
(tests/narrow_network.py): every conv gradient was exactly 0 where eager PyTorch's were not. Reduced
here to one conv, relu, `MaxPool2d(3, 2)` and two linear layers; dropping the relu or the pool gives
the right gradient. On torch 2.13.0+cpu (AMD EPYC Zen 3) the compiled gradient's norm is 0.0 and
eager's 8.2. The full-width AlexNet the benchmark runs is not affected at the sizes checked
(tests/test_new_backends.py compares it with eager PyTorch in float64). A script, not a test: whether
the bug shows may depend on the CPU's vector instructions, and a test must hold on every CPU.
"""

from __future__ import annotations

import platform

import torch


def main() -> None:
    torch.manual_seed(0)
    conv, pool = torch.nn.Conv2d(3, 256, 3, padding=1), torch.nn.MaxPool2d(3, 2)
    head = torch.nn.Sequential(torch.nn.Linear(256 * 6 * 6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 28))
    x, target = torch.rand(2, 3, 13, 13), torch.rand(2, 28)

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((head(torch.flatten(pool(torch.relu(conv(x))), 1)) - target) ** 2).sum()

    eager = torch.autograd.grad(loss(x, target), conv.weight)[0]
    compiled = torch.autograd.grad(torch.compile(loss, dynamic=False)(x, target), conv.weight)[0]
    error = float((compiled - eager).norm() / eager.norm())
    print(f"torch {torch.__version__} on {platform.processor() or platform.machine()}")
    print(f"conv weight gradient norm: eager {eager.norm():.3g}, compiled {compiled.norm():.3g}")
    print(f"relative difference {error:.2g}: bug {'present' if error > 1e-4 else 'absent'}")


if __name__ == "__main__":
    main()
