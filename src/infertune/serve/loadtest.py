"""`infertune loadtest`: a bounded load generator for a KServe v2 server, closed-loop (`concurrency` clients,
each sending its next request when the last one is answered) or open-loop (`rate` requests a second on a fixed
schedule, however slowly the server answers). Requests carry real inputs from a data set, one sample each.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import orjson

from infertune.errors import ConfigError

MAX_OPEN_LOOP_INFLIGHT = 2048  # past this the generator, not the server, would be the bottleneck: it waits


@dataclass
class LoadResult:
    url: str
    model: str
    mode: str
    sent: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of the requests answered 200
    generator_waits: int = 0

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "mode": self.mode, "sent": self.sent, "ok": self.ok,
                "seconds": self.seconds, "throughput": self.throughput, "statuses": dict(self.statuses),
                "p50_ms": self.percentile(50), "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "generator_waits": self.generator_waits}


def loadtest(url: str, *, model: str, concurrency: int = 16, requests: int = 2000, rate: float | None = None,
             data: str | None = None, token: str | None = None, timeout_s: float = 60.0,
             progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Send `requests` infer requests to `url` for `model` and measure them.

    Example: `loadtest("http://127.0.0.1:8000", model="digits-cnn", concurrency=16).throughput`.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be a positive integer, got {concurrency}")
    if requests < 1:
        raise ConfigError(f"--requests must be a positive integer, got {requests}")
    if rate is not None and rate <= 0:
        raise ConfigError(f"--rate must be a positive number of requests a second, got {rate}")
    return asyncio.run(_loadtest(url.rstrip("/"), model, concurrency, requests, rate, data, token, timeout_s,
                                 progress))


async def _loadtest(url, model, concurrency, requests, rate, data, token, timeout_s, progress) -> LoadResult:
    import aiohttp

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    connector = aiohttp.TCPConnector(limit=concurrency if rate is None else MAX_OPEN_LOOP_INFLIGHT)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        metadata = await _metadata(session, url, model)
        bodies = request_bodies(metadata, data)
        infer = f"{url}/v2/models/{model}/infer"
        result = LoadResult(url=url, model=model, sent=0, seconds=0.0,
                            mode=f"open loop at {rate:g}/s" if rate else f"closed loop, concurrency {concurrency}")

        step = max(1, requests // 100)

        async def send(i: int, scheduled: float | None = None) -> None:
            started = scheduled or time.perf_counter()  # open loop: from the scheduled time, lag included
            try:
                async with session.post(infer, data=bodies[i % len(bodies)]) as response:
                    await response.read()
                    status = str(response.status)
            except asyncio.TimeoutError:
                status = "client-timeout"
            except aiohttp.ClientError as e:
                status = f"connection-error ({type(e).__name__})"
            result.statuses[status] += 1
            if status == "200":
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            done = sum(result.statuses.values())
            if progress and (done % step == 0 or done == requests):
                progress(done, requests)

        started = time.perf_counter()
        if rate is None:
            counter = iter(range(requests))

            async def client() -> None:
                for i in counter:
                    result.sent += 1
                    await send(i)

            await asyncio.gather(*(client() for _ in range(concurrency)))
        else:
            tasks: set[asyncio.Task] = set()
            for i in range(requests):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                while len(tasks) >= MAX_OPEN_LOOP_INFLIGHT:
                    result.generator_waits += 1
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                result.sent += 1
                task = asyncio.create_task(send(i, started + i / rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks)
        result.seconds = time.perf_counter() - started
        return result


async def _metadata(session, url: str, model: str) -> dict[str, Any]:
    import aiohttp

    try:
        async with session.get(f"{url}/v2/models/{model}") as response:
            body = await response.read()
            if response.status == 404:
                raise ConfigError(f"the server at {url} does not serve model '{model}': "
                                  f"{orjson.loads(body).get('error', '')}")
            if response.status == 401:
                raise ConfigError(f"the server at {url} wants a token: pass --token-file")
            if response.status != 200:
                raise ConfigError(f"the server at {url} answered {response.status} for model '{model}'s metadata")
            return orjson.loads(body)
    except aiohttp.ClientConnectionError as e:
        raise ConfigError(f"no server answers at {url} ({type(e).__name__}): start one with infertune serve, "
                          f"or check the URL") from e


def request_bodies(metadata: dict[str, Any], data: str | None, limit: int = 512) -> list[bytes]:
    """Up to `limit` distinct one-sample infer requests from real data: held-out sentences for a text model,
    held-out rows of the model's data set (or `data`) otherwise."""
    from infertune.data import load_dataset

    inputs = metadata["inputs"]
    source = data or (metadata.get("parameters") or {}).get("default_data")
    if inputs and inputs[0]["datatype"] == "BYTES":
        split = load_dataset(source or "docstrings").heldout_or_first()
        if split.texts is None:
            raise ConfigError(f"model '{metadata['name']}' takes text but data '{source}' holds arrays: "
                              f"pass --data docstrings or a text data set")
        return [orjson.dumps({"inputs": [{"name": inputs[0]["name"], "datatype": "BYTES", "shape": [1],
                                          "data": [str(t)]}]}) for t in list(split.texts)[:limit]]
    if not source:
        raise ConfigError(f"model '{metadata['name']}' has no default data set: pass --data (an .npz with its "
                          f"inputs)")
    from infertune.serve.codec import DATATYPES

    numpy_types = {v: k for k, v in DATATYPES.items()}
    specs = {i["name"]: (numpy_types[i["datatype"]], tuple("batch" if d < 0 else d for d in i["shape"]))
             for i in inputs}
    split = load_dataset(source, input_specs=specs).heldout_or_first()
    bodies = []
    for row in range(min(limit, len(split))):
        bodies.append(orjson.dumps({"inputs": [
            {"name": name, "datatype": i["datatype"], "shape": [1, *split.inputs[name].shape[1:]],
             "data": split.inputs[name][row].ravel()} for name, i in zip(specs, inputs)]},
            option=orjson.OPT_SERIALIZE_NUMPY))
    return bodies
