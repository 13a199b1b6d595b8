import numpy as np
import pytest

from infertune.data.dataset import file_splits
from infertune.data import Dataset, Split


def arrays_dataset(arrays: dict[str, np.ndarray], name: str) -> Dataset:
    labels = arrays.get("labels")
    inputs = {k: v for k, v in arrays.items() if k != "labels"}
    everything = Split(name="all", inputs=inputs, labels=labels)
    return Dataset(name=name, splits=file_splits(everything), kind="arrays")


@pytest.fixture(scope="session")
def bert_model():
    from infertune.resolver import load_model
    from infertune.testing.models import bert_data

    return load_model("infertune.testing.models:tiny_bert", data=bert_data())


@pytest.fixture(scope="session")
def bert_onnx(bert_model, tmp_path_factory):
    from infertune.passes.export import export_onnx

    return export_onnx(bert_model, tmp_path_factory.mktemp("bert") / "bert.onnx")


@pytest.fixture(scope="session")
def bert_dataset():
    from infertune.testing.models import bert_data

    return arrays_dataset(bert_data(96), "bert")


@pytest.fixture(scope="session")
def mlp_dataset():
    from infertune.testing.models import mlp_data

    return arrays_dataset(mlp_data(96), "mlp")


@pytest.fixture(scope="session")
def cnn_model():
    from infertune.resolver import load_model

    return load_model("infertune.testing.models:tiny_cnn",
                      data={"input": np.zeros((2, 1, 8, 8), np.float32)})
