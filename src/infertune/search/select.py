"""Verdicts on measured candidates: over budget, not faster beyond the spread, or ok; the best one; the
Pareto front over metric (higher is better), latency and size (lower is better)."""

from __future__ import annotations

import math
from typing import Any

P50_AGREE = 1.5  # interleaved speed-up vs p50 ratio: past this factor apart, the lower one is what counts


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
    if speed.get("stable") is False:
        return {**candidate, "status": "rejected",
                "reason": f"timing unstable, measured twice: speed-up {speed['value']:.2f}x with p10-p90 "
                          f"{speed['low']:.2f}-{speed['high']:.2f}x, pooled medians {speed['pooled']:.2f}x; a "
                          f"choice never rests on such a ratio"}
    ratio = p50_ratio(candidate, baseline, objective)
    speed = {**speed, "p50_ratio": ratio, "score": score(speed["value"], ratio)}
    if speed["score"] <= 1.0:  # timed alone, it is slower: the two measurements disagree and the lower counts
        return {**candidate, "speedup": speed, "status": "rejected",
                "reason": f"not faster when timed alone: interleaved speed-up {speed['value']:.2f}x, but the p50 "
                          f"ratio (each timed in its own process) is {ratio:.2f}x; the lower one counts"}
    return {**candidate, "speedup": speed, "status": "ok", "reason": None}


def p50_ratio(candidate: dict[str, Any], baseline: dict[str, Any], objective: str) -> float | None:
    """The speed-up from each one's own timing (each alone in its process): baseline p50 / candidate p50, or the
    throughput ratio for the throughput objective."""
    if objective == "throughput":
        ours, theirs = (candidate.get("throughput") or {}).get("items_per_s"), \
            (baseline.get("throughput") or {}).get("items_per_s")
        return ours / theirs if ours and theirs else None
    ours, theirs = (candidate.get("latency_ms") or {}).get("p50"), (baseline.get("latency_ms") or {}).get("p50")
    return theirs / ours if ours and theirs else None


def score(interleaved: float, ratio: float | None) -> float:
    """What chooses: the interleaved speed-up, checked against the p50 ratio. Two measurements that disagree by
    more than P50_AGREE are both suspect, so the lower one counts (a blown-up ratio never wins)."""
    if ratio is None or max(interleaved, ratio) / min(interleaved, ratio) <= P50_AGREE:
        return interleaved
    return min(interleaved, ratio)


def ranked(candidates: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """The ok candidates, best first: smallest for size; else by confirmed score, then score."""
    ok = [c for c in candidates if c.get("status") == "ok"]
    if objective == "size":
        return sorted(ok, key=lambda c: c["size_bytes"])
    return sorted(ok, key=lambda c: -_score_of(c))


def _score_of(c: dict[str, Any]) -> float:
    speed = c["speedup"]
    confirmed = speed.get("confirmed")
    if confirmed is not None:
        return score(min(confirmed["value"], speed["value"]), speed.get("p50_ratio"))
    return speed.get("score", speed["value"])


def best(candidates: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    """The best ok candidate; for speed, one whose speed-up was confirmed when any was (see run.confirm)."""
    order = ranked(candidates, objective)
    if objective != "size" and any("confirmed" in (c.get("speedup") or {}) for c in candidates):
        order = [c for c in order if "confirmed" in c["speedup"]]  # once confirming began, only confirmed ones
    return order[0] if order else None


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
