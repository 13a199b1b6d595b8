"""The HTTP limits against a real server, as an attacker would test them: a huge header or request line is
refused before it is parsed, slow and silent connections are closed at the header deadline, and past the
connection limit new connections get 503 while the liveness probe still answers. Meanwhile valid requests keep
getting 200."""

import socket
import statistics
import threading
import time

import httpx
import pytest

from serve_helpers import pixels_body, running

DIGIT = [i / 64 for i in range(64)]
INFER = "/v2/models/digits-cnn/infer"


@pytest.fixture(scope="module")
def guarded_server():
    with running("digits-cnn", "--backend", "onnxruntime", "--header-timeout-s", "2", "--body-timeout-s", "4",
                 "--cache-size", "0") as server:
        yield server


class Probe:
    """Valid infer requests, one after another on a kept-alive connection, in a thread: statuses and latencies."""

    def __init__(self, url: str):
        self.statuses: list[int] = []
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.post(INFER, json=pixels_body(DIGIT)).status_code
                except httpx.HTTPError:
                    status = 0
                self.seconds.append(time.perf_counter() - started)
                self.statuses.append(status)
                time.sleep(0.01)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def flood(url: str, head: bytes, filler: bytes, total: int) -> tuple[bytes, float]:
    """Send `head`, then up to `total` bytes of `filler` as fast as the server takes them; return what the server
    answered and the seconds until it did."""
    sock = connect(url)
    started = time.perf_counter()
    chunk = filler * (256 * 1024 // len(filler))
    sent = 0
    try:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        while sent < total:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        return answer, time.perf_counter() - started
    finally:
        sock.close()


@pytest.mark.parametrize("head, filler, status", [
    (b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a", b"431"),
    (b"GET /v2/health/live?", b"a", b"414"),
    (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", b"X-A: 1\r\n", b"431"),
], ids=["100 MB header", "100 MB request line", "a million header fields"])
def test_a_huge_head_is_refused_at_once_while_valid_requests_keep_answering(guarded_server, head, filler, status):
    with Probe(guarded_server.url) as probe:
        time.sleep(0.2)
        answer, seconds = flood(guarded_server.url, head, filler, 100 * 1024 * 1024)
        time.sleep(0.2)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"limit" in answer and b"connection: close" in answer.lower()
    assert seconds < 1.0, f"refused after {seconds:.2f} s"
    assert probe.statuses and set(probe.statuses) == {200}, probe.statuses
    print(f"refused with {status.decode()} after {seconds * 1000:.0f} ms; probe: {len(probe.seconds)} requests, "
          f"p50 {statistics.median(probe.seconds) * 1000:.2f} ms, max {max(probe.seconds) * 1000:.1f} ms")
    assert statistics.median(probe.seconds) < 0.05


def test_slowloris_and_silent_connections_are_closed_at_the_header_deadline(guarded_server):
    slow = [connect(guarded_server.url) for _ in range(200)]
    silent = [connect(guarded_server.url) for _ in range(200)]
    head = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    closed_at: dict[int, float] = {}
    started = time.monotonic()
    with Probe(guarded_server.url) as probe:
        for sock in slow:
            sock.setblocking(False)
        offset = 0
        while len(closed_at) < len(slow) and time.monotonic() - started < 8:
            for i, sock in enumerate(slow):  # one byte each per round, never the end of the headers
                if i in closed_at:
                    continue
                try:
                    sock.send(head[offset % len(head):offset % len(head) + 1])
                    if sock.recv(4096) is not None:
                        closed_at[i] = time.monotonic() - started
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.monotonic() - started
            offset += 1
            time.sleep(0.25)
        for sock in silent:
            sock.settimeout(max(0.1, 4 - (time.monotonic() - started)))
        silent_closed = sum(1 for sock in silent if _closed(sock))
    for sock in slow + silent:
        sock.close()
    assert len(closed_at) == len(slow), f"{len(slow) - len(closed_at)} slow connections still open after 8 s"
    assert max(closed_at.values()) < 4.5, max(closed_at.values())  # the deadline is 2 s, from the first byte
    assert silent_closed == len(silent)
    assert probe.statuses and set(probe.statuses) == {200}, probe.statuses
    metrics = httpx.get(f"{guarded_server.url}/metrics").text
    assert 'infertune_http_refused_total{reason="header_timeout"}' in metrics
    assert 'infertune_http_refused_total{reason="idle_timeout"}' in metrics


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b"" or True  # an answer (408) before the close counts: the server ended it
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


def test_a_slow_body_gets_408_at_the_body_deadline(guarded_server):
    sock = connect(guarded_server.url)
    sock.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    sock.settimeout(8)
    started = time.monotonic()
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 3 < time.monotonic() - started < 6


def test_past_the_connection_limit_new_connections_get_503_but_liveness_answers():
    with running("digits-cnn", "--backend", "onnxruntime", "--max-connections", "8", "--body-timeout-s", "30") \
            as server:
        idle = [connect(server.url) for _ in range(8)]  # open, never used: the first to make room
        time.sleep(0.3)
        assert server.client.post(INFER, json=pixels_body(DIGIT)).status_code == 200  # an idle one was closed
        busy = []
        for _ in range(8):  # headers sent, body never: each runs a request
            sock = connect(server.url)
            sock.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
            busy.append(sock)
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            refused = fresh.post(INFER, json=pixels_body(DIGIT))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        assert "--max-connections" in refused.json()["error"]
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            assert fresh.get("/v2/health/live").json() == {"live": True}
        for sock in busy + idle:
            sock.close()
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            assert fresh.post(INFER, json=pixels_body(DIGIT)).status_code == 200
            metrics = fresh.get("/metrics").text
        assert 'infertune_http_refused_total{reason="evicted"}' in metrics
        assert 'infertune_http_refused_total{reason="connection_limit"}' in metrics


def read_answer(sock: socket.socket, buffer: bytearray) -> bytes:
    """One whole HTTP answer from `sock` (head and Content-Length body); what follows stays in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed after {bytes(buffer)!r}")
        buffer += more
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = next((int(line.split(b":", 1)[1]) for line in bytes(buffer[:head_end]).split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buffer) < head_end + length:
        buffer += sock.recv(65536)
    answer = bytes(buffer[:head_end + length])
    del buffer[:head_end + length]
    return answer


def test_a_pipelined_request_inside_the_previous_ones_chunk_is_held_to_the_limits(guarded_server):
    """The second request starts in the same packet as the first, so its headers are counted by the parser's
    callbacks rather than before it: the first is answered, the second refused."""
    fine = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    too_many = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n"
    long_url = b"GET /v2/health/live?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for second, status in ((too_many, b"431"), (long_url, b"414")):
        sock, buffer = connect(guarded_server.url), bytearray()
        sock.sendall(fine + second)
        assert read_answer(sock, buffer).startswith(b"HTTP/1.1 200")
        assert read_answer(sock, buffer).startswith(b"HTTP/1.1 " + status)
        sock.close()


def test_a_kept_alive_connection_is_not_cut_by_the_deadlines_of_its_earlier_requests(guarded_server):
    """Header deadline 2 s, body deadline 4 s: a connection whose requests each take 0.4 s to send, over 4 s in
    all, gets every answer (one timer per connection follows the deadline as it moves), and a request whose
    headers then stall is still refused at its own deadline."""
    sock, buffer = connect(guarded_server.url), bytearray()
    started = time.monotonic()
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = []
    while time.monotonic() - started < 4.5:
        sock.sendall(request[:20])
        time.sleep(0.4)
        sock.sendall(request[20:])
        answers.append(read_answer(sock, buffer)[:12])
        time.sleep(0.3)
    assert len(answers) >= 6 and set(answers) == {b"HTTP/1.1 200"}, answers
    sock.sendall(request[:20])
    stalled = time.monotonic()
    sock.settimeout(6)
    assert read_answer(sock, buffer).startswith(b"HTTP/1.1 408")
    assert 1.5 < time.monotonic() - stalled < 3.5
    sock.close()
