"""optimize end to end on a tiny ONNX model and data the test makes: with labels and without."""

import json

import numpy as np
import pytest

import infertune
from infertune.data import save_npz
from infertune.passes.quantize.onnx_backend import Int8Dynamic
from infertune.search.recipe import Recipe

QUICK = {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 50, "max_seconds": 5.0}


@pytest.fixture()
def labelled_npz(tmp_path):
    from infertune.testing.models import mlp_data

    path = tmp_path / "data.npz"
    save_npz(path, mlp_data(200))
    return path


def test_optimize_an_onnx_model_writes_a_valid_run_directory(mlp_onnx, labelled_npz, tmp_path):
    out = tmp_path / "run"
    recipes = [Recipe(passes=(Int8Dynamic(),), backend="onnxruntime"), Recipe(backend="openvino")]
    result = infertune.optimize(str(mlp_onnx), data=str(labelled_npz), max_drop=0.05, out=out, recipes=recipes,
                                timing=QUICK)
    data = json.loads((out / "results.json").read_text())
    assert data["budget"] == {"metric": "top1", "max_drop": 0.05} and data["objective"] == "latency"
    assert [c["id"] for c in data["candidates"]] == ["c01", "c02"]
    for c in data["candidates"]:
        assert c["status"] in ("ok", "rejected") and ("reason" in c)
        assert {"batch", "p50", "p90", "p99"} <= set(c["latency_ms"]) and c["size_bytes"] > 0
        assert "drop" in c["metric"] and "pareto" in c and c["speedup"]["rounds"] in (8, 16)
    assert data["baseline"]["compute"] is None  # an ONNX file has no torch form to count FLOPs on
    assert len((out / "trials.jsonl").read_text().splitlines()) == 3
    for c in data["candidates"]:  # the invariants the search promises
        if c["metric"]["drop"] > 0.05:
            assert c["status"] == "rejected" and "over budget" in c["reason"]
        elif c["speedup"]["low"] <= 1.0:
            assert c["status"] == "rejected" and "not faster" in c["reason"]
        else:
            assert c["status"] == "ok"
    assert data["best"] is None or next(c for c in data["candidates"] if c["id"] == data["best"])["status"] == "ok"
    assert (out / "recipe.yaml").is_file() and (out / "report.html").is_file()
    report = (out / "report.html").read_text()
    assert "<svg" in report and "src=" not in report and "https://" not in report  # self-contained
    assert "c01" in report and "c02" in report
    engine = infertune.load(out)
    assert engine.run({"input": np.zeros((2, 16), np.float32)})["output"].shape == (2, 10)
    assert result.baseline["metric"]["name"] == "top1"
    from infertune.bench import Timing, bench_backends

    run_model, _ = infertune.resolve(out)
    assert run_model.backend == json.loads((out / "model" / "manifest.json").read_text())["backend"]
    (bench,) = bench_backends(run_model, [(run_model.backend, {})], batch_sizes=(1,),
                              timing=Timing(warmup=1, min_runs=3, min_seconds=0.0))
    assert bench.ok and bench.at(1).runs >= 3


def test_without_labels_the_metric_is_fidelity_to_the_baseline(mlp_onnx, tmp_path):
    from infertune.testing.models import mlp_data

    save_npz(tmp_path / "x.npz", {"input": mlp_data(120)["input"]})
    result = infertune.optimize(str(mlp_onnx), data=str(tmp_path / "x.npz"), out=tmp_path / "run",
                                recipes=[Recipe(passes=(Int8Dynamic(),), backend="onnxruntime")], timing=QUICK)
    assert result.baseline["metric"] == {"name": "top1_agreement", "value": 1.0, "drop": 0.0}
    assert result.candidates[0]["metric"]["name"] == "top1_agreement"


def test_a_candidate_whose_process_aborts_is_failed_and_the_run_completes(mlp_onnx, labelled_npz, tmp_path,
                                                                          monkeypatch):
    from infertune.testing.passes import AbortProcess

    monkeypatch.setenv("INFERTUNE_PLUGINS", "infertune.testing.passes")
    recipes = [Recipe(passes=(AbortProcess(),), backend="onnxruntime"), Recipe(passes=(Int8Dynamic(),),
                                                                               backend="onnxruntime")]
    seen = []
    result = infertune.optimize(str(mlp_onnx), data=str(labelled_npz), max_drop=0.05, out=tmp_path / "run",
                                recipes=recipes, timing=QUICK, progress=lambda label, stage: seen.append((label, stage)))
    failed, other = result.candidates
    assert failed["status"] == "failed" and "SIGABRT" in failed["reason"]
    assert other["status"] in ("ok", "rejected") and (tmp_path / "run" / "results.json").is_file()
    # the progress ends each trial with its verdict in one line
    ends = {label.split(":")[0]: stage for label, stage in seen if stage.split(":")[0].split(",")[0] in
            ("ok", "rejected", "failed")}
    assert ends["c01"].startswith("failed: ") and "SIGABRT" in ends["c01"]
    assert ends["c02"].startswith(f"{other['status']}, top1 {other['metric']['value']:.4f}, "), ends["c02"]


def test_a_killed_run_resumes_and_finishes_keeping_every_record(mlp_onnx, labelled_npz, tmp_path):
    out = tmp_path / "run"
    recipes = [Recipe(passes=(Int8Dynamic(),), backend="onnxruntime"), Recipe(backend="openvino")]
    infertune.optimize(str(mlp_onnx), data=str(labelled_npz), out=out, recipes=recipes[:1], timing=QUICK)
    lines = (out / "trials.jsonl").read_text().splitlines()
    cut = '{"id": "c02", "recip'
    (out / "trials.jsonl").write_text("\n".join(lines) + "\n" + cut)  # cut mid-write, no newline after it
    said = []
    result = infertune.optimize(str(mlp_onnx), data=str(labelled_npz), out=out, recipes=recipes, timing=QUICK,
                                resume=True, say=said.append)
    assert [c["id"] for c in result.candidates] == ["c01", "c02"]
    # c01 was taken from trials.jsonl, not measured again (a new measurement would differ in its floats)
    assert result.candidates[0]["latency_ms"] == json.loads(lines[1])["latency_ms"]
    assert any(f"line {len(lines) + 1} is cut" in line and "runs again" in line for line in said), said
    final = (out / "trials.jsonl").read_text().splitlines()
    assert final[len(lines)] == cut  # the cut line is left as it was, and the next record starts on a line of its own
    records = [json.loads(line) for i, line in enumerate(final) if i != len(lines)]
    assert "c02" in [r["id"] for r in records]
    said.clear()
    again = infertune.optimize(str(mlp_onnx), data=str(labelled_npz), out=out, recipes=recipes, timing=QUICK,
                               resume=True, say=said.append)  # a second resume runs nothing again
    assert (out / "trials.jsonl").read_text().splitlines() == final
    assert [c["latency_ms"] for c in again.candidates] == [c["latency_ms"] for c in result.candidates]


def test_a_killed_optimize_leaves_no_worker_process_and_no_temp_folder(tmp_path):
    """kill -9 of the optimize process while a trial runs: its worker dies with it (PR_SET_PDEATHSIG), and the
    job and result travel over pipes, so nothing is left in the temp folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    temp = tmp_path / "tmp"
    temp.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "infertune.cli", "optimize", "digits-cnn", "--out",
                                str(tmp_path / "run")], env={**os.environ, "TMPDIR": str(temp)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers = []
    while not workers and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [c for c in psutil.Process(process.pid).children(recursive=True)
                   if "infertune.search.worker" in " ".join(c.cmdline())]
    assert workers, "no trial worker started"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    gone, alive = psutil.wait_procs(workers, timeout=3)
    assert not alive, f"worker still running after its parent was killed: {alive}"
    assert not [p for p in temp.iterdir() if p.name.startswith("infertune-worker-")]


def test_an_existing_run_is_not_overwritten_without_resume(mlp_onnx, labelled_npz, tmp_path):
    from infertune.errors import ConfigError

    out = tmp_path / "run"
    infertune.optimize(str(mlp_onnx), data=str(labelled_npz), out=out, recipes=[], timing=QUICK)
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        infertune.optimize(str(mlp_onnx), data=str(labelled_npz), out=out, recipes=[], timing=QUICK)


def test_bad_inputs_are_input_errors(mlp_onnx, labelled_npz, tmp_path):
    from infertune.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-drop must be between 0 and 1"):
        infertune.optimize(str(mlp_onnx), data=str(labelled_npz), max_drop=2, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="--objective must be one of"):
        infertune.optimize(str(mlp_onnx), data=str(labelled_npz), objective="speed", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="--min-top10 must be between 0 and 1"):
        infertune.optimize(str(mlp_onnx), data=str(labelled_npz), min_top10=9, out=tmp_path / "c")


def test_optimize_a_zoo_torch_model_reports_compute_against_the_peak(tmp_path):
    from infertune.passes.fuse import FoldBatchNorm

    result = infertune.optimize("digits-cnn", out=tmp_path / "run", timing=QUICK,
                                recipes=[Recipe(passes=(FoldBatchNorm(),), backend="torch")])
    assert result.baseline["metric"]["name"] == "top1" and result.baseline["metric"]["value"] > 0.95
    compute = result.baseline["compute"]
    assert compute["flops"] > 1e6 and 0 < compute["fraction_of_peak"] and compute["peak_gflops"] > 0
    assert result.candidates[0]["compute"]["flops"] == compute["flops"]  # folding BN leaves the conv FLOPs


def test_a_resumed_run_queues_the_mixed_precision_fallback_it_had_not_run(tmp_path):
    """An int8 candidate over budget gets its mixed-precision fallback; a run cut before the fallback ran queues
    it again on --resume (the reused record was once taken as it was, and the fallback never ran)."""
    from infertune.passes.export import ExportOnnx
    from infertune.testing.models import bert_data

    data, out = tmp_path / "bert.npz", tmp_path / "run"
    save_npz(data, bert_data(96))
    model, recipes = "infertune.testing.models:tiny_bert", [Recipe(passes=(ExportOnnx(), Int8Dynamic()),
                                                                   backend="onnxruntime")]
    first = infertune.optimize(model, data=str(data), max_drop=0.0, out=out, recipes=recipes, timing=QUICK)
    assert [c["id"] for c in first.candidates] == ["c01", "c01-mixed"], first.candidates
    assert first.candidates[0]["status"] == "rejected" and "fallback" not in first.candidates[0]["reason"]
    lines = (out / "trials.jsonl").read_text().splitlines()
    upto = next(i for i, line in enumerate(lines) if json.loads(line)["id"] == "c01")
    (out / "trials.jsonl").write_text("\n".join(lines[:upto + 1]) + "\n")  # cut before the fallback ran
    again = infertune.optimize(model, data=str(data), max_drop=0.0, out=out, recipes=recipes, timing=QUICK,
                               resume=True)
    assert [c["id"] for c in again.candidates] == ["c01", "c01-mixed"], again.candidates
    assert again.candidates[0]["latency_ms"] == first.candidates[0]["latency_ms"]  # c01 reused, not measured again
