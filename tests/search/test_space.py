from infertune.resolver import load_model
from infertune.search.space import baseline_recipe, candidate_recipes


def test_an_onnx_model_is_never_its_own_candidate(mlp_onnx):
    model = load_model(str(mlp_onnx))
    recipes = candidate_recipes(model, has_calibration=True, has_training=False)
    base = baseline_recipe(model).to_dict()
    assert recipes and all(r.to_dict() != base for r in recipes)
    assert {r.backend for r in recipes} >= {"onnxruntime", "openvino"}
