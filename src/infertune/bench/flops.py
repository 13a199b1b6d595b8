"""Work per call and this machine's peak: a model's FLOPs on a real batch (torch's FLOP counter), and the
measured fp32 GEMM rate, so a report can say what fraction of the peak a candidate reaches."""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np


def model_flops(model, inputs: dict[str, np.ndarray]) -> int | None:
    """FLOPs of one call of a torch model on `inputs` (matmuls and convolutions), or None without torch."""
    if model.module is None:
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.module(*[torch.from_numpy(inputs[n]) for n in model.signature.input_names])
    return int(counter.get_total_flops())


@lru_cache(maxsize=1)
def peak_gflops(size: int = 1024, runs: int = 20) -> float:
    """Median fp32 GEMM rate (numpy, all cores) in GFLOP/s: the roof a candidate is compared with."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / float(np.median(times)) / 1e9
