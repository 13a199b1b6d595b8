from pathlib import Path

import pytest

from serve_helpers import running


@pytest.fixture(scope="module")
def digits_server():
    with running("digits-cnn", "--backend", "onnxruntime", "--max-body-bytes", "20000") as server:
        yield server


@pytest.fixture(scope="session")
def mlp_data_npz(tmp_path_factory) -> Path:
    from infertune.data import save_npz
    from infertune.testing.models import mlp_data

    path = tmp_path_factory.mktemp("serve-data") / "mlp.npz"
    data = mlp_data(64)
    save_npz(path, {"input": data["input"]})
    return path
