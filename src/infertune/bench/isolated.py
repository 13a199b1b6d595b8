"""Run a `BenchJob` in a fresh Python process with a time limit; a crash or hang becomes an error result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from typing import Callable

from infertune.bench.job import BenchJob
from infertune.bench.result import BenchResult

RESULT_FD = "INFERTUNE_RESULT_FD"  # the worker writes its result to this file descriptor
PARENT_PID = "INFERTUNE_PARENT_PID"
PR_SET_PDEATHSIG = 1


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def run_worker(module: str, job: dict, *, timeout: float,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run `python -m module` in a fresh process group with a time limit: the job goes in on its stdin, its
    `@stage` lines come back on stdout, its result on a pipe of its own (no temporary files, so a killed parent
    leaves nothing behind; the worker dies with its parent, see `worker_main`).

    Returns the worker's result, or {"error": reason} when it failed, crashed (the signal is named),
    or ran out of time (its whole process group is killed, compile workers included).
    """
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", RESULT_FD: str(write_fd), PARENT_PID: str(os.getpid())}
    try:
        command = [sys.executable, "-P", "-m", module]  # -P: nothing imported from the caller's folder
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, pass_fds=(write_fd,),
                                   start_new_session=True)  # its own process group: a kill takes its children
    finally:
        os.close(write_fd)
    result: list[bytes] = []
    stderr_chunks: list[str] = []
    threads = [threading.Thread(target=lambda: result.append(_read_framed(read_fd)), daemon=True),
               threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True),
               threading.Thread(target=_follow, args=(process, progress), daemon=True)]
    for thread in threads:
        thread.start()
    try:
        process.stdin.write(json.dumps(job))
        process.stdin.close()
    except BrokenPipeError:
        pass  # it died at start: its exit code and stderr say why
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        for thread in threads:
            thread.join(timeout=5)
    if result and result[0]:
        return json.loads(result[0])
    return {"error": f"worker exited with code {code} ({_describe_exit(code)}): {_tail(''.join(stderr_chunks))}"}


def worker_main(run: Callable[[dict, Callable[[str], None]], dict], *, describe=None) -> int:
    """The worker's side of `run_worker`: dies with its parent (Linux PR_SET_PDEATHSIG), reads the job from stdin,
    reports stages on stdout, writes `run(job, say)`'s result, or {"error": ...}, on the result pipe."""
    _die_with_parent()
    result_fd = int(os.environ.pop(RESULT_FD))
    job = json.loads(sys.stdin.read())
    try:
        result, code = run(job, lambda stage: print(f"@stage {stage}", flush=True)), 0
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result, code = {"error": (describe or (lambda e: f"{type(e).__name__}: {e}"))(e)}, 1
    payload = json.dumps(result, default=str).encode()
    with os.fdopen(result_fd, "wb") as out:  # length first: a forked grandchild may hold the pipe open forever
        out.write(f"{len(payload)}\n".encode() + payload)
    return code


def _read_framed(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        length = pipe.readline()
        return pipe.read(int(length)) if length.strip().isdigit() else b""


def _follow(process: subprocess.Popen, progress: Callable[[str], None] | None) -> None:
    for line in process.stdout:
        if line.startswith("@stage ") and progress:
            progress(line[7:].strip())


def _die_with_parent() -> None:
    """SIGKILL this process when the process that started it dies (a kill -9 of `optimize` must not leave a trial
    running); exit at once if it is already gone."""
    parent = int(os.environ.get(PARENT_PID, "0"))
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent and os.getppid() != parent:
        os._exit(1)


def run_isolated(job: BenchJob, *, timeout: float = 900.0,
                 progress: Callable[[str], None] | None = None) -> BenchResult:
    data = run_worker("infertune.bench.worker", job.to_dict(), timeout=timeout, progress=progress)
    if "error" in data and len(data) == 1:
        return _failed(job, data["error"])
    return BenchResult.from_dict(data)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return "crashed"


def _failed(job: BenchJob, reason: str) -> BenchResult:
    return BenchResult(model=str(job.model.get("model")), backend=job.backend, settings=dict(job.options), error=reason,
                       isolated=True)
