"""DIR/report.html: self-contained (inline style and SVG, no script from the network): the Pareto plot of
latency against the metric (size as marker area, baseline and chosen marked), the candidate table with the
reason for every rejection or failure, the per-layer quantization sensitivity, hardware and versions."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from infertune.io import write_bytes_atomic
from infertune.search.records import Compute, Metric, Status, TrialRecord, metric_decimals

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:12px 0}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{cursor:pointer;background:#f4f4f4}.ok{color:#186a3b}.rejected{color:#9a6700}.failed{color:#b00020}
.chosen{font-weight:bold;background:#eef7ee}code{font-size:12px}"""
SORT = """document.querySelectorAll('th').forEach((th,i)=>th.onclick=()=>{const t=th.closest('table'),
r=[...t.querySelectorAll('tbody tr')],d=th.dataset.d=th.dataset.d==='1'?'-1':'1';r.sort((a,b)=>{const x=a.cells[i].
dataset.v??a.cells[i].textContent,y=b.cells[i].dataset.v??b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
return(isNaN(nx)||isNaN(ny)?x.localeCompare(y):nx-ny)*d});r.forEach(x=>t.tBodies[0].appendChild(x))});"""


def _describe(recipe: dict[str, Any] | None) -> str:
    from infertune.search.recipe import Recipe

    try:
        return Recipe.from_dict(recipe).describe()
    except Exception:
        return json.dumps(recipe)


def _plot(rows: list[TrialRecord], best_id: str | None, max_drop: float) -> str:
    points = [r for r in rows if r.latency is not None and r.status is not Status.FAILED]
    if not points:
        return "<p>No candidate was measured.</p>"
    width, height, pad = 900, 460, 70
    xs = [r.latency.p50 for r in points]
    base = rows[0].metric.value
    budget = base - max_drop
    x0, x1 = 0.0, max(xs) * 1.1
    # the axis spans the budget with room below; far-off candidates sit on the floor, marked as below it
    y1 = max(r.metric.value for r in points) + max_drop * 0.2
    y0 = min(budget - max_drop, min(r.metric.value for r in points if r.metric.value >= budget - 3 * max_drop))
    y0 = min(y0, budget - max_drop * 0.5)
    biggest = max(r.size_bytes for r in points) or 1

    def px(x):
        return pad + (x - x0) / (x1 - x0 or 1) * (width - 2 * pad)

    def py(y):
        return height - pad - (y - y0) / (y1 - y0 or 1) * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">latency p50 (ms), lower is better</text>',
             f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
             f'{html.escape(points[0].metric.name)}, higher is better</text>']
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{px(xv)}" y="{height - pad + 16}" text-anchor="middle">{xv:.2f}</text>')
        parts.append(f'<text x="{pad - 6}" y="{py(yv) + 4}" text-anchor="end">{yv:.3f}</text>')
    parts.append(f'<line x1="{pad}" y1="{py(budget):.1f}" x2="{width - pad}" y2="{py(budget):.1f}" stroke="#b00020" '
                 f'stroke-dasharray="6 4"/><text x="{width - pad}" y="{py(budget) - 6:.1f}" text-anchor="end" '
                 f'fill="#b00020">budget: baseline - {max_drop}</text>')
    for r in points:
        below = r.metric.value < y0
        value = max(r.metric.value, y0)  # on the floor when below it
        radius = 4 + 14 * (r.size_bytes / biggest) ** 0.5
        colour = "#1f77b4" if r.id == "baseline" else ("#2ca02c" if r.id == best_id else
                                                       ("#ff7f0e" if r.pareto else "#999"))
        label = "baseline" if r.id == "baseline" else ("chosen: " + r.id if r.id == best_id else r.id)
        if below:
            label += " (below the axis)"
        parts.append(f'<circle cx="{px(r.latency.p50):.1f}" cy="{py(value):.1f}" '
                     f'r="{radius:.1f}" fill="{colour}" fill-opacity="0.6"><title>{html.escape(_describe(r.recipe))}'
                     f'</title></circle><text x="{px(r.latency.p50) + radius + 3:.1f}" '
                     f'y="{py(value) + 4:.1f}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _compute(compute: Compute | None) -> str:
    if compute is None:
        return "-"
    return (f'{compute.gflops:.1f} ({compute.fraction_of_peak:.1%} of the {compute.dtype or "fp32"} '
            f'peak {compute.peak_gflops:.0f})')


def _train(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}"


def _top10(metric: Metric | None) -> str:
    return "" if metric is None or metric.top10_agreement is None else f" (top-10 {metric.top10_agreement:.3f})"


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _row(r: TrialRecord, best_id: str | None, digits: int) -> str:
    """One candidate's line of the table; a failed one has only its id, recipe, status and reason."""
    status = r.status.value if r.status is not None else "?"
    metric, lat, speed = r.metric, r.latency, r.speedup
    cls = "chosen" if r.id == best_id else ""
    return (
        f'<tr class="{cls}"><td>{r.id}</td><td><code>{html.escape(_describe(r.recipe))}</code></td>'
        f'<td class="{status}">{status}</td><td>{_or_nan(metric.value if metric else None):.{digits}f}'
        f'{_top10(metric)}</td><td>{_or_nan(metric.drop if metric else None):.{digits}f}</td>'
        f'<td>{_or_nan(lat.p50 if lat else None):.3f}</td>'
        f'<td>{_or_nan(lat.p99 if lat else None):.3f}</td>'
        f'<td>{(r.throughput.items_per_s if r.throughput else 0):.0f}</td>'
        + ('<td data-v="1">1.00x (baseline)</td>' if r.id == "baseline" else
           f'<td data-v="{speed.value if speed else 0}">{speed.value if speed else 0:.2f}x '
           f'({speed.low if speed else 0:.2f}-{speed.high if speed else 0:.2f})</td>')
        + f'<td>{(r.size_bytes or 0) / 1e6:.2f}</td>'
        f'<td>{(r.peak_rss_bytes or 0) / 1e6:.0f}</td><td>{_compute(r.compute)}</td>'
        f'<td>{html.escape(r.precision or "")}</td>'
        f'<td>{_train(r.train_seconds)}</td>'
        f'<td>{"yes" if r.pareto else ""}</td><td>{html.escape(r.reason or "; ".join(r.notes))}</td></tr>')


def render(data: dict[str, Any]) -> str:
    """The report of a run from its results.json."""
    rows = [TrialRecord.from_dict(r) for r in [data["baseline"], *data["candidates"]]]
    best_id = data.get("best")
    body = [f"<h1>infertune optimize: {html.escape(str(data['model']))}</h1>",
            f"<p>Objective <b>{data['objective']}</b>; budget: {data['budget']['metric']} may drop at most "
            f"{data['budget']['max_drop']} on held-out samples"
            + (f", and top-10 neighbour agreement must stay at least {data['budget']['min_top10_agreement']}"
               if "min_top10_agreement" in data["budget"] else "") + f". Chosen: <b>{html.escape(str(best_id))}</b>"
            + (f" ({html.escape(data['best_reason'])})" if data.get("best_reason") else "")
            + (f". Stopped: {html.escape(data['stopped'])}" if data.get("stopped") else "") + "</p>",
            "<h2>Latency against quality</h2>", _plot(rows, best_id, data["budget"]["max_drop"]),
            "<p>Marker area: size on disk. Blue: baseline; green: chosen; orange: Pareto front; grey: others.</p>",
            "<h2>Candidates</h2><table><thead><tr><th>id</th><th>recipe</th><th>status</th><th>metric</th>"
            "<th>drop</th><th>p50 ms</th><th>p99 ms</th><th>items/s</th><th>speed-up (p10-p90)</th><th>size MB</th>"
            "<th>peak RSS MB</th><th>GFLOP/s (of the peak of its dtype)</th><th>precision</th><th>training s</th><th>Pareto</th>"
            "<th>reason / notes</th>"
            "</tr></thead><tbody>"]
    digits = metric_decimals(data["budget"]["max_drop"])
    body += [_row(r, best_id, digits) for r in rows]
    body.append("</tbody></table>")
    for r in rows:
        table = r.details.get("sensitivity")
        if table:
            kept = set(r.details.get("kept_float", []))
            body.append(f"<h2>Quantization sensitivity ({r.id})</h2><p>Validation drop when only that layer is "
                        f"int8 (calibration split, never held-out); the layers kept in float are marked.</p><table>"
                        "<thead><tr><th>layer</th><th>drop alone</th><th>kept float</th></tr></thead><tbody>")
            body += [f"<tr><td>{html.escape(row['layer'])}</td><td>{row['drop_alone']:.5f}</td>"
                     f"<td>{'yes' if row['layer'] in kept else ''}</td></tr>" for row in table]
            body.append("</tbody></table>")
    hw = data.get("hardware", {})
    body.append(f"<h2>Hardware and versions</h2><p>{html.escape(str(hw.get('cpu_model')))}, {hw.get('usable_cores')} "
                f"cores, ISA {html.escape(', '.join(hw.get('isa', [])))}; GPU {html.escape(str(hw.get('gpu')))}</p>"
                + (f"<p>Measured GEMM peaks (the roof each candidate is compared with, by the dtype its matmuls run "
                   f"in): {', '.join(f'{k} {v:.0f} G(FL)OP/s' for k, v in (data.get('peaks') or {}).items())}</p>"
                   if data.get("peaks") else "") +
                f"<p>{html.escape(', '.join(f'{k} {v}' for k, v in data.get('versions', {}).items()))}</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>infertune report</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}<script>{SORT}</script></body></html>")


def write_report(directory: Path, data: dict[str, Any]) -> Path:
    path = Path(directory) / "report.html"
    write_bytes_atomic(path, render(data).encode())
    return path
