import time

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


def test_openvino_static_shapes_compile_a_shape_that_earns_it_and_match_the_dynamic_graph():
    """A BERT nobody tuned for (its data pads every text to 12 tokens): with shapes=static, a shape met once (a single
    pass over data) runs on the dynamic graph and never compiles; a shape that repeats gets a model of its own once
    its calls have run as long as a compile took, and returns what the dynamic graph returns."""
    from infertune.testing.models import bert_data

    data = bert_data(n=40, seed=3)
    bert = load_model("infertune.testing.models:tiny_bert", data=data)
    dynamic = load_session(bert, "openvino")
    static = load_session(bert, "openvino", shapes="static")
    assert static.compile_s > 0
    single_pass = [{name: array[start:start + size] for name, array in data.items()}
                   for start, size in ((0, 4), (4, 1), (5, 2), (7, 8), (15, 3))]
    for batch in single_pass:
        want, got = dynamic.run(batch), static.run(batch)
        assert want.keys() == got.keys()
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
    assert static.compiles == 0 and static._static == {}

    repeated = {name: array[:6] for name, array in data.items()}
    calls, spent = 0, 0.0
    while static.compiles == 0 and calls < 100_000:
        estimate = static.compile_s
        started = time.perf_counter()
        static.run(repeated)
        spent += time.perf_counter() - started
        calls += 1
    assert static.compiles == 1 and list(static._static) == [((6, 12), (6, 12))]
    assert spent >= estimate  # it paid for a compile only after running as long as one takes
    for name, value in static.run(repeated).items():
        np.testing.assert_allclose(value, dynamic.run(repeated)[name], rtol=1e-4, atol=1e-4)
    assert dynamic.compiles == 0 and dynamic._static == {}


def test_openvino_static_shapes_keep_the_last_used_and_stop_compiling_at_the_cap():
    """A benchmark's warm-up says which batches repeat (`expect`): their shapes compile at once, the most frequent
    first; STATIC_SHAPES_KEPT are kept (the least recently used dropped), and after STATIC_COMPILES_MAX compiles a
    shape not kept runs dynamic."""
    from infertune.backends import settings
    from infertune.bench.timing import warm_up
    from infertune.testing.models import bert_data

    data = bert_data(n=40, seed=3)
    bert = load_model("infertune.testing.models:tiny_bert", data=data)
    dynamic = load_session(bert, "openvino")
    full = load_session(bert, "openvino", shapes="static")
    rows = [1, 2, 2, 3, 3, 3]
    warm_up(full, [{name: array[:n] for name, array in data.items()} for n in rows], extra=0)
    assert list(full._static) == [((1, 12), (1, 12)), ((2, 12), (2, 12)), ((3, 12), (3, 12))]  # last used last
    assert full.compiles == 3
    warm_up(dynamic, [{name: array[:n] for name, array in data.items()} for n in rows], extra=0)
    assert dynamic.compiles == 0
    full._static.update({("kept", i): None for i in range(settings.STATIC_SHAPES_KEPT - 3)})
    full.run({name: array[:1] for name, array in data.items()})  # used: no longer the oldest
    full.expect([{name: array[:7] for name, array in data.items()}])
    assert ((2, 12), (2, 12)) not in full._static and ((1, 12), (1, 12)) in full._static
    assert len(full._static) == settings.STATIC_SHAPES_KEPT and next(reversed(full._static)) == ((7, 12), (7, 12))
    full.compiles = settings.STATIC_COMPILES_MAX
    nine = {n: a[:9] for n, a in data.items()}
    full.expect([nine])
    full._earned[((9, 12), (9, 12))] = 1e9  # earned long ago, but the cap holds
    for name, value in full.run(nine).items():  # runs dynamic, no compile
        np.testing.assert_allclose(value, dynamic.run(nine)[name], rtol=1e-4, atol=1e-4)
    assert ((9, 12), (9, 12)) not in full._static and full.compiles == settings.STATIC_COMPILES_MAX


def test_openvino_shapes_setting_is_checked_and_searched():
    from infertune.backends.settings import OpenVINOSettings
    from infertune.params import search_space

    with pytest.raises(ConfigError, match="shapes='fixed'.*dynamic.*static"):
        make_backend_settings("openvino", shapes="fixed")
    assert search_space(OpenVINOSettings)["shapes"] == ("dynamic", "static")


@pytest.mark.parametrize("shapes", ["dynamic", "static"])
def test_openvino_split_runs_parts_of_a_batch_at_once_and_returns_the_whole(shapes):
    """split=2: a batch runs as two runs of consecutive rows on two streams at once, and the outputs come back
    whole, in order, equal to the unsplit run; a batch of one row runs whole. With static shapes, the warm-up
    compiles the parts' shapes."""
    from infertune.bench.timing import warm_up
    from infertune.testing.models import bert_data

    data = bert_data(n=40, seed=3)
    bert = load_model("infertune.testing.models:tiny_bert", data=data)
    whole = load_session(bert, "openvino")
    split = load_session(bert, "openvino", split=2, shapes=shapes)
    assert split._compiled.get_property("NUM_STREAMS") == 2
    batches = [{name: array[start:start + rows] for name, array in data.items()}
               for start, rows in ((0, 5), (5, 1), (6, 8), (14, 2))]
    assert [len(split._parts(b)[0]) for b in batches] == [2, 1, 2, 2]
    assert [len(p["input_ids"]) for p in split._parts(batches[0])[0]] == [2, 3]
    warm_up(split, batches, extra=0)
    if shapes == "static":
        assert set(split._static) == {((n, 12), (n, 12)) for n in (2, 3, 1, 4)}
    for batch in batches:
        want, got = whole.run(batch), split.run(batch)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_openvino_split_needs_as_many_streams():
    from infertune.backends.settings import OpenVINOSettings, usable_core_counts
    from infertune.params import search_space
    from infertune.testing.models import bert_data

    bert = load_model("infertune.testing.models:tiny_bert", data=bert_data(n=8))
    with pytest.raises(ConfigError, match="split=2 .*but streams=1: leave streams unset or raise it"):
        load_session(bert, "openvino", split=2, streams=1)
    with pytest.raises(ConfigError, match="split=0"):
        make_backend_settings("openvino", split="0")
    assert search_space(OpenVINOSettings)["split"] == usable_core_counts()
