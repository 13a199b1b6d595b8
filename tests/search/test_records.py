"""Trial records round-trip through their dicts exactly: trials.jsonl and results.json keep every field, value and
key order the search wrote, and a resumed run reads its old trials.jsonl."""

import json
import math
from pathlib import Path

import pytest

from infertune.search.records import Attempts, Metric, Speedup, Status, TrialRecord

# real records written by the search before records were typed: a local run's trials.jsonl and results.json (its
# baseline, a candidate whose process aborted, a rejected one), a minilm run's (a confirmed speed-up with its p50
# ratio and score, a candidate without compute, a runtime-settings variant, the confirming run), a Ray run's (node,
# a failed trial)
REAL = [json.loads(line) for line in (Path(__file__).parent / "data" / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("data", REAL, ids=[f"{i}-{d['id']}" for i, d in enumerate(REAL)])
def test_a_real_record_round_trips_to_the_same_json(data):
    assert json.dumps(TrialRecord.from_dict(data).to_dict()) == json.dumps(data)  # values and key order


def test_real_records_read_as_their_types():
    aborted = next(TrialRecord.from_dict(d) for d in REAL if d.get("status") == "failed" and "node" not in d)
    assert aborted.failed and aborted.status is Status.FAILED and aborted.reason == aborted.error
    assert aborted.metric is None and aborted.latency is None and not aborted.measured
    confirmed = next(TrialRecord.from_dict(d) for d in REAL if (d.get("speedup") or {}).get("confirmed"))
    assert confirmed.speedup.score is not None and confirmed.speedup.p50_ratio is not None
    assert isinstance(confirmed.speedup.confirmed, Speedup) and confirmed.speedup.confirmed.rounds == 12
    assert confirmed.metric.top10_agreement is not None and confirmed.throughput.grouped_items_per_s is not None
    confirming = TrialRecord.from_dict(next(d for d in REAL if d["id"].endswith("+confirm")))
    assert confirming.confirms == confirming.id.removesuffix("+confirm") and not confirming.measured
    on_ray = next(TrialRecord.from_dict(d) for d in REAL if "node" in d)
    assert on_ray.node_id and on_ray.node_id == on_ray.node["node_id"]


def test_the_rarer_shapes_round_trip():
    """What the search writes only when something goes wrong: a confirming run that failed, a Ray task lost and
    sent again, a confirmation refused before it ran (no recipe), NaN metrics, a sensitivity table, unknown keys."""
    recipe = {"format": "infertune.recipe", "version": 1, "passes": [], "backend": {"name": "onnxruntime"}}
    shapes = [
        TrialRecord(id="c02", recipe=recipe, backend="onnxruntime", metric=Metric("top1", 0.9, drop=0.0),
                    details={"sensitivity": [{"layer": "fc1", "drop_alone": 0.001}], "kept_float": ["fc1"]},
                    speedup=Speedup(batch=1, value=1.5, low=1.2, high=1.8, rounds=8, p50_ratio=None, score=1.5,
                                    confirm_error="worker exited with code -9"),
                    status=Status.REJECTED, reason="speed-up not confirmed", pareto=True),
        TrialRecord(id="c03", recipe=recipe, backend="onnxruntime", error="lost with its node or worker 3 times",
                    attempts=Attempts(3, ("127.0.0.1 (abcdef12)",)), status=Status.FAILED,
                    reason="lost with its node or worker 3 times"),
        TrialRecord(id="c04+confirm", error="no node of the Ray cluster is free to run it", confirms="c04"),
        TrialRecord(id="c05", recipe=recipe, backend="onnxruntime", metric=Metric("none", math.nan),
                    extra={"from_a_newer_version": {"x": 1}}),
    ]
    for record in shapes:
        data = json.loads(json.dumps(record.to_dict()))
        assert json.dumps(TrialRecord.from_dict(data).to_dict()) == json.dumps(data)
    assert shapes[0].to_dict()["speedup"]["confirmed"] == {"error": "worker exited with code -9"}
    assert "p50_ratio" in shapes[0].to_dict()["speedup"]  # written with its score, even when None
    assert list(shapes[2].to_dict()) == ["id", "error", "confirms"]
    assert shapes[3].to_dict()["from_a_newer_version"] == {"x": 1}
