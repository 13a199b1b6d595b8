"""Compact storage for torch weights: shared weights as packed indices plus a codebook, sparse weights as
CSR. A model is only "smaller on disk" when it is stored like this; `load_compact` restores dense tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pack(indices: np.ndarray, bits: int) -> np.ndarray:
    flat = indices.astype(np.uint8).ravel()
    if bits > 4:
        return flat
    if len(flat) % 2:
        flat = np.append(flat, 0)
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits > 4:
        return packed[:count]
    out = np.empty(len(packed) * 2, np.uint8)
    out[0::2], out[1::2] = packed & 0x0F, packed >> 4
    return out[:count]


def save_compact(module, path: str | Path, *, codebooks: dict[str, tuple[np.ndarray, np.ndarray, int]] | None = None,
                 sparse_threshold: float | None = None) -> int:
    """Write the module's state dict; `codebooks`: name -> (indices, centroids, bits). Returns bytes on disk."""
    from safetensors.numpy import save

    from infertune.io import write_bytes_atomic

    tensors: dict[str, np.ndarray] = {}
    layout: dict[str, dict] = {}
    for name, value in module.state_dict().items():
        array = value.detach().float().numpy() if value.is_floating_point() else value.detach().numpy()
        if codebooks and name in codebooks:
            indices, centroids, bits = codebooks[name]
            tensors[name + ".idx"] = _pack(indices, bits)
            tensors[name + ".codebook"] = centroids.astype(np.float32)
            layout[name] = {"kind": "codebook", "bits": bits, "shape": list(array.shape)}
        elif sparse_threshold is not None and array.ndim == 2 and np.mean(array == 0) >= sparse_threshold:
            rows, cols = np.nonzero(array)
            tensors[name + ".values"] = array[rows, cols].astype(np.float32)
            tensors[name + ".cols"] = cols.astype(np.int16 if array.shape[1] < 32768 else np.int32)
            tensors[name + ".rowptr"] = np.searchsorted(rows, np.arange(array.shape[0] + 1)).astype(np.int32)
            layout[name] = {"kind": "csr", "shape": list(array.shape)}
        else:
            tensors[name] = np.ascontiguousarray(array)
            layout[name] = {"kind": "dense"}
    data = save(tensors, metadata={"infertune_layout": json.dumps(layout)})
    write_bytes_atomic(path, data)
    return len(data)


def load_compact(path: str | Path) -> dict:
    """A dense state dict (torch tensors) from `save_compact`'s file."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        layout = json.loads(handle.metadata()["infertune_layout"])
        state = {}
        for name, spec in layout.items():
            if spec["kind"] == "codebook":
                count = int(np.prod(spec["shape"]))
                indices = _unpack(handle.get_tensor(name + ".idx"), spec["bits"], count)
                array = handle.get_tensor(name + ".codebook")[indices].reshape(spec["shape"])
            elif spec["kind"] == "csr":
                array = np.zeros(spec["shape"], np.float32)
                rowptr = handle.get_tensor(name + ".rowptr")
                rows = np.repeat(np.arange(spec["shape"][0]), np.diff(rowptr))
                array[rows, handle.get_tensor(name + ".cols").astype(np.int64)] = handle.get_tensor(name + ".values")
            else:
                array = handle.get_tensor(name)
            state[name] = torch.from_numpy(np.ascontiguousarray(array))
    return state
