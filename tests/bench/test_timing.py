import time

import numpy as np

from infertune.backends import load_session
from infertune.api import benchmark
from infertune.bench import Timing, compare_ab
from infertune.bench.timing import time_runs, warm_up
from infertune.bench.workload import build_workload
from infertune.data import load_dataset


class Recording:
    """Wraps a real session and records the shapes it was called with."""

    def __init__(self, session, delay: float = 0.0):
        self.session, self.delay, self.shapes = session, delay, []

    def run(self, inputs):
        self.shapes.append(next(iter(inputs.values())).shape)
        if self.delay:
            time.sleep(self.delay)
        return self.session.run(inputs)


def test_warm_up_calls_every_distinct_shape_once_before_timing(mlp_model):
    session = Recording(load_session(mlp_model, "torch"))
    batches = [{"input": np.zeros((b, 16), np.float32)} for b in (1, 2, 1, 3, 2)]
    warm_up(session, batches, extra=0)
    assert session.shapes == [(1, 16), (2, 16), (3, 16)]


def test_time_runs_meets_the_minimum_run_count(mlp_model):
    session = load_session(mlp_model, "torch")
    timings = time_runs(session, [{"input": np.zeros((1, 16), np.float32)}], min_runs=17, min_seconds=0.0)
    assert len(timings) == 17 and all(t > 0 for t in timings)


def test_text_workload_uses_many_natural_length_batches():
    from infertune.model.zoo import ZOO

    model = ZOO["minilm"].stub("minilm")
    split = load_dataset("docstrings").split("heldout")
    workload = build_workload(model, split, (1, 32))
    lengths = {b["input_ids"].shape[1] for b in workload.batches[1]}
    assert len(workload.batches[1]) == 64 and len(lengths) > 10  # different sentences, different lengths
    assert len(workload.batches[32]) == 64  # wrapping over a fixed shuffle: 64 different batches of 32
    firsts = {tuple(b["input_ids"][0][:8]) for b in workload.batches[32]}
    assert len(firsts) > 32
    first = workload.batches[32][0]
    assert first["attention_mask"].sum(axis=1).max() == first["input_ids"].shape[1]  # padded to the longest only


def test_large_batches_are_not_one_repeated_batch():
    from infertune.model.zoo import ZOO

    model = ZOO["digits-cnn"].stub("digits-cnn")
    split = load_dataset("digits").split("heldout")  # 500 samples
    batches = build_workload(model, split, (256,)).batches[256]
    assert len(batches) >= 8 and len({b["pixels"][0].tobytes() for b in batches}) == len(batches)


def test_compare_ab_finds_the_faster_session(mlp_model):
    batches = [{"input": np.zeros((1, 16), np.float32)}]
    fast = load_session(mlp_model, "torch")
    slow = Recording(load_session(mlp_model, "torch"), delay=0.002)
    result = compare_ab(slow, fast, batches, rounds=6, runs_per_round=5)
    assert result.b_is_faster and result.speedup > 2
    assert result.rounds == 6


def test_benchmark_reports_latency_size_memory_and_hardware():
    result = benchmark("digits-cnn", backend="onnxruntime", batch_sizes=(1, 8),
                       timing=Timing(warmup=1, min_runs=5, min_seconds=0.0))
    assert [s.batch for s in result.latency] == [1, 8]
    stats = result.at(8)
    assert 0 < stats.p50_ms <= stats.p90_ms <= stats.p99_ms and stats.runs >= 5
    assert result.artifact_bytes > 100_000 and result.peak_rss_bytes > 10_000_000
    assert result.hardware["cpu_model"] and isinstance(result.hardware["isa"], list)
    assert "onnxruntime" in result.versions and "digits heldout" in result.workload


def test_peaks_by_dtype_are_measured_once_and_read_back(tmp_path, monkeypatch):
    from infertune.bench import flops

    monkeypatch.setenv("INFERTUNE_CACHE_DIR", str(tmp_path))
    flops.peaks.cache_clear()
    first = flops.peaks()
    assert set(first) == {"fp32", "bf16", "int8"} and all(v > 0 for v in first.values())
    assert len(list((tmp_path / "peaks").glob("*.json"))) == 1
    flops.peaks.cache_clear()
    assert flops.peaks() == first  # read from the cache, not measured again (a new measurement would differ)
    flops.peaks.cache_clear()
    assert [flops.dtype_of(p) for p in ("int8+bf16", "bf16", "fp16", "int4", None)] == \
        ["int8", "bf16", "fp32", "fp32", "fp32"]
