"""`infertune serve` in a child process on a free port, for tests, benchmarks and scripts that need a real
server: its URL, readiness, resident memory, and a SIGTERM stop that waits for the drain."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


class ServerProcess:
    def __init__(self, *args: str, ready: bool = True, timeout: float = 180, host: str = "127.0.0.1",
                 command: list[str] | None = None):
        """`command`: what runs in place of `python -m infertune.cli` (a benchmark's variant of the server)."""
        self.lines: list[str] = []
        self.process = subprocess.Popen([*(command or [sys.executable, "-m", "infertune.cli"]), "serve", *args,
                                         "--host", host, "--port", "0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(time.monotonic() + timeout)
        if ready:
            self.wait_ready(timeout)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _wait_for_url(self, deadline: float) -> str:
        while True:
            for line in list(self.lines):
                found = re.search(r" at (http://\S+?):?(\d+); ", line)
                if found:
                    return f"{found.group(1)}:{found.group(2)}"
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + "".join(self.lines))
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not turn ready:\n" + "".join(self.lines))
            time.sleep(0.05)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the server drains), then its exit code; killed if it does not exit in `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
