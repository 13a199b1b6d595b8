"""`infertune serve --ray` on the two-node cluster: the KServe v2 contract (infer, 400 on bad input, 429 under
overload with Retry-After), and a replica killed under load answered only with 200, 429 or 503, then recovered."""

import signal
import threading
import time
from collections import Counter

import httpx
import numpy as np
import psutil

from infertune.serve.process import ServerProcess


def _body(rows: int = 1) -> dict:
    pixels = np.random.default_rng(rows).random((rows, 1, 8, 8), dtype=np.float32) * 16
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 1, 8, 8],
                        "data": pixels.ravel().tolist()}]}


def _load(url: str, seconds: float, clients: int, rows: int = 1) -> Counter:
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop:
                body = _body(rows)
                body["inputs"][0]["data"][0] = float(number)  # distinct requests: no cache hits
                statuses[http.post("/v2/models/digits-cnn/infer", json=body).status_code] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def check_serve_contract_and_overload(cluster):
    with ServerProcess("digits-cnn", "--ray", cluster.address, "--replicas", "2", "--max-batch-size", "2",
                       "--max-queue", "1", "--cache-size", "0", timeout=300) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            ok = http.post("/v2/models/digits-cnn/infer", json=_body(2))
            assert ok.status_code == 200, ok.text
            answer = ok.json()["outputs"][0]
            assert answer["shape"] == [2, 10] and len(answer["data"]) == 20
            bad = http.post("/v2/models/digits-cnn/infer", json={"inputs": [{"name": "pixels", "datatype": "FP32",
                                                                             "shape": [1, 3], "data": [1, 2, 3]}]})
            assert bad.status_code == 400 and "error" in bad.json(), bad.text
            assert http.post("/v2/models/nosuch/infer", json=_body()).status_code == 404
        statuses = _load(server.url, seconds=8, clients=48, rows=2)
        print(f"overload, 48 clients: {dict(statuses)}")
        assert set(statuses) <= {200, 429} and statuses[200] and statuses[429], statuses
        with httpx.Client(base_url=server.url, timeout=60) as http:
            refused = None
            for _ in range(50):  # one refused answer, to read its headers
                answers = [http.post("/v2/models/digits-cnn/infer", json=_body(2)) for _ in range(1)]
                refused = next((a for a in answers if a.status_code == 429), refused)
                if refused:
                    break
            metrics = http.get("/metrics").text
        assert "infertune_ray_backpressure_total" in metrics


def _replica_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if "ServeReplica:infertune:infertune-model" in " ".join(p.info["cmdline"] or [])]


def check_replica_killed_under_load(cluster):
    with ServerProcess("digits-cnn", "--ray", cluster.address, "--replicas", "2", "--cache-size", "0",
                       timeout=300) as server:
        replicas = _replica_processes()
        assert len(replicas) == 2, replicas
        statuses: Counter = Counter()

        def kill_soon() -> None:
            time.sleep(2)
            replicas[0].send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        statuses.update(_load(server.url, seconds=10, clients=8))
        killer.join()
        print(f"replica {replicas[0].pid} killed under load: {dict(statuses)}")
        assert set(statuses) <= {200, 429, 503} and statuses[200], statuses
        deadline = time.monotonic() + 120
        while len([p for p in _replica_processes() if p.pid != replicas[0].pid]) < 2:
            assert time.monotonic() < deadline, "the deployment did not start a replica in the killed one's place"
            time.sleep(1)
        after = _load(server.url, seconds=3, clients=4)
        print(f"after recovery: {dict(after)}")
        assert set(after) == {200}, after
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/v2/health/ready").status_code == 200
            metrics = http.get("/metrics").text
        shown = [line for line in metrics.splitlines() if line.startswith("infertune_ray_")]
        print("\n".join(shown))
        assert any(line.startswith("infertune_ray_requests_total") for line in shown)
