import numpy as np
import pytest

import infertune
from infertune.errors import ConfigError
from infertune.passes.export import ExportOnnx
from infertune.passes.quantize.onnx_backend import Int8Dynamic
from infertune.search.recipe import Recipe, apply_recipe


def test_recipe_round_trips_through_yaml(tmp_path):
    recipe = Recipe(passes=(ExportOnnx(), Int8Dynamic(per_channel=False, exclude=("a",))), backend="onnxruntime",
                    options=(("threads", 1),))
    recipe.save(tmp_path / "recipe.yaml")
    text = (tmp_path / "recipe.yaml").read_text()
    assert "format: infertune.recipe" in text and "version: 1" in text and "int8-dynamic" in text
    assert Recipe.load(tmp_path / "recipe.yaml") == recipe
    assert recipe.describe() == "export-onnx > int8-dynamic per_channel=False exclude=('a',) > onnxruntime threads=1"


def test_reloaded_recipe_reproduces_the_artifact(tmp_path):
    recipe = Recipe(passes=(ExportOnnx(), Int8Dynamic()), backend="onnxruntime")
    recipe.save(tmp_path / "r.yaml")
    model, data = infertune.resolve("digits-cnn")
    first, _ = apply_recipe(model, recipe, data=data, workdir=tmp_path / "a")
    second, _ = apply_recipe(model, Recipe.load(tmp_path / "r.yaml"), data=data, workdir=tmp_path / "b")
    x = {"pixels": np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)}
    a = infertune.load(first, backend="onnxruntime").run(x)["logits"]
    b = infertune.load(second, backend="onnxruntime").run(x)["logits"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text, message", [
    ("just a string", "not an infertune recipe"),
    ("format: infertune.recipe\nversion: 99\n", "recipe version 99"),
    ("format: infertune.recipe\nversion: 1\npasses: [{pass: int9}]\nbackend: {name: torch}\n", "unknown pass 'int9'"),
    ("format: infertune.recipe\nversion: 1\npasses: []\nbackend: {name: tensorrt}\n", "unknown backend 'tensorrt'"),
    ("format: infertune.recipe\nversion: 1\npasses: [{pass: int8-dynamic, bits: 4}]\nbackend: {name: onnxruntime}\n",
     "has no option 'bits'"),
    ("format: infertune.recipe\nversion: 1\npasses: [{pass: !!python/object:os.system x}]\n", "not valid YAML"),
])
def test_bad_recipes_name_the_problem(tmp_path, text, message):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        Recipe.load(tmp_path / "r.yaml")
