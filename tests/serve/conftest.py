import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


class Server:
    """A real `infertune serve` child process on a free loopback port."""

    def __init__(self, args: list[str], ready: bool = True, timeout: float = 120):
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "infertune.cli", "serve", *args, "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "COLUMNS": "200"})
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            found = [m for line in list(self.lines) if (m := re.search(r"at (http://[\d.]+:\d+)", line))]
            if found:
                self.url = found[0].group(1)
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(self.lines))
            else:
                time.sleep(0.05)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        if ready:
            while self.client.get("/v2/health/ready").status_code != 200:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not turn ready:\n" + "".join(self.lines))
                time.sleep(0.05)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def infer(self, model: str, body, **kwargs) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return self.client.post(f"/v2/models/{model}/infer", content=body, **kwargs)
        return self.client.post(f"/v2/models/{model}/infer", json=body, **kwargs)

    def stop(self):
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


@pytest.fixture(scope="module")
def digits_server():
    with running("digits-cnn", "--backend", "onnxruntime", "--max-body-bytes", "20000") as server:
        yield server


@pytest.fixture(scope="session")
def mlp_data_npz(tmp_path_factory) -> Path:
    from infertune.data import save_npz
    from infertune.testing.models import mlp_data

    path = tmp_path_factory.mktemp("serve-data") / "mlp.npz"
    data = mlp_data(64)
    save_npz(path, {"input": data["input"]})
    return path
