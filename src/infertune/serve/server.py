"""`infertune serve`: load the engines, build the app, run it on uvicorn; SIGTERM drains, then exits 0."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

from infertune.errors import ConfigError
from infertune.serve.app import ServeConfig, create_app
from infertune.serve.codec import ServedModel


def serve(model, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          backend: str | None = None, weights: str | None = None, data=None, task: str | None = None,
          text_field: str = "text", config: ServeConfig = ServeConfig(), token_file: str | Path | None = None,
          options: dict[str, Any] | None = None, say=None) -> None:
    """Serve `model` (anything `infertune.resolve` reads: a run directory, a Hugging Face folder, a zoo name, an
    .onnx file...) over KServe v2 until SIGTERM/SIGINT.

    Example: `serve("runs/demo", port=8000, config=ServeConfig(max_batch_size=32))`.
    """
    from infertune.resolver import resolve

    say = say or (lambda line: print(f"infertune serve: {line}", file=sys.stderr, flush=True))
    check_config(config, port)
    token = read_token(token_file) if token_file is not None else None
    loaded, dataset = resolve(model, data=data, weights=weights, task=task, text_field=text_field)
    engines, served, warmup = load_engines(loaded, dataset, name=name, backend=backend, config=config,
                                           options=options)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    app = create_app(engines, served, config, warmup, token=token, say=say)
    run_app(app, sock, say=say,
            banner=f"serving '{served.name}' on {engines[0].session.backend} ({config.instances} instance"
                   f"{'s' if config.instances > 1 else ''}) at http://{_url_host(host)}:{bound}; ready after warm-up")


def check_config(config: ServeConfig, port: int) -> None:
    def positive(value, flag, kind=int):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{flag} must be a positive {'integer' if kind is int else 'number'}, got {value}")

    positive(config.max_batch_size, "--max-batch-size")
    positive(config.max_queue, "--max-queue")
    positive(config.instances, "--instances")
    positive(config.timeout_ms, "--timeout-ms", float)
    positive(config.max_body_bytes, "--max-body-bytes")
    if config.max_delay_ms < 0:
        raise ConfigError(f"--max-delay-ms must be 0 or more, got {config.max_delay_ms}")
    if config.cache_size < 0:
        raise ConfigError(f"--cache-size must be 0 (off) or more, got {config.cache_size}")
    if config.cache_ttl_s is not None and config.cache_ttl_s <= 0:
        raise ConfigError(f"--cache-ttl-s must be a positive number of seconds, got {config.cache_ttl_s}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 (any free port) to 65535, got {port}")


def read_token(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--token-file '{path}' not found: write the token into it (one line)")
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file '{path}' must hold one token without spaces")
    return token


def load_engines(model, dataset, *, name: str | None, backend: str | None, config: ServeConfig,
                 options: dict[str, Any] | None = None):
    """`config.instances` engines of `model` (threads split between them), what the HTTP layer knows of the model,
    and warm-up batches from `dataset` (or random inputs) at every batch size the batcher may form (powers of two
    up to the max, and the max)."""
    from infertune.engine import load

    options = dict(options or {})
    if config.instances > 1 and "threads" not in options:
        options["threads"] = max(1, (os.cpu_count() or 1) // config.instances)
    engines = [load(model, backend=backend, **options) for _ in range(config.instances)]
    first = engines[0].model
    served = ServedModel(name=name or first.name, signature=first.signature, encode_texts=first.encode_texts,
                         max_batch_size=config.max_batch_size,
                         default_data=dataset.name if dataset is not None and dataset.spec is not None else None)
    sizes = sorted({min(2 ** i, config.max_batch_size) for i in range(config.max_batch_size.bit_length())}
                   | {config.max_batch_size})
    return engines, served, [_representative(first, dataset, n) for n in sizes]


def _representative(model, dataset, rows: int) -> dict[str, np.ndarray]:
    if dataset is not None:
        split = dataset.heldout_or_first()
        if len(split) and (split.texts is not None) == model.is_text:
            index = np.arange(rows) % len(split)
            return model.inputs_for(split, index)
    return model.example_inputs(batch_size=rows)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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

    class DrainingServer(uvicorn.Server):
        """The first SIGTERM or SIGINT stops new work (503) and exits once in-flight requests are answered; a
        second one exits at once. The signal is not re-raised afterwards, so a drained server exits 0."""

        def handle_exit(self, sig, frame) -> None:
            state = app.state.infertune
            if state.draining:
                self.force_exit = self.should_exit = True
                return
            state.draining = True
            say(f"draining: {state.inflight} requests in flight")

    config = uvicorn.Config(app.state.asgi, log_level="warning", access_log=False, loop="uvloop", http="httptools",
                            lifespan="on", server_header=False, date_header=False, timeout_graceful_shutdown=30)
    server = DrainingServer(config)
    app.state.infertune.exit = lambda: setattr(server, "should_exit", True)
    say(banner)
    server.run(sockets=[sock])
    say("stopped")
