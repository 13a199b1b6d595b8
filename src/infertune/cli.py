"""The command line: a thin layer over the Python API. Exit 0 ok, 2 bad input (one line), 1 internal failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from infertune.errors import ConfigError, InfertuneError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="infertune: make a trained model respond faster, and prove what it cost.")

DEFAULT_BACKENDS = "torch,torch-compile,onnxruntime,openvino"
_LIMITS = __import__("infertune.serve.limits", fromlist=["HttpLimits"]).HttpLimits()  # the defaults, said once
MODEL_HELP = ("zoo name, run directory, Hugging Face folder (or a name in the local Hugging Face cache), .onnx file "
              "or folder, .keras file, TensorFlow SavedModel folder, or factory package.module:function")
DATA_HELP = ("zoo data set, .npz (arrays named like the inputs, optional labels), or texts: .txt (one a line), "
             ".jsonl, .csv, .tsv, .parquet (a text field, optional label id or name)")
# options every command that loads a model shares (one definition each, so help and defaults never drift)
TASK = typer.Option(None, help="classification, embedding, token-classification or generic (aliases: "
                               "feature-extraction, text-classification...): overrides what the model says")
POOLING = typer.Option(None, help="embeddings of a transformers folder: mean, cls, max, mean_sqrt_len_tokens, "
                                  "weightedmean or lasttoken (default: the folder's own, else mean)")
TEXT_FIELD = typer.Option("text", help="field (or column) of a .jsonl, .csv, .tsv or .parquet file that holds the text")
LABEL_FIELD = typer.Option("label", help="field (or column) that holds the label: a class id or a label name")
HELDOUT = typer.Option(None, help="a data file whose samples are the held-out split (the --data file then gives "
                                  "calibration and train)")
NUM_HEADS = typer.Option(None, help="attention heads, for graph fusion where the model does not say (an ONNX graph "
                                    "without readable head counts)")
HIDDEN_SIZE = typer.Option(None, help="hidden size, with --num-heads")


def _parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(size < 1 for size in sizes):
        raise ConfigError(f"--batch-sizes must be positive integers separated by commas, like 1,32; got '{text}'")
    return sizes


def _parse_range(text: str, flag: str) -> tuple[int, int]:
    """'N' or 'MIN,MAX' as (MIN, MAX)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise ConfigError(f"{flag} takes N or MIN,MAX (integers), got '{text}'")
    return (numbers[0], numbers[-1])


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes key=value (for example freezing=false), got '{pair}'")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _backend_configs(names: list[str], options: dict) -> list[tuple[str, dict]]:
    """Each backend gets the options it has; an option no chosen backend has is an error, not dropped."""
    import dataclasses

    from infertune.backends import BACKENDS, make_backend_settings

    if not names:
        raise ConfigError("--backend is empty: name at least one, for example --backend onnxruntime")
    configs, known = [], set()
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend '{name}': use one of {', '.join(BACKENDS)}")
        fields = {f.name for f in dataclasses.fields(BACKENDS[name].settings)} - {"device"}
        known |= fields
        own = {k: v for k, v in options.items() if k in fields}
        make_backend_settings(name, **own)  # bad values fail here, before anything runs
        configs.append((name, own))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"option '{unknown[0]}' applies to none of {', '.join(names)}: "
                          f"their options are {', '.join(sorted(known))}")
    return configs


@app.command()
def models() -> None:
    """List the zoo: models, data sets, the backends that can run here, and the passes."""
    from rich.console import Console
    from rich.table import Table

    from infertune.backends import BACKENDS, unavailable_reason
    from infertune.data import DATASETS
    from infertune.model import ZOO

    console = Console()
    table = Table(title="models")
    table.add_column("name")
    table.add_column("task")
    table.add_column("data")
    table.add_column("description")
    for name, entry in ZOO.items():
        table.add_row(name, entry.task, entry.default_data, entry.description)
    console.print(table)
    data_table = Table(title="data sets")
    data_table.add_column("name")
    data_table.add_column("description")
    for name, description in DATASETS.items():
        data_table.add_row(name, description)
    console.print(data_table)
    backend_table = Table(title="backends")
    backend_table.add_column("name")
    backend_table.add_column("here")
    backend_table.add_column("description")
    for name, entry in BACKENDS.items():
        reason = unavailable_reason(name)
        backend_table.add_row(name, "yes" if reason is None else f"no: {reason}", entry.description)
    console.print(backend_table)
    from infertune.passes.registry import load_all

    pass_table = Table(title="passes")
    pass_table.add_column("name")
    pass_table.add_column("takes")
    pass_table.add_column("what it does")
    for name, entry in load_all().items():
        pass_table.add_row(name, ", ".join(entry.formats), entry.summary)
    console.print(pass_table)


@app.command()
def bench(
    model: str = typer.Argument(..., help=MODEL_HELP),
    backend: Optional[str] = typer.Option(None, "--backend", "-b",
                                          help="backends to measure, comma-separated (see `infertune models`); "
                                               f"default: {DEFAULT_BACKENDS}, or a run directory's own backend"),
    precision: str = typer.Option("fp32", help="fp32, bf16 or fp16 (what a backend supports)"),
    batch_sizes: str = typer.Option("1,32", help="batch sizes to time, comma-separated"),
    threads: Optional[int] = typer.Option(None, help="intra-op threads (default: the runtime's own)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP + "; default: the model's own data set"),
    weights: Optional[str] = typer.Option(None, help="weights for a factory model (safetensors or state dict)"),
    task: Optional[str] = TASK,
    pooling: Optional[str] = POOLING,
    text_field: str = TEXT_FIELD,
    label_field: str = LABEL_FIELD,
    heldout: Optional[str] = HELDOUT,
    option: list[str] = typer.Option([], "--option", "-o",
                                     help="backend setting key=value, repeatable: freezing=false, "
                                          "graph_optimization=basic, exporter=dynamo, performance_hint=THROUGHPUT"),
    min_time: float = typer.Option(2.0, help="seconds of timed runs per batch size, at least"),
    min_runs: int = typer.Option(50, help="timed runs per batch size, at least"),
    in_process: bool = typer.Option(False, "--in-process",
                                    help="measure in this process instead of a fresh one per backend"),
    timeout: float = typer.Option(900.0, help="seconds before a backend's measurement is abandoned"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write every figure to this JSON file"),
) -> None:
    """Measure latency (p50/p90/p99), throughput, size and memory on each backend, side by side."""
    from infertune.bench import Timing, bench_backends
    from infertune.bench.hardware import fingerprint, versions
    from infertune.io import write_json_atomic
    from infertune.report.terminal import bench_table, progress_reporter
    from infertune.resolver import resolve

    sizes = _parse_batch_sizes(batch_sizes)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads}")
    if min_time < 0 or min_runs < 1:
        raise ConfigError(f"--min-time must be >= 0 and --min-runs >= 1, got {min_time} and {min_runs}")
    if json_out is not None and json_out.is_dir():
        raise ConfigError(f"--json '{json_out}' is a folder: give a file path such as {json_out / 'bench.json'}")
    options = _parse_options(option)
    options["precision"] = precision
    if threads is not None:
        options["threads"] = threads
    loaded, dataset = resolve(model, data=data, weights=weights, task=task, pooling=pooling, heldout=heldout,
                              text_field=text_field, label_field=label_field)
    if backend is None:
        backend = loaded.backend or DEFAULT_BACKENDS  # a run directory's own backend
    configs = _backend_configs([b.strip() for b in backend.split(",") if b.strip()], options)
    configs = [(name, {**loaded.backend_options, **own} if name == loaded.backend else own) for name, own in configs]
    if dataset is not None:
        typer.echo(f"data: {dataset.describe()}")
    timing = Timing(min_runs=min_runs, min_seconds=min_time)
    with progress_reporter(len(configs)) as report:
        results = bench_backends(loaded, configs, data=dataset, batch_sizes=sizes, timing=timing,
                                 isolate=not in_process, timeout=timeout, progress=report)
    bench_table(results, sizes, fingerprint())
    if json_out is not None:
        write_json_atomic(json_out, {"model": model, "batch_sizes": list(sizes), "hardware": fingerprint(),
                                     "versions": versions(), "results": [r.to_dict() for r in results]})
        typer.echo(f"wrote {json_out}")
    if all(not r.ok for r in results):
        raise InfertuneError("every backend failed: " + "; ".join(f"{r.backend}: {r.error}" for r in results))


@app.command()
def optimize(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data: Optional[str] = typer.Option(None, help=DATA_HELP + "; default: the model's own data set"),
    weights: Optional[str] = typer.Option(None, help="weights for a factory model"),
    task: Optional[str] = TASK,
    pooling: Optional[str] = POOLING,
    text_field: str = TEXT_FIELD,
    label_field: str = LABEL_FIELD,
    heldout: Optional[str] = HELDOUT,
    num_heads: Optional[int] = NUM_HEADS,
    hidden_size: Optional[int] = HIDDEN_SIZE,
    max_drop: float = typer.Option(0.01, help="largest metric drop allowed on held-out samples (0.01 = one point)"),
    min_top10: float = typer.Option(0.9, help="embeddings only: least top-10 nearest-neighbour agreement with the "
                                              "baseline on held-out samples"),
    objective: str = typer.Option("latency", help="latency (p50 at --batch-size), throughput or size"),
    batch_size: int = typer.Option(1, help="batch size the latency objective is measured at"),
    time_budget: Optional[float] = typer.Option(None, help="seconds after which the search stops with the best so far"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/MODEL-TIMESTAMP)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    recipe: Optional[Path] = typer.Option(None, help="re-apply this recipe.yaml instead of searching"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run the trials on Ray, one per node at a time, each "
                                                          "holding the node's CPUs: an existing cluster's address "
                                                          "(host:port, or auto); alone, or 'local', a cluster "
                                                          "started here"),
) -> None:
    """Search passes x backends for the fastest (or smallest) model within the accuracy budget."""
    from infertune.report.terminal import progress_reporter
    from infertune.resolver import resolve
    from infertune.search.recipe import Recipe
    from infertune.search.run import run_search

    recipes = [Recipe.load(recipe)] if recipe is not None else None
    if ray is not None:
        from infertune.cluster.connect import require_ray

        require_ray()
    source, dataset = resolve(model, data=data, weights=weights, task=task, pooling=pooling, num_heads=num_heads,
                              hidden_size=hidden_size, heldout=heldout, text_field=text_field, label_field=label_field)
    typer.echo(f"model: {source.name} ({source.task}, {source.format}"
               + "".join(f", {source.meta[key]}" for key in ("attention", "loaded_as") if key in source.meta) + ")")
    if dataset is not None:
        typer.echo(f"data: {dataset.describe()}")
    with progress_reporter(1) as report:
        result = run_search(source, dataset, max_drop=max_drop, min_top10=min_top10, objective=objective,
                            batch_size=batch_size, time_budget=time_budget, out=out, resume=resume,
                            recipes=recipes, progress=report, say=lambda line: typer.echo(f"note: {line}", err=True),
                            ray=ray)
    from infertune.report.terminal import optimize_table

    optimize_table(result)


@app.command()
def report(directory: Path = typer.Argument(..., help="a run directory written by infertune optimize")) -> None:
    """Re-render DIR/report.html from DIR/results.json."""
    import json

    from infertune.report.html import write_report

    results = directory / "results.json"
    if not results.is_file():
        raise ConfigError(f"'{results}' not found: pass a run directory written by infertune optimize")
    typer.echo(f"wrote {write_report(directory, json.loads(results.read_text()))}")


@app.command()
def predict(
    model: str = typer.Argument(..., help="run directory, or any model: " + MODEL_HELP),
    data: str = typer.Option(..., help=DATA_HELP),
    out: Path = typer.Option(..., help="where to write the outputs, by extension: .npz (one array per output), "
                                       ".jsonl (one line per sample, in input order) or .parquet (one row per sample)"),
    backend: Optional[str] = typer.Option(None, help="runtime (default: a run directory's own, torch for torch "
                                                     "models, else onnxruntime)"),
    weights: Optional[str] = typer.Option(None, help="weights for a factory model"),
    task: Optional[str] = TASK,
    text_field: str = TEXT_FIELD,
    split: Optional[str] = typer.Option(None, help="which split to run: all (a file's default, in its order) or "
                                                   "heldout (a zoo data set's default)"),
    batch_size: int = typer.Option(32, help="samples per engine call (with --ray: rows per actor call)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray Data: an existing cluster's address "
                                                          "(host:port, or auto); alone, or 'local', a cluster "
                                                          "started here"),
    actors: str = typer.Option("2", help="with --ray: N actors, or MIN,MAX (Ray scales the pool between them)"),
    cpus_per_actor: float = typer.Option(1.0, help="with --ray: CPUs each actor holds (its runtime's threads)"),
) -> None:
    """Run a model on data and save its outputs, in input order, to .npz, .jsonl or .parquet (with --ray, also a
    folder of Parquet parts)."""
    from infertune.data.outputs import check_output_path
    from infertune.predict import predict as run_predict
    from infertune.report.terminal import progress_bar

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size}")
    if ray is not None:
        from infertune.cluster.connect import require_ray

        require_ray()
        from infertune.cluster.predict import predict_on_ray
        from infertune.model.spec import ModelSpec
        from infertune.resolver import locate

        locate(model)  # a model that is not there exits 2 here, not inside an actor
        pool = _parse_range(actors, "--actors")
        if pool[0] < 1 or cpus_per_actor <= 0:
            raise ConfigError(f"--actors must be at least 1 and --cpus-per-actor positive, got {actors} and "
                              f"{cpus_per_actor}")
        summary = predict_on_ray(ModelSpec(model=model, weights=weights, task=task).to_dict(), data=data, out=out,
                                 address=ray, backend=backend, actors=pool, cpus_per_actor=cpus_per_actor,
                                 batch_size=batch_size * 8, text_field=text_field,
                                 say=lambda line: typer.echo(line, err=True))
        typer.echo(f"wrote {summary['rows']} predictions to {out}: {summary['rows_per_s']:.0f} rows/s over "
                   f"{summary['seconds']:.1f} s, actors {pool[0]}-{pool[1]} of {cpus_per_actor:g} CPU, "
                   f"{summary['blocks']} blocks, {summary['retries']} batches retried")
        return
    check_output_path(out)
    with progress_bar("predict") as advance:
        count = run_predict(model, data=data, out=out, backend=backend, weights=weights, task=task,
                            text_field=text_field, split=split, batch_size=batch_size, progress=advance)
    typer.echo(f"wrote {count} predictions to {out}")


@app.command()
def serve(
    models: list[str] = typer.Argument(..., help="models to serve, each a run directory, an ensemble .yaml file, or "
                                                 "any model: " + MODEL_HELP + "; NAME=SPEC names one in the URL"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback unless told otherwise)"),
    port: int = typer.Option(8000, help="port to listen on (0: any free port, printed at start)"),
    name: Optional[str] = typer.Option(None, help="model name in the URL (default: the model's own name)"),
    backend: Optional[str] = typer.Option(None, help="runtime (default: the run directory's, else torch for torch "
                                                     "models and onnxruntime for ONNX)"),
    weights: Optional[str] = typer.Option(None, help="weights for a factory model"),
    data: Optional[str] = typer.Option(None, help="data set or file: a factory's input shapes, and warm-up samples"),
    task: Optional[str] = TASK,
    text_field: str = TEXT_FIELD,
    max_batch_size: int = typer.Option(32, help="most samples joined into one engine call"),
    max_delay_ms: float = typer.Option(5.0, help="longest wait for a batch to fill, after its oldest request"),
    max_queue: int = typer.Option(256, help="requests that may wait; past it the server answers 429"),
    cache_size: int = typer.Option(1024, help="responses kept in each model's cache (0: off)"),
    cache_policy: str = typer.Option("lru", help="which cached response to drop when full: lru (least recently "
                                                 "used) or lfu (least frequently used, with aging)"),
    target_p99_ms: Optional[float] = typer.Option(None, help="batching driven by a latency target: the batch "
                                                             "window and size adapt so p99 stays under it (default: "
                                                             "the fixed --max-delay-ms and --max-batch-size)"),
    workers: int = typer.Option(1, help="server processes sharing the port (SO_REUSEPORT), each with its own "
                                        "engines and batchers; metrics add up over them"),
    threads: Optional[int] = typer.Option(None, help="intra-op threads per engine (default: the runtime's own, "
                                                     "or the cores split between workers and instances)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="serve on Ray Serve: an existing cluster's address "
                                                          "(host:port, or auto); alone, or 'local', a cluster "
                                                          "started here"),
    replicas: int = typer.Option(1, help="with --ray: model replicas"),
    autoscale: Optional[str] = typer.Option(None, help="with --ray: MIN,MAX replicas, scaled on ongoing requests"),
    cpus_per_replica: float = typer.Option(1.0, help="with --ray: CPUs each replica holds (its runtime threads)"),
    cache_ttl_s: Optional[float] = typer.Option(None, help="seconds a cached response stays valid (default: forever)"),
    timeout_ms: float = typer.Option(30000.0, help="deadline of a request that sets none (parameters.timeout_ms or "
                                                   "X-Timeout-Ms); past it: 504"),
    max_body_bytes: Optional[int] = typer.Option(None, help="largest request body; past it: 413 (default: what "
                                                            "--max-batch-size rows of the model can need as JSON)"),
    instances: int = typer.Option(1, help="engine copies, each running one batch at a time (cores are split)"),
    option: list[str] = typer.Option([], help="backend setting key=value, repeatable (for example spinning=false "
                                              "for onnxruntime)"),
    token_file: Optional[Path] = typer.Option(None, help="file holding a token; requests then need "
                                                         "'Authorization: Bearer TOKEN' (401 otherwise)"),
    max_request_line: int = typer.Option(_LIMITS.max_request_line, help="longest request line (method, URL, "
                                                                        "version) in bytes; past it: 414"),
    max_header_bytes: int = typer.Option(_LIMITS.max_header_bytes, help="most bytes of request line and headers; "
                                                                        "past it: 431, before any parsing"),
    max_headers: int = typer.Option(_LIMITS.max_headers, help="most header fields in a request; past it: 431"),
    header_timeout_s: float = typer.Option(_LIMITS.header_timeout_s, help="seconds from a request's first byte "
                                           "(or a new connection's opening) to the end of its headers; past it: "
                                           "408 and the connection is closed (slow clients, silent connections)"),
    body_timeout_s: float = typer.Option(_LIMITS.body_timeout_s, help="seconds from a request's first byte to "
                                         "the end of its body; past it: 408 and the connection is closed"),
    max_connections: int = typer.Option(_LIMITS.max_connections, help="open connections at most; past it the "
                                        "oldest one not running a request is closed, or, when all are busy, the "
                                        "new one gets 503 (the liveness probe still answers)"),
) -> None:
    """Serve a model over HTTP (KServe v2) with dynamic batching, a response cache and overload control."""
    from infertune.serve.app import ServeConfig
    from infertune.serve.limits import HttpLimits
    from infertune.serve.server import serve as run_serve

    limits = HttpLimits(max_request_line=max_request_line, max_header_bytes=max_header_bytes,
                        max_headers=max_headers, header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s,
                        max_connections=max_connections)
    config = ServeConfig(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue,
                         cache_size=cache_size, cache_ttl_s=cache_ttl_s, cache_policy=cache_policy,
                         timeout_ms=timeout_ms, max_body_bytes=max_body_bytes, instances=instances,
                         target_p99_ms=target_p99_ms, limits=limits)
    options = _parse_options(option)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be a positive integer, got {threads}")
        options["threads"] = threads
    elif workers > 1 and "threads" not in options:
        options["threads"] = max(1, (os.cpu_count() or 1) // (workers * instances))
    code = run_serve(models, host=host, port=port, name=name, backend=backend, weights=weights, data=data, task=task,
                     text_field=text_field, config=config, token_file=token_file, options=options, workers=workers,
                     ray=ray,
                     replicas=replicas, autoscale=_parse_range(autoscale, "--autoscale") if autoscale else None,
                     cpus_per_replica=cpus_per_replica)
    if code:
        raise typer.Exit(code)


@app.command()
def loadtest(
    url: str = typer.Argument(..., help="the server, for example http://127.0.0.1:8000"),
    model: str = typer.Option(..., help="model name as the server serves it"),
    concurrency: int = typer.Option(16, help="closed loop: clients, each sending when its last answer came"),
    requests: int = typer.Option(2000, help="requests to send in all"),
    rate: Optional[float] = typer.Option(None, help="open loop: requests a second on a fixed schedule"),
    rows: int = typer.Option(1, help="samples per request (at most the server's --max-batch-size)"),
    binary: bool = typer.Option(False, help="send and ask for tensors as binary data (the binary tensor data "
                                            "extension) instead of JSON numbers"),
    data: Optional[str] = typer.Option(None, help="data set or file to draw inputs from (default: the model's)"),
    text_field: str = TEXT_FIELD,
    token_file: Optional[Path] = typer.Option(None, help="file holding the server's bearer token"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the figures to this JSON file"),
) -> None:
    """Load a running server with real inputs; print latency percentiles, throughput and errors by status."""
    from infertune.report.terminal import loadtest_table, progress_bar
    from infertune.serve.loadtest import loadtest as run_loadtest
    from infertune.serve.server import read_token

    token = read_token(token_file) if token_file is not None else None
    with progress_bar("loadtest") as advance:
        result = run_loadtest(url, model=model, concurrency=concurrency, requests=requests, rate=rate, data=data,
                              token=token, rows=rows, binary=binary, text_field=text_field, progress=advance)
    loadtest_table(result)
    if json_out is not None:
        from infertune.io import write_json_atomic

        write_json_atomic(json_out, result.to_dict())


def _click_errors() -> tuple[type, type, type, type]:
    """(ClickException, UsageError, Abort, Exit) of whichever click the installed Typer uses: Typer 0.16+ vendors
    its own (`typer._click`), older ones use `click`; matching one module's classes misses the other's."""
    mro = typer.BadParameter.__mro__
    click_exception = next(c for c in mro if c.__name__ == "ClickException")
    usage_error = next(c for c in mro if c.__name__ == "UsageError")
    return click_exception, usage_error, typer.Abort, typer.Exit


def _usage_line(error) -> str:
    """A usage error on one line, with where to read more: 'error: No such option: --x (see infertune bench --help)'."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    where = context.command_path if context is not None else "infertune"
    return f"error: {message} (see '{where} --help')"


def _ray_address_optional(argv: list[str]) -> list[str]:
    """`--ray` with no address (last, or followed by another option) means a local cluster: `--ray local`."""
    out = []
    for index, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (index + 1 == len(argv) or argv[index + 1].startswith("-")):
            out.append("local")
    return out


def main() -> None:
    click_exception, usage_error, abort, exit_ = _click_errors()
    try:
        app(args=_ray_address_optional(sys.argv[1:]), standalone_mode=False)
    except abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `infertune` alone: the help is printed, nothing failed
            sys.exit(0)
        typer.echo(_usage_line(e), err=True)
        sys.exit(2)
    except click_exception as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except exit_ as e:
        sys.exit(getattr(e, "exit_code", 0))
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except InfertuneError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        if os.environ.get("INFERTUNE_DEBUG"):
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (set INFERTUNE_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
