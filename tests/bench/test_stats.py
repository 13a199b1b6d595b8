import pytest

from infertune.bench.stats import compare, summarize


def test_summarize_gives_percentiles_in_ms_and_throughput():
    seconds = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    stats = summarize(4, seconds)
    assert stats.runs == 100
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.items_per_s == pytest.approx(4 * 100 / sum(seconds))


def test_comparison_counts_a_speedup_only_beyond_the_spread():
    a = [[0.010] * 5 for _ in range(10)]
    clearly = compare(1, a, [[0.005] * 5 for _ in range(10)])
    assert clearly.speedup == pytest.approx(2.0) and clearly.b_is_faster and not clearly.b_is_slower
    noisy_b = [[0.0095 if r % 2 else 0.0105] * 5 for r in range(10)]  # +-5 %: no verdict either way
    noisy = compare(1, a, noisy_b)
    assert not noisy.b_is_faster and not noisy.b_is_slower


def test_flops_of_a_linear_layer_and_a_positive_peak():
    import numpy as np

    from infertune.bench.flops import model_flops, peak_gflops
    from infertune.resolver import load_model
    from infertune.testing.models import mlp_data

    model = load_model("infertune.testing.models:tiny_mlp", data=mlp_data(4))
    flops = model_flops(model, {"input": np.zeros((4, 16), np.float32)})
    assert flops == 2 * 4 * (16 * 32 + 32 * 10)
    assert peak_gflops(size=256, runs=3) > 0


def test_a_dtype_without_a_kernel_of_its_own_is_measured_small_and_briefly():
    """bf16 on a CPU without AVX512-BF16 or AMX: torch converts in software, and a 2048 product took 19 s on a Zen
    3, so the peak of each dtype is taken on a product that grows only while a call is short, for a bounded time."""
    import time

    from infertune.bench.flops import SHORTEST_CALL_S, _rate

    sizes, calls = [], []

    def slow(n: int):
        sizes.append(n)

        def run():
            calls.append(n)
            time.sleep(SHORTEST_CALL_S * 1.5)
        return run

    assert _rate(slow, 2048, runs=20, seconds=0.2) > 0
    assert sizes == [256]  # already long enough: never grown
    assert 3 <= len(calls) <= 2 + 0.2 / (SHORTEST_CALL_S * 1.5) + 1  # a warm-up, then calls until the time is spent

    sizes.clear()
    assert _rate(lambda n: sizes.append(n) or (lambda: None), 2048, runs=3) > 0
    assert sizes == [256, 512, 1024, 2048]  # fast calls: grown to the largest, and no further
