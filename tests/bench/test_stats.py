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
