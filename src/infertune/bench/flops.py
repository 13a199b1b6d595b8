"""Work per call and this machine's peaks: a model's FLOPs on a real batch (torch's FLOP counter), and the
measured GEMM rate of each dtype a candidate's matmuls may run in (fp32, bf16, int8 with uint8 activations and
int8 weights, as ONNX Runtime's int8 kernels take them), so a report can say what fraction of the roof of its own
dtype a candidate reaches. The peaks are measured once per hardware fingerprint and kept in the cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

DTYPES = ("fp32", "bf16", "int8")


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
    """fp32 GEMM rate (numpy, all cores) in GFLOP/s: the roof an fp32 candidate is compared with."""
    def gemm(n: int):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        return lambda: a @ b

    return _rate(gemm, size, runs)


def dtype_of(precision: str | None) -> str:
    """The dtype whose peak bounds a session that reports `precision` (what ran: "int8", "int8+bf16", "bf16",
    "fp16", "int4", "fp32"...): int8 kernels when it holds int8 layers, bf16 when its float math is bf16, else fp32
    (fp16 and int4 weight-only graphs compute in fp32 on a CPU)."""
    text = (precision or "fp32").lower()
    if "int8" in text:
        return "int8"
    return "bf16" if "bf16" in text else "fp32"


@lru_cache(maxsize=1)
def peaks() -> dict[str, float]:
    """GEMM peaks in G(FL)OP/s by dtype, measured on all usable cores, cached per hardware fingerprint (CPU model,
    cores, ISA) and library versions: measuring costs seconds, and a report needs them every time."""
    from infertune.bench.hardware import fingerprint, versions

    hardware = fingerprint()
    key = json.dumps({k: hardware.get(k) for k in ("cpu_model", "usable_cores", "isa", "gpu")}, sort_keys=True) + \
        json.dumps({k: v for k, v in versions().items() if k in ("torch", "onnxruntime", "numpy")}, sort_keys=True)
    root = Path(os.environ.get("INFERTUNE_CACHE_DIR") or Path.home() / ".cache" / "infertune")
    path = root / "peaks" / f"{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if set(DTYPES) <= set(cached):
                return {d: float(cached[d]) for d in DTYPES}
        except (OSError, ValueError):
            pass
    measured = {"fp32": peak_gflops(), "bf16": _bf16_peak(), "int8": _int8_peak()}
    from infertune.io import write_json_atomic

    try:
        write_json_atomic(path, {**measured, "hardware": hardware})
    except Exception:  # a read-only cache costs a re-measurement next time, nothing more
        pass
    return measured


# A measurement never holds a trial up: where a dtype has no kernel of its own (bf16 on a CPU without AVX512-BF16
# or AMX runs at about 1 GFLOP/s in torch, where a 2048 product takes 19 s), the product shrinks until one call is
# short, and the calls stop once their time is spent.
SHORTEST_CALL_S = 0.02  # a product at least this long is large enough to reach the rate of the dtype's kernel
SECONDS_PER_PEAK = 1.0


def _rate(gemm, largest: int, runs: int = 20, seconds: float = SECONDS_PER_PEAK) -> float:
    """The best rate of `gemm(n)`'s call (an n x n by n x n product) over up to `runs` calls within `seconds`: a peak
    is what the machine can do, and on a shared machine the median would record whatever else ran meanwhile (and
    the cache would keep it). n doubles from 256 while a call is shorter than SHORTEST_CALL_S, up to `largest`."""
    size = min(256, largest)
    while True:
        run = gemm(size)
        run()
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        if first >= SHORTEST_CALL_S or size * 2 > largest:
            break
        size *= 2
    times, deadline = [first], time.perf_counter() + seconds
    while len(times) < runs and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / min(times) / 1e9


def _bf16_peak(size: int = 2048) -> float:
    """torch bf16 matmul (oneDNN: AMX or AVX512-BF16 where the CPU has them, a slow conversion path elsewhere)."""
    import torch

    def gemm(n: int):
        a = torch.randn(n, n).to(torch.bfloat16)
        b = torch.randn(n, n).to(torch.bfloat16)

        def run():
            with torch.inference_mode():
                return torch.matmul(a, b)
        return run

    return _rate(gemm, size)


def _int8_peak(size: int = 2048) -> float:
    """ONNX Runtime MatMulInteger with uint8 activations and int8 weights (its VNNI/AMX kernel), in GOP/s."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def gemm(n: int):
        rng = np.random.default_rng(0)
        weights = rng.integers(-127, 128, size=(n, n), dtype=np.int8)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8-peak",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
            initializer=[onnx.numpy_helper.from_array(weights, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        a = rng.integers(0, 256, size=(n, n), dtype=np.uint8)
        return lambda: session.run(None, {"a": a})

    return _rate(gemm, size)
