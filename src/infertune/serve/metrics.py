"""Prometheus metrics of one server, in their own registry: requests by status, queue depth, batch sizes,
queue and compute latency, cache hits and misses. Series are bound to the model once, not per request."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    def __init__(self, model: str, max_batch_size: int, queue_depth, alive=lambda: True):
        self.registry = CollectorRegistry()
        self.model = model
        labels = dict(registry=self.registry)
        self._requests = Counter("infertune_requests", "Infer requests answered, by HTTP status", ["model", "status"],
                                 **labels)
        self._by_status: dict[int, object] = {}
        self.queue_depth = Gauge("infertune_queue_depth", "Requests waiting for a batch", **labels)
        self.queue_depth.set_function(queue_depth)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_size = Histogram("infertune_batch_size", "Rows per engine call", ["model"],
                                    buckets=[s for s in sizes if s <= max_batch_size], **labels).labels(model)
        self.queue_seconds = Histogram("infertune_queue_seconds", "Time from arrival to the engine call", ["model"],
                                       buckets=LATENCY_BUCKETS, **labels).labels(model)
        self.compute_seconds = Histogram("infertune_compute_seconds", "Engine time per batch", ["model"],
                                         buckets=LATENCY_BUCKETS, **labels).labels(model)
        self.request_seconds = Histogram("infertune_request_seconds", "Time from arrival to the answer",
                                         ["model"], buckets=LATENCY_BUCKETS, **labels).labels(model)
        self.cache_hits = Counter("infertune_cache_hits", "Responses served from the cache", ["model"],
                                  **labels).labels(model)
        self.cache_misses = Counter("infertune_cache_misses", "Requests the cache did not hold", ["model"],
                                    **labels).labels(model)
        self.batcher_alive = Gauge("infertune_batcher_alive", "1 while the model's batch loop runs; 0 once it has "
                                   "ended (the server must be restarted)", ["model"], **labels).labels(model)
        self.batcher_alive.set_function(lambda: 1.0 if alive() else 0.0)
        self._refused = Counter("infertune_http_refused", "Connections or requests refused by the HTTP limits, by "
                                "reason", ["reason"], **labels)
        self.connections = Gauge("infertune_http_connections", "Open HTTP connections", **labels)

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def answered(self, status: int) -> None:
        series = self._by_status.get(status)
        if series is None:
            series = self._by_status[status] = self._requests.labels(self.model, str(status))
        series.inc()

    def batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.compute_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
