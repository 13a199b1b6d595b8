"""What the server costs and what batching buys, measured side by side in one run, on minilm and digits-cnn.

Per model: the engine's offline throughput at batch 1 and at the server's max batch size (in this process, before
any server starts; for text, batches of consecutive sentences and of similar lengths); served throughput at
saturation (closed loop, many clients, cache off) and its ratio to offline; for digits-cnn also with requests of
several samples each (as a client batching its own work sends);
served throughput with batching against `--max-batch-size 1`; p50 and p99 at 50 % and 90 % of saturation
(open loop); per-request overhead (served p50 at concurrency 1 minus the engine's batch-1 p50). Then an overload
soak on minilm: open loop at 4x saturation for `--soak-seconds`, the statuses seen and the server's resident
memory growth. The load generator runs in this process on the same 2 cores as the server: that is part of
what is measured, and noted.

    .venv/bin/python benchmarks/serving.py [--quick] [--soak-seconds 60] [--only main|limits|workers|target]
                                           [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks_common import header, replace_section
from infertune.serve.loadtest import loadtest
from infertune.serve.process import ServerProcess

CLIENTS = 64  # closed-loop clients that saturate the server
RUNS = [("minilm", "docstrings", 32, 1), ("minilm", "docstrings", 8, 1), ("digits-cnn", "digits", 32, 8)]
# (model, data, --max-batch-size, samples a request in the extra saturation run; 1: no extra run)


def offline(model: str, data: str, quick: bool, max_batch: int) -> dict:
    """The engine alone: items/s at batch 1 and at max_batch over held-out batches (text: also with similar
    lengths together, as the server's length-aware batches are), and the batch-1 p50 in ms."""
    import infertune
    from infertune.resolver import resolve_data

    engine = infertune.load(model, backend="onnxruntime")
    dataset = resolve_data(data, model=engine.model)
    split = dataset.split("heldout")
    n = len(split)
    batches = [engine.model.inputs_for(split, np.arange(i, i + max_batch) % n) for i in range(0, n, max_batch)]
    singles = [engine.model.inputs_for(split, [i]) for i in range(min(n, 256))]
    for batch in batches[:3] + singles[:20]:
        engine.run(batch)
    seconds = 1.0 if quick else 3.0
    figures = {"throughput": items_per_s(engine, batches, seconds),
               "b1_throughput": items_per_s(engine, singles, seconds)}
    if split.texts is not None:
        lengths = [int(engine.model.inputs_for(split, [i])["attention_mask"].sum()) for i in range(n)]
        order = np.argsort(lengths, kind="stable")
        similar = [engine.model.inputs_for(split, order[i:i + max_batch]) for i in range(0, n - max_batch + 1, max_batch)]
        figures["similar_throughput"] = items_per_s(engine, similar, seconds)
    times = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for single in singles:
            t = time.perf_counter()
            engine.run(single)
            times.append((time.perf_counter() - t) * 1000)
    return {**figures, "b1_p50_ms": statistics.median(times)}


def items_per_s(engine, batches: list[dict], seconds: float) -> float:
    started, items = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for batch in batches:
            engine.run(batch)
            items += next(iter(batch.values())).shape[0]
    return items / (time.perf_counter() - started)


def served(model: str, data: str, quick: bool, say, max_batch: int, rows: int) -> dict:
    scale = 0.25 if quick else 1.0
    figures: dict = {}
    with ServerProcess(model, "--backend", "onnxruntime", "--cache-size", "0", "--max-batch-size", str(max_batch),
                       "--max-queue", "1024") as server:
        loadtest(server.url, model=model, concurrency=8, requests=200, data=data)  # connections and caches warm
        probe = loadtest(server.url, model=model, concurrency=CLIENTS, requests=int(1000 * scale), data=data)
        n = max(int(probe.throughput * 8 * scale), 500)  # about 8 s at saturation
        say(f"{model}: saturation, {n} requests")
        figures["saturated"] = loadtest(server.url, model=model, concurrency=CLIENTS, requests=n, data=data)
        capacity = figures["saturated"].throughput
        if rows > 1:
            say(f"{model}: saturation with {rows} samples a request")
            figures["rows"] = loadtest(server.url, model=model, concurrency=CLIENTS, requests=max(n // rows, 300),
                                       data=data, rows=rows)
        for share in (0.5, 0.9):
            say(f"{model}: open loop at {share:.0%} of saturation ({share * capacity:.0f}/s)")
            figures[share] = loadtest(server.url, model=model, rate=share * capacity,
                                      requests=max(int(share * capacity * 8 * scale), 200), data=data)
        say(f"{model}: concurrency 1")
        before = server_seconds(server.url, model)
        figures["c1"] = loadtest(server.url, model=model, concurrency=1, requests=int(1500 * scale), data=data)
        after = server_seconds(server.url, model)
        calls = after["compute_count"] - before["compute_count"]
        figures["server_ms"] = {k: (after[k] - before[k]) / calls * 1000 for k in ("request", "compute")}
        figures["rss"] = server.rss_bytes()
        figures["exit"] = server.stop()
    with ServerProcess(model, "--backend", "onnxruntime", "--cache-size", "0", "--max-batch-size", "1",
                       "--max-queue", "1024") as server:
        say(f"{model}: --max-batch-size 1 at saturation")
        loadtest(server.url, model=model, concurrency=8, requests=100, data=data)
        figures["unbatched"] = loadtest(server.url, model=model, concurrency=CLIENTS,
                                        requests=max(int(n / 4), 300), data=data)
    return figures


def server_seconds(url: str, model: str) -> dict:
    """Sums from the server's own /metrics: time from arrival to answer, and engine time."""
    import re
    import urllib.request

    text = urllib.request.urlopen(f"{url}/metrics").read().decode()

    def value(name: str) -> float:
        return float(re.search(rf'{name}{{model="{re.escape(model)}"}} (\S+)', text).group(1))

    return {"request": value("infertune_request_seconds_sum"), "compute": value("infertune_compute_seconds_sum"),
            "compute_count": value("infertune_compute_seconds_count")}


def soak(model: str, data: str, capacity: float, seconds: float, say, max_batch: int = 32) -> dict:
    rate = 4 * capacity
    with ServerProcess(model, "--backend", "onnxruntime", "--cache-size", "0", "--max-batch-size", str(max_batch),
                       "--max-queue", "256", "--timeout-ms", "2000") as server:
        loadtest(server.url, model=model, concurrency=2 * max_batch, requests=int(capacity * 3), data=data)
        before = server.rss_bytes()
        say(f"soak: {model} open loop at {rate:.0f}/s (4x saturation) for {seconds:.0f} s")
        result = loadtest(server.url, model=model, rate=rate, requests=int(rate * seconds), data=data,
                          timeout_s=30)
        after = server.rss_bytes()
        alive = server.process.poll() is None
        code = server.stop()
    return {"result": result, "rss_before": before, "rss_after": after, "alive": alive, "exit": code}


def limits_cost(quick: bool, say, rounds: int = 3) -> list[str]:
    """digits-cnn (where HTTP costs the most next to the model) with and without the HTTP limits, servers
    alternated `rounds` times in one run: saturation (64 clients) and p50 at concurrency 1, medians of the rounds."""
    plain = [sys.executable, str(Path(__file__).with_name("serve_without_limits.py"))]
    figures: dict[str, dict[str, list[float]]] = {"without": {"sat": [], "c1": []}, "with": {"sat": [], "c1": []}}
    n = 3000 if quick else 20000
    for r in range(rounds):
        for variant in (("without", "with") if r % 2 == 0 else ("with", "without")):
            with ServerProcess("digits-cnn", "--backend", "onnxruntime", "--cache-size", "0", "--max-queue", "1024",
                               command=plain if variant == "without" else None) as server:
                loadtest(server.url, model="digits-cnn", concurrency=8, requests=500, data="digits")
                say(f"limits: round {r + 1}, {variant} the limits")
                figures[variant]["sat"].append(loadtest(server.url, model="digits-cnn", concurrency=CLIENTS,
                                                        requests=n, data="digits").throughput)
                figures[variant]["c1"].append(loadtest(server.url, model="digits-cnn", concurrency=1,
                                                       requests=n // 5, data="digits").percentile(50))
    lines = ["| digits-cnn, onnxruntime | saturation req/s, each round | median | p50 ms at concurrency 1, each "
             "round | median |", "|---|---|---:|---|---:|"]
    for variant in ("without", "with"):
        sat, c1 = figures[variant]["sat"], figures[variant]["c1"]
        lines.append(f"| {variant} the HTTP limits | {', '.join(f'{v:.0f}' for v in sat)} | {statistics.median(sat):.0f} "
                     f"| {', '.join(f'{v:.3f}' for v in c1)} | {statistics.median(c1):.3f} |")
    ratio = statistics.median(figures["with"]["sat"]) / statistics.median(figures["without"]["sat"])
    lines += ["", f"With the limits over without: saturation {ratio:.3f}x, concurrency-1 p50 "
                  f"{statistics.median(figures['with']['c1']) / statistics.median(figures['without']['c1']):.3f}x "
                  f"(servers alternated, {rounds} rounds, {n} requests at saturation and {n // 5} at concurrency 1 "
                  f"each; 'without' is uvicorn's plain httptools protocol, benchmarks/serve_without_limits.py).", ""]
    return lines


def workers_figures(quick: bool, say, engine: dict) -> list[str]:
    """digits-cnn at saturation with --workers 1 and 2: 1-sample JSON requests and 8-sample binary ones, against
    the engine's offline throughput, with the server's CPU-seconds per 1,000 requests."""
    n = 4000 if quick else 20000
    rows = ["| --workers | --threads each | requests | samples/s | share of offline (b32) | p50 ms | p99 ms | server "
            "CPU-s per 1,000 requests | load generator CPU-s per 1,000 requests | statuses |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    figures = {}
    for workers in (1, 2):
        args = ["--backend", "onnxruntime", "--cache-size", "0", "--max-queue", "1024", "--workers", str(workers)]
        if workers > 1:
            args += ["--threads", "1"]
        with ServerProcess("digits-cnn", *args) as server:
            loadtest(server.url, model="digits-cnn", concurrency=8, requests=1000, data="digits")
            for label, kwargs in (("1 sample, JSON", {}), ("8 samples, binary", {"rows": 8, "binary": True})):
                say(f"workers {workers}: {label}")
                result = loadtest(server.url, model="digits-cnn", concurrency=CLIENTS,
                                  requests=n // kwargs.get("rows", 1), data="digits", **kwargs)
                figures[(workers, label)] = result
                rows.append(f"| {workers} | {'1' if workers > 1 else 'runtime default'} | {label} | "
                            f"{result.items_per_s:.0f} | {result.items_per_s / engine['throughput']:.0%} | "
                            f"{result.percentile(50):.2f} | {result.percentile(99):.2f} | "
                            f"{result.cpu_s_per_1000:.3f} | {result.client_cpu_s_per_1000:.3f} | "
                            f"{dict(result.statuses)} |")
    one = figures[(2, "1 sample, JSON")].items_per_s / figures[(1, "1 sample, JSON")].items_per_s
    eight = figures[(2, "8 samples, binary")].items_per_s / figures[(1, "8 samples, binary")].items_per_s
    energy = figures[(1, "1 sample, JSON")].energy_note
    # With the generator on the same cores, the workers get what the generator leaves: the ceiling of any number
    # of workers follows from the CPU each side spends per request, at its leanest in this run (one worker with the
    # runtime's default threads also spends CPU spinning, so its own figure would set the ceiling too low).
    single = [figures[(w, "1 sample, JSON")] for w in (1, 2)]
    costs = [(r.cpu_s_per_1000, r.client_cpu_s_per_1000) for r in single
             if r.cpu_s_per_1000 and r.client_cpu_s_per_1000]
    ceiling, cores = "", len(os.sched_getaffinity(0))
    if costs:
        server, client = min(costs, key=sum)
        most = cores * 1000 / (server + client)
        ceiling = (f" At the leanest cost measured here (a worker {server:.3f} and the generator {client:.3f} CPU-s "
                   f"per 1,000 requests), {cores} cores can answer at most {most:.0f} 1-sample requests/s however many "
                   f"workers serve: {most / single[0].items_per_s:.2f}x the one-worker figure; two workers reached "
                   f"{single[1].items_per_s / most:.0%} of it.")
    return rows + ["", f"Engine offline (this process, before any server): {engine['throughput']:.0f} samples/s at "
                       f"batch 32, {engine['b1_throughput']:.0f} at batch 1. Two workers over one: {one:.2f}x with "
                       f"1-sample requests, {eight:.2f}x with 8-sample binary ones.{ceiling} "
                       f"{energy[:1].upper() + energy[1:]}.",
                   ""]


def target_steps(quick: bool, say, targets_ms: tuple[float, ...] = (100.0, 300.0), step_s: float = 6.0) -> list[str]:
    """minilm under an open-loop load that steps 10 % -> 90 % -> 10 % of saturation, with --target-p99-ms (a tight
    target and a looser one) and with two fixed settings, each on a fresh server: p99 and throughput in each
    step."""
    step_s = 2.0 if quick else step_s
    shares = (0.1, 0.3, 0.5, 0.7, 0.9, 0.7, 0.5, 0.3, 0.1)
    settings = {**{f"--target-p99-ms {t:g}": ["--target-p99-ms", str(t)] for t in targets_ms},
                "fixed: --max-batch-size 32 --max-delay-ms 5": ["--max-batch-size", "32", "--max-delay-ms", "5"],
                "fixed: --max-batch-size 8 --max-delay-ms 2": ["--max-batch-size", "8", "--max-delay-ms", "2"]}
    with ServerProcess("minilm", "--backend", "onnxruntime", "--cache-size", "0", "--max-queue", "1024") as server:
        loadtest(server.url, model="minilm", concurrency=8, requests=200, data="docstrings")
        capacity = loadtest(server.url, model="minilm", concurrency=CLIENTS, requests=600 if quick else 2500,
                            data="docstrings").throughput
    say(f"target steps: minilm saturation {capacity:.0f}/s")
    rows = ["| setting | " + " | ".join(f"{s:.0%}" for s in shares) + " |", "|---|" + "---|" * len(shares)]
    at_90 = {}
    for label, args in settings.items():
        cells = []
        with ServerProcess("minilm", "--backend", "onnxruntime", "--cache-size", "0", "--max-queue", "1024",
                           *args) as server:
            loadtest(server.url, model="minilm", concurrency=8, requests=200, data="docstrings")
            for share in shares:
                say(f"{label}: {share:.0%}")
                rate = share * capacity
                result = loadtest(server.url, model="minilm", rate=rate, requests=max(int(rate * step_s), 20),
                                  data="docstrings")
                cells.append(f"{result.percentile(99):.1f} / {result.throughput:.0f}")
                if share == 0.9 and not at_90.get(label):
                    at_90[label] = (result.throughput, result.percentile(99))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    best_fixed = max(v[0] for k, v in at_90.items() if k.startswith("fixed"))
    fixed_p99 = min(v[1] for k, v in at_90.items() if k.startswith("fixed"))
    lines = rows + ["", f"Each cell: p99 ms / answered requests per second, open loop at that share of saturation "
                        f"({capacity:.0f}/s, measured first) for {step_s:g} s, one sentence a request."]
    for t in targets_ms:
        ours = at_90[f"--target-p99-ms {t:g}"]
        lines.append(f"At 90 %, with --target-p99-ms {t:g} the server answered {ours[0]:.0f}/s (p99 {ours[1]:.1f} ms) "
                     f"against {best_fixed:.0f}/s for the best fixed setting ({ours[0] / best_fixed:.2f}x); the "
                     f"lowest p99 of a fixed setting there: {fixed_p99:.1f} ms.")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests: smoke figures, not for quoting")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs" / "benchmarks.md")
    parser.add_argument("--only", choices=("main", "limits", "workers", "target"), action="append",
                        help="run only these sections (repeatable); default: all")
    args = parser.parse_args()
    only = set(args.only or ("main", "limits", "workers", "target"))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def section(title: str, description: str, body: list[str]) -> None:
        lines = header(title, "benchmarks/serving.py", args.quick, description) + body
        print("\n".join(lines), flush=True)
        replace_section(args.out, "\n".join(lines))

    if "limits" in only:
        section("Serving: the cost of the HTTP limits",
                "The same server with and without the HTTP limits (request line, header bytes and count, header "
                "and body deadlines, connection limit), on digits-cnn, cache off, 64 closed-loop clients and one "
                "client, the load generator on the same 2 cores.", limits_cost(args.quick, say))
    if "workers" in only:
        say("digits-cnn: engine offline")
        section("Serving: worker processes",
                "digits-cnn on onnxruntime fp32, cache off, 64 closed-loop clients (the load generator on the same 2 "
                "cores), --workers 1 and 2 (each worker then 1 intra-op thread).",
                workers_figures(args.quick, say, offline("digits-cnn", "digits", args.quick, 32)))
    if "target" in only:
        section("Serving: batching driven by a latency target",
                "minilm on onnxruntime fp32, cache off; the load generator on the same 2 cores.",
                target_steps(args.quick, say))
    if "main" not in only:
        return

    lines = header("Serving", "benchmarks/serving.py", args.quick,
                   "Each model on onnxruntime fp32, cache off; the load generator (`infertune loadtest`: asyncio, "
                   "uvloop, httptools, requests encoded up front) runs on the same 2 cores as the server, real "
                   "held-out inputs (natural-length sentences for minilm), one sample per request unless a column "
                   "says otherwise.")
    throughput = ["| model | --max-batch-size | engine offline items/s at batch 1 | engine offline items/s at that "
                  "batch | engine's own batching gain | served at saturation items/s (share of offline at that batch) "
                  "| served, several samples a request, items/s (share) | served, --max-batch-size 1 items/s | "
                  "served batching gain | statuses |",
                  "|---|---:|---:|---|---:|---|---|---:|---:|---|"]
    latency = ["| model | --max-batch-size | p50 / p99 ms at 50 % of saturation | p50 / p99 ms at 90 % | engine b1 "
               "p50 ms | served p50 ms at concurrency 1 | per-request overhead ms | of it inside the server ms |",
               "|---|---:|---|---|---:|---:|---:|---:|"]
    capacities = {}
    for model, data, max_batch, rows in RUNS:
        say(f"{model}: engine offline at batch 1 and {max_batch}")
        engine = offline(model, data, args.quick, max_batch)
        figures = served(model, data, args.quick, say, max_batch, rows)
        sat, unb, c1 = figures["saturated"], figures["unbatched"], figures["c1"]
        capacities.setdefault(model, sat.throughput)
        statuses = set()
        for key in ("saturated", 0.5, 0.9, "c1", "unbatched", "rows"):
            statuses |= set(figures[key].statuses) if key in figures else set()
        best = max(engine["throughput"], engine.get("similar_throughput", 0))
        at_batch = f"{engine['throughput']:.0f}"
        share = f"{sat.throughput / engine['throughput']:.0%}"
        if "similar_throughput" in engine:
            at_batch += f" (similar lengths together: {engine['similar_throughput']:.0f})"
            share += f"; {sat.throughput / engine['similar_throughput']:.0%} of similar lengths"
        several = "-"
        if "rows" in figures:
            several = (f"{figures['rows'].items_per_s:.0f} with {rows} a request "
                       f"({figures['rows'].items_per_s / engine['throughput']:.0%})")
        throughput.append(
            f"| {model} | {max_batch} | {engine['b1_throughput']:.0f} | {at_batch} | "
            f"{best / engine['b1_throughput']:.2f}x | {sat.throughput:.0f} ({share}) | {several} | "
            f"{unb.throughput:.0f} | {sat.throughput / unb.throughput:.2f}x | {', '.join(sorted(statuses))} |")
        latency.append(
            f"| {model} | {max_batch} | {figures[0.5].percentile(50):.2f} / {figures[0.5].percentile(99):.2f} | "
            f"{figures[0.9].percentile(50):.2f} / {figures[0.9].percentile(99):.2f} | {engine['b1_p50_ms']:.3f} | "
            f"{c1.percentile(50):.3f} | {c1.percentile(50) - engine['b1_p50_ms']:.3f} | "
            f"{figures['server_ms']['request'] - figures['server_ms']['compute']:.3f} |")
        print(throughput[-1], latency[-1], sep="\n", flush=True)
    lines += throughput + ["", "The engine's own batching gain: its best offline items/s at the max batch over its "
                           "items/s at batch 1, what batching can buy at most on this engine. The served batching "
                           "gain: served at saturation over the same server with `--max-batch-size 1`.", ""]
    lines += latency + ["", "Per-request overhead: served p50 at concurrency 1 minus the engine's batch-1 p50 "
                        "offline; it includes the client, HTTP on loopback, JSON both ways, (minilm) tokenizing, "
                        "and the engine running slower beside the server and client than alone. \"Inside the "
                        "server\": the mean time from arrival to answer minus the mean engine time, from the "
                        "server's own /metrics, same run.", ""]
    soaked = soak("minilm", "docstrings", capacities["minilm"], args.soak_seconds * (0.25 if args.quick else 1), say)
    r = soaked["result"]
    growth = soaked["rss_after"] / soaked["rss_before"] - 1
    lines += [f"Overload soak (minilm, open loop at 4x saturation = {4 * capacities['minilm']:.0f}/s for "
              f"{r.seconds:.0f} s, `--max-queue 256 --timeout-ms 2000`): {r.sent} sent, statuses "
              f"{dict(sorted(r.statuses.items()))}; served {r.throughput:.0f}/s, p50 {r.percentile(50):.1f} ms, "
              f"p99 {r.percentile(99):.1f} ms of those answered 200; server alive after: {soaked['alive']}, exit code "
              f"after SIGTERM {soaked['exit']}; resident memory {soaked['rss_before'] / 2**20:.0f} -> "
              f"{soaked['rss_after'] / 2**20:.0f} MiB ({growth:+.1%}).", ""]
    print("\n".join(lines))
    replace_section(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
