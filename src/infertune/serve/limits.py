"""What one HTTP connection may send and how long it may take (enforced by `protocol.py`). A module of its own,
without uvicorn, so the CLI can read the defaults cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may send and how long it may take; every field is an `infertune serve` option."""

    max_request_line: int = 8 * 1024     # method, URL and version: past it 414
    max_header_bytes: int = 32 * 1024    # request line and headers together: past it 431
    max_headers: int = 100               # header fields: past it 431
    header_timeout_s: float = 10.0       # from a request's first byte (or the connection's opening) to its headers' end
    body_timeout_s: float = 60.0         # from a request's first byte to its body's end
    max_connections: int = 1000          # open at once; past it the oldest idle one is closed, or 503

    def check(self) -> None:
        from infertune.errors import ConfigError

        for flag, value, least in (("--max-request-line", self.max_request_line, 64),
                                   ("--max-header-bytes", self.max_header_bytes, 256),
                                   ("--max-headers", self.max_headers, 4),
                                   ("--max-connections", self.max_connections, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{flag} must be an integer of at least {least}, got {value!r}")
        if self.max_header_bytes < self.max_request_line:
            raise ConfigError(f"--max-header-bytes ({self.max_header_bytes}) counts the request line too, so it "
                              f"must be at least --max-request-line ({self.max_request_line})")
        for flag, value in (("--header-timeout-s", self.header_timeout_s), ("--body-timeout-s", self.body_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{flag} must be a positive number of seconds, got {value!r}")
