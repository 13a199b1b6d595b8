from infertune.bench import BenchJob, Timing, bench_backends
from infertune.bench.isolated import run_isolated
from infertune.resolver import resolve

QUICK = Timing(warmup=1, min_runs=3, min_seconds=0.0)


def test_isolated_job_measures_in_a_fresh_process():
    result = run_isolated(BenchJob(model={"model": "digits-cnn"}, backend="torch", batch_sizes=(1,), timing=QUICK))
    assert result.ok and result.isolated and result.at(1).runs >= 3
    assert result.precision == "fp32" and result.peak_rss_bytes > 0


def test_a_crashing_model_becomes_an_error_result(mlp_npz):
    job = BenchJob(model={"model": "infertune.testing.models:abort_on_forward"}, backend="torch",
                   data={"data": str(mlp_npz)},
                   batch_sizes=(1,), timing=QUICK)
    result = run_isolated(job)
    assert not result.ok and "SIGABRT" in result.error


def test_a_hanging_job_times_out():
    result = run_isolated(BenchJob(model={"model": "digits-cnn"}, backend="torch", batch_sizes=(1,),
                                   timing=Timing(min_runs=10**9, min_seconds=1e9, max_runs=10**9,
                                                 max_seconds=1e9)), timeout=8)
    assert not result.ok and "timed out after 8 s" in result.error


def test_suite_checks_every_backend_against_the_reference():
    model, data = resolve("digits-cnn")
    results = bench_backends(model, data=data, configs=[("torch", {}), ("onnxruntime", {}), ("openvino", {})],
                             batch_sizes=(4,), timing=QUICK, fidelity_samples=64)
    assert all(r.ok for r in results)
    for r in results:
        assert r.fidelity["cosine_min"] > 0.9999 and r.fidelity["top1_agreement"] == 1.0


def test_suite_records_a_failed_backend_and_goes_on():
    model, data = resolve("digits-cnn")
    results = bench_backends(model, data=data, configs=[("onnxruntime", {"precision": "bf16"}), ("torch", {})],
                             batch_sizes=(1,), timing=QUICK, fidelity_samples=16)
    assert not results[0].ok and "use torch, torch-compile or openvino" in results[0].error
    assert results[1].ok
