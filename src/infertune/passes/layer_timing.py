"""Per-layer facts the torch passes need: each layer's input shape on a real sample, and a quick median
timing of a layer against its replacement (a replacement is kept only where it is measured faster)."""

from __future__ import annotations

import time

import numpy as np


def input_shapes(model, module, types: tuple[type, ...], sample: dict[str, np.ndarray]) -> dict[int, tuple]:
    """id(layer) -> the shape of its input when the model runs on `sample` (batch as given)."""
    import torch

    shapes: dict[int, tuple] = {}

    def record(layer, args) -> None:  # a pre-hook that returned a value would replace the layer's inputs
        shapes.setdefault(id(layer), tuple(args[0].shape))

    hooks = [m.register_forward_pre_hook(record) for m in module.modules() if isinstance(m, types)]
    try:
        with torch.no_grad():
            module(*[torch.from_numpy(sample[n]) for n in model.signature.input_names])
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def median_seconds(layer, x, runs: int = 200) -> float:
    import torch

    with torch.inference_mode():
        for _ in range(10):
            layer(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speedup(original, replacement, shape: tuple, runs: int = 200) -> float:
    """original's median time / replacement's, interleaved in blocks so drift cancels."""
    import torch

    x = torch.randn(shape)
    a, b = [], []
    for _ in range(4):
        a.append(median_seconds(original, x, runs // 4))
        b.append(median_seconds(replacement, x, runs // 4))
    return float(np.median(a) / np.median(b))
