"""infertune on Ray against infertune on one machine, side by side in one run, on this machine's cores.

Batch inference: `infertune predict minilm` over the same texts (real docstring sentences, natural length) locally
(one process, the runtime's own threads over every core), and with `--ray` on a local two-node cluster (a head and
a worker, one CPU each) with 1 actor and with 2 actors of 1 CPU; rows/s from each run's own clock (Ray's include
planning, actor start and model load, as a user waits for them; the local one includes model load too); the
scaling ratio is 2 actors over 1. Serving: `infertune serve digits-cnn` against `infertune serve digits-cnn --ray`
(2 replicas of 1 CPU) at saturation, the same closed-loop load generator (`infertune loadtest`, 64 clients, cache
off) on the same cores.

Every Ray process runs inside a network namespace that holds only loopback (the script re-executes itself under
`unshare --net`; run it as root or where user namespaces are allowed), so nothing listens on another address.

    .venv/bin/python benchmarks/ray.py [--quick] [--rows 20000] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLIENTS = 64
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # this file is not the `ray` package


def _common():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmarks_common", HERE / "benchmarks_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.header, module.replace_section


def in_namespace() -> None:
    """Re-execute this script inside a loopback-only network namespace, unless it already runs in one."""
    if os.environ.get("INFERTUNE_IN_NETNS") == "1":
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        sys.exit("benchmarks/ray.py needs `unshare` and `ip` to confine Ray to loopback")
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    command = ["unshare", "--net", *as_root, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, *sys.argv]
    sys.exit(subprocess.run(command, env={**os.environ, "INFERTUNE_IN_NETNS": "1"}).returncode)


def texts_file(folder: Path, rows: int) -> Path:
    from infertune.data.docstrings import docstring_sentences

    sentences = docstring_sentences()
    lines = [sentences[i % len(sentences)] + ("" if i < len(sentences) else " " + sentences[(7 * i) % len(sentences)])
             for i in range(rows)]
    path = folder / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    return path


def cli(*args: str) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "infertune.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise SystemExit(f"infertune {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout, time.monotonic() - started


def predict_rows(folder: Path, texts: Path, rows: int, address: str, say) -> list[dict]:
    from infertune.predict import predict

    found = []
    say("predict: local")
    started = time.monotonic()
    predict("minilm", data=str(texts), out=str(folder / "local.npz"), batch_size=32)
    seconds = time.monotonic() - started
    found.append({"how": "local, one process, all cores", "rows_per_s": rows / seconds, "seconds": seconds})
    for actors in (1, 2):
        say(f"predict: Ray, {actors} actor(s) of 1 CPU")
        out = folder / f"ray{actors}.npz"
        stdout, wall = cli("predict", "minilm", "--data", str(texts), "--out", str(out), "--ray", address,
                           "--actors", str(actors), "--cpus-per-actor", "1")
        match = re.search(r"wrote (\d+) predictions .*?: (\d+) rows/s over ([\d.]+) s", stdout)
        assert match and int(match.group(1)) == rows, stdout
        found.append({"how": f"Ray Data, {actors} actor{'s' if actors > 1 else ''} of 1 CPU",
                      "rows_per_s": float(match.group(2)), "seconds": float(match.group(3)), "wall": wall})
    return found


def serving_rows(address: str, quick: bool, say) -> list[dict]:
    from infertune.serve.loadtest import loadtest
    from infertune.serve.process import ServerProcess

    requests = 3000 if quick else 20000
    found = []
    for how, args in (("infertune serve, one process", ()),
                      ("infertune serve --ray, 2 replicas of 1 CPU", ("--ray", address, "--replicas", "2"))):
        say(f"serve: {how}")
        with ServerProcess("digits-cnn", "--cache-size", "0", *args, timeout=300) as server:
            loadtest(server.url, model="digits-cnn", concurrency=8, requests=500, data="digits")  # warm
            result = loadtest(server.url, model="digits-cnn", concurrency=CLIENTS, requests=requests, data="digits")
        found.append({"how": how, "throughput": result.throughput, "p50": result.percentile(50),
                      "p99": result.percentile(99), "statuses": dict(result.statuses)})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows and requests: smoke figures, not for quoting")
    parser.add_argument("--rows", type=int, default=20000, help="texts for the predict runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs" / "benchmarks.md")
    args = parser.parse_args()
    in_namespace()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    header, replace_section = _common()
    from ray.cluster_utils import Cluster

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    import tempfile

    rows = 3000 if args.quick else args.rows
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        texts = texts_file(folder, rows)
        say("starting a two-node Ray cluster (1 CPU each) on loopback")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            predicted = predict_rows(folder, texts, rows, cluster.address, say)
            served = serving_rows(cluster.address, args.quick, say)
        finally:
            cluster.shutdown()

    one, two = predicted[1]["rows_per_s"], predicted[2]["rows_per_s"]
    lines = header("Ray", "benchmarks/ray.py", args.quick,
                   f"minilm `predict` over {rows:,} docstring texts (natural length), and digits-cnn served at "
                   f"saturation ({CLIENTS} closed-loop clients, cache off), on a two-node Ray cluster of 1 CPU each "
                   "on this machine's 2 cores (inside a loopback-only network namespace), against infertune on "
                   "one machine.")
    lines += ["| predict | rows/s | seconds (the run's own clock) |", "|---|---:|---:|"]
    lines += [f"| {r['how']} | {r['rows_per_s']:.0f} | {r['seconds']:.1f} |" for r in predicted]
    lines += ["", f"Scaling, 2 actors over 1: {two / one:.2f}x. Ray with 2 actors against local: "
                  f"{two / predicted[0]['rows_per_s']:.2f}x.", ""]
    lines += ["| serving digits-cnn | items/s | p50 ms | p99 ms | statuses |", "|---|---:|---:|---:|---|"]
    lines += [f"| {r['how']} | {r['throughput']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))} |" for r in served]
    lines += ["", f"Ray Serve against one process: {served[1]['throughput'] / served[0]['throughput']:.2f}x "
                  "throughput at saturation."]
    print("\n".join(lines), flush=True)
    replace_section(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
