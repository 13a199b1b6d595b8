import numpy as np
import onnxruntime as ort
import pytest

from infertune.errors import ConfigError, ExportError
from infertune.resolver import load_model
from infertune.passes.export import check, export_onnx
from infertune.testing.models import mlp_data


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_has_dynamic_batch_and_matches_the_source(exporter, mlp_model, tmp_path):
    exported = export_onnx(mlp_model, tmp_path / f"{exporter}.onnx", exporter=exporter)
    assert exported.format == "onnx" and exported.signature == mlp_model.signature
    session = ort.InferenceSession(str(exported.onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = mlp_data(batch, seed=batch)["input"]
        (out,) = session.run(None, {"input": x})
        import torch

        with torch.inference_mode():
            want = mlp_model.module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_export_that_differs_beyond_tolerance_fails_loudly(tmp_path):
    positive = mlp_data(8, positive=True)
    model = load_model("infertune.testing.models:sign_branch", data=positive)
    negative = {"input": -positive["input"]}
    with pytest.raises(ExportError, match="output 'output' max \\|diff\\| [0-9.e+-]+ \\(tolerance 0.0001\\)"):
        export_onnx(model, tmp_path / "branch.onnx", inputs=[{"input": positive["input"]}, negative])
    assert not (tmp_path / "branch.onnx").exists()  # nothing half-written is left behind


def test_check_reports_difference_and_cosine_per_output(mlp_model, mlp_onnx):
    report = check(mlp_model, mlp_onnx, inputs=[{"input": mlp_data(4)["input"]}])
    assert report["output"]["max_abs_diff"] < 1e-4 and report["output"]["min_cosine"] > 0.9999


def test_export_to_cache_happens_once(mlp_model):
    first = export_onnx(mlp_model)
    mtime = first.onnx_path.stat().st_mtime_ns
    second = export_onnx(mlp_model)
    assert second.onnx_path == first.onnx_path and second.onnx_path.stat().st_mtime_ns == mtime


def test_export_rejects_an_unknown_exporter_and_an_onnx_model(mlp_model, mlp_onnx):
    with pytest.raises(ConfigError, match="exporter 'jit' is not one of torchscript, dynamo"):
        export_onnx(mlp_model, exporter="jit")
    with pytest.raises(ConfigError, match="already an ONNX model"):
        export_onnx(load_model(str(mlp_onnx)))


def test_digits_cnn_exports_and_validates_on_real_digits(tmp_path):
    exported = export_onnx(load_model("digits-cnn"), tmp_path / "digits.onnx")
    assert exported.onnx_path.stat().st_size > 100_000
