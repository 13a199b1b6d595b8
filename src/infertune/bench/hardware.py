"""What a figure was measured on: the hardware fingerprint and package versions stored with every result."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib import metadata

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve")
PACKAGES = ("infertune", "torch", "onnx", "onnxruntime", "openvino", "nncf", "torchao", "transformers",
            "tokenizers", "numpy", "scikit-learn")


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor block is enough
    except OSError:
        pass
    return fields


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:
        return None


def _gpu() -> str | None:
    """The GPU name when torch is already imported and sees CUDA; never imports torch for this."""
    import sys

    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        return None
    return None


@lru_cache(maxsize=1)
def _static_fingerprint() -> dict:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except Exception:
        memory = None
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "memory_bytes": memory,
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def cpu_isa() -> tuple[str, ...]:
    """This CPU's flags among ISA_FLAGS (what the search and the int8 passes read to choose)."""
    return tuple(_static_fingerprint()["isa"])


def fingerprint() -> dict:
    """CPU model, cores, ISA flags (avx512_vnni, amx...), memory, GPU if any."""
    return {**_static_fingerprint(), "gpu": _gpu()}


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
