"""Verdicts on measured candidates: over budget, not faster beyond the spread, or ok; the best one; the
Pareto front over metric (higher is better), latency and size (lower is better)."""

from __future__ import annotations

import dataclasses
import math

from infertune.search.records import Status, TrialRecord, metric_decimals

P50_AGREE = 1.5  # the interleaved speed-up counts up to this many times the p50 ratio; slower alone and
# further apart than this, a candidate is rejected


WORST_ROW_DROPS = 10  # one sample's cosine may drop this many times the mean's budget (0.90 for --max-drop 0.01)


def verdict(candidate: TrialRecord, baseline: TrialRecord, *, max_drop: float, objective: str,
            min_top10: float | None = None) -> TrialRecord:
    """Fill status, reason and metric drop. The drop is measured on held-out samples only. For embeddings,
    `min_top10` also bounds the top-10 neighbour agreement with the baseline: a mean cosine inside the budget
    can still reorder who is nearest to whom, which is what a search index sees; and no sample's cosine may fall
    more than WORST_ROW_DROPS times the budget."""
    if candidate.failed:
        return candidate.replace(status=Status.FAILED, reason=candidate.error)
    if not math.isfinite(candidate.metric.value) or not math.isfinite(baseline.metric.value):
        return candidate.replace(status=Status.FAILED,
                                 reason=f"no {candidate.metric.name} could be measured on the held-out outputs")
    drop = baseline.metric.value - candidate.metric.value
    candidate = candidate.replace(metric=dataclasses.replace(candidate.metric, drop=drop))
    name, digits = candidate.metric.name, metric_decimals(max_drop)
    if drop > max_drop * (1 + 1e-9) + 1e-12:  # 1 - 0.99 is 0.010000000000000009: at the budget is inside it
        return candidate.replace(status=Status.REJECTED,
                                 reason=f"over budget: {name} drop {drop:.{digits}f} > {max_drop} on held-out samples")
    top10 = candidate.metric.top10_agreement
    if min_top10 is not None and top10 is not None and top10 < min_top10:
        return candidate.replace(status=Status.REJECTED, reason=f"over budget: top-10 neighbour agreement "
                                                                f"{top10:.3f} < {min_top10} on held-out samples")
    worst, floor = candidate.metric.worst_row, 1.0 - WORST_ROW_DROPS * max_drop
    if name == "cosine" and worst is not None and worst < floor:
        return candidate.replace(status=Status.REJECTED, reason=(
            f"over budget: one held-out sample's output is at cosine {worst:.{digits}f} < {floor:.{digits - 2}f} "
            f"to the baseline's, "
            f"in the held-out batches or padded to 16 to 128 tokens (a mean inside the budget can hide a few "
            f"outputs that lost their meaning; one sample may drop at most {WORST_ROW_DROPS}x --max-drop)"))
    if objective == "size":
        if candidate.size_bytes >= baseline.size_bytes:
            return candidate.replace(status=Status.REJECTED, reason=f"not smaller: {candidate.size_bytes} bytes "
                                                                    f">= baseline {baseline.size_bytes}")
        return candidate.replace(status=Status.OK, reason=None)
    speed = candidate.speedup
    if speed is None or speed.low <= 1.0:
        value, rounds, low, high, batch = (0, 0, 0, 0, None) if speed is None else \
            (speed.value, speed.rounds, speed.low, speed.high, speed.batch)
        return candidate.replace(status=Status.REJECTED, reason=(
            f"not faster than the baseline beyond the spread: speed-up {value:.2f}x (p10-p90 over {rounds} "
            f"interleaved rounds: {low:.2f}-{high:.2f}x) at batch {batch}"))
    if speed.stable is False:
        return candidate.replace(status=Status.REJECTED, reason=(
            f"timing unstable, measured twice: speed-up {speed.value:.2f}x with p10-p90 {speed.low:.2f}-"
            f"{speed.high:.2f}x, pooled medians {speed.pooled:.2f}x; a choice never rests on such a ratio"))
    ratio = p50_ratio(candidate, baseline, objective)
    speed = dataclasses.replace(speed, p50_ratio=ratio, score=score(speed.value, ratio))
    if ratio is not None and ratio <= 1.0 and speed.value / ratio > P50_AGREE:  # timed alone, it is slower: the
        # two measurements disagree and the lower counts
        return candidate.replace(speedup=speed, status=Status.REJECTED, reason=(
            f"not faster when timed alone: interleaved speed-up {speed.value:.2f}x, but the p50 ratio (each timed "
            f"in its own process) is {ratio:.2f}x; the lower one counts"))
    return candidate.replace(speedup=speed, status=Status.OK, reason=None)


def outran_by(rejected: TrialRecord, others: list[TrialRecord], objective: str) -> TrialRecord | None:
    """A candidate within the budget that is faster than `rejected` beyond both their spreads (its p10 speed-up
    over the baseline above `rejected`'s p90), or None. Keeping some of `rejected`'s layers in float only slows it,
    so its mixed-precision fallback cannot beat that one: the search spends its time elsewhere. Size is another
    matter (a mixed graph is larger), so for the size objective there is never one."""
    speed = rejected.speedup
    if objective == "size" or speed is None:
        return None
    faster = [c for c in others if c.status is Status.OK and c.speedup is not None and c.speedup.low > speed.high]
    return max(faster, key=lambda c: c.speedup.low, default=None)


def ahead_of(rejected: TrialRecord, others: list[TrialRecord], objective: str) -> TrialRecord | None:
    """The fastest candidate within the budget whose median speed-up is above `rejected`'s, though inside the
    spreads, or None. `rejected`'s mixed-precision fallback, slower than `rejected` itself, is then unlikely to win,
    so it is queued after the other candidates and refine (on MiniLM at batch 32 it took 188 s of a 1200 s
    budget to measure 1.61x, where int8 ONNX Runtime had 3.12x). As with `outran_by`, never for size."""
    speed = rejected.speedup
    if objective == "size" or speed is None:
        return None
    ahead = [c for c in others if c.status is Status.OK and c.speedup is not None and c.speedup.value > speed.value]
    return max(ahead, key=lambda c: c.speedup.value, default=None)


def fallback_turn(rejected: TrialRecord, others: list[TrialRecord], objective: str) -> tuple[TrialRecord, str]:
    """When the mixed-precision fallback of `rejected` (an int8 candidate over budget) runs: "next", before any
    other candidate; "later", after the other candidates and refine, when one within the budget measured faster
    (`ahead_of`); or "never", when one is faster beyond both spreads (`outran_by`). The record comes back with its
    reason saying which candidate decided it."""
    faster, ahead = outran_by(rejected, others, objective), ahead_of(rejected, others, objective)
    if faster is not None:
        return rejected.replace(reason=(
            f"{rejected.reason}; its mixed-precision fallback was not tried: {faster.id}, within the budget, is "
            f"faster beyond both spreads (p10 {faster.speedup.low:.2f}x against {rejected.speedup.high:.2f}x at "
            f"p90), and layers kept in float only slow {rejected.id}")), "never"
    if ahead is not None:
        return rejected.replace(reason=(
            f"{rejected.reason}; its mixed-precision fallback was queued after the other candidates and refine: "
            f"{ahead.id}, within the budget, measured faster ({ahead.speedup.value:.2f}x against "
            f"{rejected.speedup.value:.2f}x, inside the spreads), and layers kept in float only slow "
            f"{rejected.id}")), "later"
    return rejected, "next"


def judged_baseline(record: TrialRecord) -> TrialRecord:
    """The baseline's verdict: ok by definition, with no drop against itself."""
    return record.replace(status=Status.OK, reason=None, metric=dataclasses.replace(record.metric, drop=0.0))


def p50_ratio(candidate: TrialRecord, baseline: TrialRecord, objective: str) -> float | None:
    """The speed-up from each one's own timing (each alone in its process): baseline p50 / candidate p50, or the
    throughput ratio for the throughput objective."""
    if objective == "throughput":
        ours = candidate.throughput.items_per_s if candidate.throughput else None
        theirs = baseline.throughput.items_per_s if baseline.throughput else None
        return ours / theirs if ours and theirs else None
    ours = candidate.latency.p50 if candidate.latency else None
    theirs = baseline.latency.p50 if baseline.latency else None
    return theirs / ours if ours and theirs else None


def score(interleaved: float, ratio: float | None) -> float:
    """What ranks: the interleaved speed-up, trusted up to P50_AGREE times the p50 ratio (a blown-up interleaved
    ratio never wins on its own). It rises with both measurements, so a candidate faster on both never ranks
    below another: where the lower of two disagreeing figures counted, MiniLM's int8 ONNX Runtime graph (6.42x
    interleaved, 3.89x by p50s) ranked under NNCF's (4.40x and 3.65x) in one demo on a noisy host."""
    return interleaved if ratio is None else min(interleaved, ratio * P50_AGREE)


def ranked(candidates: list[TrialRecord], objective: str) -> list[TrialRecord]:
    """The ok candidates, best first: smallest for size; else by confirmed score, then score."""
    ok = [c for c in candidates if c.status is Status.OK]
    if objective == "size":
        return sorted(ok, key=lambda c: c.size_bytes)
    return sorted(ok, key=lambda c: -score_of(c))


def score_of(c: TrialRecord) -> float:
    """What ranks a measured candidate: its confirmed score where it was confirmed, else its score."""
    speed = c.speedup
    if speed.confirmed is not None:
        return score(min(speed.confirmed.value, speed.value), speed.p50_ratio)
    return speed.value if speed.score is None else speed.score


def _confirming(c: TrialRecord) -> bool:
    """Whether a confirming run was recorded for it (a failed one counts)."""
    return c.speedup is not None and (c.speedup.confirmed is not None or c.speedup.confirm_error is not None)


def best(candidates: list[TrialRecord], objective: str) -> TrialRecord | None:
    """The best ok candidate; for speed, one whose speed-up was confirmed when any was (see run.confirm)."""
    order = ranked(candidates, objective)
    if objective != "size" and any(_confirming(c) for c in candidates):
        order = [c for c in order if _confirming(c)]  # once confirming began, only confirmed ones
    return order[0] if order else None


def mark_pareto(candidates: list[TrialRecord]) -> list[TrialRecord]:
    """The records, each with pareto=True when no other measured one beats it on metric, latency and size at
    once."""
    measured = [c for c in candidates if c.status is not Status.FAILED and c.latency is not None]

    def dominates(a: TrialRecord, b: TrialRecord) -> bool:
        better_or_equal = (a.metric.value >= b.metric.value and a.latency.p50 <= b.latency.p50
                           and a.size_bytes <= b.size_bytes)
        strictly = (a.metric.value > b.metric.value or a.latency.p50 < b.latency.p50 or a.size_bytes < b.size_bytes)
        return better_or_equal and strictly

    return [c.replace(pareto=any(c is m for m in measured) and not any(dominates(o, c) for o in measured
                                                                        if o is not c))
            for c in candidates]
