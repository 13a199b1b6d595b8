"""`infertune loadtest`: a bounded load generator for a KServe v2 server, closed-loop (`concurrency` clients,
each sending its next request when the last one is answered) or open-loop (`rate` requests a second on a fixed
schedule, however slowly the server answers). Requests carry real inputs from a data set, one sample each, or
`rows` samples each (as a client that batches its own work would send), in JSON or as binary tensor data.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
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
    rows: int = 1  # samples per request
    server_cpu_s: float | None = None  # the server's CPU time (all its processes) over the run, from its /metrics
    client_cpu_s: float | None = None  # this load generator's own CPU time over the run (on the same machine, it
    #                                    competes with the server for the cores)
    energy_j: float | None = None  # the machine's energy over the run, where it exposes it (RAPL)
    energy_note: str = ""

    @property
    def cpu_s_per_1000(self) -> float | None:
        """Server CPU-seconds per 1,000 requests answered (of any status)."""
        answered = sum(self.statuses.values())
        return self.server_cpu_s / answered * 1000 if self.server_cpu_s is not None and answered else None

    @property
    def client_cpu_s_per_1000(self) -> float | None:
        """The load generator's CPU-seconds per 1,000 requests answered."""
        answered = sum(self.statuses.values())
        return self.client_cpu_s / answered * 1000 if self.client_cpu_s is not None and answered else None

    @property
    def joules_per_1000(self) -> float | None:
        answered = sum(self.statuses.values())
        return self.energy_j / answered * 1000 if self.energy_j is not None and answered else None

    @property
    def items_per_s(self) -> float:
        return self.throughput * self.rows

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
                "seconds": self.seconds, "throughput": self.throughput, "rows": self.rows,
                "items_per_s": self.items_per_s, "statuses": dict(self.statuses),
                "p50_ms": self.percentile(50), "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "generator_waits": self.generator_waits, "server_cpu_s": self.server_cpu_s,
                "server_cpu_s_per_1000": self.cpu_s_per_1000, "client_cpu_s": self.client_cpu_s,
                "client_cpu_s_per_1000": self.client_cpu_s_per_1000, "energy_j": self.energy_j,
                "joules_per_1000": self.joules_per_1000, "energy_note": self.energy_note}


def loadtest(url: str, *, model: str, concurrency: int = 16, requests: int = 2000, rate: float | None = None,
             data: str | None = None, token: str | None = None, timeout_s: float = 60.0, rows: int = 1,
             binary: bool = False, text_field: str = "text",
             progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Send `requests` infer requests to `url` for `model` and measure them.

    Example: `loadtest("http://127.0.0.1:8000", model="digits-cnn", concurrency=16).throughput`.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be a positive integer, got {concurrency}")
    if requests < 1:
        raise ConfigError(f"--requests must be a positive integer, got {requests}")
    if rows < 1:
        raise ConfigError(f"--rows must be a positive integer, got {rows}")
    if rate is not None and rate <= 0:
        raise ConfigError(f"--rate must be a positive number of requests a second, got {rate}")
    coroutine = _loadtest(url.rstrip("/"), model, concurrency, requests, rate, data, token, timeout_s, rows, binary,
                          text_field, progress)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def _loadtest(url, model, concurrency, requests, rate, data, token, timeout_s, rows, binary, text_field,
                    progress) -> LoadResult:
    target = _Target.parse(url, token)
    pool = _Pool(target, limit=concurrency if rate is None else MAX_OPEN_LOOP_INFLIGHT, timeout_s=timeout_s)
    try:
        metadata = await _metadata(pool, target, model)
        infer = f"{target.base}/v2/models/{model}/infer"
        messages = [target.post(infer, body, header_length)
                    for body, header_length in request_bodies(metadata, data, rows=rows, binary=binary,
                                                                          text_field=text_field)]
        result = LoadResult(url=url, model=model, sent=0, seconds=0.0, rows=rows,
                            mode=(f"open loop at {rate:g}/s" if rate else f"closed loop, concurrency {concurrency}")
                            + (", binary tensors" if binary else ""))

        step = max(1, requests // 100)
        cpu_before = await _server_cpu(pool, target)
        energy = Energy()

        async def send(i: int, scheduled: float | None = None) -> None:
            started = scheduled or time.perf_counter()  # open loop: from the scheduled time, lag included
            try:
                status = str((await pool.request(messages[i % len(messages)]))[0])
            except asyncio.TimeoutError:
                status = "client-timeout"
            except OSError as e:
                status = f"connection-error ({type(e).__name__})"
            result.statuses[status] += 1
            if status == "200":
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            done = sum(result.statuses.values())
            if progress and (done % step == 0 or done == requests):
                progress(done, requests)

        started, client_cpu = time.perf_counter(), time.process_time()
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
        result.client_cpu_s = time.process_time() - client_cpu
        cpu_after = await _server_cpu(pool, target)
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu_s = cpu_after - cpu_before
        result.energy_j, result.energy_note = energy.used()
        return result
    finally:
        pool.close()


async def _server_cpu(pool: "_Pool", target: "_Target") -> float | None:
    """The server's own CPU time (`infertune_process_cpu_seconds`, summed over its workers), or None when its
    /metrics does not say (another server, or a token it does not accept)."""
    try:
        status, body = await pool.request(target.get(f"{target.base}/metrics"))
    except (OSError, asyncio.TimeoutError):
        return None
    if status != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("infertune_process_cpu_seconds "):
            return float(line.split()[-1])
    return None


class Energy:
    """The package energy counters of Intel RAPL (/sys/class/powercap/intel-rapl:N/energy_uj), read at the start
    and at the end; where the machine does not expose them (most VMs, this one), `used` says so, and nothing is
    estimated. On a GPU, NVML would be the source; it is not read here."""

    ROOT = "/sys/class/powercap"

    def __init__(self):
        self.start = self._read()

    def _read(self) -> dict[str, tuple[int, int]] | None:
        import glob
        import os

        zones = {}
        for zone in glob.glob(f"{self.ROOT}/intel-rapl:[0-9]*"):
            if zone.count(":") != 1:
                continue  # a sub-zone (core, uncore): the package counts it already
            try:
                with open(os.path.join(zone, "energy_uj")) as f:
                    energy = int(f.read())
                with open(os.path.join(zone, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
            except (OSError, ValueError):
                return None
            zones[zone] = (energy, wrap)
        return zones or None

    def used(self) -> tuple[float | None, str]:
        end = self._read()
        if self.start is None or end is None:
            return None, f"energy not measured: this machine exposes no RAPL counters under {self.ROOT}"
        total = 0
        for zone, (energy, wrap) in end.items():
            before = self.start.get(zone, (energy, wrap))[0]
            total += energy - before if energy >= before else energy + wrap - before
        return total / 1e6, "RAPL package energy, the whole machine (the load generator included)"


async def _metadata(pool: "_Pool", target: "_Target", model: str) -> dict[str, Any]:
    try:
        status, body = await pool.request(target.get(f"{target.base}/v2/models/{model}"))
    except (OSError, asyncio.TimeoutError) as e:
        raise ConfigError(f"no server answers at {target.url} ({type(e).__name__}): start one with infertune "
                          f"serve, or check the URL") from e
    if status == 404:
        try:
            detail = orjson.loads(body).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            detail = ""
        raise ConfigError(f"the server at {target.url} does not serve model '{model}': {detail}".rstrip(": "))
    if status == 401:
        raise ConfigError(f"the server at {target.url} wants a token: pass --token-file")
    if status != 200:
        raise ConfigError(f"the server at {target.url} answered {status} for model '{model}'s metadata")
    return orjson.loads(body)


# -- the client ------------------------------------------------------------------------------------------------
# A load generator on the server's own cores must cost as little as it can: every microsecond it spends is taken
# from the server it measures. Requests are encoded once, up front; connections are raw asyncio protocols on
# uvloop with httptools parsing the answers (measured on digits-cnn, 64 clients: 9,895 requests/s against 5,943
# with aiohttp, and concurrency-1 p50 0.237 ms against 0.518 ms, same server, same run).


@dataclass(frozen=True)
class _Target:
    url: str
    host: str
    port: int
    base: str  # the URL's path, without a trailing slash
    headers: bytes

    @classmethod
    def parse(cls, url: str, token: str | None) -> "_Target":
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"loadtest needs a plain http:// URL with a host, like http://127.0.0.1:8000, got "
                              f"{url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise ConfigError(f"the URL {url!r} has a bad port") from None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        headers = f"Host: {host}:{port}\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "")
        return cls(url=url, host=parts.hostname, port=port, base=parts.path.rstrip("/"), headers=headers.encode())

    def post(self, path: str, body: bytes, header_length: int | None = None) -> bytes:
        binary = f"Inference-Header-Content-Length: {header_length}\r\n" if header_length is not None else ""
        kind = "application/octet-stream" if header_length is not None else "application/json"
        return (f"POST {path} HTTP/1.1\r\n".encode() + self.headers +
                f"Content-Type: {kind}\r\n{binary}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def get(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\n".encode() + self.headers + b"\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self):
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._errors = (httptools.HttpParserError,)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future | None = None
        self._body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._errors as e:
            self._fail(ConnectionError(f"the server's answer is not HTTP/1.1: {e}"))
            self.close()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body, self._body = b"".join(self._body), []
        if not self._parser.should_keep_alive():
            self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), body))
        self._waiter = None

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, error: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self._waiter = None

    def send(self, message: bytes) -> asyncio.Future:
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(message)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class _Pool:
    """Up to `limit` connections to one server; a request takes an idle one or opens one, or waits for one."""

    def __init__(self, target: _Target, limit: int, timeout_s: float):
        self.target, self.limit, self.timeout_s = target, limit, timeout_s
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiting: deque[asyncio.Future] = deque()

    async def request(self, message: bytes) -> tuple[int, bytes]:
        """(status, body); raises asyncio.TimeoutError after timeout_s, OSError when the connection fails."""
        loop = asyncio.get_running_loop()
        connection = await self._acquire()
        answer = connection.send(message)
        timer = loop.call_later(self.timeout_s, _time_out, answer)
        try:
            return await answer
        except BaseException:
            connection.close()  # a late answer must not be read as the next request's
            raise
        finally:
            timer.cancel()
            self._release(connection)

    async def _acquire(self) -> _Connection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection
                self._all.discard(connection)
            if len(self._all) + self._opening < self.limit:
                self._opening += 1
                try:  # asyncio and uvloop set TCP_NODELAY on their own
                    _, connection = await asyncio.get_running_loop().create_connection(
                        _Connection, self.target.host, self.target.port)
                except BaseException:
                    self._wake_one()  # the slot is free again
                    raise
                finally:
                    self._opening -= 1
                self._all.add(connection)
                return connection
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            self._all.discard(connection)
        else:
            self._idle.append(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def request_bodies(metadata: dict[str, Any], data: str | None, limit: int = 512, rows: int = 1,
                   binary: bool = False, text_field: str = "text") -> list[tuple[bytes, int | None]]:
    """Up to `limit` distinct infer requests of `rows` samples each from real data: held-out sentences for a text
    model, held-out rows of the model's data set (or `data`) otherwise. Request k holds samples k*rows onwards,
    wrapping around the split. Each is (body, None) in JSON, or (body, length of its JSON header) with `binary`:
    tensors as binary data both ways (the binary tensor data extension)."""
    from infertune.resolver import resolve_data

    inputs = metadata["inputs"]
    source = data or (metadata.get("parameters") or {}).get("default_data")
    if inputs and inputs[0]["datatype"] == "BYTES":
        split = resolve_data(source or "docstrings", text_field=text_field).heldout_or_first()
        if split.texts is None:
            raise ConfigError(f"model '{metadata['name']}' takes text but data '{source}' holds arrays: "
                              f"pass --data docstrings or a text data set")
        texts = [str(t) for t in split.texts]
        return [_body({inputs[0]["name"]: ("BYTES", [texts[i % len(texts)] for i in range(k * rows, (k + 1) * rows)])},
                      binary) for k in range(min(limit, len(texts)))]
    if not source:
        raise ConfigError(f"model '{metadata['name']}' has no default data set: pass --data (an .npz with its "
                          f"inputs)")
    from infertune.serve.codec import DATATYPES

    numpy_types = {v: k for k, v in DATATYPES.items()}
    specs = {i["name"]: (numpy_types[i["datatype"]], tuple("batch" if d < 0 else d for d in i["shape"]))
             for i in inputs}
    split = resolve_data(source, input_specs=specs).heldout_or_first()
    if split.inputs is None:
        raise ConfigError(f"model '{metadata['name']}' takes arrays but data '{source}' holds texts: pass --data "
                          f"(an .npz with its inputs)")
    bodies = []
    for k in range(min(limit, len(split))):
        index = np.arange(k * rows, (k + 1) * rows) % len(split)
        bodies.append(_body({name: (i["datatype"], split.inputs[name][index]) for name, i in zip(specs, inputs)},
                            binary))
    return bodies


def _body(tensors: dict[str, tuple[str, Any]], binary: bool) -> tuple[bytes, int | None]:
    """One infer request: name -> (datatype, array or list of strings)."""
    from infertune.serve.codec import to_binary, to_binary_strings

    items, raw = [], []
    for name, (datatype, values) in tensors.items():
        shape = [len(values)] if datatype == "BYTES" else list(values.shape)
        item = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            data = to_binary_strings(values) if datatype == "BYTES" else to_binary(values)
            item["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            item["data"] = values if datatype == "BYTES" else values.ravel()
        items.append(item)
    request: dict[str, Any] = {"inputs": items}
    if binary:
        request["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY)
    return (header + b"".join(raw), len(header)) if binary else (header, None)
