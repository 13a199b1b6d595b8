"""Helpers of the serve tests (a module of its own: `from conftest import` would find whichever conftest
was imported first)."""

from contextlib import contextmanager

import httpx

from infertune.serve.process import ServerProcess


class Server(ServerProcess):
    """A real `infertune serve` child process on a free loopback port, with an HTTP client."""

    def __init__(self, args: list[str], ready: bool = True):
        super().__init__(*args, ready=ready)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def infer(self, model: str, body, **kwargs) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return self.client.post(f"/v2/models/{model}/infer", content=body, **kwargs)
        return self.client.post(f"/v2/models/{model}/infer", json=body, **kwargs)

    def stop(self, timeout: float = 30) -> int:
        self.client.close()
        return super().stop(timeout)


@contextmanager
def running(*args: str, ready: bool = True):
    server = Server(list(args), ready=ready)
    try:
        yield server
    finally:
        server.stop()


def pixels_body(values, rows: int = 1, **extra) -> dict:
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 1, 8, 8],
                        "data": [float(v) for v in values]}],
            **extra}


def mlp_body(first: float = 0.5, **extra) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": [first] + [0.25] * 15}],
            **extra}


def metric(server, name: str) -> float:
    """The sum of the /metrics series whose line starts with `name` (a bare name, or one with its labels)."""
    text = server.client.get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))
