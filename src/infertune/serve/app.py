"""The HTTP app: KServe v2 (Open Inference Protocol) REST endpoints over the served models, each with its own
batcher, response cache and metric series, plus Triton's extensions that clients call (model configuration,
statistics, repository index, load and unload). Errors are JSON `{"error": "..."}` with the status PRODUCT.md
names, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from infertune.serve import codec
from infertune.serve.batcher import DeadlineExceeded, EngineFailed, QueueFull
from infertune.serve.codec import RequestError
from infertune.serve.endpoint import LOADING, READY, Endpoint, Loaded
from infertune.serve.limits import HttpLimits
from infertune.serve.metrics import ServerMetrics

log = logging.getLogger("infertune.serve")
JSON = "application/json"
TOKENIZE_INLINE_CHARS = 4096  # a request with more text than this is tokenized in a thread, off the event loop


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches, queues, caches and guards. Every field is an `infertune serve` option."""

    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 256
    cache_size: int = 1024
    cache_ttl_s: float | None = None
    cache_policy: str = "lru"
    timeout_ms: float = 30_000.0  # the deadline of a request that sets none
    max_body_bytes: int | None = None  # None: what max_batch_size rows of the model can need (ServedModel.body_limit)
    instances: int = 1
    drain_timeout_s: float = 30.0
    target_p99_ms: float | None = None  # batching driven by a latency target instead of the fixed window and size
    limits: HttpLimits = HttpLimits()


class ServerState:
    def __init__(self):
        self.draining = False
        self.inflight = 0
        self.exit = None  # set by the runner: tells uvicorn to stop once drained
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_requested: asyncio.Event | None = None
        self.changed: asyncio.Event | None = None  # set, while draining, whenever in-flight work finishes
        self.peers_ready: Callable[[], str | None] = lambda: None  # with --workers: why the others are not ready
        self.started: asyncio.Event | None = None  # set once every model has been loaded and warmed (or failed)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.drain_requested = asyncio.Event()
        self.changed = asyncio.Event()
        self.started = asyncio.Event()

    def drain(self) -> bool:
        """Stop taking work and exit once what is in flight is answered. Safe from a signal handler; False when
        the server is not running yet (then there is nothing to drain)."""
        self.draining = True
        if self.loop is None or self.loop.is_closed():
            return False
        self.loop.call_soon_threadsafe(self.drain_requested.set)
        return True

    def settled(self) -> None:
        if self.draining and self.changed is not None:
            self.changed.set()


INFER_BODY = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {"timeout_ms": {"type": "number", "exclusiveMinimum": 0},
                                                        "binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                           "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64",
                                                                   "FP16", "FP32", "FP64", "BYTES"]},
                           "data": {"type": "array"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}},
    },
}
ERROR = {"content": {JSON: {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}


def create_app(models: dict[str, tuple[Callable[[], Loaded], Loaded | None]], config: ServeConfig,
               token: str | None = None, say=print, multi_worker: bool = False,
               on_ready: Callable[[], None] | None = None) -> FastAPI:
    """An ASGI app serving `models`: name -> (how to load it, and its loaded form when it is already loaded).
    Each model is warmed up (every batch size it will see) before it counts as ready. `multi_worker`: one of
    `--workers` processes (readiness waits for the others; load and unload are refused)."""
    state = ServerState()
    if multi_worker:
        from infertune.serve.workers import peers_not_ready

        state.peers_ready = peers_not_ready
    metrics = ServerMetrics(config.max_batch_size)
    endpoints = {name: Endpoint(name, load, config, metrics, say=say, on_idle=state.settled)
                 for name, (load, _) in models.items()}

    async def start_all():
        for name, (_, loaded) in models.items():
            await endpoints[name].start(loaded)
        state.started.set()
        if all(e.state == READY for e in endpoints.values()):
            say("ready")
            if on_ready is not None:
                on_ready()

    async def drain_watch():
        """Sleeps until a drain is asked for, then wakes only when in-flight work finishes (no polling)."""
        await state.drain_requested.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.drain_timeout_s
        while state.inflight or any(e.batcher is not None and e.batcher.busy for e in endpoints.values()):
            state.changed.clear()
            try:
                await asyncio.wait_for(state.changed.wait(), deadline - loop.time())
            except (asyncio.TimeoutError, ValueError):
                say(f"drain: {state.inflight} requests still in flight after {config.drain_timeout_s:g} s; "
                    f"exiting anyway")
                break
        if state.exit is not None:
            state.exit()

    @asynccontextmanager
    async def lifespan(app):
        state.start()
        tasks = [asyncio.create_task(start_all()), asyncio.create_task(drain_watch())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for endpoint in endpoints.values():
                await endpoint.close()

    app = FastAPI(title="infertune serve", version="1", lifespan=lifespan,
                  description="KServe v2 (Open Inference Protocol) inference over HTTP, with dynamic batching, and "
                              "Triton's model configuration, statistics and repository extensions. Infer requests "
                              "may also use the binary tensor data extension: an Inference-Header-Content-Length "
                              "header, and tensor bytes after the JSON.")
    app.state.infertune = state
    app.state.endpoints = endpoints
    app.state.metrics = metrics
    app.state.config = config

    def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return answer(status, codec.error_body(message), headers)

    def server_not_ready() -> str | None:
        if state.draining:
            return "the server is draining (shutting down): retry on another replica"
        for endpoint in endpoints.values():
            reason = None if endpoint.unloaded else endpoint.not_ready()
            if reason:
                return reason
        return state.peers_ready()

    def find(name: str) -> Endpoint | Response:
        endpoint = endpoints.get(name)
        if endpoint is None:
            return error(404, f"unknown model '{name}': this server serves {', '.join(map(repr, endpoints))}")
        return endpoint

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = {404: f"no route {request.method} {request.url.path}: see /docs for the endpoints",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(e.status_code,
                                                                                            str(e.detail))
        return error(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"bad request at {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(e).__name__}); the server log has the details")

    @app.get("/v2", summary="Server metadata")
    async def server_metadata():
        from infertune import __version__

        return {"name": "infertune", "version": __version__,
                "extensions": ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]}

    @app.get("/v2/health/live", summary="Liveness: false only when the server cannot serve until restarted",
             responses={503: ERROR})
    async def live():
        dead = next((e for e in endpoints.values() if e.dead), None)
        if dead is not None:  # a dead batch loop never comes back: an orchestrator should restart the process
            return error(503, dead.not_ready())
        return {"live": True}

    @app.get("/v2/health/ready", summary="Readiness: every loaded model warm, false while draining",
             responses={503: ERROR})
    async def ready():
        reason = server_not_ready()
        return error(503, reason) if reason else {"ready": True}

    @app.get("/v2/models/{name}", summary="Model metadata", responses={404: ERROR, 503: ERROR})
    async def model_metadata(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        if endpoint.served is None:
            return error(503, endpoint.not_ready() or "not loaded")
        return {**endpoint.served.metadata(), "name": name}

    @app.get("/v2/models/{name}/ready", summary="Model readiness", responses={404: ERROR, 503: ERROR})
    async def model_ready(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        reason = "the server is draining (shutting down)" if state.draining else endpoint.not_ready()
        return error(503, reason) if reason else {"name": name, "ready": True}

    @app.get("/v2/models/{name}/config", summary="Model configuration (Triton's extension)",
             responses={404: ERROR, 503: ERROR})
    async def model_config(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        if endpoint.served is None:
            return error(503, endpoint.not_ready() or "not loaded")
        return endpoint.triton_config()

    @app.get("/v2/models/{name}/stats", summary="Model statistics (Triton's extension)", responses={404: ERROR})
    async def model_stats(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        return {"model_stats": [endpoint.triton_stats()]}

    @app.get("/v2/models/stats", summary="Statistics of every model (Triton's extension)")
    async def all_stats():
        return {"model_stats": [e.triton_stats() for e in endpoints.values()]}

    @app.post("/v2/repository/index", summary="The models and their state (Triton's repository extension)")
    async def repository_index():
        return [e.index_entry() for e in endpoints.values()]

    @app.post("/v2/repository/models/{name}/load", summary="Load (or reload) a model of the repository",
              responses={400: ERROR, 404: ERROR, 409: ERROR})
    async def load_model(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        if multi_worker:
            return error(409, "load and unload act on one worker; with --workers above 1 they are refused: restart "
                              "the server with the models to serve")
        if endpoint.state == LOADING:
            return error(409, f"model '{name}' is already loading")
        if endpoint.batcher is not None:
            await endpoint.stop(drain_s=config.drain_timeout_s)
        await endpoint.start()
        if endpoint.state != READY:
            return error(400, f"failed to load '{name}': {endpoint.reason}")
        return {}

    @app.post("/v2/repository/models/{name}/unload", summary="Unload a model: answer what it has queued, then free "
              "it", responses={404: ERROR, 409: ERROR})
    async def unload_model(name: str):
        endpoint = find(name)
        if isinstance(endpoint, Response):
            return endpoint
        if multi_worker:
            return error(409, "load and unload act on one worker; with --workers above 1 they are refused: restart "
                              "the server with the models to serve")
        await endpoint.stop(drain_s=config.drain_timeout_s)
        endpoint.unloaded = True
        return {}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def infer(name: str, headers: dict[bytes, bytes], receive) -> tuple[int, bytes, dict[str, str] | None,
                                                                              Endpoint | None]:
        """(status, body, headers, endpoint) for one infer request; `receive` is the ASGI receive of its body."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        state.inflight += 1
        endpoint = endpoints.get(name)
        try:
            if endpoint is None:
                return 404, codec.error_body(f"unknown model '{name}': this server serves "
                                             f"{', '.join(map(repr, endpoints))}"), None, None
            reason = "the server is draining (shutting down): retry on another replica" if state.draining \
                else endpoint.not_ready()
            if reason:
                return 503, codec.error_body(reason), {"Retry-After": "1"}, endpoint
            served, batcher, cache = endpoint.served, endpoint.batcher, endpoint.cache
            try:
                try:  # a client that trickles its body must not hold a drain open
                    body = await asyncio.wait_for(_read_body(headers, receive, config.max_body_bytes
                                                             or served.body_limit()), config.timeout_ms / 1000)
                except asyncio.TimeoutError:
                    return 408, codec.error_body(f"the request body did not arrive within {config.timeout_ms:g} ms"), \
                        None, endpoint
                decoded = codec.decode(body, served, headers.get(b"inference-header-content-length"))
                timeout_ms = decoded.timeout_ms or _header_timeout(headers) or config.timeout_ms
            except RequestError as e:
                return e.status, codec.error_body(e.message), e.headers, endpoint
            outputs = cache.get(decoded.key)
            if cache.size:
                endpoint.metrics.cache_lookup(outputs is not None, cache.hit_ratio)
            if outputs is None:
                deadline = arrived + timeout_ms / 1000
                if not served.is_text:
                    inputs = decoded.inputs
                elif sum(map(len, decoded.texts)) <= TOKENIZE_INLINE_CHARS:
                    inputs = served.encode_texts(decoded.texts)
                else:  # long texts: tokenizing them would hold every other request up
                    inputs = await loop.run_in_executor(endpoint.tokenizer, served.encode_texts, decoded.texts)
                try:
                    future = batcher.submit(inputs, decoded.rows, deadline, decoded.request_id)
                except QueueFull as e:
                    return 429, codec.error_body(f"{e}: retry later"), {"Retry-After": "1"}, endpoint
                except EngineFailed as e:  # the batch loop has ended: nothing will be served until a restart
                    return 503, codec.error_body(str(e)), None, endpoint
                timer = loop.call_at(deadline, _expire, future)  # cheaper than wait_for's task per request
                try:
                    outputs = await future
                except DeadlineExceeded:
                    return 504, codec.error_body(f"deadline of {timeout_ms:g} ms passed before the answer was "
                                                 f"ready: raise parameters.timeout_ms or the X-Timeout-Ms header"), \
                        None, endpoint
                except EngineFailed as e:
                    return 500, codec.error_body(str(e)), None, endpoint
                finally:
                    timer.cancel()
                cache.put(decoded.key, outputs)
            body, extra = codec.encode(served, decoded, outputs)
            return 200, body, extra, endpoint
        finally:
            state.inflight -= 1
            if not state.inflight:
                state.settled()

    async def answer_infer(name: str, headers: dict[bytes, bytes], receive, send) -> None:
        arrived = asyncio.get_running_loop().time()
        try:
            status, body, extra, endpoint = await infer(name, headers, receive)
        except Exception as e:  # a bug, never the client's input: JSON, counted, logged, no traceback out
            log.exception("internal error on infer for %s", name)
            status, body, extra, endpoint = 500, codec.error_body(f"internal error ({type(e).__name__}); the server "
                                                                  f"log has the details"), None, endpoints.get(name)
        if endpoint is not None:
            endpoint.metrics.answered(status, asyncio.get_running_loop().time() - arrived)
        extra = {k.lower(): v for k, v in (extra or {}).items()}
        content_type = extra.pop("content-type", JSON)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": body})

    @app.post("/v2/models/{name}/infer", summary="Inference (KServe v2)",
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": INFER_BODY}}}},
              responses={400: ERROR, 404: ERROR, 413: ERROR, 429: ERROR, 500: ERROR, 503: ERROR, 504: ERROR})
    async def infer_route(name: str, request: Request):
        # documents the route; requests normally take the fast path below, which skips routing and dependencies
        arrived = asyncio.get_running_loop().time()
        status, body, extra, endpoint = await infer(name, dict(request.scope["headers"]), request.receive)
        if endpoint is not None:
            endpoint.metrics.answered(status, asyncio.get_running_loop().time() - arrived)
        return answer(status, body, extra)

    asgi = InferFastPath(app, answer_infer)
    if token:
        from infertune.serve.auth import BearerToken

        asgi = BearerToken(asgi, token=token)
    app.state.asgi = asgi  # what uvicorn runs: the token check, then the infer fast path, then the app
    return app


class InferFastPath:
    """Pure ASGI: `POST /v2/models/{name}/infer` goes straight to the handler, skipping FastAPI's routing and
    dependency solving (measured on digits-cnn at concurrency 1: served p50 0.67 -> 0.50 ms); everything else
    goes to the app."""

    PREFIX, SUFFIX = "/v2/models/", "/infer"

    def __init__(self, app, handler):
        self.app = app
        self.handler = handler

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path.startswith(self.PREFIX) and path.endswith(self.SUFFIX):
                name = path[len(self.PREFIX):-len(self.SUFFIX)]
                if name and "/" not in name:
                    return await self.handler(name, dict(scope["headers"]), receive, send)
        return await self.app(scope, receive, send)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("the deadline passed"))


def _header_timeout(headers: dict[bytes, bytes]) -> float | None:
    value = headers.get(b"x-timeout-ms")
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = float("nan")
    if not math.isfinite(ms) or ms <= 0:
        raise RequestError(400, f"X-Timeout-Ms must be a positive number of milliseconds, got {value.decode(errors='replace')!r}")
    return ms


async def _read_body(headers: dict[bytes, bytes], receive, limit: int) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes: send fewer "
                                f"samples per request, or start the server with a larger --max-body-bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body is over the limit of {limit} bytes: send fewer samples per "
                                    f"request, or start the server with a larger --max-body-bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

