"""Prometheus metrics of one server: requests by model and status, queue depth, batch sizes, queue, compute and
request latency, cache hits and misses, HTTP refusals, the batch loop's liveness and the process's CPU time.

With `--workers N`, every worker writes its values to prometheus-client's multiprocess files and any worker's
`/metrics` adds them up (gauges by the mode each declares), so the figures are the server's, not one worker's.
Triton's statistics (`/v2/models/{name}/stats`) are read back from the same collected samples.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infertune.serve.workers import MULTIPROCESS_DIR

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    def __init__(self, max_batch_size: int):
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        self.registry = None if self.multiprocess else CollectorRegistry()
        r = dict(registry=self.registry)
        self.requests = Counter("infertune_requests", "Infer requests answered, by HTTP status", ["model", "status"],
                                **r)
        self.queue_depth = Gauge("infertune_queue_depth", "Requests waiting for a batch", ["model"],
                                 multiprocess_mode="livesum", **r)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_size = Histogram("infertune_batch_size", "Rows per engine call", ["model"],
                                    buckets=[s for s in sizes if s <= max_batch_size], **r)
        self.batches = Counter("infertune_batches", "Engine calls, by rows in the call", ["model", "batch_size"], **r)
        self.batch_compute = Counter("infertune_batch_compute_seconds", "Engine time, by rows in the call",
                                     ["model", "batch_size"], **r)
        self.queue_seconds = Histogram("infertune_queue_seconds", "Time from arrival to the engine call", ["model"],
                                       buckets=LATENCY_BUCKETS, **r)
        self.compute_seconds = Histogram("infertune_compute_seconds", "Engine time per batch", ["model"],
                                         buckets=LATENCY_BUCKETS, **r)
        self.request_seconds = Histogram("infertune_request_seconds", "Time from arrival to the answer",
                                         ["model"], buckets=LATENCY_BUCKETS, **r)
        self.failure_seconds = Counter("infertune_failed_request_seconds", "Time from arrival to an error answer",
                                       ["model"], **r)
        self.cache_hits = Counter("infertune_cache_hits", "Responses served from the cache", ["model"], **r)
        self.cache_misses = Counter("infertune_cache_misses", "Requests the cache did not hold", ["model"], **r)
        self.cache_hit_ratio = Gauge("infertune_cache_hit_ratio", "Hits over lookups since the start", ["model"],
                                     multiprocess_mode="livemax", **r)
        self.batcher_alive = Gauge("infertune_batcher_alive", "1 while the model's batch loop runs; 0 once it has "
                                   "ended (the server must be restarted)", ["model"], multiprocess_mode="livemin", **r)
        self.batch_window = Gauge("infertune_batch_window_ms", "How long a batch may wait to fill (--max-delay-ms, "
                                  "or the target-driven choice)", ["model"], multiprocess_mode="livemax", **r)
        self.batch_cap = Gauge("infertune_batch_cap", "Most rows a batch may take now (--max-batch-size, or the "
                               "target-driven choice)", ["model"], multiprocess_mode="livemax", **r)
        self.last_inference = Gauge("infertune_last_inference_ms", "When the model last answered, in ms since the "
                                    "epoch", ["model"], multiprocess_mode="livemax", **r)
        self.refused_by = Counter("infertune_http_refused", "Connections or requests refused by the HTTP limits, by "
                                  "reason", ["reason"], **r)
        self.connections = Gauge("infertune_http_connections", "Open HTTP connections", multiprocess_mode="livesum",
                                 **r)
        self.cpu = Gauge("infertune_process_cpu_seconds", "CPU time of the serving processes (all threads; with "
                         "--workers, the sum over workers)", multiprocess_mode="livesum", **r)

    def refused(self, reason: str) -> None:
        self.refused_by.labels(reason).inc()

    def for_model(self, model: str) -> "ModelMetrics":
        return ModelMetrics(self, model)

    def render(self) -> bytes:
        self.cpu.set(time.process_time())
        return generate_latest(self.collected())

    def collected(self) -> CollectorRegistry:
        if not self.multiprocess:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry

    def samples(self, model: str) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Every sample of `model` by sample name (`infertune_requests_total`, ...): what Triton's statistics are
        read from."""
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in self.collected().collect():
            for sample in family.samples:
                if sample.labels.get("model") == model:
                    found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found


class ModelMetrics:
    """The series of one model, bound once (not per request)."""

    def __init__(self, server: ServerMetrics, model: str):
        self.server = server
        self.model = model
        self._by_status: dict[int, object] = {}
        self._by_rows: dict[int, tuple[object, object]] = {}
        self.queue_depth = server.queue_depth.labels(model)
        self.batch_size = server.batch_size.labels(model)
        self.queue_seconds = server.queue_seconds.labels(model)
        self.compute_seconds = server.compute_seconds.labels(model)
        self.request_seconds = server.request_seconds.labels(model)
        self.failure_seconds = server.failure_seconds.labels(model)
        self.cache_hits = server.cache_hits.labels(model)
        self.cache_misses = server.cache_misses.labels(model)
        self.cache_hit_ratio = server.cache_hit_ratio.labels(model)
        self.batcher_alive = server.batcher_alive.labels(model)
        self.batch_window = server.batch_window.labels(model)
        self.batch_cap = server.batch_cap.labels(model)
        self.last_inference = server.last_inference.labels(model)

    def answered(self, status: int, seconds: float | None = None) -> None:
        series = self._by_status.get(status)
        if series is None:
            series = self._by_status[status] = self.server.requests.labels(self.model, str(status))
        series.inc()
        if seconds is not None:
            if status == 200:
                self.request_seconds.observe(seconds)
            else:
                self.failure_seconds.inc(seconds)

    def batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.compute_seconds.observe(seconds)
        pair = self._by_rows.get(rows)
        if pair is None:
            rows_label = str(rows)
            pair = self._by_rows[rows] = (self.server.batches.labels(self.model, rows_label),
                                          self.server.batch_compute.labels(self.model, rows_label))
        pair[0].inc()
        pair[1].inc(seconds)
        self.last_inference.set(time.time() * 1000)
        self.server.cpu.set(time.process_time())

    def cache_lookup(self, hit: bool, ratio: float) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()
        self.cache_hit_ratio.set(ratio)
