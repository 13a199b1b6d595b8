import subprocess
import sys


def test_import_infertune_is_cheap_and_imports_no_runtime():
    code = ("import sys, infertune, infertune.backends, infertune.model, infertune.bench.stats; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'transformers') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_public_verbs_resolve_lazily():
    import infertune

    assert callable(infertune.load) and callable(infertune.benchmark) and callable(infertune.export_onnx)
