"""`infertune serve --workers N`: N server processes on one port (SO_REUSEPORT, so the kernel spreads
connections over them), each with its own engines and batchers, so a small model's HTTP and JSON work is spread
over the cores. The supervisor (this module) holds the port, starts the workers, restarts one that dies, and on
SIGTERM forwards it to every worker, each of which drains, then exits 0 when they all did.

Metrics add up over workers through prometheus-client's multiprocess files (a folder the supervisor makes and
removes); the server is ready when every worker is (each marks itself ready in that folder).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own: read when it is first imported
READY_DIR = "INFERTUNE_SERVE_READY_DIR"  # where each worker marks itself ready (a file named by its index)
WORKERS = "INFERTUNE_SERVE_WORKERS"
RESTART_PAUSE_S = 1.0


def supervise(workers: int, host: str, port: int, serve_kwargs: dict[str, Any], *, say) -> int:
    """Run `workers` copies of `serve(**serve_kwargs)` on (host, port) until SIGTERM/SIGINT; their exit code."""
    from infertune.serve.server import WORKER_ENV as worker_env, _bind, _url_host

    holder = _bind(host, port, reuse_port=True)  # bound, never listening: it keeps the port while workers restart
    port = holder.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="infertune-serve-"))
    (folder / "metrics").mkdir()
    (folder / "ready").mkdir()
    env = {MULTIPROCESS_DIR: str(folder / "metrics"), READY_DIR: str(folder / "ready"), WORKERS: str(workers)}
    context = multiprocessing.get_context("spawn")
    stopping = {"signals": 0}

    def start(index: int):
        # in the environment before the child starts: the child imports prometheus_client (with this module)
        # before _worker runs, and its values go to the shared files only if the folder is set by then
        os.environ.update({**env, worker_env: str(index)})
        process = context.Process(target=_worker, args=(index, env, {**serve_kwargs, "port": port}, worker_env),
                                  name=f"infertune-serve-worker-{index}", daemon=False)
        process.start()
        return process

    def on_signal(sig, frame) -> None:
        stopping["signals"] += 1
        for process in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM if stopping["signals"] == 1 else signal.SIGKILL)

    running = {i: start(i) for i in range(workers)}
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    say(f"{workers} workers at http://{_url_host(host)}:{port}; ready after every worker's warm-up")
    codes: dict[int, int] = {}
    try:
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running.values()], timeout=1.0)
            for index, process in list(running.items()):
                if process.is_alive():
                    continue
                process.join()
                (folder / "ready" / str(index)).unlink(missing_ok=True)
                _mark_dead(process.pid, env[MULTIPROCESS_DIR])
                if stopping["signals"]:
                    codes[index] = process.exitcode
                    del running[index]
                else:  # a worker died on its own: the others go on serving while it comes back
                    say(f"worker {index} exited with code {process.exitcode}; starting it again")
                    time.sleep(RESTART_PAUSE_S)
                    running[index] = start(index)
    finally:
        for key in (*env, worker_env):
            os.environ.pop(key, None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
        shutil.rmtree(folder, ignore_errors=True)
    failed = {i: c for i, c in codes.items() if c != 0}
    say("stopped" if not failed else f"stopped; workers {sorted(failed)} exited with {sorted(set(failed.values()))}")
    return 0 if not failed else 1


def _worker(index: int, env: dict[str, str], serve_kwargs: dict[str, Any], worker_env: str) -> None:
    os.environ.update(env)  # before prometheus_client is imported: its values go to the shared files
    os.environ[worker_env] = str(index)
    from infertune.serve.server import serve

    prefix = f"infertune serve [worker {index}]"
    serve(**serve_kwargs, say=lambda line: print(f"{prefix}: {line}", flush=True))


def mark_ready(index: str) -> None:
    folder = os.environ.get(READY_DIR)
    if folder:
        (Path(folder) / index).touch()


def peers_not_ready() -> str | None:
    """Why the server as a whole is not ready yet (some worker still warming up), or None."""
    folder, expected = os.environ.get(READY_DIR), int(os.environ.get(WORKERS, "1"))
    if not folder:
        return None
    ready = len(os.listdir(folder))
    return None if ready >= expected else f"{ready} of {expected} workers are ready: retry in a moment"


def _mark_dead(pid: int, folder: str) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)
    except Exception:  # only the live gauges of a dead worker would linger
        pass

