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


def test_model_and_data_import_nothing_above_them():
    """The resolver is the one entrance: model/ and data/ sit below every other layer, and no arrow points up."""
    import re
    from pathlib import Path

    import infertune

    root = Path(infertune.__file__).parent
    upward = re.compile(r"^\s*(from|import)\s+infertune\.(search|bench|serve|passes|cluster|backends|report|resolver"
                        r"|engine|predict|api|cli|ensemble)\b", re.M)
    found = [f"{path.relative_to(root)}: {m.group(0).strip()}" for folder in ("model", "data")
             for path in sorted((root / folder).rglob("*.py")) for m in upward.finditer(path.read_text())]
    assert not found, found
