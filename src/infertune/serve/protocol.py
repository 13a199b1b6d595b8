"""HTTP limits in front of uvicorn's httptools parser, which has none of its own: a request line and headers
are bounded in bytes and count before the parser sees them (httptools joins a header's pieces with `+=`, so
parsing a 100 MB header costs the square of its size on the event loop); a request's headers must arrive
within `header_timeout_s` of its first byte (or of the connection's opening), its body within `body_timeout_s`;
and past `max_connections`, the oldest connection that is not running a request is closed to make room (as
nginx reuses idle connections), or, when every one is busy, the new one is answered 503 (but for the liveness
probe). Refusals are answered with a JSON error and `Connection: close`, as nginx's
`client_header_buffer_size` / `client_header_timeout` refuse a request before any work is spent on it.
"""

from __future__ import annotations

import http
from typing import Callable

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infertune.serve.codec import error_body
from infertune.serve.limits import HttpLimits

LINGER_S = 2.0  # how long a refused connection's further bytes are read and dropped before it is closed
LIVENESS = "/v2/health/live"  # answered even past the connection limit: a busy server is still alive


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is in `protocol._refusal`."""


def guarded_protocol(limits: HttpLimits, on_refused: Callable[[str], None] = lambda reason: None,
                     on_connections: Callable[[int], None] = lambda count: None) -> type:
    """A uvicorn protocol class (`uvicorn.Config(http=...)`) that enforces `limits`; `on_refused(reason)` is
    called for each refusal, eviction and timeout (reasons: request_line, header_bytes, header_count,
    header_timeout, body_timeout, idle_timeout, evicted, connection_limit, bad_request); `on_connections(n)` each
    time the count of open connections changes."""
    opened: dict[GuardedHttpTools, None] = {}  # every open connection, oldest first

    class Guarded(GuardedHttpTools):
        pass

    Guarded.limits = limits
    Guarded.on_refused = staticmethod(on_refused)
    Guarded.on_connections = staticmethod(on_connections)
    Guarded.opened = opened
    return Guarded


class GuardedHttpTools(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()
    on_refused: Callable[[str], None] = staticmethod(lambda reason: None)
    on_connections: Callable[[int], None] = staticmethod(lambda count: None)
    opened: dict = {}

    # -- connection ----------------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._refusal: tuple[int, str, str] | None = None
        self._discarding = False
        self._refuse_later = False
        self._timer = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._new_head()
        self._arm(self.limits.header_timeout_s)  # a connection that never sends a byte is closed too
        self.opened[self] = None
        self.on_connections(len(self.opened))
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc) -> None:
        self._stop_timer()
        self.opened.pop(self, None)
        self.on_connections(len(self.opened))
        super().connection_lost(exc)

    def _make_room(self) -> None:
        for other in self.opened:
            if other is not self and other._idle():
                other._close_quietly("evicted")
                return
        if len(self.connections) > 2 * self.limits.max_connections:  # far past it: not even a 503
            self._close_quietly("connection_limit")
            return
        # every connection runs a request: this one's requests get 503 (but the liveness probe) and it closes
        self.app = _over_limit(self.app, self.limits.max_connections, self.on_refused)

    def _idle(self) -> bool:
        """Not running a request: waiting for one (kept alive), or still sending one's headers."""
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    # -- reading -------------------------------------------------------------------------------------------

    def _new_head(self) -> None:
        self._in_head = True
        self._line_done = False
        self._head_bytes = 0
        self._head_lines = 0
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # refused: the answer is sent, what follows is dropped unread
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            if self._deadline is None:  # the first byte of a request on a kept-alive connection
                self._arm(self.limits.header_timeout_s)
            self._count_head(data)
            if self._refusal is not None:
                self._refuse()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as e:
            if self._refusal is None:
                self._refusal = (400, "bad_request", f"invalid HTTP request ({e}): send HTTP/1.1")
            if self._answering():  # a pipelined request refused while earlier ones are answered: refuse after them
                self._discarding = True
                self._refuse_later = True
            else:
                self._refuse()

    def _count_head(self, data: bytes) -> None:
        """Bytes and lines of the request line and headers so far, counted before the parser sees them."""
        window = self._tail + data
        end = _head_end(window)
        before = self._head_bytes
        if end < 0:
            head = len(data)
            self._tail = window[-3:]
        else:
            head = end - len(self._tail)
            self._in_head = False  # the rest is body (a pipelined next request is counted from its next chunk)
        self._head_bytes += head
        self._head_lines += data.count(b"\n", 0, head)
        if not self._line_done:
            newline = data.find(b"\n", 0, head)
            line = before + (head if newline < 0 else newline)
            self._line_done = newline >= 0
            if line > self.limits.max_request_line:
                self._refusal = (414, "request_line", f"the request line is over the limit of "
                                                      f"{self.limits.max_request_line} bytes (--max-request-line)")
                return
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (431, "header_bytes", f"the request line and headers are over the limit of "
                                                  f"{self.limits.max_header_bytes} bytes (--max-header-bytes)")
        elif self._head_lines > self.limits.max_headers + 2:  # the request line, the headers, the blank line
            self._refusal = (431, "header_count", f"the request has over {self.limits.max_headers} header fields "
                                                  f"(--max-headers)")

    # -- parser callbacks ----------------------------------------------------------------------------------
    # Only the two that run once a request: a per-header or per-URL-piece override would cost every request a
    # Python call per header. The bytes before the parser are counted in `_count_head`; a pipelined request that
    # starts inside the previous one's chunk is bounded by that chunk and checked here, once its headers are in.

    def on_headers_complete(self) -> None:
        self._in_head = False
        if len(self.headers) > self.limits.max_headers:
            self._refusal = (431, "header_count", f"the request has over {self.limits.max_headers} header fields "
                                                  f"(--max-headers)")
            raise _Refused
        if len(self.url) > self.limits.max_request_line:
            self._refusal = (414, "request_line", f"the request line is over the limit of "
                                                  f"{self.limits.max_request_line} bytes (--max-request-line)")
            raise _Refused
        self._arm(self.limits.body_timeout_s - self.limits.header_timeout_s + self._left())
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._new_head()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refuse_later and not self._answering() and not self.transport.is_closing():
            self._refuse_later = False
            self._refuse()

    def _answering(self) -> bool:
        """Earlier requests of this connection are still being answered (HTTP/1.1 answers in order)."""
        return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

    # -- deadlines -----------------------------------------------------------------------------------------
    # One timer per connection, not one per request: arming a deadline only moves `_deadline`, and the timer,
    # when it fires before the deadline (which moved later) or after a disarm, re-arms itself or stops. A request
    # on a kept-alive connection so costs two float stores instead of two timer creations and cancellations.

    def _arm(self, seconds: float) -> None:
        deadline = self.loop.time() + max(seconds, 0.0)
        if self._timer is None or self._timer_at > deadline:  # none yet, or it would fire too late
            self._stop_timer()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)
        self._deadline = deadline

    def _disarm(self) -> None:
        self._deadline = None  # the timer, if any, finds no deadline when it fires and stops

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _left(self) -> float:
        return max(0.0, self._deadline - self.loop.time()) if self._deadline is not None else 0.0

    def _on_timer(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._deadline > self.loop.time():  # the deadline moved since the timer was set
            self._timer_at = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._deadline = None
        self._timed_out()

    def _timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes == 0:  # nothing of a request arrived: an idle connection
            self._close_quietly("idle_timeout")
            return
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started:
            self._close_quietly("body_timeout")  # the app already answered; the body never finished
            return
        if self._in_head:
            self._refusal = (408, "header_timeout", f"the request's headers did not arrive within "
                                                    f"{self.limits.header_timeout_s:g} s (--header-timeout-s)")
        else:
            self._refusal = (408, "body_timeout", f"the request's body did not arrive within "
                                                  f"{self.limits.body_timeout_s:g} s of its first byte "
                                                  f"(--body-timeout-s)")
        self._refuse()

    # -- answering -----------------------------------------------------------------------------------------

    def _refuse(self) -> None:
        status, reason, message = self._refusal
        self.on_refused(reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # too late for a status: just close
                self._close_quietly(None)
                return
            cycle.disconnected = True  # the app's own answer, if it comes, goes nowhere
            cycle.message_event.set()
        body = error_body(message)
        self.transport.write(b"".join([
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode(),
            b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n", body]))
        self._linger()

    def _linger(self) -> None:
        """Close after the answer, as nginx's lingering_close does: send FIN, then read and drop what the client
        still sends for a moment. Closing with unread bytes would send a reset, and the client's kernel may drop
        our answer before the client reads it."""
        self._stop_timer()
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_S, self.transport.close)
            self._timer_at = float("inf")  # never taken for a deadline timer: no deadline is armed again
        else:
            self.transport.close()

    def _close_quietly(self, reason: str | None) -> None:
        if reason is not None:
            self.on_refused(reason)
        self._stop_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def _head_end(data: bytes) -> int:
    """Index just past the blank line that ends a request's headers, or -1."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, crlf if crlf >= 0 else len(data))  # bare line feeds, which the parser takes too
    if lf >= 0:
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1


def _over_limit(app, max_connections: int, on_refused):
    """The app for a connection over the limit: 503 for everything but the liveness probe."""

    async def answer(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == LIVENESS:
            return await app(scope, receive, send)
        on_refused("connection_limit")
        body = error_body(f"the server has {max_connections} connections open, each running a request "
                          f"(--max-connections): retry later")
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return answer
