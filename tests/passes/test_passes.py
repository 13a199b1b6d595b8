"""Every registered pass, applied to a tiny model: it runs, stays close to the source, and leaves the source
unchanged. A pass registered without an entry in PASS_TESTS fails `test_every_registered_pass_is_tested`."""

from pathlib import Path

import numpy as np
import pytest

from infertune.backends import load_session
from infertune.errors import UnsupportedModelError
from infertune.passes.export import ExportOnnx
from infertune.passes.fuse import FoldBatchNorm, OrtFusion
from infertune.passes.mixed_precision import MixedPrecisionInt8
from infertune.passes.quantize.onnx_backend import Fp16Onnx, Int4WeightOnly, Int8Dynamic, Int8Static
from infertune.passes.quantize.openvino_backend import Int8Nncf
from infertune.passes.quantize.qat import Qat
from infertune.passes.quantize.torch_backend import Int8Torchao
from infertune.passes.cluster import WeightSharing
from infertune.passes.distill import Distill
from infertune.passes.lowrank import LowRank
from infertune.passes.prune import MagnitudePrune, StructuredPrune
from infertune.passes.prune_budget import PruneToBudget
from infertune.passes.registry import PassContext, apply, int8_saturates, load_all
from infertune.passes.sparse import SparseLinear
from infertune.passes.unpad import Unpad

# pass -> (model fixture, data fixture or None, config, backend for the result, smallest mean cosine)
PASS_TESTS = {
    "export-onnx": ("mlp_model", None, ExportOnnx(), "onnxruntime", 0.9999),
    "fold-bn": ("cnn_model", None, FoldBatchNorm(), "torch", 0.9999),
    "ort-fusion": ("bert_onnx", "bert_dataset", OrtFusion(), "onnxruntime", 0.9999),
    "unpad": ("bert_onnx", "bert_dataset", Unpad(), "onnxruntime", 0.9999),
    "int8-dynamic": ("mlp_onnx_model", None, Int8Dynamic(), "onnxruntime", 0.99),
    "int8-static": ("mlp_onnx_model", "mlp_dataset", Int8Static(), "onnxruntime", 0.98),
    "int4-weight-only": ("bert_onnx", None, Int4WeightOnly(block_size=16), "onnxruntime", 0.95),
    "fp16": ("mlp_onnx_model", None, Fp16Onnx(), "onnxruntime", 0.999),
    "int8-nncf": ("mlp_onnx_model", "mlp_dataset", Int8Nncf(subset_size=32), "openvino", 0.98),
    "int8-torchao": ("mlp_model", None, Int8Torchao(), "torch", 0.98),
    "qat": ("mlp_model", "mlp_dataset", Qat(steps=4, lr=1e-5), "onnxruntime", 0.98),
    "int8-mixed": ("bert_onnx", "bert_dataset", MixedPrecisionInt8(max_drop=0.0, validation_samples=16),
                   "onnxruntime", 0.99),
    "prune-magnitude": ("mlp_model", None, MagnitudePrune(sparsity=0.2), "torch", 0.9),
    # trained passes move the outputs on purpose: their quality is tested on real digits below
    "prune-structured": ("mlp_model", "mlp_dataset", StructuredPrune(amount=0.25, fine_tune_epochs=1), "torch", None),
    "distill": ("mlp_model", "mlp_dataset", Distill(epochs=1), "torch", None),
    "prune-to-budget": ("mlp_model", "mlp_dataset", PruneToBudget(step=0.25, fine_tune_epochs=1), "torch", None),
    "lowrank": ("mlp_model", None, LowRank(), "torch", 0.9999),
    "weight-sharing": ("bert_model", None, WeightSharing(bits=8), "torch", 0.99),
    "sparse-linear": ("mlp_model", None, SparseLinear(), "torch", 0.9999),
}


@pytest.fixture(scope="session")
def mlp_onnx_model(mlp_onnx):
    from infertune.resolver import load_model

    return load_model(str(mlp_onnx))


def _inputs(model):
    if "input_ids" in model.signature.input_names:
        from infertune.testing.models import bert_data

        return bert_data(8, seed=5)
    shape = model.signature.inputs[0].shape
    rng = np.random.default_rng(7)
    return {model.signature.input_names[0]: rng.standard_normal((8, *shape[1:])).astype(np.float32)}


def _cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_every_registered_pass_is_tested():
    shipped = {name for name, entry in load_all().items() if not entry.function.__module__.startswith("infertune.testing")}
    assert shipped == set(PASS_TESTS)


@pytest.mark.parametrize("name", sorted(PASS_TESTS))
def test_pass_runs_on_a_tiny_model_and_stays_close(name, request, tmp_path):
    model_fixture, data_fixture, config, backend, min_cosine = PASS_TESTS[name]
    model = request.getfixturevalue(model_fixture)
    dataset = request.getfixturevalue(data_fixture) if data_fixture else None
    before = {k: v.clone() for k, v in model.module.state_dict().items()} if model.module is not None else None
    source_file = model.onnx_path.read_bytes() if model.onnx_path is not None else None
    reference_backend = "torch" if model.format == "torch" else "onnxruntime"
    inputs = _inputs(model)
    reference = next(iter(load_session(model, reference_backend).run(inputs).values()))

    output = apply(model, config, PassContext(workdir=tmp_path, dataset=dataset))

    result = next(iter(load_session(output.model, backend).run(inputs).values()))
    assert result.shape == reference.shape
    if min_cosine is not None:
        assert _cosine(reference, result) >= min_cosine
    assert output.notes, "a pass says what it did"
    if before is not None:
        assert all(bool((model.module.state_dict()[k] == v).all()) for k, v in before.items())
    if source_file is not None:
        assert model.onnx_path.read_bytes() == source_file


def test_static_int8_without_calibration_data_says_what_to_do(mlp_onnx_model, tmp_path):
    with pytest.raises(UnsupportedModelError, match="int8-static needs calibration data: pass --data, or use "
                                                    "int8-dynamic"):
        apply(mlp_onnx_model, Int8Static(), PassContext(workdir=tmp_path))


def test_onnx_pass_on_a_torch_model_says_to_export_first(mlp_model, tmp_path):
    with pytest.raises(UnsupportedModelError, match="takes a onnx model.*export it first"):
        apply(mlp_model, Int8Dynamic(), PassContext(workdir=tmp_path))


def test_ort_fusion_fuses_attention_and_leaves_skip_layer_norm_to_the_runtime(bert_onnx, bert_dataset, tmp_path):
    """The pass leaves Add + LayerNormalization apart; ONNX Runtime fuses them into SkipLayerNormalization when it
    loads the graph only with the backend setting `skip_layer_norm=True` (its CPU kernel is the slow one here).
    Both ways give the same outputs."""
    import onnx
    import onnxruntime as ort

    from infertune.backends import load_session, make_backend_settings
    from infertune.backends.onnxruntime import disabled_optimizers, session_options

    output = apply(bert_onnx, OrtFusion(), PassContext(workdir=tmp_path, dataset=bert_dataset))
    assert "Attention x2" in output.notes[0] and "SkipLayerNormalization" not in output.notes[0]
    fused = output.model
    ops = {node.op_type for node in onnx.load(str(fused.onnx_path), load_external_data=False).graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops
    assert not list(tmp_path.rglob("canonical.onnx*"))  # the rewritten copy the optimizer read is not kept
    for skip in (False, True):
        settings = make_backend_settings("onnxruntime", skip_layer_norm=skip)
        options = session_options(settings)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # portable to save
        options.optimized_model_filepath = str(tmp_path / f"loaded-{skip}.onnx")
        ort.InferenceSession(str(fused.onnx_path), sess_options=options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled_optimizers(settings))
        loaded = {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}
        assert ("SkipLayerNormalization" in loaded) is skip
    batch = _inputs(fused)
    want = load_session(fused, "onnxruntime", skip_layer_norm=True).run(batch)
    for name, got in load_session(fused, "onnxruntime").run(batch).items():
        np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5)


def test_mixed_precision_ranks_layers_and_keeps_the_worst_in_float(bert_onnx, bert_dataset, tmp_path):
    output = apply(bert_onnx, MixedPrecisionInt8(max_drop=0.0, validation_samples=16),
                   PassContext(workdir=tmp_path, dataset=bert_dataset))
    table = output.details["sensitivity"]
    assert len(table) >= 4 and [r["drop_alone"] for r in table] == sorted((r["drop_alone"] for r in table),
                                                                             reverse=True)
    assert output.details["kept_float"] and output.details["kept_float"][0] == table[0]["layer"]
    # each probe graph (one per layer) is deleted once measured: only the chosen graph stays on disk
    chosen = Path(output.model.onnx_path).parent
    assert chosen.is_dir() and not list(tmp_path.rglob("only-*"))
    assert {p.parent for p in tmp_path.rglob("*.onnx")} == {chosen}


def test_passes_never_see_the_heldout_split(mlp_dataset, tmp_path):
    with pytest.raises(ValueError, match="never see the held-out split"):
        PassContext(workdir=tmp_path, dataset=mlp_dataset).split("heldout")


def test_torchao_int8_is_reported_as_int8(mlp_model, tmp_path):
    output = apply(mlp_model, Int8Torchao(), PassContext(workdir=tmp_path))
    assert load_session(output.model, "torch").precision == "int8"
    assert load_session(mlp_model, "torch").precision == "fp32"


@pytest.mark.parametrize("calibration", ["minmax", "entropy"])
def test_static_int8_on_natural_length_text_can_leave_matmul_outputs_float(keyword_folder, tmp_path, calibration):
    """Calibration batches of texts differ in length: the histogram calibrators (entropy, percentile) used to fail
    stacking them. With `float_outputs` only MatMul inputs and weights are int8, and no product is requantized."""
    import onnx

    import infertune
    from infertune.passes.export import ExportOnnx
    from infertune.testing.folders import keyword_texts, write_jsonl

    texts, labels = keyword_texts(64, seed=4)
    texts = [t + " and more" * (i % 5) for i, t in enumerate(texts)]
    model, dataset = infertune.resolve(str(keyword_folder), data=str(write_jsonl(tmp_path / "t.jsonl", texts, labels)))
    ctx = PassContext(workdir=tmp_path, dataset=dataset)
    exported = apply(model, ExportOnnx(), ctx).model
    output = apply(exported, Int8Static(calibration=calibration, float_outputs=True, samples=32), ctx)

    graph = onnx.load(str(output.model.onnx_path)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert matmuls and all(producers.get(i) == "DequantizeLinear" for node in matmuls for i in node.input)
    requantized = [node for node in graph.node
                   if node.op_type == "QuantizeLinear" and producers.get(node.input[0]) == "MatMul"]
    assert not requantized
    assert "MatMul/Gemm outputs left float" in output.notes[0]
    split = dataset.split("calibration")
    inputs = exported.inputs_for(split, np.arange(8))
    reference = next(iter(load_session(exported, "onnxruntime").run(inputs).values()))
    result = next(iter(load_session(output.model, "onnxruntime").run(inputs).values()))
    assert _cosine(reference, result) >= 0.95


def test_int8_saturates_on_x86_without_vnni_or_amx_only():
    from infertune.passes.registry import int8_saturates

    assert int8_saturates(("avx2", "fma"))  # Zen 2 and 3, Haswell to Coffee Lake
    assert int8_saturates(("avx2", "avx512f", "avx512bw"))  # Skylake-SP
    assert not int8_saturates(("avx2", "avx_vnni"))  # Alder Lake: vpdpbusd sums in int32
    assert not int8_saturates(("avx2", "avx512f", "avx512bw", "avx512_vnni"))
    assert not int8_saturates(("avx512bw", "amx_int8", "amx_tile"))
    assert not int8_saturates(("neon", "asimd")) and not int8_saturates(())


def _int8_weights(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]


@pytest.mark.parametrize("saturates", [True, False])
@pytest.mark.parametrize("name", ["int8-dynamic", "int8-static", "qat"])
def test_int8_weights_are_7_bit_by_default_where_8_bit_products_saturate(name, saturates, request, tmp_path,
                                                                         monkeypatch):
    """On x86 without VNNI (AVX2: Zen 3, Skylake) the u8 x s8 kernels sum pairs of products in int16: 8-bit
    weights overflow it (a tiny MLP's int8 graph fell to cosine 0.982 of fp32, a QAT graph's worst row to 0.62 of
    its fake-quant model), 7-bit ones never do. Which CPU this is is the one thing faked here."""
    from infertune.passes.quantize import onnx_backend

    monkeypatch.setattr(onnx_backend, "int8_saturates", lambda isa=None: saturates)
    model_fixture, data_fixture, config, backend, min_cosine = PASS_TESTS[name]
    model = request.getfixturevalue(model_fixture)
    output = apply(model, config, PassContext(workdir=tmp_path, dataset=request.getfixturevalue(data_fixture)
                                              if data_fixture else None))
    said = "7-bit weights: this CPU has no VNNI, and 8-bit products saturate its int8 kernels"
    assert (said in " ".join(output.notes)) is saturates, output.notes
    weights = _int8_weights(output.model.onnx_path)
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest <= 64 if saturates else largest > 100, largest
    if saturates or not int8_saturates():  # 8-bit weights on a CPU that saturates them: the fault this avoids
        result = next(iter(load_session(output.model, backend).run(_inputs(model)).values()))
        reference_backend = "torch" if model.format == "torch" else "onnxruntime"
        reference = next(iter(load_session(model, reference_backend).run(_inputs(model)).values()))
        assert _cosine(reference, result) >= min_cosine


@pytest.mark.parametrize("saturates", [True, False])
def test_nncf_takes_its_overflow_fix_where_8_bit_products_saturate(saturates, mlp_onnx_model, mlp_dataset, tmp_path,
                                                                   monkeypatch):
    from infertune.passes.quantize import openvino_backend

    monkeypatch.setattr(openvino_backend, "int8_saturates", lambda isa=None: saturates)
    output = apply(mlp_onnx_model, Int8Nncf(subset_size=32), PassContext(workdir=tmp_path, dataset=mlp_dataset))
    assert ("7-bit weights (NNCF's overflow fix)" in output.notes[0]) is saturates, output.notes
    explicit = apply(mlp_onnx_model, Int8Nncf(subset_size=32, overflow_fix="disable"),
                     PassContext(workdir=tmp_path / "explicit", dataset=mlp_dataset))
    assert "overflow fix" not in explicit.notes[0]  # asked for: done as asked, nothing to explain
