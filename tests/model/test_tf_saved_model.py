"""A TensorFlow SavedModel written by the test (TensorFlow in a child process, never in this one) is converted
through tf2onnx (the `infertune[tensorflow]` extra) and runs as TensorFlow runs it."""

import json
import subprocess
import sys

import numpy as np

import infertune

BUILD = """
import json, sys
import numpy as np
import tensorflow as tf

class Scorer(tf.Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.standard_normal((6, 3)).astype(np.float32))
        self.b = tf.Variable(rng.standard_normal(3).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="features")])
    def __call__(self, features):
        return {"scores": tf.nn.relu(tf.matmul(features, self.w) + self.b)}

scorer = Scorer()
tf.saved_model.save(scorer, sys.argv[1], signatures={"serving_default": scorer.__call__})
x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
print(json.dumps({"x": x.tolist(), "y": scorer(x)["scores"].numpy().tolist()}))
"""


def test_saved_model_converts_and_runs_as_tensorflow_runs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "scorer"
    built = subprocess.run([sys.executable, "-c", BUILD, str(folder)], capture_output=True, text=True, timeout=300,
                           env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert built.returncode == 0, built.stderr[-3000:]
    expected = json.loads(built.stdout.strip().splitlines()[-1])
    loaded_before = "tensorflow" in sys.modules  # an earlier test (Keras) may have imported it in this process
    model, _ = infertune.resolve(str(folder))
    assert model.format == "onnx"
    assert loaded_before or "tensorflow" not in sys.modules, "the conversion imported TensorFlow in this process"
    engine = infertune.load(model)
    (name,) = [s.name for s in model.signature.inputs]
    got = next(iter(engine.run({name: np.asarray(expected["x"], np.float32)}).values()))
    print(f"\nSavedModel via tf2onnx vs TensorFlow: largest difference {np.abs(got - expected['y']).max():.2e}")
    np.testing.assert_allclose(got, expected["y"], atol=1e-5)
