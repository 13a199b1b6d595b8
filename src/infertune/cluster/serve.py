"""`infertune serve --ray`: the same server on Ray Serve. Two deployments:

- `ModelReplica` (`--replicas N` or `--autoscale MIN,MAX`, one CPU each unless told): loads the models and runs
  the very app `infertune serve` runs (codec, batcher, cache, metrics, errors: nothing written twice), called
  in-process with each request. It counts as started only after every model is warm, and reports unhealthy if a
  batch loop ends, so Ray replaces it.
- `Ingress` (no CPU of its own): takes HTTP from Ray Serve's proxy and hands each request to a replica through a
  deployment handle, so what Ray does is mapped to the contract: a full queue (`max_queued_requests`) is 429 with
  `Retry-After`, a replica that dies with the request in it is retried once on another, then 503.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

from ray import serve

RETRY_AFTER = [(b"retry-after", b"1")]


async def call_asgi(asgi, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                    body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI app in this process: (status, headers, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
             "root_path": "", "headers": headers, "client": None, "server": None}
    delivered = asyncio.Event()
    answer = {"status": 500, "headers": [], "body": []}

    async def receive():
        if not delivered.is_set():
            delivered.set()
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the request is whole: nothing more comes
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer["body"].append(message.get("body", b""))

    await asgi(scope, receive, send)
    return answer["status"], answer["headers"], b"".join(answer["body"])


class ModelReplica:
    """The models and infertune's app, in one Ray Serve replica."""

    async def __init__(self, named: list[tuple[str, str]], load_kwargs: dict[str, Any], config, token: str | None):
        from infertune.serve.app import create_app
        from infertune.serve.server import load_engines

        self.say = lambda line: print(f"infertune serve [ray replica]: {line}", flush=True)
        loaded, loaders = {}, {}
        for name, spec in named:
            one = await asyncio.to_thread(load_engines, spec, name=name, config=config, **load_kwargs)
            name = one.served.name
            if name in loaded:
                raise ValueError(f"two models are named '{name}': name them apart with NAME=SPEC")
            loaded[name] = one
            loaders[name] = lambda spec=spec, name=name: load_engines(spec, name=name, config=config, **load_kwargs)
        self.app = create_app({n: (loaders[n], loaded[n]) for n in loaded}, config, token=token, say=self.say)
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        await self.app.state.infertune.started.wait()  # warm before Ray routes anything here
        failed = [e for e in self.app.state.endpoints.values() if e.state != "READY"]
        if failed:
            raise RuntimeError(f"model '{failed[0].name}' did not start: {failed[0].reason}")

    async def handle(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return await call_asgi(self.app.state.asgi, method, path, query, headers, body)

    def check_health(self) -> None:
        dead = next((e for e in self.app.state.endpoints.values() if e.dead), None)
        if dead is not None:
            raise RuntimeError(dead.not_ready())


class Ingress:
    """HTTP in, one replica call out, Ray's failures mapped to infertune's statuses."""

    def __init__(self, replicas):
        from prometheus_client import CollectorRegistry, Counter

        self.replicas = replicas
        self.registry = CollectorRegistry()
        self.requests = Counter("infertune_ray_requests", "Requests answered by the Ray ingress, by status",
                                ["status"], registry=self.registry)
        self.retries = Counter("infertune_ray_retries", "Requests sent again after their replica died",
                               registry=self.registry)
        self.replica_failures = Counter("infertune_ray_replica_failures", "Replicas that died with a request in "
                                        "them", registry=self.registry)
        self.backpressure = Counter("infertune_ray_backpressure", "Requests refused because the replicas' queues "
                                    "were full (max_queued_requests)", registry=self.registry)

    def __serve_build_asgi_app__(self):
        return _Asgi(self.asgi)  # an object with an async __call__: what uvicorn recognises as ASGI 3

    async def asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, headers, body = await self.forward(scope, b"".join(chunks))
        if scope["path"] == "/metrics" and status == 200:
            from prometheus_client import generate_latest

            body = generate_latest(self.registry) + body
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        self.requests.labels(str(status)).inc()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def forward(self, scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        from infertune.serve.codec import error_body

        args = (scope["method"], scope["path"], scope.get("query_string", b""), list(scope["headers"]), body)
        for attempt in (1, 2):
            try:
                return await self.replicas.handle.remote(*args)
            except BackPressureError as e:
                self.backpressure.inc()
                return 429, [(b"content-type", b"application/json"), *RETRY_AFTER], error_body(
                    f"every replica's queue is full ({e}): retry later")
            except (RayActorError, DeploymentUnavailableError) as e:
                self.replica_failures.inc()
                if attempt == 1:
                    self.retries.inc()
                    continue
                return 503, [(b"content-type", b"application/json"), *RETRY_AFTER], error_body(
                    f"the replica serving this request died and so did the retry ({type(e).__name__}): retry later")
        raise AssertionError("unreachable")


class _Asgi:
    def __init__(self, handler):
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        await self.handler(scope, receive, send)


def serve_on_ray(named: list[tuple[str, str]], *, address: str | None, host: str, port: int, replicas: int,
                 autoscale: tuple[int, int] | None, cpus_per_replica: float, config, token: str | None,
                 load_kwargs: dict[str, Any], say) -> int:
    """Deploy on Ray Serve and block until SIGTERM/SIGINT; then take the application down and return 0."""
    from infertune.cluster.connect import connected

    if port == 0:  # Ray's proxy needs the number: take a free one now
        import socket

        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    with connected(address):
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        model_options: dict[str, Any] = dict(
            ray_actor_options={"num_cpus": cpus_per_replica},
            max_ongoing_requests=max(8, 2 * config.max_batch_size * config.instances),
            max_queued_requests=config.max_queue, health_check_period_s=2, health_check_timeout_s=30,
            graceful_shutdown_timeout_s=config.drain_timeout_s)
        if autoscale is not None:
            model_options["autoscaling_config"] = {"min_replicas": autoscale[0], "max_replicas": autoscale[1],
                                                   "target_ongoing_requests": config.max_batch_size}
        else:
            model_options["num_replicas"] = replicas
        threads = max(1, int(cpus_per_replica))
        load_kwargs = {**load_kwargs, "options": {"threads": threads, **(load_kwargs.get("options") or {})}}
        model = serve.deployment(ModelReplica, name="infertune-model", **model_options)
        ingress = serve.deployment(serve.ingress()(Ingress), name="infertune-ingress",
                                   ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4096)
        app = ingress.bind(model.bind(named, load_kwargs, config, token))
        serve.run(app, name="infertune", route_prefix="/")
        shown = f"{autoscale[0]}-{autoscale[1]} replicas (autoscaled)" if autoscale else \
            f"{replicas} replica{'s' if replicas > 1 else ''}"
        say(f"serving {', '.join(repr(n or spec) for n, spec in named)} on Ray Serve, {shown}, at http://{host}:{port}; "
            f"ready: every replica warm")
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stop.wait()
            say("draining: taking the application down")
            serve.delete("infertune")
            serve.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        say("stopped")
    return 0
