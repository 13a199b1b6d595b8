import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_models_lists_the_zoo_and_the_backends(cli):
    result = cli("models")
    assert result.returncode == 0, result.stderr
    for name in ("minilm", "digits-cnn", "digits", "docstrings", "onnxruntime", "openvino", "torch-compile",
                 "int8-dynamic", "prune-structured"):
        assert name in result.stdout


def test_unknown_zoo_name_exits_2_naming_it(cli):
    result = cli("bench", "resnet9000")
    assert result.returncode == 2
    assert "unknown model 'resnet9000'" in one_line_error(result)


def test_missing_model_file_exits_2_naming_it(cli, tmp_path):
    result = cli("predict", str(tmp_path / "nope.onnx"), "--data", "digits", "--out", str(tmp_path / "o.npz"))
    assert result.returncode == 2
    assert "nope.onnx' not found" in one_line_error(result)


def test_npz_missing_an_input_exits_2_naming_it(cli, tmp_path, mlp_onnx):
    np.savez(tmp_path / "wrong.npz", features=np.zeros((4, 16), np.float32))
    result = cli("predict", str(mlp_onnx), "--data", str(tmp_path / "wrong.npz"), "--out", str(tmp_path / "o.npz"))
    assert result.returncode == 2
    assert "'input'" in one_line_error(result)


def test_bad_batch_sizes_exit_2(cli):
    result = cli("bench", "digits-cnn", "--batch-sizes", "1,x")
    assert result.returncode == 2 and "--batch-sizes" in one_line_error(result)


def test_bench_writes_json_and_prints_the_table(cli, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("bench", "digits-cnn", "--backend", "torch,onnxruntime", "--batch-sizes", "1,8",
                     "--min-time", "0", "--min-runs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "b1 p50 ms" in result.stdout and "onnxruntime" in result.stdout
    # stderr is a pipe here, no terminal: progress comes as plain lines, not a bar that shows nothing
    assert re.search(r"^\[ +\d+ s\] onnxruntime .*: timing b8$", result.stderr, re.M), result.stderr
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert all(r["error"] is None and r["fidelity"]["top1_agreement"] == 1.0 for r in data["results"])
    assert data["hardware"]["cpu_model"]


def test_bench_measures_a_run_directory_that_holds_an_openvino_ir(cli, tmp_path, mlp_onnx, mlp_npz):
    """A run directory whose artifact is an IR (an NNCF choice): bench runs it on its own backend, with its outputs
    checked against the IR run at fp32, not against a runtime that cannot load it."""
    import openvino as ov

    from infertune.io import write_json_atomic
    from infertune.model.run_dir import MANIFEST, Manifest
    from infertune.model.spec import ModelSpec

    folder = tmp_path / "run" / "model"
    folder.mkdir(parents=True)
    ov.save_model(ov.convert_model(str(mlp_onnx)), str(folder / "mlp.xml"))
    recipe = {"format": "infertune.recipe", "version": 1, "passes": [], "backend": {"name": "openvino"}}
    write_json_atomic(folder / MANIFEST, Manifest(spec=ModelSpec(model=str(mlp_onnx)), recipe=recipe,
                                                  backend="openvino", file="mlp.xml").to_dict())
    out = tmp_path / "bench.json"
    result = cli("bench", str(tmp_path / "run"), "--data", str(mlp_npz), "--batch-sizes", "1", "--min-time", "0",
                 "--min-runs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    [row] = json.loads(out.read_text())["results"]
    assert row["backend"] == "openvino" and row["error"] is None and row["fidelity"]["top1_agreement"] == 1.0


def test_bench_where_every_backend_fails_exits_1(cli, tmp_path):
    result = cli("bench", "digits-cnn", "--backend", "onnxruntime", "--precision", "bf16",
                     "--min-time", "0", "--min-runs", "2")
    assert result.returncode == 1 and "every backend failed" in result.stderr


def test_predict_writes_outputs_for_every_sample(cli, tmp_path, mlp_onnx, mlp_npz):
    out = tmp_path / "pred.npz"
    result = cli("predict", str(mlp_onnx), "--data", str(mlp_npz), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with np.load(out) as saved:
        assert saved["output"].shape == (64, 10)


def test_predict_on_zoo_data_uses_the_heldout_split(cli, tmp_path):
    out = tmp_path / "digits.npz"
    result = cli("predict", "digits-cnn", "--data", "digits", "--out", str(out), "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    from infertune.data import load_dataset, top1_accuracy

    heldout = load_dataset("digits").split("heldout")
    with np.load(out) as saved:
        assert top1_accuracy(saved["logits"], heldout.labels) > 0.95


def test_weights_for_a_zoo_model_exit_2(cli, tmp_path):
    result = cli("predict", "digits-cnn", "--data", "digits", "--out", str(tmp_path / "o.npz"),
                 "--weights", str(tmp_path / "w.safetensors"))
    assert result.returncode == 2 and "--weights applies to a factory model" in one_line_error(result)


def test_text_model_on_array_data_exit_2_naming_the_input(cli, tmp_path):
    result = cli("predict", "minilm", "--data", "digits", "--out", str(tmp_path / "o.npz"))
    assert result.returncode == 2 and "'input_ids'" in one_line_error(result)


def test_backend_that_cannot_run_the_model_exit_2_before_running(cli, mlp_onnx):
    result = cli("bench", str(mlp_onnx), "--backend", "torch", "--min-time", "0", "--min-runs", "2")
    assert result.returncode == 2 and "cannot run a onnx model" in one_line_error(result)


def test_json_to_a_folder_exit_2(cli, tmp_path):
    result = cli("bench", "digits-cnn", "--backend", "onnxruntime", "--min-time", "0", "--min-runs", "2",
                 "--json", str(tmp_path))
    assert result.returncode == 2 and "is a folder" in result.stderr.strip().splitlines()[-1]


def test_optimize_cli_bad_budget_exit_2(cli, mlp_onnx, mlp_npz, tmp_path):
    result = cli("optimize", str(mlp_onnx), "--data", str(mlp_npz), "--max-drop", "1.5", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "--max-drop must be between 0 and 1" in one_line_error(result)


def test_optimize_cli_npz_missing_an_input_exit_2(cli, mlp_onnx, tmp_path):
    np.savez(tmp_path / "bad.npz", other=np.zeros((8, 16), np.float32))
    result = cli("optimize", str(mlp_onnx), "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "'input'" in one_line_error(result)


def test_report_without_a_run_exit_2(cli, tmp_path):
    result = cli("report", str(tmp_path))
    assert result.returncode == 2 and "results.json' not found" in one_line_error(result)


@pytest.mark.parametrize("arrays, message", [
    ({"input": np.zeros((8, 16), np.int64)}, "dtype"),
    ({"input": np.zeros((8, 16), np.float32), "labels": np.zeros(5, np.int64)}, "5"),
    ({"input": np.full((8, 16), np.nan, np.float32)}, "finite"),
])
def test_optimize_cli_bad_data_exit_2_naming_the_problem(cli, mlp_onnx, tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    result = cli("optimize", str(mlp_onnx), "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and message in one_line_error(result), result.stderr


def test_optimize_cli_unwritable_out_exit_2(cli, mlp_onnx, mlp_npz, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = cli("optimize", str(mlp_onnx), "--data", str(mlp_npz), "--out", str(tmp_path / "a-file" / "run"))
    assert result.returncode == 2 and "is not writable" in one_line_error(result)


@pytest.mark.parametrize("args, message", [
    (["bench", "digits-cnn", "--nosuch"], "No such option: --nosuch (see 'infertune bench --help')"),
    (["optimize", "a", "b"], "unexpected extra argument"),
    (["optimize", "digits-cnn", "--max-drop", "abc"], "Invalid value for '--max-drop'"),
    (["optimize"], "Missing argument 'model'"),
    (["serve", "digits-cnn", "--max-headers", "1"], "--max-headers must be an integer of at least 4, got 1"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
], ids=["unknown option", "extra argument", "bad value", "missing argument", "bad limit", "unknown command"])
def test_the_installed_executable_exits_2_on_usage_errors_with_one_line(args, message):
    """The `infertune` script pip installed, not the module: usage errors come from whichever click Typer uses."""
    import shutil
    import subprocess

    executable = Path(sys.executable).with_name("infertune")
    assert executable.is_file() or shutil.which("infertune"), "infertune is not installed in this environment"
    done = subprocess.run([str(executable if executable.is_file() else "infertune"), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize("passes, backend, message", [
    ("\n- pass: prune-structured\n  amount: 1.5", "name: torch",
     "pass 'prune-structured' option amount=1.5 is out of range: it takes a number in (0.0, 1.0)"),
    ("\n- pass: prune-to-budget\n  max_drop: -0.1", "name: onnxruntime",
     "pass 'prune-to-budget' option max_drop=-0.1 is out of range: it takes a number in [0.0, 1.0]"),
    (" []", "name: openvino\n  threads: 0",
     "openvino option threads=0 is out of range: it takes a number of at least 1"),
    (" []", "name: torch\n  precision: int4", "torch option precision='int4' is not one of fp32, bf16, fp16"),
])
def test_a_recipe_value_out_of_its_declared_range_exits_2_naming_the_field_and_range(cli, tmp_path, passes, backend,
                                                                                    message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"format: infertune.recipe\nversion: 1\npasses:{passes}\nbackend:\n  {backend}\n")
    result = cli("optimize", "digits-cnn", "--recipe", str(recipe), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result)


def test_ray_without_an_address_means_a_local_cluster():
    from infertune.cli import _ray_address_optional

    assert _ray_address_optional(["predict", "m", "--ray"]) == ["predict", "m", "--ray", "local"]
    assert _ray_address_optional(["serve", "m", "--ray", "--replicas", "2"]) == \
        ["serve", "m", "--ray", "local", "--replicas", "2"]
    assert _ray_address_optional(["serve", "m", "--ray", "10.0.0.5:6379"]) == ["serve", "m", "--ray", "10.0.0.5:6379"]
