from dataclasses import dataclass

import pytest

from infertune.errors import ConfigError
from infertune.passes.quantize.onnx_backend import Int8Dynamic
from infertune.passes.registry import PassOutput, config_from_dict, config_to_dict, entry_for, register


def test_registering_a_name_twice_raises():
    @dataclass(frozen=True)
    class Another:
        pass

    with pytest.raises(ValueError, match="'int8-dynamic' .* registered twice"):
        register("int8-dynamic", Another, formats=("onnx",), summary="")(lambda m, c, x: PassOutput(m))


def test_configs_must_be_frozen_dataclasses():
    @dataclass
    class Mutable:
        x: int = 1

    with pytest.raises(TypeError, match="must be a frozen dataclass"):
        register("mutable", Mutable, formats=("onnx",), summary="")


def test_unknown_config_lists_the_registered_passes():
    @dataclass(frozen=True)
    class NotRegistered:
        pass

    with pytest.raises(ConfigError, match="not a registered pass config.*int8-dynamic"):
        entry_for(NotRegistered())


def test_config_round_trips_through_a_dict_and_refuses_unknown_fields():
    config = Int8Dynamic(per_channel=False, exclude=("a", "b"))
    data = config_to_dict(config)
    assert data["pass"] == "int8-dynamic" and data["exclude"] == ["a", "b"]
    assert config_from_dict("int8-dynamic", {k: v for k, v in data.items() if k != "pass"}) == config
    with pytest.raises(ConfigError, match="has no option 'bits'"):
        config_from_dict("int8-dynamic", {"bits": 4})
    with pytest.raises(ConfigError, match="unknown pass 'int9'"):
        config_from_dict("int9", {})


def test_every_config_field_says_what_it_means():
    import dataclasses

    from infertune.passes.registry import load_all

    for entry in load_all().values():
        for field in dataclasses.fields(entry.config):
            assert field.metadata.get("help"), f"{entry.name}.{field.name} has no help"


def test_apply_passes_chains_passes_and_keeps_their_notes(tmp_path):
    import numpy as np

    import infertune
    from infertune.passes.export import ExportOnnx
    from infertune.passes.quantize.onnx_backend import Int8Dynamic

    model, outputs = infertune.apply_passes("digits-cnn", [ExportOnnx(), Int8Dynamic()], workdir=tmp_path)
    assert model.format == "onnx" and len(outputs) == 2 and all(o.notes for o in outputs)
    out = infertune.load(model).run({"pixels": np.zeros((2, 1, 8, 8), np.float32)})
    assert out["logits"].shape == (2, 10)
