"""The whole search on models nobody here tuned for: a small ViT and a small LSTM tagger, each exported to ONNX by
the test with no infertune metadata. With the space composed from the registry and the refine stage, the search
tries graph fusion (ViT: attention found in the graph itself), int8 and bf16 where the CPU has them, and the
runtime's threads; every candidate gets a verdict, and the table prints what it found."""

import warnings

import numpy as np
import pytest

import infertune
from infertune.testing.models import lstm_tagger
from infertune.data import save_npz

QUICK = {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 40, "max_seconds": 2.0}


def _export(module, example, path, input_name: str, output_name: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about transformers' code and the LSTM's batch
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, opset_version=17,
                          dynamo=False)


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    torch.manual_seed(0)
    where = tmp_path_factory.mktemp("unseen")

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = ViTForImageClassification(ViTConfig(
                image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, num_labels=5)).eval()

        def forward(self, pixel_values):
            return self.vit(pixel_values=pixel_values).logits

    rng = np.random.default_rng(0)
    _export(Logits().eval(), torch.randn(1, 3, 32, 32), where / "vit.onnx", "pixel_values", "logits")
    _export(lstm_tagger(), torch.randn(1, 12, 16), where / "lstm.onnx", "x", "y")
    save_npz(where / "vit.npz", {"pixel_values": rng.standard_normal((96, 3, 32, 32)).astype(np.float32)})
    save_npz(where / "lstm.npz", {"x": rng.standard_normal((96, 12, 16)).astype(np.float32)})
    return where


def _search(unseen, name: str, tmp_path):
    from infertune.report.terminal import optimize_table

    result = infertune.optimize(str(unseen / f"{name}.onnx"), data=str(unseen / f"{name}.npz"), max_drop=0.02,
                                out=tmp_path / "run", timing=QUICK, time_budget=240)
    optimize_table(result)  # what a user sees (shown with -s)
    return result


def _tried(result) -> list[dict]:
    return [c for c in result.candidates if c["status"] != "failed"]


def _verdicts_are_whole(result) -> None:
    for c in result.candidates:
        assert c["status"] in ("ok", "rejected", "failed"), c
        assert c["status"] == "ok" or c["reason"], c
    if result.best is not None:
        assert result.best["status"] == "ok" and result.best["speedup"].get("confirmed") is not None


def _passes(c) -> list[str]:
    return [p["pass"] if isinstance(p, dict) else str(p) for p in c["recipe"]["passes"]]


@pytest.mark.slow
def test_the_search_on_a_vit_export_tries_fusion_precision_and_threads(unseen, tmp_path, capsys):
    result = _search(unseen, "vit", tmp_path)
    tried = _tried(result)
    fused = [c for c in tried if "ort-fusion" in _passes(c)]
    assert fused, [(_passes(c), c["status"], c.get("reason")) for c in result.candidates]
    assert any("attention blocks fused: 2 of 2" in note for c in fused for note in c["notes"]), fused[0]["notes"]
    precisions = {c["precision"] for c in tried}
    assert "int8" in precisions, precisions
    assert any(c["recipe"]["backend"].get("threads") == 1 for c in tried)
    _verdicts_are_whole(result)
    shown = capsys.readouterr().out
    print(shown)  # shown again with the test's output when it fails
    assert "ort-fusion" in shown  # the table shows the fused candidate


@pytest.mark.slow
def test_the_search_on_an_lstm_export_tries_precision_and_threads(unseen, tmp_path):
    result = _search(unseen, "lstm", tmp_path)
    tried = _tried(result)
    assert {c["recipe"]["backend"]["name"] for c in tried} >= {"onnxruntime", "openvino"}
    assert "int8" in {c["precision"] for c in tried}
    assert any(c["recipe"]["backend"].get("threads") == 1 for c in tried)
    _verdicts_are_whole(result)
