"""Ensembles: the fused ONNX graph against the members run one by one, each way of combining, and the spec's
errors."""

from pathlib import Path

import numpy as np
import pytest

import infertune
from infertune import ensemble
from infertune.errors import ConfigError


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from infertune.resolver import load_model
    from infertune.passes.export import export_onnx
    from infertune.testing.models import mlp_data

    arrays = {"input": mlp_data(8)["input"]}
    torch_member = load_model("infertune.testing.models:tiny_mlp", data=arrays)
    other = load_model("infertune.testing.models:faulty_mlp", data=arrays)  # another 16 -> 10 layer
    onnx_member = export_onnx(torch_member, tmp_path_factory.mktemp("members") / "mlp.onnx")
    return [torch_member, other, onnx_member]


@pytest.mark.parametrize("combine, weights", [("mean", None), ("weighted", (3.0, 1.0, 1.0)), ("vote", None)])
def test_the_fused_graph_equals_the_members_combined_one_by_one(members, tmp_path, combine, weights):
    spec = ensemble.EnsembleSpec(members=("a", "b", "c"), combine=combine, weights=weights)
    model = ensemble.build(spec, members, workdir=tmp_path)
    assert model.format == "onnx" and model.task == "classification"
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    fused = infertune.load(model, backend="onnxruntime").run({"input": x})
    name = ensemble.OUTPUTS[combine]
    composite = ensemble.composite(spec, members, ["torch", "torch", "onnxruntime"], [{}, {}, {}])
    np.testing.assert_allclose(fused[name], composite.run({"input": x})[name], rtol=1e-5, atol=1e-5)
    if combine == "vote":
        assert (fused[name].sum(axis=1) == 3).all()
    else:
        np.testing.assert_allclose(fused[name].sum(axis=1), 1.0, rtol=1e-5)
    openvino = infertune.load(model, backend="openvino").run({"input": x})[name]
    np.testing.assert_allclose(openvino, fused[name], rtol=1e-3, atol=1e-3)


def test_a_spec_file_names_its_members_relative_to_itself(tmp_path, members):
    import shutil

    shutil.copy(members[2].onnx_path, tmp_path / "member.onnx")
    (tmp_path / "e.yaml").write_text("ensemble:\n  members: [member.onnx, member.onnx]\n  combine: weighted\n"
                                     "  weights: [1, 2]\n")
    spec = ensemble.read_spec(tmp_path / "e.yaml")
    assert spec.members == (str(tmp_path / "member.onnx"),) * 2 and spec.name == "e"
    assert spec.normalized_weights == pytest.approx([1 / 3, 2 / 3])


@pytest.mark.parametrize("text, message", [
    ("ensemble:\n  members: [a]\n", "at least two members"),
    ("ensemble:\n  members: [a, b]\n  combine: median\n", "combine must be one of mean, weighted, vote"),
    ("ensemble:\n  members: [a, b]\n  combine: weighted\n  weights: [1]\n", "one weight per member"),
    ("ensemble:\n  members: [a, b]\n  weights: [1, 1]\n", "weights apply to combine: weighted only"),
    ("ensemble:\n  members: [a, b]\n  colour: red\n", "unknown field 'colour'"),
    ("model: x\n", "needs a top-level 'ensemble:' mapping"),
])
def test_a_bad_spec_is_a_config_error_naming_the_field(tmp_path, text, message):
    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        ensemble.read_spec(tmp_path / "e.yaml")


def test_members_that_take_different_inputs_are_refused(members):
    digits = infertune.load_model("digits-cnn")
    with pytest.raises(ConfigError, match="every member must take the same inputs"):
        ensemble.build(ensemble.EnsembleSpec(members=("mlp", "digits-cnn")), [members[0], digits])


def test_an_ensemble_file_is_a_model_for_every_command(members, tmp_path, mlp_npz):
    """The file goes wherever a model goes: resolve, optimize (trials reload it from its path), serve."""
    import shutil

    from infertune.passes.quantize.onnx_backend import Int8Dynamic
    from infertune.search.recipe import Recipe
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "serve"))
    from serve_helpers import running

    shutil.copy(members[2].onnx_path, tmp_path / "a.onnx")
    (tmp_path / "pair.yaml").write_text("ensemble:\n  members: [a.onnx, a.onnx]\n  combine: vote\n")
    model, _ = infertune.resolve(str(tmp_path / "pair.yaml"))
    assert model.name == "pair" and list(model.signature.output_names) == ["votes"]
    result = infertune.optimize(str(tmp_path / "pair.yaml"), data=str(mlp_npz), out=tmp_path / "run",
                                recipes=[Recipe(passes=(Int8Dynamic(),), backend="onnxruntime")],
                                timing={"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 50,
                                        "max_seconds": 5.0})
    assert result.baseline["metric"]["name"] == "top1" and result.candidates[0]["status"] in ("ok", "rejected")
    with running(str(tmp_path / "pair.yaml")) as server:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
        answer = server.infer("pair", body)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["name"] == "votes"
        assert sum(answer.json()["outputs"][0]["data"]) == 2
