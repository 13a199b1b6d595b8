"""One served model: what the HTTP layer knows of it, its engines and batcher, its response cache and metric
series, and its life (loading, warm-up, ready, unloaded), as Triton's model repository gives each model."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from infertune.serve.batcher import Batcher
from infertune.serve.cache import make_cache
from infertune.serve.codec import DATATYPES, ServedModel

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"


@dataclass
class Loaded:
    """A model ready to serve: its engines (one batch at a time each), what the HTTP layer knows of it, and
    warm-up batches at every batch size the batcher may form."""

    engines: list[Any]
    served: ServedModel
    warmup: list[dict[str, np.ndarray]]
    backend: str = ""


class Endpoint:
    def __init__(self, name: str, load: Callable[[], Loaded], config, metrics, *, say=print,
                 on_idle: Callable[[], None] | None = None):
        """`load` builds the model (slow: it runs in a thread); `config` is the server's ServeConfig."""
        self.name = name
        self.load = load
        self.config = config
        self.metrics = metrics.for_model(name)
        self.say = say
        self.on_idle = on_idle
        self.state = UNAVAILABLE
        self.reason = "not loaded"
        self.served: ServedModel | None = None
        self.backend = ""
        self.instances = 0
        self.batcher: Batcher | None = None
        self.cache = make_cache(config.cache_policy, 0)
        self.tokenizer: ThreadPoolExecutor | None = None
        self.unloaded = False  # on request: it does not hold the server's readiness back

    # -- life ------------------------------------------------------------------------------------------------

    async def start(self, loaded: Loaded | None = None) -> None:
        """Load (unless given), then warm up; READY on success, UNAVAILABLE with the reason otherwise."""
        self.state, self.reason, self.unloaded = LOADING, "loading", False
        try:
            if loaded is None:
                loaded = await asyncio.get_running_loop().run_in_executor(None, self.load)
            self._attach(loaded)
            await self.batcher.warm_up(loaded.warmup, say=self.say)
            self.state, self.reason = READY, ""
            self.say(f"model '{self.name}' ready")
        except Exception as e:  # the server stays up and says why this model is not ready
            self.state = UNAVAILABLE
            self.reason = f"warm-up failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}" \
                if self.batcher is not None else f"loading failed: {type(e).__name__}: {e}"
            self.say(f"model '{self.name}': {self.reason}")

    def _attach(self, loaded: Loaded) -> None:
        config, metrics = self.config, self.metrics
        self.served, self.backend, self.instances = loaded.served, loaded.backend, len(loaded.engines)
        self.batcher = Batcher(loaded.engines, max_batch_size=config.max_batch_size, max_delay_ms=config.max_delay_ms,
                               max_queue=config.max_queue, on_batch=metrics.batch,
                               on_queued=metrics.queue_seconds.observe, on_idle=self.on_idle,
                               on_depth=metrics.queue_depth.set, name=self.name,
                               target_p99_ms=config.target_p99_ms,
                               on_window=self._window,
                               pad_axes={s.name: 1 for s in loaded.served.signature.inputs}
                               if loaded.served.is_text else None)
        self.batcher.start()
        metrics.batcher_alive.set(1)
        self._window(self.batcher.max_delay * 1000, self.batcher.max_batch_size)
        self.cache = make_cache(config.cache_policy, config.cache_size, config.cache_ttl_s)
        if loaded.served.is_text and self.tokenizer is None:
            self.tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infertune-tokenize-{self.name}")

    def _window(self, delay_ms: float, cap: int) -> None:
        self.metrics.batch_window.set(delay_ms)
        self.metrics.batch_cap.set(cap)

    async def stop(self, *, drain_s: float = 30.0) -> None:
        """Stop taking requests, answer what is queued or running (for at most `drain_s`), then free the engines."""
        self.state, self.reason = UNAVAILABLE, "unloaded"
        batcher, self.batcher = self.batcher, None
        if batcher is not None:
            deadline = asyncio.get_running_loop().time() + drain_s
            while batcher.busy and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            await batcher.stop()
        self.metrics.batcher_alive.set(0)
        self.metrics.queue_depth.set(0)
        self.cache = make_cache(self.config.cache_policy, 0)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        if self.tokenizer is not None:
            self.tokenizer.shutdown(wait=False, cancel_futures=True)

    # -- state -----------------------------------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why this model cannot take a request now, or None."""
        if self.batcher is not None and self.batcher.failure:
            self.metrics.batcher_alive.set(0)
            return f"model '{self.name}' cannot be served: {self.batcher.failure}; the server must be restarted"
        if self.state == LOADING:
            return f"model '{self.name}' is loading: retry when /v2/models/{self.name}/ready answers 200"
        if self.state != READY:
            return f"model '{self.name}' is not available ({self.reason})" + \
                ("" if self.unloaded else ": retry when /v2/health/ready answers 200")
        return None

    @property
    def dead(self) -> bool:
        return self.batcher is not None and self.batcher.failure is not None

    def index_entry(self) -> dict[str, Any]:
        """This model in Triton's repository index."""
        entry = {"name": self.name, "version": "1", "state": self.state}
        if self.state != READY:
            entry["reason"] = self.not_ready() or self.reason
        return entry

    # -- Triton's model configuration and statistics ---------------------------------------------------------

    def triton_config(self) -> dict[str, Any]:
        served = self.served
        inputs = ([{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}] if served.is_text else
                  [_triton_tensor(s) for s in served.signature.inputs])
        return {"name": self.name, "platform": f"infertune_{self.backend or 'unknown'}", "backend": self.backend,
                "max_batch_size": self.config.max_batch_size, "input": inputs,
                "output": [_triton_tensor(s) for s in served.signature.outputs],
                "dynamic_batching": {"max_queue_delay_microseconds": int(self.config.max_delay_ms * 1000),
                                     **({"target_p99_ms": self.config.target_p99_ms}
                                        if self.config.target_p99_ms else {})},
                "instance_group": [{"count": self.instances, "kind": "KIND_CPU"}],
                "response_cache": {"enable": self.config.cache_size > 0, "policy": self.config.cache_policy}}

    def triton_stats(self) -> dict[str, Any]:
        """Counts and cumulative durations (ns), as Triton's statistics extension reports them, read back from the
        server's metrics (so with --workers they are the sum over workers)."""
        s = self.metrics.server.samples(self.name)

        def total(name: str, where=lambda labels: True) -> float:
            return sum(v for labels, v in s.get(name, []) if where(labels))

        def duration(count: float, seconds: float) -> dict[str, int]:
            return {"count": int(count), "ns": int(round(seconds * 1e9))}

        ok = total("infertune_requests_total", lambda l: l.get("status") == "200")
        failed = total("infertune_requests_total", lambda l: l.get("status") != "200")
        sizes = sorted({int(l["batch_size"]) for l, _ in s.get("infertune_batches_total", [])})
        batch_stats = [{"batch_size": b, "compute_input": duration(0, 0), "compute_output": duration(0, 0),
                        "compute_infer": duration(total("infertune_batches_total", lambda l: l["batch_size"] == str(b)),
                                                  total("infertune_batch_compute_seconds_total",
                                                        lambda l: l["batch_size"] == str(b)))}
                       for b in sizes]
        last = total("infertune_last_inference_ms")
        return {"name": self.name, "version": "1", "last_inference": int(last) if math.isfinite(last) else 0,
                "inference_count": int(total("infertune_batch_size_sum")),
                "execution_count": int(total("infertune_batch_size_count")),
                "inference_stats": {
                    "success": duration(ok, total("infertune_request_seconds_sum")),
                    "fail": duration(failed, total("infertune_failed_request_seconds_total")),
                    "queue": duration(total("infertune_queue_seconds_count"), total("infertune_queue_seconds_sum")),
                    "compute_input": duration(0, 0),
                    "compute_infer": duration(total("infertune_compute_seconds_count"),
                                              total("infertune_compute_seconds_sum")),
                    "compute_output": duration(0, 0),
                    "cache_hit": duration(total("infertune_cache_hits_total"), 0),
                    "cache_miss": duration(total("infertune_cache_misses_total"), 0)},
                "batch_stats": batch_stats}


def _triton_tensor(spec) -> dict[str, Any]:
    datatype = DATATYPES.get(spec.dtype, spec.dtype.upper())
    return {"name": spec.name, "data_type": "TYPE_" + ("STRING" if datatype == "BYTES" else datatype),
            "dims": [d if isinstance(d, int) else -1 for d in spec.shape[1:]]}
