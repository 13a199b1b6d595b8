"""TensorFlow models to ONNX through tf2onnx (the optional extra `infertune[tensorflow]`), in a child process:
TensorFlow stays out of infertune's own process, and a Keras file is read there with Keras' TensorFlow backend.

    python -m infertune.model.tf_convert keras|saved_model SOURCE OUT.onnx
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infertune.errors import ExportError, UnsupportedModelError

OPSET = 17
EXTRA = "pip install 'infertune[tensorflow]'"


def missing_packages() -> list[str]:
    return [name for name in ("tensorflow", "tf2onnx") if importlib.util.find_spec(name) is None]


def converted(source: Path, kind: str, *, why: str, timeout: float = 900.0) -> Path:
    """`source` (a .keras file or a SavedModel folder) as an ONNX file in infertune's cache, converted once.

    `why` says, in the error, why tf2onnx is needed (a SavedModel, or a Keras file Keras' torch backend cannot
    load). Raises UnsupportedModelError naming the extra when TensorFlow or tf2onnx is missing.
    """
    from infertune.io import cache_root

    missing = missing_packages()
    if missing:
        raise UnsupportedModelError(f"{why}, which needs {' and '.join(missing)} (tf2onnx converts it to ONNX): "
                                    f"{EXTRA}")
    target = cache_root() / "tf2onnx" / _fingerprint(source, kind) / "model.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run([sys.executable, "-m", "infertune.model.tf_convert", kind, str(source),
                                 str(staging / "model.onnx")], capture_output=True, text=True, env=env,
                                timeout=timeout)
        if result.returncode != 0 or not (staging / "model.onnx").is_file():
            tail = " | ".join(line for line in result.stderr.strip().splitlines()[-3:] if line.strip())
            raise ExportError(f"tf2onnx could not convert '{source}' ({kind}): {tail or 'no message'}")
        os.replace(staging / "model.onnx", target)
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"tf2onnx did not convert '{source}' within {timeout:.0f} s") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _fingerprint(source: Path, kind: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{kind}|{OPSET}".encode())
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(source) if source.is_dir() else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    kind, source, out = argv
    if kind == "keras":
        import keras  # KERAS_BACKEND=tensorflow, set by the parent

        model = keras.saving.load_model(source, compile=False)
        with tempfile.TemporaryDirectory() as tmp:
            exported = str(Path(tmp) / "saved_model")
            model.export(exported, format="tf_saved_model", verbose=False)
            return _tf2onnx(exported, out)
    return _tf2onnx(source, out)


def _tf2onnx(saved_model: str, out: str) -> int:
    return subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model, "--output", out,
                           "--opset", str(OPSET)], env=os.environ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
