import numpy as np
import pytest

from infertune.backends import CPU_BACKENDS, load_session, make_backend_settings, unavailable_reason
from infertune.errors import ConfigError
from infertune.resolver import load_model
from infertune.testing.models import mlp_data


@pytest.fixture(scope="module")
def inputs():
    return {"input": mlp_data(5, seed=3)["input"]}


@pytest.fixture(scope="module")
def reference(mlp_model, inputs):
    return load_session(mlp_model, "torch").run(inputs)["output"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_each_cpu_backend_matches_torch_eager_in_fp32(backend, mlp_model, inputs, reference):
    session = load_session(mlp_model, backend, threads=1)
    out = session.run(inputs)
    assert set(out) == {"output"} and out["output"].dtype == np.float32
    np.testing.assert_allclose(out["output"], reference, rtol=1e-4, atol=1e-5)
    assert session.precision == "fp32"
    assert session.artifact_bytes > 0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_backends_run_a_user_onnx_file_at_any_batch(backend, mlp_onnx, reference, inputs):
    session = load_session(load_model(str(mlp_onnx)), backend)
    np.testing.assert_allclose(session.run(inputs)["output"], reference, rtol=1e-4, atol=1e-5)
    assert session.run({"input": inputs["input"][:1]})["output"].shape == (1, 10)


def test_openvino_reports_the_precision_it_compiled(mlp_model, inputs, reference):
    fp32 = load_session(mlp_model, "openvino", precision="fp32")
    bf16 = load_session(mlp_model, "openvino", precision="bf16")
    assert fp32.precision == "fp32"
    assert bf16.precision in ("bf16", "fp32")  # fp32 where the CPU has no bf16: read back, never assumed
    np.testing.assert_allclose(bf16.run(inputs)["output"], reference, rtol=0.05, atol=0.05)


def test_torch_bf16_halves_the_weights_and_stays_close(mlp_model, inputs, reference):
    fp32 = load_session(mlp_model, "torch")
    bf16 = load_session(mlp_model, "torch", precision="bf16")
    assert bf16.precision == "bf16"
    assert bf16.artifact_bytes < 0.6 * fp32.artifact_bytes
    out = bf16.run(inputs)["output"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=0.05, atol=0.05)


def test_loading_a_session_leaves_the_users_module_unchanged(mlp_model):
    before = {k: v.clone() for k, v in mlp_model.module.state_dict().items()}
    load_session(mlp_model, "torch", precision="bf16")
    after = mlp_model.module.state_dict()
    assert all(after[k].dtype == v.dtype and bool((after[k] == v).all()) for k, v in before.items())


def test_torch_compile_without_freezing_matches_eager(mlp_model, inputs, reference):
    session = load_session(mlp_model, "torch-compile", freezing=False)
    np.testing.assert_allclose(session.run(inputs)["output"], reference, rtol=1e-4, atol=1e-5)


def test_onnxruntime_refuses_bf16_and_says_where_it_runs(mlp_model):
    with pytest.raises(ConfigError, match="use torch, torch-compile or openvino"):
        load_session(mlp_model, "onnxruntime", precision="bf16")


def test_onnxruntime_graph_optimization_levels_agree(mlp_model, inputs, reference):
    for level in ("disable", "basic", "extended", "all"):
        out = load_session(mlp_model, "onnxruntime", graph_optimization=level).run(inputs)["output"]
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-5)


def test_torch_backend_cannot_run_an_onnx_file(mlp_onnx):
    with pytest.raises(ConfigError, match="cannot run a onnx model.*onnxruntime, openvino"):
        load_session(load_model(str(mlp_onnx)), "torch")


def test_unknown_backend_and_option_name_the_value():
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        make_backend_settings("tensorrt")
    with pytest.raises(ConfigError, match="onnxruntime has no option 'freezing'"):
        make_backend_settings("onnxruntime", freezing=True)
    with pytest.raises(ConfigError, match="threads=0 is out of range: it takes a number of at least 1"):
        make_backend_settings("torch", threads="0")
    with pytest.raises(ConfigError, match="graph_optimization='max'"):
        make_backend_settings("onnxruntime", graph_optimization="max")


def test_cli_strings_are_coerced_to_setting_types():
    settings = make_backend_settings("torch-compile", freezing="false", threads="2")
    assert settings.freezing is False and settings.threads == 2


def test_cuda_backends_absent_is_a_reason_not_an_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert "CUDA" in unavailable_reason("torch-cuda")
    assert unavailable_reason("onnxruntime-cuda")


def test_openvino_static_shapes_compile_per_shape_and_match_the_dynamic_graph():
    """A BERT nobody tuned for (its export fixes the length at 12), fed batches of several sizes: shapes=static
    gives each input shape a model of its own and returns what the dynamic graph returns; it keeps the
    STATIC_SHAPES_KEPT last used, and after STATIC_COMPILES_MAX compiles runs a shape it does not keep dynamic."""
    from infertune.backends import settings
    from infertune.testing.models import bert_data

    data = bert_data(n=40, seed=3)
    bert = load_model("infertune.testing.models:tiny_bert", data=data)
    dynamic = load_session(bert, "openvino")
    static = load_session(bert, "openvino", shapes="static")
    batches = [{name: array[start:start + size] for name, array in data.items()}
               for start, size in ((0, 4), (4, 1), (5, 4), (9, 8), (17, 1))]
    for batch in batches:
        want, got = dynamic.run(batch), static.run(batch)
        assert want.keys() == got.keys()
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
    assert list(static._static) == [((4, 12), (4, 12)), ((8, 12), (8, 12)), ((1, 12), (1, 12))]  # last used last
    assert static.compiles == 3 and dynamic._static == {}

    full = load_session(bert, "openvino", shapes="static")
    for i in range(settings.STATIC_SHAPES_KEPT + 1):
        full.run({name: np.repeat(array[:1], 1 + i % 6, axis=0) for name, array in data.items()})
    assert len(full._static) == 6 and full.compiles == 6
    full._static.update({("kept", i): None for i in range(settings.STATIC_SHAPES_KEPT - 6)})
    oldest = next(iter(full._static))  # batch 4: its last call was the longest ago
    full.run({name: array[:7] for name, array in data.items()})
    assert oldest == ((4, 12), (4, 12)) and oldest not in full._static
    assert len(full._static) == settings.STATIC_SHAPES_KEPT and ((7, 12), (7, 12)) in full._static
    full.compiles = settings.STATIC_COMPILES_MAX
    for name, value in full.run({n: a[:9] for n, a in data.items()}).items():  # runs dynamic, no compile
        np.testing.assert_allclose(value, dynamic.run({n: a[:9] for n, a in data.items()})[name], rtol=1e-4,
                                   atol=1e-4)
    assert ((9, 12), (9, 12)) not in full._static and full.compiles == settings.STATIC_COMPILES_MAX


def test_openvino_shapes_setting_is_checked_and_searched():
    from infertune.backends.settings import OpenVINOSettings
    from infertune.params import search_space

    with pytest.raises(ConfigError, match="shapes='fixed'.*dynamic.*static"):
        make_backend_settings("openvino", shapes="fixed")
    assert search_space(OpenVINOSettings)["shapes"] == ("dynamic", "static")
