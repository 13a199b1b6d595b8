import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Exports go to a cache of this test session, not the user's."""
    path = tmp_path_factory.mktemp("infertune-cache")
    os.environ["INFERTUNE_CACHE_DIR"] = str(path)
    yield path


@pytest.fixture(scope="session")
def mlp_npz(tmp_path_factory) -> Path:
    from infertune.data import save_npz
    from infertune.testing.models import mlp_data

    path = tmp_path_factory.mktemp("data") / "mlp.npz"
    save_npz(path, mlp_data(64))
    return path


@pytest.fixture(scope="session")
def mlp_model(mlp_npz):
    from infertune.resolver import load_model

    return load_model("infertune.testing.models:tiny_mlp", data=dict(np.load(mlp_npz)))


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory, mlp_model) -> Path:
    from infertune.passes.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    export_onnx(mlp_model, path)
    return path


def run_cli(*args: str, cwd: Path | None = None):
    """The real command line in a child process."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "infertune.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def keyword_folder(tmp_path_factory) -> Path:
    """A 2-layer BERT sequence classifier (labels plain / keyword) fine-tuned by the test and saved with
    save_pretrained, with the bundled MiniLM's tokenizer: a user's own Hugging Face folder."""
    from infertune.testing.folders import keyword_classifier

    return keyword_classifier(tmp_path_factory.mktemp("hf") / "keyword-bert")
