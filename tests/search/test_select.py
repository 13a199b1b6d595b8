from infertune.search.select import best, mark_pareto, verdict

BASE = {"id": "baseline", "metric": {"name": "top1", "value": 0.95}, "latency_ms": {"p50": 2.0}, "size_bytes": 100}


def candidate(cid, value, low, p50=1.0, size=100, speed=2.0):
    return {"id": cid, "metric": {"name": "top1", "value": value}, "latency_ms": {"p50": p50}, "size_bytes": size,
            "speedup": {"batch": 1, "value": speed, "low": low, "high": speed + 0.1, "rounds": 8}}


def test_over_budget_is_rejected_with_its_drop():
    result = verdict(candidate("c1", 0.90, 1.5), BASE, max_drop=0.01, objective="latency")
    assert result["status"] == "rejected" and "drop 0.0500 > 0.01" in result["reason"]


def test_a_speedup_inside_the_spread_is_not_faster():
    result = verdict(candidate("c1", 0.95, 0.98, speed=1.03), BASE, max_drop=0.01, objective="latency")
    assert result["status"] == "rejected" and "not faster than the baseline beyond the spread" in result["reason"]


def test_failed_and_ok_and_best():
    failed = verdict({"id": "c0", "error": "SIGABRT"}, BASE, max_drop=0.01, objective="latency")
    fast = verdict(candidate("c1", 0.95, 1.8, speed=2.0), BASE, max_drop=0.01, objective="latency")
    faster_but_over = verdict(candidate("c2", 0.80, 4.0, speed=5.0), BASE, max_drop=0.01, objective="latency")
    assert failed["status"] == "failed" and fast["status"] == "ok"
    assert best([failed, fast, faster_but_over], "latency")["id"] == "c1"


def test_size_objective_needs_a_smaller_artifact():
    assert verdict(candidate("c1", 0.95, 0.5, size=100), BASE, max_drop=0.01, objective="size")["status"] == "rejected"
    assert verdict(candidate("c1", 0.95, 0.5, size=50), BASE, max_drop=0.01, objective="size")["status"] == "ok"


def test_pareto_front_marks_the_undominated():
    rows = [dict(BASE), candidate("a", 0.95, 2, p50=1.0, size=100), candidate("b", 0.90, 2, p50=2.0, size=200)]
    mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [False, True, False]


def test_embeddings_inside_the_cosine_budget_are_rejected_when_neighbours_reorder():
    base = {"id": "baseline", "metric": {"name": "cosine", "value": 1.0, "top10_agreement": 1.0},
            "latency_ms": {"p50": 2.0}, "size_bytes": 100}
    reordered = candidate("c1", 0.995, 1.5)
    reordered["metric"] = {"name": "cosine", "value": 0.995, "top10_agreement": 0.84}
    kept = candidate("c2", 0.995, 1.5)
    kept["metric"] = {"name": "cosine", "value": 0.995, "top10_agreement": 0.93}
    result = verdict(reordered, base, max_drop=0.01, objective="latency", min_top10=0.9)
    assert result["status"] == "rejected" and "top-10 neighbour agreement 0.840 < 0.9" in result["reason"]
    assert verdict(kept, base, max_drop=0.01, objective="latency", min_top10=0.9)["status"] == "ok"


def test_a_drop_exactly_at_the_budget_is_inside_it():
    at_budget = candidate("c1", 0.94, 1.5)
    at_budget["metric"]["value"] = BASE["metric"]["value"] - 0.01
    assert verdict(at_budget, BASE, max_drop=0.01, objective="latency")["status"] == "ok"
