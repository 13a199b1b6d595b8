from infertune.resolver import load_model
from infertune.search.space import baseline_recipe, candidate_recipes


def test_an_onnx_model_is_never_its_own_candidate(mlp_onnx):
    model = load_model(str(mlp_onnx))
    recipes = candidate_recipes(model, has_calibration=True, has_training=False)
    base = baseline_recipe(model).to_dict()
    assert recipes and all(r.to_dict() != base for r in recipes)
    assert {r.backend for r in recipes} >= {"onnxruntime", "openvino"}


def test_trained_candidates_come_last_and_only_with_training_data(mlp_model):
    from infertune.passes.prune_budget import PruneToBudget
    from infertune.passes.quantize.qat import Qat

    def kinds(recipe):
        return {type(config) for config in recipe.passes}

    recipes = candidate_recipes(mlp_model, has_calibration=True, has_training=True, max_drop=0.03, time_budget=400)
    trained = [i for i, r in enumerate(recipes) if kinds(r) & {Qat, PruneToBudget}]
    assert len(trained) == 2 and trained == list(range(len(recipes) - 2, len(recipes)))
    prune = next(c for c in recipes[trained[0]].passes if isinstance(c, PruneToBudget))
    qat = next(c for c in recipes[trained[1]].passes if isinstance(c, Qat))
    assert prune.max_drop == 0.015 and prune.seconds == qat.seconds == 100.0
    untrained = candidate_recipes(mlp_model, has_calibration=True, has_training=False)
    assert not any(kinds(r) & {Qat, PruneToBudget} for r in untrained)


def test_training_time_is_a_share_of_the_time_budget():
    from infertune.search.space import TRAINING_SECONDS, training_seconds

    assert training_seconds(None) == TRAINING_SECONDS
    assert training_seconds(40) == 10 and training_seconds(10_000) == TRAINING_SECONDS


def _precision_order(recipes):
    return [("bf16" if dict(r.options).get("precision") == "bf16" else "int8") for r in recipes
            if dict(r.options).get("precision") == "bf16" or any("int8" in type(c).__name__.lower() for c in r.passes)]


def test_what_the_cpu_accelerates_is_tried_first(mlp_model):
    bf16_only = _precision_order(candidate_recipes(mlp_model, has_calibration=True, has_training=False,
                                                   isa=("avx512_bf16",)))
    int8_only = _precision_order(candidate_recipes(mlp_model, has_calibration=True, has_training=False,
                                                   isa=("avx512_vnni",)))
    # openvino bf16, int8-nncf with bf16 for the rest, torch bf16; without bf16 in the ISA, no bf16 at all: no
    # int8 with bf16 for the rest, and no bf16 hint (emulated, only slower)
    assert bf16_only[:3] == ["bf16", "bf16", "bf16"] and "bf16" not in bf16_only[3:]
    assert int8_only[0] == "int8" and "bf16" not in int8_only


def test_int8_runs_with_bf16_for_the_rest_only_where_the_cpu_accelerates_bf16(mlp_onnx):
    from infertune.passes.quantize.openvino_backend import Int8Nncf

    model = load_model(str(mlp_onnx))

    def nncf(isa):
        return [r.backend_options for r in candidate_recipes(model, has_calibration=True, has_training=False, isa=isa)
                if Int8Nncf() in r.passes]  # the other NNCF configs are nncf_candidates' (test_nncf_attention)

    assert nncf(("avx512_vnni", "avx512_bf16")) == [{}, {"precision": "bf16"}]
    assert nncf(("amx_int8", "amx_bf16")) == [{}, {"precision": "bf16"}]
    assert nncf(("avx512_vnni",)) == [{}]


def test_amx_int8_brings_static_u8s8_int8_to_transformers_and_every_isa_float_matmul_outputs(mlp_model):
    import dataclasses

    from infertune.passes.quantize.onnx_backend import Int8Static

    text_like = dataclasses.replace(mlp_model, meta={**mlp_model.meta, "num_heads": 2})

    def statics(isa):
        return [c for r in candidate_recipes(text_like, has_calibration=True, has_training=False, isa=isa)
                for c in r.passes if isinstance(c, Int8Static)]

    assert statics(("avx512_vnni",)) == [Int8Static(float_outputs=True)]
    found = statics(("amx_int8", "amx_bf16"))
    assert found == [Int8Static(activation_type="quint8"), Int8Static(float_outputs=True)]
    recipes = candidate_recipes(text_like, has_calibration=True, has_training=False, isa=("avx512_vnni",))
    floats = [r for r in recipes if any(isinstance(c, Int8Static) for c in r.passes)]
    assert [r.describe() for r in floats] == ["export-onnx > int8-static float_outputs=True > onnxruntime"]  # unfused


def test_a_registered_pass_declared_search_values_reach_the_candidates():
    from infertune.params import search_space
    from infertune.passes.export import ExportOnnx
    from infertune.passes.prune import StructuredPrune
    from infertune.search.recipe import Recipe
    from infertune.search.space import pass_variants

    recipe = Recipe(passes=(StructuredPrune(amount=0.5), ExportOnnx()), backend="onnxruntime")
    variants = pass_variants(recipe)
    amounts = {v.passes[0].amount for v in variants if v.passes[0].amount != 0.5}
    assert amounts == set(search_space(StructuredPrune)["amount"]) - {0.5} == {0.25, 0.75}
    assert {v.passes[0].importance for v in variants} >= {"taylor"}
    assert {v.passes[1].exporter for v in variants} >= {"dynamo"}
    assert all(sum(a != b for a, b in zip(v.passes, recipe.passes)) == 1 for v in variants)  # one change each
