"""Graph inputs that infertune computes from the user's inputs, outside the graph: the packing indices of a graph
whose padding was removed (the `unpad` pass, `indices=inputs`). Computed in the graph (NonZero), the packed length
is a shape no runtime knows before the call, so OpenVINO plans those layers for any length and loses its fused
kernels even with static shapes; given as inputs, every shape is known when the session compiles it. The graph
says what it needs in its metadata (ONNX `metadata_props`, which OpenVINO keeps in the IR's rt_info), so every
session, pass and run directory that runs the graph completes the inputs the same way."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

KEY = "infertune.packing"


@dataclass(frozen=True)
class Packing:
    mask: str     # the user's input that marks real tokens (non-zero) and padding (0), [batch, sequence]
    rows: str     # graph input: the flattened positions of the real tokens, then copies of the first up to the bucket
    back: str     # graph input: per padded position, its packed row, or the packed length (a row of zeros)
    bucket: int   # the packed length is rounded up to a multiple of this, never past batch x sequence

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Packing":
        return cls(**json.loads(text))

    @property
    def derived(self) -> tuple[str, str]:
        return self.rows, self.back

    def indices(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        real = np.asarray(mask).reshape(-1) != 0
        rows = np.flatnonzero(real)
        count = len(rows)
        packed = min(-(-count // self.bucket) * self.bucket, real.size)
        rows = np.concatenate([rows, np.zeros(packed - count, np.int64)]).astype(np.int64)
        back = np.where(real, np.cumsum(real) - 1, packed).astype(np.int64)
        return {self.rows: rows, self.back: back}

    def complete(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`feed` with the packing indices of its mask added (a feed that already holds them is returned as is)."""
        if self.rows in feed and self.back in feed:
            return feed
        if self.mask not in feed:
            raise KeyError(f"the graph packs tokens by '{self.mask}', and the inputs hold no '{self.mask}'")
        return {**feed, **self.indices(feed[self.mask])}


def of_onnx(source) -> Packing | None:
    """The packing an ONNX graph (a path or a ModelProto) asks for; None for any other graph."""
    if isinstance(source, (str, Path)):
        import onnx

        source = onnx.load(str(source), load_external_data=False)
    found = {p.key: p.value for p in source.metadata_props}.get(KEY)
    return Packing.from_json(found) if found else None


def of_openvino(graph) -> Packing | None:
    """The packing an OpenVINO model (read from ONNX or from an IR that came from one) asks for."""
    if not graph.has_rt_info(["framework", KEY]):
        return None
    return Packing.from_json(graph.get_rt_info(["framework", KEY]).astype(str))


def of_session(session) -> Packing | None:
    """The packing an ONNX Runtime session's graph asks for."""
    found = session.get_modelmeta().custom_metadata_map.get(KEY)
    return Packing.from_json(found) if found else None
