"""What one measurement produced, serialisable to JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from infertune.bench.stats import LatencyStats


@dataclass
class BenchResult:
    model: str
    backend: str
    settings: dict[str, Any]
    precision: str = ""               # what ran, read back from the runtime
    artifact_bytes: int = 0
    load_seconds: float = 0.0
    latency: list[LatencyStats] = field(default_factory=list)
    grouped: list[LatencyStats] = field(default_factory=list)  # texts: the same batch sizes, similar lengths together
    peak_rss_bytes: int | None = 0   # None where the kernel's high-water mark cannot be reset
    workload: str = ""
    isolated: bool = False
    hardware: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    fidelity: dict[str, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def at(self, batch: int) -> LatencyStats | None:
        return next((s for s in self.latency if s.batch == batch), None)

    def grouped_at(self, batch: int) -> LatencyStats | None:
        return next((s for s in self.grouped if s.batch == batch), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchResult":
        data = dict(data)
        data["latency"] = [LatencyStats(**s) for s in data.get("latency", [])]
        data["grouped"] = [LatencyStats(**s) for s in data.get("grouped", [])]
        return cls(**data)
