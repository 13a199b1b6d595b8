"""A user's own transformers folder (a BERT fine-tuned by the test, saved with save_pretrained) and .jsonl files,
through the command line: optimize chooses a faster artifact within the budget, predict writes logits in input
order, serve answers BYTES requests for the folder and for the run directory."""

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from infertune.serve.process import ServerProcess
from infertune.testing.folders import LABELS, keyword_texts, write_jsonl


@pytest.fixture(scope="module")
def folder(keyword_folder) -> Path:
    return keyword_folder


@pytest.fixture(scope="module")
def reference(folder):
    """The folder run by transformers itself: texts -> logits, one text at a time (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()

    def run(texts):
        with torch.no_grad():
            return np.concatenate([model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in texts])

    return run


@pytest.fixture(scope="module")
def run_dir(folder, tmp_path_factory, cli):
    """optimize FOLDER --data train.jsonl with one recipe (export, fuse, ONNX Runtime) against torch eager."""
    from infertune.passes.export import ExportOnnx
    from infertune.passes.fuse import OrtFusion
    from infertune.search.recipe import Recipe

    where = tmp_path_factory.mktemp("optimize")
    texts, labels = keyword_texts(96, seed=3)
    data = write_jsonl(where / "train.jsonl", texts, labels)
    recipe = where / "recipe.yaml"
    Recipe(passes=(ExportOnnx(), OrtFusion()), backend="onnxruntime").save(recipe)
    result = cli("optimize", str(folder), "--data", str(data), "--max-drop", "0.01", "--recipe", str(recipe),
                 "--out", str(where / "run"))
    assert result.returncode == 0, result.stderr
    print(result.stdout[-1500:])
    return where / "run", result


def test_folder_is_read_as_a_classifier_with_its_labels_and_tokenizer(folder):
    import infertune

    model, _ = infertune.resolve(str(folder))
    assert model.task == "classification" and model.labels == LABELS
    assert [s.name for s in model.signature.inputs] == ["input_ids", "attention_mask"]
    assert model.meta["num_heads"] == 2 and model.meta["hidden_size"] == 64
    encoded = model.encode_texts(["a b", "a much longer sentence than the first"])
    assert encoded["input_ids"].shape[1] == encoded["attention_mask"].sum(axis=1).max()  # padded to the longest


@pytest.mark.slow
def test_optimize_folder_chooses_a_faster_artifact_within_the_budget(run_dir):
    out, result = run_dir
    data = json.loads((out / "results.json").read_text())
    baseline = data["baseline"]
    assert baseline["backend"] == "torch" and baseline["metric"]["name"] == "top1"
    assert data["budget"] == {"metric": "top1", "max_drop": 0.01}
    assert data["data"]["kind"] == "text" and data["data"]["splits"]["heldout"] == 48
    assert "heldout 48" in result.stdout + result.stderr, result.stdout + result.stderr  # the split sizes print
    (fused,) = data["candidates"]
    speed = fused["speedup"]
    print(f"\nheld-out top1: baseline {baseline['metric']['value']:.3f}, fused ONNX {fused['metric']['value']:.3f} "
          f"(drop {fused['metric']['drop']:+.3f}); speed-up over torch eager at batch 1: {speed['value']:.2f}x "
          f"(p10-p90 {speed['low']:.2f}-{speed['high']:.2f}x); p50 {baseline['latency_ms']['p50']:.2f} ms -> "
          f"{fused['latency_ms']['p50']:.2f} ms; confirmed: {speed.get('confirmed')}; best: {data['best']} "
          f"({fused['status']}: {fused['reason']})")
    assert baseline["metric"]["value"] >= 0.95  # the fine-tuned folder learned the keyword task
    assert fused["metric"]["drop"] <= 0.01
    assert speed["batch"] == 1 and speed["low"] >= 2.0
    assert any(note.startswith("fused ") and "Attention x2" in note for note in fused["notes"]), fused["notes"]
    if data["best"] is None:  # on a machine busy with other work, the first measurement (measured twice) or the
        # confirming run may be too noisy to rest on: the candidate is then rejected as unstable, never chosen
        assert "unstable" in fused["reason"], fused["reason"]
        assert speed["stable"] is False or speed["confirmed"]["stable"] is False, speed
        assert (speed.get("confirmed") or speed)["low"] >= 2.0, speed
    else:
        assert data["best"] == "c01" and fused["status"] == "ok"
        assert json.loads((out / "model" / "manifest.json").read_text())["backend"] == "onnxruntime"


def test_predict_folder_writes_logits_in_input_order(folder, reference, tmp_path, cli):
    texts, _ = keyword_texts(37, seed=11)
    texts[5] = "excellent " * 40 + "end."  # a long text among short ones: batches pad to their longest
    data = write_jsonl(tmp_path / "other.jsonl", texts)
    out = tmp_path / "x.npz"
    result = cli("predict", str(folder), "--data", str(data), "--out", str(out), "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    with np.load(out) as saved:
        logits = saved["logits"]
    want = reference(texts)
    assert logits.shape == (37, 2)
    print(f"\npredict vs transformers: largest logit difference {np.abs(logits - want).max():.2e}")
    np.testing.assert_allclose(logits, want, atol=1e-4)


def _ask(client, name, texts):
    answer = client.post(f"/v2/models/{name}/infer", json={"inputs": [{"name": "text", "datatype": "BYTES",
                                                                       "shape": [len(texts)], "data": texts}]})
    assert answer.status_code == 200, answer.text
    output = answer.json()["outputs"][0]
    return np.asarray(output["data"], np.float32).reshape(output["shape"])


def _check_served(target: Path, reference, atol: float) -> None:
    texts = ["The excellent meeting was short.", "The meeting was short.", "x"]
    want = reference(texts)
    server = ServerProcess(str(target), "--cache-size", "0")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            (name,) = [m["name"] for m in client.post("/v2/repository/index").json()]
            meta = client.get(f"/v2/models/{name}").json()
            assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            got = _ask(client, name, texts)
    finally:
        server.stop()
    print(f"\nserve {target.name} ({name}): largest logit difference from transformers {np.abs(got - want).max():.2e}")
    np.testing.assert_allclose(got, want, atol=atol)
    assert list(got.argmax(axis=1)) == [1, 0, 0]


def test_serve_folder_answers_bytes_requests(folder, reference):
    _check_served(folder, reference, atol=1e-4)


@pytest.mark.slow
def test_serve_run_dir_answers_bytes_requests(run_dir, reference):
    _check_served(run_dir[0], reference, atol=1e-3)
