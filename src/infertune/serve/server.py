"""`infertune serve`: load the engines, build the app, run it on uvicorn; SIGTERM drains, then exits 0."""

from __future__ import annotations

import functools
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

from infertune.errors import ConfigError
from infertune.serve.app import ServeConfig, create_app
from infertune.serve.codec import ServedModel
from infertune.serve.endpoint import Loaded


def serve(models: str | list[str], *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          backend: str | None = None, weights: str | None = None, data: str | None = None, task: str | None = None,
          text_field: str = "text", config: ServeConfig = ServeConfig(), token_file: str | Path | None = None,
          options: dict[str, Any] | None = None, workers: int = 1, ray: str | None = None, replicas: int = 1,
          autoscale: tuple[int, int] | None = None, cpus_per_replica: float = 1.0, say=None) -> int:
    """Serve `models` (anything `infertune.resolve` reads: run directories, Hugging Face folders, zoo names, .onnx
    files, ensembles...; `NAME=SPEC` names one in the URL) over KServe v2 until SIGTERM/SIGINT, in `workers`
    processes sharing the port, or on Ray Serve with `ray` (a cluster address, or 'local').

    Example: `serve(["runs/demo", "digits=digits-cnn"], port=8000, config=ServeConfig(max_batch_size=32))`.
    """
    say = say or (lambda line: print(f"infertune serve: {line}", file=sys.stderr, flush=True))
    _log_to_stderr()
    check_config(config, port)
    named = name_models([models] if isinstance(models, str) else list(models), name)
    token = read_token(token_file) if token_file is not None else None
    if workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers}")
    load_kwargs = dict(backend=backend, weights=weights, data=data, task=task, text_field=text_field, options=options)
    if ray is not None:
        from infertune.cluster.serve import serve_on_ray

        if workers > 1:
            raise ConfigError("--workers and --ray do not go together: on Ray, --replicas (or --autoscale) sets the "
                              "processes")
        _check_replicas(replicas, autoscale, cpus_per_replica)
        return serve_on_ray(named, address=ray, host=host, port=port, replicas=replicas, autoscale=autoscale,
                            cpus_per_replica=cpus_per_replica, config=config, token=token, load_kwargs=load_kwargs,
                            say=say)
    worker = os.environ.get(WORKER_ENV)
    if workers > 1 and worker is None:
        from infertune.serve.workers import supervise

        # fail here, once, on a model that cannot load, before any worker starts; and learn the default names
        named = unique([(n or load_engines(spec, name=None, config=config, check_only=True, **load_kwargs).served.name,
                         spec) for n, spec in named])
        kwargs = dict(models=[f"{n}={spec}" for n, spec in named], host=host, config=config, token_file=token_file,
                      workers=workers, **load_kwargs)
        return supervise(workers, host, port, kwargs, say=say)
    ready = [load_engines(spec, name=n, config=config, **load_kwargs) for n, spec in named]  # fails now: exit 2
    named = unique([(one.served.name, spec) for one, (_, spec) in zip(ready, named)])
    loaded = {one.served.name: one for one in ready}
    loaders = {n: functools.partial(load_engines, spec, name=n, config=config, **load_kwargs) for n, spec in named}
    sock = _bind(host, port, reuse_port=worker is not None)
    bound = sock.getsockname()[1]
    on_ready = None
    if worker is not None:
        from infertune.serve.workers import mark_ready

        on_ready = functools.partial(mark_ready, worker)
    app = create_app({n: (loaders[n], loaded[n]) for n in loaders}, config, token=token, say=say,
                     multi_worker=worker is not None, on_ready=on_ready)
    described = ", ".join(f"'{n}' on {loaded[n].backend}" for n in loaded)
    run_app(app, sock, say=say,
            banner=f"serving {described} ({config.instances} instance{'s' if config.instances > 1 else ''} each) at "
                   f"http://{_url_host(host)}:{bound}; ready after warm-up")
    return 0


WORKER_ENV = "INFERTUNE_SERVE_WORKER"  # set in each worker process by the supervisor: its index


def _check_replicas(replicas: int, autoscale: tuple[int, int] | None, cpus: float) -> None:
    if replicas < 1:
        raise ConfigError(f"--replicas must be a positive integer, got {replicas}")
    if autoscale is not None and not 0 <= autoscale[0] <= autoscale[1] or autoscale is not None and autoscale[1] < 1:
        raise ConfigError(f"--autoscale takes MIN,MAX with 0 <= MIN <= MAX and MAX >= 1, got {autoscale}")
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-replica must be a positive number, got {cpus}")


def name_models(specs: list[str], name: str | None) -> list[tuple[str | None, str]]:
    """(URL name, spec) for each model: `NAME=SPEC`, else `--name` (one model), else None (the loaded model's own
    name, known once it is loaded)."""
    if not specs:
        raise ConfigError("name at least one model to serve: a run directory, zoo name, Hugging Face folder, .onnx "
                          "file, ensemble file or factory")
    if name is not None and len(specs) > 1:
        raise ConfigError("--name names a single model; with several, write NAME=SPEC for each (digits=digits-cnn)")
    named = []
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if sep and label and rest and all(c.isalnum() or c in "-_." for c in label):
            named.append((label, rest))
        else:
            named.append((name, spec))
    return unique(named) if all(n for n, _ in named) else named


def unique(named: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for label, spec in named:
        if label in seen:
            raise ConfigError(f"two models are named '{label}' ({seen[label]} and {spec}): name them apart with "
                              f"NAME=SPEC")
        seen[label] = spec
    return named


def _log_to_stderr() -> None:
    """The server's own log (engine failures with their request ids, a batch loop that ended) on stderr, once."""
    import logging

    log = logging.getLogger("infertune.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("infertune serve: %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def check_config(config: ServeConfig, port: int) -> None:
    def positive(value, flag, kind=int):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{flag} must be a positive {'integer' if kind is int else 'number'}, got {value}")

    positive(config.max_batch_size, "--max-batch-size")
    positive(config.max_queue, "--max-queue")
    positive(config.instances, "--instances")
    positive(config.timeout_ms, "--timeout-ms", float)
    if config.max_body_bytes is not None:
        positive(config.max_body_bytes, "--max-body-bytes")
    if config.target_p99_ms is not None:
        positive(config.target_p99_ms, "--target-p99-ms", float)
    from infertune.serve.cache import make_cache

    make_cache(config.cache_policy, 0)  # an unknown policy fails here
    if config.max_delay_ms < 0:
        raise ConfigError(f"--max-delay-ms must be 0 or more, got {config.max_delay_ms}")
    if config.cache_size < 0:
        raise ConfigError(f"--cache-size must be 0 (off) or more, got {config.cache_size}")
    if config.cache_ttl_s is not None and config.cache_ttl_s <= 0:
        raise ConfigError(f"--cache-ttl-s must be a positive number of seconds, got {config.cache_ttl_s}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 (any free port) to 65535, got {port}")
    config.limits.check()
    _raise_descriptor_limit(config.limits.max_connections)


def _raise_descriptor_limit(connections: int) -> None:
    """Every connection holds a file descriptor: raise the soft limit (up to the hard one) so that
    `--max-connections` of them, plus the engines' files, fit; past the limit, accept() fails for everyone."""
    import resource

    need = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        raise ConfigError(f"--max-connections {connections} needs {need} file descriptors, but this process may "
                          f"open {soft} (ulimit -n): lower --max-connections or raise ulimit -n")


def read_token(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--token-file '{path}' not found: write the token into it (one line)")
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file '{path}' must hold one token without spaces")
    return token


def load_engines(model: str, *, name: str | None, config: ServeConfig, backend: str | None = None,
                 weights: str | None = None, data: str | None = None, task: str | None = None, text_field: str = "text",
                 options: dict[str, Any] | None = None, check_only: bool = False) -> Loaded:
    """`config.instances` engines of the model a spec names (threads split between them), what the HTTP layer knows
    of it, and warm-up batches from its data (or random inputs) at every batch size the batcher may form (powers of
    two up to the max, and the max). A process entry (workers and replicas reload from specs), so it resolves.
    `check_only`: load one engine to find out whether the model loads, and keep nothing."""
    from infertune.engine import load
    from infertune.resolver import resolve

    source, dataset = resolve(model, data=data, weights=weights, task=task, text_field=text_field)
    options = dict(options or {})
    if config.instances > 1 and "threads" not in options:
        options["threads"] = max(1, (os.cpu_count() or 1) // config.instances)
    engines = [load(source, backend=backend, **options) for _ in range(1 if check_only else config.instances)]
    first = engines[0].model
    served = ServedModel(name=name or first.name, signature=first.signature, encode_texts=first.encode_texts,
                         max_batch_size=config.max_batch_size,
                         default_data=dataset.name if dataset is not None and dataset.spec is not None else None)
    sizes = sorted({min(2 ** i, config.max_batch_size) for i in range(config.max_batch_size.bit_length())}
                   | {config.max_batch_size})
    return Loaded(engines=engines, served=served, warmup=[_representative(first, dataset, n) for n in sizes],
                  backend=engines[0].session.backend)


def _representative(model, dataset, rows: int) -> dict[str, np.ndarray]:
    if dataset is not None:
        split = dataset.heldout_or_first()
        if len(split) and (split.texts is not None) == model.is_text:
            index = np.arange(rows) % len(split)
            return model.inputs_for(split, index)
    return model.example_inputs(batch_size=rows)


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # workers share the port: the kernel spreads connections over them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}): pick another --port or --host") from e
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_app(app, sock: socket.socket, *, say, banner: str) -> None:
    import uvicorn

    from infertune.serve.protocol import guarded_protocol

    class DrainingServer(uvicorn.Server):
        """The first SIGTERM or SIGINT stops new work (503) and exits once in-flight requests are answered; a
        second one exits at once. The signal is not re-raised afterwards, so a drained server exits 0."""

        def handle_exit(self, sig, frame) -> None:
            state = app.state.infertune
            if state.draining:
                self.force_exit = self.should_exit = True
                return
            say(f"draining: {state.inflight} requests in flight")
            if not state.drain():  # not serving yet: nothing to drain
                self.should_exit = True

    limits = app.state.config.limits
    protocol = guarded_protocol(limits, on_refused=app.state.metrics.refused,
                                on_connections=app.state.metrics.connections.set)
    config = uvicorn.Config(app.state.asgi, log_level="warning", access_log=False, loop="uvloop", http=protocol,
                            lifespan="on", server_header=False, date_header=False, timeout_graceful_shutdown=30,
                            backlog=max(2048, limits.max_connections))
    server = DrainingServer(config)
    app.state.infertune.exit = lambda: setattr(server, "should_exit", True)
    say(banner)
    server.run(sockets=[sock])
    say("stopped")
