"""The load generator's own HTTP client against servers that behave unlike ours: a server that closes each
connection (HTTP/1.0), one that answers in chunks, one too slow for the client's timeout, and a bad URL."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infertune.errors import ConfigError
from infertune.serve.loadtest import loadtest

METADATA = {"name": "digits-cnn", "versions": ["1"], "platform": "other",
            "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
            "parameters": {"default_data": "digits"}}


def kserve_like(protocol: str, chunked: bool = False, delay_s: float = 0.0, status_of=lambda n: 200):
    """A stdlib KServe v2 look-alike: metadata for digits-cnn, and an infer answer after `delay_s`."""
    seen = {"infer": 0, "connections": set()}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol

        def log_message(self, *args):
            pass

        def answer(self, status, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (body[:5], body[5:], b""):
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v2/models/digits-cnn":
                self.answer(200, json.dumps(METADATA).encode())
            else:
                self.answer(404, b'{"error": "unknown model"}')

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen["connections"].add(self.client_address)
                seen["infer"] += 1
                n = seen["infer"]
            time.sleep(delay_s)
            self.answer(status_of(n), b'{"outputs": []}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.mark.parametrize("protocol, chunked", [("HTTP/1.0", False), ("HTTP/1.1", True)])
def test_closed_connections_and_chunked_answers_are_read_right(protocol, chunked):
    server, seen = kserve_like(protocol, chunked, status_of=lambda n: 429 if n % 5 == 0 else 200)
    try:
        result = loadtest(f"http://127.0.0.1:{server.server_port}", model="digits-cnn", concurrency=3,
                          requests=40)
    finally:
        server.shutdown()
    assert result.sent == 40 and dict(result.statuses) == {"200": 32, "429": 8}
    assert len(result.latencies_ms) == 32
    if protocol == "HTTP/1.0":  # the server closed every connection: the client opened one per request
        assert len(seen["connections"]) == 40
    else:  # keep-alive: at most one connection per client
        assert len(seen["connections"]) <= 3


def test_a_server_slower_than_the_timeout_counts_client_timeouts_and_the_run_ends():
    server, seen = kserve_like("HTTP/1.1", delay_s=1.0)
    try:
        started = time.monotonic()
        result = loadtest(f"http://127.0.0.1:{server.server_port}", model="digits-cnn", concurrency=2,
                          requests=4, timeout_s=0.2)
        took = time.monotonic() - started
    finally:
        server.shutdown()
    assert dict(result.statuses) == {"client-timeout": 4} and result.ok == 0
    assert took < 3  # 4 requests on 2 clients, each given up after 0.2 s


def test_an_unknown_model_and_a_bad_url_are_clear_errors():
    server, _ = kserve_like("HTTP/1.1")
    try:
        with pytest.raises(ConfigError, match="does not serve model 'nope'"):
            loadtest(f"http://127.0.0.1:{server.server_port}", model="nope", requests=1)
    finally:
        server.shutdown()
    with pytest.raises(ConfigError, match="plain http:// URL"):
        loadtest("https://127.0.0.1:8000", model="digits-cnn", requests=1)
