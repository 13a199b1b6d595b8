"""What one search trial produced, typed: `TrialRecord` and its parts. Records cross a process (the trial's
worker, a Ray task) and a file (trials.jsonl, results.json) as dicts; `from_dict` / `to_dict` convert there and
nowhere else, and a dict written by the search round-trips exactly (the same keys, values and order).

A key is written when the search wrote it: a measured trial (one with a metric) carries all its measurements,
None included (`train_seconds`, `compute`); `status` and `reason` come together once a verdict was given; the
other optional keys are written when set. Keys this version does not know are kept in `extra` and written back
last. A record from an older version that lacked a measurement key gains it, as None."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


def metric_decimals(max_drop: float) -> int:
    """Decimals that show a metric and its drop finely enough to judge them against `max_drop`: 4 for budgets
    of 0.01 and above, two more than the budget's own for smaller ones (1e-08 gives 10), so a drop over a tiny
    budget never prints as 0.0000."""
    if not max_drop > 0:
        return 6
    return min(12, max(4, math.ceil(-math.log10(max_drop)) + 2))


class Status(Enum):
    OK = "ok"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(frozen=True)
class Metric:
    """The held-out metric: `drop` (baseline minus this) once judged; embeddings also carry `top10_agreement` and
    `worst_row`, the lowest cosine of one sample's output."""
    name: str
    value: float
    top10_agreement: float | None = None
    drop: float | None = None
    worst_row: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Metric":
        return cls(name=data["name"], value=data["value"], top10_agreement=data.get("top10_agreement"),
                   drop=data.get("drop"), worst_row=data.get("worst_row"))

    def to_dict(self) -> dict[str, Any]:
        return _without_none({"name": self.name, "value": self.value, "top10_agreement": self.top10_agreement,
                              "drop": self.drop, "worst_row": self.worst_row})


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call at `batch`, from the trial's own timing."""
    batch: int
    p50: float
    p90: float
    p99: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Latency":
        return cls(batch=data["batch"], p50=data["p50"], p90=data["p90"], p99=data["p99"])

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True)
class Throughput:
    """Items per second at `batch`; for texts also with similar lengths batched together."""
    batch: int
    items_per_s: float
    grouped_items_per_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Throughput":
        return cls(batch=data["batch"], items_per_s=data["items_per_s"],
                   grouped_items_per_s=data.get("grouped_items_per_s"))

    def to_dict(self) -> dict[str, Any]:
        return _without_none({"batch": self.batch, "items_per_s": self.items_per_s,
                              "grouped_items_per_s": self.grouped_items_per_s})


@dataclass(frozen=True)
class Speedup:
    """The interleaved speed-up over the baseline (`value`, p10-p90 `low`-`high` over `rounds`), the ratio of
    pooled medians, and after a verdict its `p50_ratio` and `score` (written together: `p50_ratio` may be None).
    `confirmed` is the measurement taken again before a best is written, or `confirm_error` when that run failed."""
    batch: int
    value: float
    low: float
    high: float
    rounds: int
    pooled: float | None = None
    attempts: int | None = None
    stable: bool | None = None
    p50_ratio: float | None = None
    score: float | None = None
    confirmed: "Speedup | None" = None
    confirm_error: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Speedup":
        confirmed = data.get("confirmed")
        failed = confirmed is not None and "error" in confirmed
        return cls(batch=data["batch"], value=data["value"], low=data["low"], high=data["high"],
                   rounds=data["rounds"], pooled=data.get("pooled"), attempts=data.get("attempts"),
                   stable=data.get("stable"), p50_ratio=data.get("p50_ratio"), score=data.get("score"),
                   confirmed=None if confirmed is None or failed else cls.from_dict(confirmed),
                   confirm_error=confirmed["error"] if failed else None)

    def to_dict(self) -> dict[str, Any]:
        found = _without_none({"batch": self.batch, "value": self.value, "low": self.low, "high": self.high,
                               "rounds": self.rounds, "pooled": self.pooled, "attempts": self.attempts,
                               "stable": self.stable})
        if self.score is not None:
            found.update(p50_ratio=self.p50_ratio, score=self.score)
        if self.confirm_error is not None:
            found["confirmed"] = {"error": self.confirm_error}
        elif self.confirmed is not None:
            found["confirmed"] = self.confirmed.to_dict()
        return found

    @property
    def pooled_or_value(self) -> float:
        return self.value if self.pooled is None else self.pooled


@dataclass(frozen=True)
class Compute:
    """Achieved G(FL)OP/s at the objective batch against this machine's peak in the dtype the matmuls run in."""
    flops: float
    gflops: float
    peak_gflops: float
    fraction_of_peak: float
    dtype: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Compute":
        return cls(flops=data["flops"], gflops=data["gflops"], peak_gflops=data["peak_gflops"],
                   fraction_of_peak=data["fraction_of_peak"], dtype=data.get("dtype"))

    def to_dict(self) -> dict[str, Any]:
        return _without_none({"flops": self.flops, "gflops": self.gflops, "dtype": self.dtype,
                              "peak_gflops": self.peak_gflops, "fraction_of_peak": self.fraction_of_peak})


@dataclass(frozen=True)
class Attempts:
    """A Ray task lost with its node or worker and sent again: how many tries, and where it was lost."""
    count: int
    lost_on: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Attempts":
        return cls(count=data["count"], lost_on=tuple(data.get("lost_on", ())))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "lost_on": list(self.lost_on)}


_KNOWN = {"id", "recipe", "backend", "error", "precision", "metric", "latency_ms", "throughput", "size_bytes",
          "peak_rss_bytes", "notes", "details", "train_seconds", "artifact", "compute", "speedup", "node", "attempts",
          "confirms", "status", "reason", "speedup_p50", "pareto"}


@dataclass(frozen=True)
class TrialRecord:
    """One trial: a candidate (or the baseline) measured, a failure with its error, or a confirming run (`confirms`
    names the candidate it measured again; it holds only `speedup`). `recipe` is the recipe as saved (a dict);
    only a confirming run refused before it started (no Ray node free) has neither recipe nor backend."""
    id: str
    recipe: dict[str, Any] | None = None
    backend: str | None = None
    error: str | None = None
    precision: str | None = None
    metric: Metric | None = None
    latency: Latency | None = None
    throughput: Throughput | None = None
    size_bytes: int | None = None
    peak_rss_bytes: int | None = None
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)   # per-pass tables: sensitivity, kept_float
    train_seconds: float | None = None
    artifact: str | None = None
    compute: Compute | None = None
    speedup: Speedup | None = None
    node: dict[str, Any] | None = None    # on a Ray cluster: the node it ran on (node_id, ip, cpus, cores)
    attempts: Attempts | None = None
    confirms: str | None = None
    status: Status | None = None          # None until a verdict
    reason: str | None = None
    speedup_p50: float | None = None      # in results.json: the baseline's p50 (same node) / this one's
    pareto: bool | None = None            # in results.json
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def measured(self) -> bool:
        """Whether the trial was measured: then it has a metric ("none", NaN, when it produced no outputs)."""
        return self.metric is not None

    @property
    def node_id(self) -> str | None:
        return (self.node or {}).get("node_id")

    def replace(self, **changes) -> "TrialRecord":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialRecord":
        def typed(key, kind):
            return None if data.get(key) is None else kind.from_dict(data[key])

        return cls(
            id=data["id"], recipe=data.get("recipe"), backend=data.get("backend"), error=data.get("error"),
            precision=data.get("precision"),
            metric=typed("metric", Metric), latency=typed("latency_ms", Latency),
            throughput=typed("throughput", Throughput), size_bytes=data.get("size_bytes"),
            peak_rss_bytes=data.get("peak_rss_bytes"), notes=tuple(data.get("notes") or ()),
            details=dict(data.get("details") or {}), train_seconds=data.get("train_seconds"),
            artifact=data.get("artifact"), compute=typed("compute", Compute), speedup=typed("speedup", Speedup),
            node=data.get("node"), attempts=typed("attempts", Attempts), confirms=data.get("confirms"),
            status=None if data.get("status") is None else Status(data["status"]), reason=data.get("reason"),
            speedup_p50=data.get("speedup_p50"), pareto=data.get("pareto"),
            extra={k: v for k, v in data.items() if k not in _KNOWN})

    def to_dict(self) -> dict[str, Any]:
        found = _without_none({"id": self.id, "recipe": self.recipe, "backend": self.backend, "error": self.error})
        if self.measured:
            found.update(precision=self.precision, metric=_dict_or_none(self.metric),
                         latency_ms=_dict_or_none(self.latency), throughput=_dict_or_none(self.throughput),
                         size_bytes=self.size_bytes, peak_rss_bytes=self.peak_rss_bytes, notes=list(self.notes),
                         details=self.details, train_seconds=self.train_seconds, artifact=self.artifact,
                         compute=_dict_or_none(self.compute))
        found.update(_without_none({"speedup": _dict_or_none(self.speedup), "node": self.node,
                                    "attempts": _dict_or_none(self.attempts), "confirms": self.confirms}))
        if self.status is not None:
            found.update(status=self.status.value, reason=self.reason)
        found.update(_without_none({"speedup_p50": self.speedup_p50, "pareto": self.pareto}))
        return {**found, **self.extra}


def _dict_or_none(value) -> dict[str, Any] | None:
    return None if value is None else value.to_dict()


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
