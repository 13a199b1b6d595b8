"""Verdicts on measured candidates: over budget, not faster beyond the spread, or ok; the best one; the
Pareto front over metric (higher is better), latency and size (lower is better)."""

from __future__ import annotations

import math
from typing import Any


def verdict(candidate: dict[str, Any], baseline: dict[str, Any], *, max_drop: float, objective: str,
            min_top10: float | None = None) -> dict:
    """Fill status, reason and metric drop. The drop is measured on held-out samples only. For embeddings,
    `min_top10` also bounds the top-10 neighbour agreement with the baseline: a mean cosine inside the budget
    can still reorder who is nearest to whom, which is what a search index sees."""
    if "error" in candidate:
        return {**candidate, "status": "failed", "reason": candidate["error"]}
    if not math.isfinite(candidate["metric"]["value"]) or not math.isfinite(baseline["metric"]["value"]):
        return {**candidate, "status": "failed",
                "reason": f"no {candidate['metric']['name']} could be measured on the held-out outputs"}
    drop = baseline["metric"]["value"] - candidate["metric"]["value"]
    candidate = {**candidate, "metric": {**candidate["metric"], "drop": drop}}
    name = candidate["metric"]["name"]
    if drop > max_drop + 1e-9:  # 1 - 0.99 is 0.010000000000000009 in floating point: at the budget is inside it
        return {**candidate, "status": "rejected",
                "reason": f"over budget: {name} drop {drop:.4f} > {max_drop} on held-out samples"}
    top10 = candidate["metric"].get("top10_agreement")
    if min_top10 is not None and top10 is not None and top10 < min_top10:
        return {**candidate, "status": "rejected",
                "reason": f"over budget: top-10 neighbour agreement {top10:.3f} < {min_top10} on held-out samples"}
    if objective == "size":
        if candidate["size_bytes"] >= baseline["size_bytes"]:
            return {**candidate, "status": "rejected", "reason": f"not smaller: {candidate['size_bytes']} bytes "
                                                                   f">= baseline {baseline['size_bytes']}"}
        return {**candidate, "status": "ok", "reason": None}
    speed = candidate.get("speedup") or {}
    if not speed or speed["low"] <= 1.0:
        return {**candidate, "status": "rejected",
                "reason": f"not faster than the baseline beyond the spread: speed-up {speed.get('value', 0):.2f}x "
                          f"(p10-p90 over {speed.get('rounds', 0)} interleaved rounds: {speed.get('low', 0):.2f}-"
                          f"{speed.get('high', 0):.2f}x) at batch {speed.get('batch')}"}
    return {**candidate, "status": "ok", "reason": None}


def best(candidates: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    ok = [c for c in candidates if c.get("status") == "ok"]
    if not ok:
        return None
    if objective == "size":
        return min(ok, key=lambda c: c["size_bytes"])
    return max(ok, key=lambda c: c["speedup"]["value"])


def mark_pareto(candidates: list[dict[str, Any]]) -> None:
    """pareto=True for each measured candidate no other one beats on metric, latency and size at once."""
    measured = [c for c in candidates if c.get("status") != "failed" and "latency_ms" in c]

    def dominates(a, b) -> bool:
        better_or_equal = (a["metric"]["value"] >= b["metric"]["value"] and a["latency_ms"]["p50"] <= b["latency_ms"]["p50"]
                           and a["size_bytes"] <= b["size_bytes"])
        strictly = (a["metric"]["value"] > b["metric"]["value"] or a["latency_ms"]["p50"] < b["latency_ms"]["p50"]
                    or a["size_bytes"] < b["size_bytes"])
        return better_or_equal and strictly

    for c in candidates:
        c["pareto"] = c in measured and not any(dominates(o, c) for o in measured if o is not c)
