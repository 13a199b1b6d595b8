"""Progress while work runs, and the summary table at the end."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)
# piped output keeps full-width tables (rich would squeeze them into 80 columns); no markup, so a recipe's values
# and a failure's message print as written ("[/x]" would otherwise stop the table with a MarkupError)
out = Console(width=None if Console().is_terminal else 160, markup=False)


@contextlib.contextmanager
def progress_reporter(total: int) -> Iterator[Callable[[str, str], None]]:
    """Yields `report(label, stage)`; a new label advances the bar by one configuration. Where stderr is no
    terminal (a log file, CI, `| tee`), a bar would show nothing for minutes: each new stage is a plain line
    instead, with the seconds since the start."""
    if not console.is_terminal:
        started = time.monotonic()
        last: list[tuple[str, str]] = []

        def line(label: str, stage: str) -> None:
            if last != [(label, stage)]:
                last[:] = [(label, stage)]
                console.print(f"[{time.monotonic() - started:6.0f} s] {label}: {stage}", markup=False,
                              highlight=False, soft_wrap=True)

        yield line
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=total)
        seen: list[str] = []

        def report(label: str, stage: str) -> None:
            if label not in seen:
                if seen:
                    progress.advance(task)
                seen.append(label)
            progress.update(task, description=f"{label}: {stage}")

        yield report
        progress.update(task, completed=total)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Yields `advance(done, total)`."""
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def _mb(value: int) -> str:
    return f"{value / 1e6:.1f}" if value else "-"


def _fidelity(fid: dict | None) -> str:
    if not fid:
        return "-"
    parts = []
    if "cosine_mean" in fid:
        parts.append(f"cos {fid['cosine_mean']:.6f}/{fid['cosine_min']:.6f}")
    if "neighbour_agreement_10" in fid:
        parts.append(f"nn10 {fid['neighbour_agreement_10']:.3f}")
    if "top1_agreement" in fid:
        parts.append(f"agree {fid['top1_agreement']:.4f}")
    if "top1_candidate" in fid:
        parts.append(f"top-1 {fid['top1_candidate']:.4f}")
    return " ".join(parts)


def _label(result) -> str:
    """The backend and the settings that differ from its defaults."""
    import dataclasses

    from infertune.backends import BACKENDS

    entry = BACKENDS.get(result.backend)
    defaults = dataclasses.asdict(entry.settings()) if entry else {}
    changed = [f"{k}={v}" for k, v in result.settings.items()
               if k not in ("device", "precision") and k in defaults and defaults[k] != v]
    return " ".join([result.backend, *changed])


def hardware_line(hw: dict) -> str:
    isa = ",".join(hw.get("isa", []))
    gpu = f", GPU {hw['gpu']}" if hw.get("gpu") else ""
    return (f"{hw.get('cpu_model')} - {hw.get('usable_cores')} usable cores "
            f"({hw.get('physical_cores')} physical){gpu}; ISA {isa}")


def bench_table(results, batch_sizes, hw: dict) -> None:
    table = Table(title="infertune bench (medians of timed runs; fidelity vs the fp32 reference)")
    table.add_column("backend")
    table.add_column("ran as")
    grouped = [b for b in batch_sizes if any(r.ok and r.grouped_at(b) for r in results)]
    for batch in batch_sizes:
        table.add_column(f"b{batch} p50 ms", justify="right")
        table.add_column(f"b{batch} p99 ms", justify="right")
        table.add_column(f"b{batch} /s", justify="right")
        if batch in grouped:
            table.add_column(f"b{batch} /s by length", justify="right")
    table.add_column("size MB", justify="right")
    table.add_column("peak RSS MB", justify="right")
    table.add_column("fidelity (mean/min cosine, ...)")
    for r in results:
        name = _label(r)
        if not r.ok:
            table.add_row(name, "failed", *["-"] * (3 * len(batch_sizes) + len(grouped) + 2), r.error or "")
            continue
        cells = []
        for batch in batch_sizes:
            stats = r.at(batch)
            cells += ([f"{stats.p50_ms:.2f}", f"{stats.p99_ms:.2f}", f"{stats.items_per_s:.0f}"]
                      if stats else ["-"] * 3)
            if batch in grouped:
                similar = r.grouped_at(batch)
                cells.append(f"{similar.items_per_s:.0f}" if similar else "-")
        table.add_row(name, r.precision, *cells, _mb(r.artifact_bytes), _mb(r.peak_rss_bytes), _fidelity(r.fidelity))
    out.print(table)
    out.print(f"hardware: {hardware_line(hw)}")
    if results and results[0].workload:
        out.print(f"inputs: {results[0].workload}"
                  + ("; '/s by length': the same texts, similar lengths batched together" if grouped else ""))


def optimize_table(result) -> None:
    """The summary at the end of optimize: every candidate with its verdict, then where the report is."""
    from infertune.search.recipe import Recipe
    from infertune.search.records import TrialRecord, metric_decimals

    data = result.data
    table = Table(title=f"infertune optimize {data['model']} (objective {data['objective']}, "
                        f"max drop {data['budget']['max_drop']} of {data['budget']['metric']})")
    for column in ("id", "recipe", "status", "metric", "drop", "p50 ms", "speed-up", "size MB", "train s", "reason"):
        table.add_column(column)
    nan, digits = float("nan"), metric_decimals(data["budget"]["max_drop"])
    for r in (TrialRecord.from_dict(d) for d in [data["baseline"], *data["candidates"]]):
        try:
            recipe = Recipe.from_dict(r.recipe).describe()
        except Exception:
            recipe = "?"
        mark = " *" if r.id == data["best"] else ""
        metric = r.metric
        top10 = None if metric is None else metric.top10_agreement
        table.add_row(r.id + mark, recipe, r.status.value if r.status is not None else "",
                      f"{metric.value if metric else nan:.{digits}f}"
                      + (f" (top-10 {top10:.3f})" if top10 is not None else ""),
                      f"{nan if metric is None or metric.drop is None else metric.drop:.{digits}f}",
                      f"{r.latency.p50 if r.latency else nan:.3f}",
                      f"{r.speedup.value:.2f}x" if r.speedup else "-",
                      f"{(r.size_bytes or 0) / 1e6:.2f}",
                      f"{r.train_seconds:.0f}" if r.train_seconds is not None else "-", r.reason or "")
    out.print(table)
    if data.get("stopped"):
        out.print(f"stopped: {data['stopped']}")
    out.print(f"chosen: {data['best'] or 'none (' + str(data['best_reason']) + ')'}; "
              f"report: {result.directory / 'report.html'}; artifact: {result.directory / 'model'}")


def loadtest_table(result) -> None:
    """Latency percentiles of the answered requests, throughput, and every status seen."""
    table = Table(title=f"infertune loadtest {result.url} model {result.model} ({result.mode})")
    for column in ("sent", "ok", "seconds", "ok/s", "samples/s", "p50 ms", "p90 ms", "p99 ms", "statuses"):
        table.add_column(column)
    table.add_row(str(result.sent), str(result.ok), f"{result.seconds:.2f}", f"{result.throughput:.1f}",
                  f"{result.items_per_s:.1f}",
                  f"{result.percentile(50):.2f}", f"{result.percentile(90):.2f}", f"{result.percentile(99):.2f}",
                  ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())))
    out.print(table)
    if result.server_cpu_s is not None:
        out.print(f"server CPU: {result.server_cpu_s:.2f} s over the run, {result.cpu_s_per_1000:.3f} CPU-seconds per "
                  f"1,000 requests (from the server's own accounting)")
    if result.client_cpu_s is not None and result.client_cpu_s_per_1000 is not None:
        out.print(f"load generator CPU: {result.client_cpu_s:.2f} s, {result.client_cpu_s_per_1000:.3f} CPU-seconds "
                  f"per 1,000 requests (on the same machine, it competes with the server for the cores)")
    out.print(f"energy: {result.joules_per_1000:.1f} J per 1,000 requests ({result.energy_note})"
              if result.energy_j is not None else result.energy_note)
    if result.generator_waits:
        out.print(f"note: the generator hit its in-flight cap {result.generator_waits} times: the schedule slipped")
