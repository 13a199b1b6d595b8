"""The refine stage: runtime settings that backends declare (`param(search=...)`) become candidates, on a model
nobody here tuned for (a small LSTM exported to ONNX by the test, no metadata)."""

import json

import numpy as np
import pytest
import torch

import infertune
from infertune.testing.models import lstm_tagger
from infertune.backends.settings import OnnxRuntimeSettings, OpenVINOSettings, TorchCompileSettings, usable_core_counts
from infertune.data import save_npz
from infertune.params import search_space
from infertune.search.recipe import Recipe
from infertune.search.space import setting_variants

QUICK = {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 50, "max_seconds": 5.0}


@pytest.fixture(scope="module")
def lstm_onnx(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lstm")
    path = folder / "tagger.onnx"
    torch.onnx.export(lstm_tagger(), (torch.randn(1, 12, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    data = folder / "x.npz"
    save_npz(data, {"x": np.random.default_rng(0).standard_normal((96, 12, 16)).astype(np.float32)})
    return path, data


@pytest.mark.parametrize("cls,backend", [(OnnxRuntimeSettings, "onnxruntime"), (OpenVINOSettings, "openvino"),
                                         (TorchCompileSettings, "torch-compile")])
def test_every_declared_setting_value_reaches_the_candidates(cls, backend):
    variants = setting_variants(Recipe(backend=backend))
    tried = {(k, v) for r in variants for k, v in r.options}
    default = cls()
    declared = {(name, value) for name, values in search_space(cls).items() for value in values
                if value != getattr(default, name)}
    assert declared and tried == declared
    assert all(len(r.options) == 1 for r in variants)  # one setting at a time
    assert {("threads", n) for n in usable_core_counts()} <= tried


def test_a_setting_the_recipe_chose_is_left_alone():
    variants = setting_variants(Recipe(backend="onnxruntime", options=(("threads", 1),)))
    assert variants and all(dict(r.options)["threads"] == 1 for r in variants)


def test_optimize_tries_the_runtime_settings_of_an_unseen_onnx_model(lstm_onnx, tmp_path):
    path, data = lstm_onnx
    result = infertune.optimize(str(path), data=str(data), out=tmp_path / "run", recipes=[], refine=True,
                                timing=QUICK)
    tried = {c["id"]: c["recipe"]["backend"] for c in result.candidates}
    assert any(c["recipe"]["backend"].get("threads") == 1 for c in result.candidates)
    assert all(i.startswith("baseline-s") for i in tried)
    assert any(c["recipe"]["backend"].get("spinning") is False for c in result.candidates)
    for c in result.candidates:  # the outputs are the baseline's: only speed decides
        assert c["status"] in ("ok", "rejected"), c
        assert c["metric"]["drop"] == pytest.approx(0.0, abs=1e-6)
        assert c["status"] == "ok" or c["reason"].startswith(("not faster", "timing unstable", "speed-up not"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert {r["id"] for r in lines} >= set(tried)
    print({c["id"]: (c["recipe"]["backend"], c["status"], round(c.get("speedup", {}).get("value", 0), 2))
           for c in result.candidates})


def test_settings_that_each_beat_the_leader_are_tried_together():
    """Refine varies one setting at a time; two that each beat the leader beyond their spread make one more
    candidate with both. One inside the leader's spread, or a rejected one, is left out."""
    from infertune.search.records import Speedup, Status, TrialRecord
    from infertune.search.refine import combined_queue
    from infertune.search.recipe import with_options

    leader = Recipe(backend="openvino")

    def record(id_, recipe, value, low, status=Status.OK):
        return TrialRecord(id=id_, recipe=recipe.to_dict(), backend=recipe.backend, status=status,
                           speedup=Speedup(batch=32, value=value, low=low, high=value + 0.05, rounds=10))

    base = record("baseline", Recipe(backend="torch"), 1.0, 1.0)
    finished = [base, record("c01", leader, 2.0, 1.9), record("c02", Recipe(backend="onnxruntime"), 1.5, 1.4),
                record("c01-s1", with_options(leader, shapes="static"), 2.3, 2.2),
                record("c01-s2", with_options(leader, threads=1), 2.2, 2.1),
                record("c01-s3", with_options(leader, threads=2), 2.05, 1.95),        # inside the spread
                record("c01-s4", with_options(leader, streams=2), 2.6, 2.5, Status.REJECTED)]
    [(trial_id, combined)] = combined_queue(finished, finished[1])
    assert trial_id == "c01-combined"
    assert combined.backend_options == {"shapes": "static", "threads": 1}
    assert combined_queue(finished[:4], finished[1]) == []  # one winning setting: nothing to combine
    tried = finished + [record("c01-combined", combined, 2.5, 2.4)]
    assert combined_queue(tried, finished[1]) == []


def test_padding_removal_is_inserted_before_the_leaders_precision_pass():
    """`unpad` is never a candidate alone: for throughput on a transformer, the refine stage tries the leader with
    it, after the graph passes (ONNX Runtime's attention fusion reads the padded layout) and before int8."""
    from infertune.passes.export import ExportOnnx
    from infertune.passes.fuse import OrtFusion
    from infertune.passes.quantize.onnx_backend import Int8Dynamic
    from infertune.passes.quantize.openvino_backend import Int8Nncf
    from infertune.passes.unpad import Unpad
    from infertune.search.space import insertion_variants

    text = frozenset({"transformer", "calibration"})
    ort = Recipe(passes=(ExportOnnx(), OrtFusion(), Int8Dynamic()), backend="onnxruntime")
    [variant] = insertion_variants(ort, "torch", "throughput", text)
    assert variant.passes == (ExportOnnx(), OrtFusion(), Unpad(), Int8Dynamic())
    nncf = Recipe(passes=(ExportOnnx(), Int8Nncf()), backend="openvino", options=(("shapes", "static"),))
    [variant] = insertion_variants(nncf, "torch", "throughput", text)
    assert variant.passes == (ExportOnnx(), Unpad(), Int8Nncf()) and variant.options == nncf.options
    assert insertion_variants(Recipe(backend="onnxruntime"), "onnx", "throughput", text)[0].passes == (Unpad(),)
    assert insertion_variants(nncf, "torch", "latency", text) == []               # batch 1 has no padding
    assert insertion_variants(nncf, "torch", "throughput", frozenset()) == []     # an LSTM, a CNN
    assert insertion_variants(Recipe(backend="torch"), "torch", "throughput", text) == []  # no ONNX graph
    assert insertion_variants(variant, "torch", "throughput", text) == []         # already there


def test_an_inserted_pass_that_beats_the_leader_is_combined_with_its_settings():
    from infertune.passes.export import ExportOnnx
    from infertune.passes.quantize.openvino_backend import Int8Nncf
    from infertune.passes.unpad import Unpad
    from infertune.search.records import Speedup, Status, TrialRecord
    from infertune.search.refine import combined_queue
    from infertune.search.recipe import with_options

    leader = Recipe(passes=(ExportOnnx(), Int8Nncf()), backend="openvino")
    unpadded = Recipe(passes=(ExportOnnx(), Unpad(), Int8Nncf()), backend="openvino")

    def record(id_, recipe, value, low):
        return TrialRecord(id=id_, recipe=recipe.to_dict(), backend=recipe.backend, status=Status.OK,
                           speedup=Speedup(batch=32, value=value, low=low, high=value + 0.05, rounds=10))

    finished = [record("baseline", Recipe(backend="torch"), 1.0, 1.0), record("c07", leader, 3.3, 3.2),
                record("c07-s1", unpadded, 3.9, 3.8), record("c07-s2", with_options(leader, shapes="static"), 3.6, 3.5)]
    [(trial_id, combined)] = combined_queue(finished, finished[1])
    assert trial_id == "c07-combined"
    assert combined.passes == unpadded.passes and combined.backend_options == {"shapes": "static"}


def test_an_inserted_pass_runs_with_the_setting_that_beat_the_leader_by_the_most():
    """Refine measures the leader's settings first, then inserts padding removal into the leader as run with the
    best of them (on OpenVINO, padding removal gained with static shapes and lost with dynamic ones). Ids are
    those of one list whichever call queues a variant."""
    from infertune.passes.export import ExportOnnx
    from infertune.passes.quantize.openvino_backend import Int8Nncf
    from infertune.passes.unpad import Unpad
    from infertune.search.records import Speedup, Status, TrialRecord
    from infertune.search.refine import refine_queue
    from infertune.search.recipe import with_options

    leader = Recipe(passes=(ExportOnnx(), Int8Nncf()), backend="openvino")
    text = frozenset({"transformer", "calibration"})

    def record(id_, recipe, value, low, status=Status.OK):
        return TrialRecord(id=id_, recipe=recipe.to_dict(), backend=recipe.backend, status=status,
                           speedup=Speedup(batch=32, value=value, low=low, high=value + 0.05, rounds=10))

    finished = [record("baseline", Recipe(backend="torch"), 1.0, 1.0), record("c07", leader, 3.3, 3.2)]
    settings = refine_queue(finished, Recipe(backend="torch"), finished[1], "torch", "throughput", text,
                             settings_only=True)
    assert settings and all(recipe.passes == leader.passes for _, recipe in settings)
    everything = dict(refine_queue(finished, Recipe(backend="torch"), finished[1], "torch", "throughput", text))
    assert all(everything[trial_id] == recipe for trial_id, recipe in settings)
    static, split = (next(i for i, r in settings if r == with_options(leader, **o))
                     for o in ({"shapes": "static"}, {"split": 2}))
    finished += [record(static, with_options(leader, shapes="static"), 3.7, 3.6),
                 record(split, with_options(leader, split=2), 3.4, 3.25),
                 record("c07-s99", with_options(leader, threads=1), 3.9, 3.8, Status.REJECTED)]
    rest = refine_queue(finished, Recipe(backend="torch"), finished[1], "torch", "throughput", text)
    inserted = [recipe for _, recipe in rest if Unpad() in recipe.passes]
    assert inserted == [with_options(Recipe(passes=(ExportOnnx(), Unpad(), Int8Nncf()), backend="openvino"),
                                     shapes="static")]


def test_a_setting_variant_that_beats_the_leader_leads_in_turn_without_the_settings_that_lost():
    """Settings add up where one at a time from the first leader never meet: the variant that beat the leader
    beyond its spread has its own settings tried, less those that failed or lost beyond their spread before.
    Ids stay those of one list, whichever settings are skipped."""
    from infertune.search.records import Speedup, Status, TrialRecord
    from infertune.search.refine import lost_settings, next_leader, refine_queue
    from infertune.search.recipe import with_options

    leader = Recipe(backend="openvino")

    def record(id_, recipe, value, low, high=None, status=Status.OK):
        return TrialRecord(id=id_, recipe=recipe.to_dict(), backend=recipe.backend, status=status,
                           speedup=Speedup(batch=32, value=value, low=low, high=high or value + 0.05, rounds=10))

    base = Recipe(backend="torch")
    finished = [record("baseline", base, 1.0, 1.0), record("c01", leader, 2.0, 1.9, 2.1),
                record("c01-s1", with_options(leader, shapes="static"), 2.4, 2.3),
                record("c01-s2", with_options(leader, threads=1), 1.2, 1.1, 1.3),
                record("c01-s3", with_options(leader, split=2), 2.05, 1.8, 2.3),             # inside the spread
                record("c01-s4", with_options(leader, streams=2), 2.6, 2.5, status=Status.FAILED),
                record("c01-s1-s9", with_options(leader, shapes="static", threads=2), 9.0, 8.9)]  # not c01's own
    better = next_leader(finished, finished[1])
    assert better.id == "c01-s1"
    lost = lost_settings(finished, finished[1])
    assert lost == {("threads", "1"), ("streams", "2")}
    everything = refine_queue(finished, base, better, "onnx", "throughput", frozenset(), settings_only=True)
    queue = refine_queue(finished, base, better, "onnx", "throughput", frozenset(), settings_only=True, skip=lost)
    assert queue and set(queue) < set(everything)  # fewer, each under the id it has in the whole list
    assert all(trial_id.startswith("c01-s1-s") and trial_id != "c01-s1-s9" for trial_id, _ in queue)
    options = [recipe.backend_options for _, recipe in queue]
    assert all(o["shapes"] == "static" for o in options)  # the new leader's setting is kept
    assert {"shapes": "static", "split": 2} in options    # inside the spread before: tried again on top of it
    assert not any(o.get("threads") == 1 or o.get("streams") == 2 for o in options)
    assert next_leader(finished[:2], finished[1]) is None  # nothing beat it: refine goes on from the leader


def test_a_settings_combination_the_backend_refuses_is_never_a_candidate():
    """A leader that runs with streams=1 (one that beat its own leader) gets no split=2 variant: OpenVINO splits a
    batch over as many streams, and a recipe that asks for both exits 2 when it is read, naming the fix."""
    from infertune.errors import ConfigError

    variants = setting_variants(Recipe(backend="openvino", options=(("shapes", "static"), ("streams", 1))))
    assert variants and not any(r.backend_options.get("split", 1) > 1 for r in variants)
    assert any(r.backend_options.get("split") == 2 for r in setting_variants(Recipe(backend="openvino")))
    with pytest.raises(ConfigError, match="split=2 .*but streams=1: leave streams unset or raise it"):
        Recipe.from_dict({"format": "infertune.recipe", "version": 1, "passes": [],
                          "backend": {"name": "openvino", "split": 2, "streams": 1}})


def test_a_variant_faster_interleaved_but_slow_timed_alone_never_leads():
    """As seen on MiniLM at batch 32: OpenVINO with one stream measured 3.97x interleaved (p10 3.46x, above the
    leader's 3.23x), but 1.16x by its own throughput, so it scores 1.74 and ranks far below the leader; it led a
    refine round of 10 variants of itself. Only a variant that also ranks above the leader leads or combines."""
    import dataclasses

    from infertune.search.records import Speedup, Status, TrialRecord
    from infertune.search.refine import combined_queue, next_leader
    from infertune.search.recipe import with_options
    from infertune.search.select import score

    leader = Recipe(backend="openvino")

    def record(id_, recipe, value, low, ratio):
        speed = Speedup(batch=32, value=value, low=low, high=value + 0.4, rounds=8, p50_ratio=ratio,
                        score=score(value, ratio))
        return TrialRecord(id=id_, recipe=recipe.to_dict(), backend=recipe.backend, status=Status.OK, speedup=speed)

    first = record("c06", leader, 3.23, 2.9, 3.7)
    one_stream = record("c06-s5", with_options(leader, streams=1), 3.97, 3.46, 1.16)
    by_length = record("c06-s1", with_options(leader, by_length=True), 3.59, 3.28, 3.91)
    assert one_stream.speedup.score == pytest.approx(1.74) and next_leader([first, one_stream], first) is None
    assert combined_queue([first, one_stream, by_length], first) == []  # one real winner: nothing to combine
    fast_alone = dataclasses.replace(one_stream, speedup=dataclasses.replace(one_stream.speedup, p50_ratio=3.9,
                                                                            score=score(3.97, 3.9)))
    assert next_leader([first, fast_alone, by_length], first).id == "c06-s5"
