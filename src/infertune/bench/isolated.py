"""Run a `BenchJob` in a fresh Python process with a time limit; a crash or hang becomes an error result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

from infertune.bench.job import BenchJob
from infertune.bench.result import BenchResult


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def run_worker(module: str, job: dict, *, timeout: float,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run `python -m module JOB.json RESULT.json` in a fresh process group with a time limit.

    Returns the worker's result, or {"error": reason} when it failed, crashed (the signal is named),
    or ran out of time (its whole process group is killed, compile workers included).
    """
    with tempfile.TemporaryDirectory(prefix="infertune-worker-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen([sys.executable, "-m", module, str(job_path), str(result_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True)  # its own process group: a kill takes its children
        stderr_chunks: list[str] = []
        drain = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True)
        drain.start()

        def follow() -> None:
            for line in process.stdout:
                if line.startswith("@stage ") and progress:
                    progress(line[7:].strip())

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            import signal

            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return {"error": f"timed out after {timeout:.0f} s"}
        finally:
            follower.join(timeout=5)
            drain.join(timeout=5)
        if result_path.is_file():
            return json.loads(result_path.read_text())
        return {"error": f"worker exited with code {code} ({_describe_exit(code)}): {_tail(''.join(stderr_chunks))}"}


def run_isolated(job: BenchJob, *, timeout: float = 900.0,
                 progress: Callable[[str], None] | None = None) -> BenchResult:
    data = run_worker("infertune.bench.worker", job.to_dict(), timeout=timeout, progress=progress)
    if "error" in data and len(data) == 1:
        return _failed(job, data["error"])
    return BenchResult.from_dict(data)


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return "crashed"


def _failed(job: BenchJob, reason: str) -> BenchResult:
    return BenchResult(model=str(job.model.get("model")), backend=job.backend, settings=dict(job.options), error=reason,
                       isolated=True)
