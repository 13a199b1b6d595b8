"""`infertune predict --ray` on the two-node cluster: the same rows as a local run, in the same order, and every
row exactly once when an actor is killed mid-job."""

import re
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
from conftest import TEXTS, cli


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_predict_on_ray_equals_local(cluster, texts, tmp_path):
    out, mine = tmp_path / "ray.npz", tmp_path / "local.npz"
    local = subprocess.Popen([sys.executable, "-m", "infertune.cli", "predict", "minilm", "--data", str(texts),
                              "--out", str(mine)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = cli("predict", "minilm", "--data", str(texts), "--out", str(out), "--ray", cluster.address,
               "--actors", "2", "--cpus-per-actor", "1")  # side by side with the local run: outputs, not speed
    local_out, local_err = local.communicate(timeout=600)
    assert local.returncode == 0, local_err[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout, done.stderr[-2000:])
    assert re.search(rf"wrote {TEXTS} predictions to .*rows/s .*actors 2-2 of 1 CPU", done.stdout), done.stdout
    local, remote = dict(np.load(mine)), dict(np.load(out))
    assert sorted(local) == sorted(remote)
    for name in local:
        assert remote[name].shape == local[name].shape == (TEXTS, *local[name].shape[1:])
        cosine = _cosines(remote[name], local[name])
        print(f"{name}: cosine min {cosine.min():.6f} over {len(cosine)} rows")
        assert cosine.min() >= 0.9999, f"row {int(cosine.argmin())}: cosine {cosine.min():.6f}"


def _actor_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if line.startswith("ray::") and "Predictor" in line:
            found.append(process)
    return found


def check_killed_actor_loses_no_row(cluster, texts, tmp_path):
    few = tmp_path / "texts.jsonl"  # 2,000 of them: enough batches to kill an actor between the first and last
    few.write_text("".join(texts.read_text().splitlines(keepends=True)[:2000]))
    out = tmp_path / "parts"  # a folder: actors write Parquet parts themselves
    job = subprocess.Popen([sys.executable, "-m", "infertune.cli", "predict", "minilm", "--data", str(few), "--out",
                            str(out), "--ray", cluster.address, "--actors", "2", "--batch-size", "8"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 240, None
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        actors = _actor_processes()
        if actors and len(list(out.glob("part-*.parquet"))) >= 2:  # mid-job: some batches written, most not
            killed = actors[0]
            killed.send_signal(signal.SIGKILL)
        time.sleep(0.2)
    stdout, stderr = job.communicate(timeout=600)
    assert killed is not None, f"no actor was seen running before the job ended:\n{stderr[-3000:]}"
    assert job.returncode == 0, stderr[-3000:]
    print(stdout, stderr[-2000:])
    import pyarrow.parquet as pq

    index = np.concatenate([pq.read_table(p, columns=["index"]).column("index").to_numpy()
                            for p in sorted(out.glob("part-*.parquet"))])
    assert len(index) == 2000 and np.array_equal(np.sort(index), np.arange(2000)), "a row lost or written twice"
    retried = int(re.search(r"(\d+) batches retried", stdout).group(1))
    print(f"killed actor pid {killed.pid}; {retried} batches retried")


def check_npz_on_ray_equals_local(cluster, tmp_path):
    from infertune.data import load_dataset, save_npz

    heldout = load_dataset("digits").split("heldout")
    data = tmp_path / "digits.npz"
    save_npz(data, {"pixels": heldout.inputs["pixels"]})
    local, remote = tmp_path / "local.npz", tmp_path / "remote.npz"
    assert cli("predict", "digits-cnn", "--data", str(data), "--out", str(local)).returncode == 0
    done = cli("predict", "digits-cnn", "--data", str(data), "--out", str(remote), "--ray", cluster.address,
               "--actors", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = dict(np.load(local)), dict(np.load(remote))
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5)
