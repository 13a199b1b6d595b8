import dataclasses

import pytest

from infertune.search.records import Latency, Metric, Speedup, Status, TrialRecord, metric_decimals
from infertune.search.select import ahead_of, best, fallback_turn, mark_pareto, outran_by, score, verdict

RECIPE = {"format": "infertune.recipe", "version": 1, "passes": [], "backend": {"name": "onnxruntime"}}


def record(cid, value, p50, size, metric="top1", speedup=None) -> TrialRecord:
    return TrialRecord(id=cid, recipe=RECIPE, backend="onnxruntime", metric=Metric(metric, value),
                       latency=Latency(1, p50, p50, p50), size_bytes=size, speedup=speedup)


BASE = record("baseline", 0.95, 2.0, 100)


def candidate(cid, value, low, p50=1.0, size=100, speed=2.0) -> TrialRecord:
    return record(cid, value, p50, size, speedup=Speedup(batch=1, value=speed, low=low, high=speed + 0.1, rounds=8))


def test_over_budget_is_rejected_with_its_drop():
    result = verdict(candidate("c1", 0.90, 1.5), BASE, max_drop=0.01, objective="latency")
    assert result.status is Status.REJECTED and "drop 0.0500 > 0.01" in result.reason


def test_a_speedup_inside_the_spread_is_not_faster():
    result = verdict(candidate("c1", 0.95, 0.98, speed=1.03), BASE, max_drop=0.01, objective="latency")
    assert result.status is Status.REJECTED and "not faster than the baseline beyond the spread" in result.reason


def test_failed_and_ok_and_best():
    failed = verdict(TrialRecord(id="c0", recipe=RECIPE, backend="onnxruntime", error="SIGABRT"), BASE, max_drop=0.01,
                     objective="latency")
    fast = verdict(candidate("c1", 0.95, 1.8, speed=2.0), BASE, max_drop=0.01, objective="latency")
    faster_but_over = verdict(candidate("c2", 0.80, 4.0, speed=5.0), BASE, max_drop=0.01, objective="latency")
    assert failed.status is Status.FAILED and failed.reason == "SIGABRT" and fast.status is Status.OK
    assert best([failed, fast, faster_but_over], "latency").id == "c1"


def test_size_objective_needs_a_smaller_artifact():
    assert verdict(candidate("c1", 0.95, 0.5, size=100), BASE, max_drop=0.01, objective="size").status \
        is Status.REJECTED
    assert verdict(candidate("c1", 0.95, 0.5, size=50), BASE, max_drop=0.01, objective="size").status is Status.OK


def test_pareto_front_marks_the_undominated():
    rows = [BASE, candidate("a", 0.95, 2, p50=1.0, size=100), candidate("b", 0.90, 2, p50=2.0, size=200)]
    assert [r.pareto for r in mark_pareto(rows)] == [False, True, False]


def test_embeddings_inside_the_cosine_budget_are_rejected_when_neighbours_reorder():
    base = dataclasses.replace(BASE, metric=Metric("cosine", 1.0, top10_agreement=1.0))
    reordered = candidate("c1", 0.995, 1.5).replace(metric=Metric("cosine", 0.995, top10_agreement=0.84))
    kept = candidate("c2", 0.995, 1.5).replace(metric=Metric("cosine", 0.995, top10_agreement=0.93))
    result = verdict(reordered, base, max_drop=0.01, objective="latency", min_top10=0.9)
    assert result.status is Status.REJECTED and "top-10 neighbour agreement 0.840 < 0.9" in result.reason
    assert verdict(kept, base, max_drop=0.01, objective="latency", min_top10=0.9).status is Status.OK


def test_embeddings_with_one_sample_that_lost_its_meaning_are_rejected():
    """A mean cosine inside the budget can hide a few outputs that changed beyond use (NNCF int8 under OpenVINO's
    bf16 hint: 1 % of padded rows below 0.95); one sample may drop at most 10x the budget."""
    base = dataclasses.replace(BASE, metric=Metric("cosine", 1.0, top10_agreement=1.0, worst_row=1.0))
    broken = candidate("c1", 0.996, 1.5).replace(metric=Metric("cosine", 0.996, top10_agreement=0.95, worst_row=0.75))
    kept = candidate("c2", 0.996, 1.5).replace(metric=Metric("cosine", 0.996, top10_agreement=0.95, worst_row=0.98))
    result = verdict(broken, base, max_drop=0.01, objective="latency", min_top10=0.9)
    assert result.status is Status.REJECTED and "one held-out sample's output is at cosine 0.7500 < 0.90" in result.reason
    assert verdict(kept, base, max_drop=0.01, objective="latency", min_top10=0.9).status is Status.OK
    assert verdict(broken, base, max_drop=0.05, objective="latency").status is Status.OK  # a wider budget: 0.5
    assert Metric.from_dict(broken.metric.to_dict()) == broken.metric


def test_a_drop_exactly_at_the_budget_is_inside_it():
    at_budget = candidate("c1", 0.94, 1.5).replace(metric=Metric("top1", BASE.metric.value - 0.01))
    assert verdict(at_budget, BASE, max_drop=0.01, objective="latency").status is Status.OK


def test_a_tiny_budget_prints_its_drop_and_floor_with_the_digits_that_judge_them():
    """--max-drop 1e-8 printed "drop 0.0000 > 1e-08": the reason must show the figure it rejects on."""
    base = dataclasses.replace(BASE, metric=Metric("cosine", 1.0, top10_agreement=1.0, worst_row=1.0))
    tiny = candidate("c1", 1.0 - 3.2e-8, 1.5).replace(metric=Metric("cosine", 1.0 - 3.2e-8))
    result = verdict(tiny, base, max_drop=1e-8, objective="latency")
    assert result.status is Status.REJECTED and "drop 0.0000000320 > 1e-08" in result.reason, result.reason
    one_row = candidate("c2", 1.0, 1.5).replace(metric=Metric("cosine", 1.0 - 5e-9, worst_row=1.0 - 2e-7))
    result = verdict(one_row, base, max_drop=1e-8, objective="latency")
    assert "at cosine 0.9999998000 < 0.99999990" in result.reason, result.reason
    inside = candidate("c3", 1.0, 1.5).replace(metric=Metric("cosine", 1.0 - 0.99e-8))
    assert verdict(inside, base, max_drop=1e-8, objective="latency").status is Status.OK
    assert [metric_decimals(b) for b in (0.05, 0.01, 0.001, 1e-8, 0.0)] == [4, 4, 5, 10, 6]


def test_a_blown_up_interleaved_ratio_is_checked_against_the_p50_ratio_and_never_wins():
    """As seen on digits-cnn: 820.99x interleaved (p10-p90 5.87-1128.3x) while the p50s said 5.85x."""
    blown = candidate("c1", 0.95, 5.87, p50=0.34, speed=820.99)
    blown = blown.replace(speedup=dataclasses.replace(blown.speedup, high=1128.3))
    steady = candidate("c2", 0.95, 15.0, p50=0.126, speed=15.9)
    unstable = verdict(blown.replace(speedup=dataclasses.replace(blown.speedup, stable=False, pooled=400.0)), BASE,
                       max_drop=0.01, objective="latency")
    assert unstable.status is Status.REJECTED and "timing unstable" in unstable.reason
    blown_ok = verdict(blown, BASE, max_drop=0.01, objective="latency")  # stable, yet far from its p50 ratio
    assert blown_ok.status is Status.OK and blown_ok.speedup.score == pytest.approx(1.5 * 2.0 / 0.34)
    steady_ok = verdict(steady, BASE, max_drop=0.01, objective="latency")
    assert best([blown_ok, steady_ok], "latency").id == "c2"


def test_once_confirming_began_only_a_confirmed_candidate_is_chosen():
    def confirmed(c: TrialRecord, value: float, low: float, high: float) -> TrialRecord:
        again = Speedup(batch=1, value=value, low=low, high=high, rounds=12, stable=True)
        return c.replace(speedup=dataclasses.replace(c.speedup, confirmed=again))

    a = verdict(candidate("a", 0.95, 1.5, p50=1.0, speed=2.0), BASE, max_drop=0.01, objective="latency")
    b = verdict(candidate("b", 0.95, 1.4, p50=1.1, speed=1.9), BASE, max_drop=0.01, objective="latency")
    assert best([a, b], "latency").id == "a"  # nothing confirmed yet (an interrupted run)
    b = confirmed(b, 1.8, 1.6, 2.0)
    assert best([a, b], "latency").id == "b"
    a = confirmed(a, 2.1, 1.9, 2.3)
    assert best([a, b], "latency").id == "a"


def test_faster_interleaved_but_slower_alone_is_rejected():
    """As seen on minilm under torch.compile: 1.30x interleaved over the same few batches, while its own p50 over
    natural-length batches (recompiling for new shapes) was 1355.7 ms against the baseline's 11.5 ms."""
    recompiling = candidate("c3", 0.95, 1.1, p50=1355.697, speed=1.30)
    judged = verdict(recompiling, BASE.replace(latency=Latency(1, 11.498, 11.498, 11.498)), max_drop=0.01,
                     objective="latency")
    assert judged.status is Status.REJECTED and "not faster when timed alone" in judged.reason
    assert judged.speedup.score == pytest.approx(1.5 * 11.498 / 1355.697)


def test_an_over_budget_candidate_is_outrun_only_by_one_within_the_budget_and_faster_beyond_both_spreads():
    over = verdict(candidate("c5", 0.90, 2.0, speed=2.5), BASE, max_drop=0.01, objective="latency")  # p90 2.6x
    close = verdict(candidate("c2", 0.95, 2.5, speed=3.0), BASE, max_drop=0.01, objective="latency")  # p10 2.5x
    far = verdict(candidate("c4", 0.95, 3.5, speed=4.0), BASE, max_drop=0.01, objective="latency")
    faster_but_over = verdict(candidate("c3", 0.80, 5.0, speed=6.0), BASE, max_drop=0.01, objective="latency")
    assert over.status is Status.REJECTED and faster_but_over.status is Status.REJECTED
    assert outran_by(over, [close], "latency") is None  # inside c5's spread: its mixed fallback may still win
    assert outran_by(over, [close, far, faster_but_over], "latency") is far
    assert outran_by(over, [close, far], "size") is None  # a mixed graph is larger: size never skips it
    assert outran_by(dataclasses.replace(over, speedup=None), [far], "latency") is None


def test_an_over_budget_candidates_fallback_runs_next_later_or_never_as_the_others_measured():
    """As seen at batch 32 on MiniLM: int8 static (2.91x) over budget, int8 dynamic within it at 3.12x but inside
    the spreads; the fallback ran first and spent 188 s of a 1200 s budget to measure 1.61x."""
    over = verdict(candidate("c5", 0.90, 2.0, speed=2.5), BASE, max_drop=0.01, objective="latency")  # p90 2.6x
    slower = verdict(candidate("c1", 0.95, 1.5, speed=2.2), BASE, max_drop=0.01, objective="latency")
    close = verdict(candidate("c2", 0.95, 2.5, speed=3.0), BASE, max_drop=0.01, objective="latency")  # p10 2.5x
    far = verdict(candidate("c4", 0.95, 3.5, speed=4.0), BASE, max_drop=0.01, objective="latency")
    faster_but_over = verdict(candidate("c3", 0.80, 5.0, speed=6.0), BASE, max_drop=0.01, objective="latency")

    record, when = fallback_turn(over, [slower, faster_but_over], "latency")
    assert when == "next" and record == over  # nothing within the budget is faster: it may be the answer
    record, when = fallback_turn(over, [slower, close], "latency")
    assert when == "later" and ahead_of(over, [slower, close], "latency") is close
    assert record.reason == (f"{over.reason}; its mixed-precision fallback was queued after the other candidates "
                             f"and refine: c2, within the budget, measured faster (3.00x against 2.50x, inside "
                             f"the spreads), and layers kept in float only slow c5")
    record, when = fallback_turn(over, [slower, close, far], "latency")
    assert when == "never" and "was not tried: c4, within the budget, is faster beyond both spreads (p10 3.50x " \
        "against 2.60x at p90)" in record.reason
    assert fallback_turn(over, [close, far], "size") == (over, "next")  # a mixed graph is larger: never put off


def test_a_candidate_faster_on_both_measurements_never_ranks_below():
    """As seen in a demo: int8 ONNX Runtime 6.42x interleaved and 3.89x by p50s, NNCF int8 4.40x and 3.65x."""
    ort = verdict(candidate("c04", 0.95, 5.24, p50=2.0 / 3.89, speed=6.42), BASE, max_drop=0.01, objective="latency")
    nncf = verdict(candidate("c08", 0.95, 4.22, p50=2.0 / 3.65, speed=4.40), BASE, max_drop=0.01, objective="latency")
    assert ort.status is Status.OK and nncf.status is Status.OK
    assert ort.speedup.score > nncf.speedup.score and best([nncf, ort], "latency").id == "c04"
    for interleaved in (1.2, 2.0, 4.0, 8.0, 16.0):  # rises with each measurement, never falls
        for ratio in (0.5, 1.0, 2.0, 4.0):
            assert score(interleaved * 1.1, ratio) >= score(interleaved, ratio)
            assert score(interleaved, ratio * 1.1) >= score(interleaved, ratio)
