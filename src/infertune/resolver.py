"""`infertune.resolve(model, data=...)`: the one entrance that turns what a user names into objects.

Every command and API verb calls it; everything below it takes a `Model` and a `Dataset`, never a spec string.
A model spec is a zoo name, a run directory, a Hugging Face folder (or a name in the local Hugging Face cache),
an `.onnx` file or a folder holding one, a Keras `.keras` file, a TensorFlow SavedModel, or a factory
`pkg.mod:fn`. A data spec is a zoo data set, an `.npz` of arrays, or a text file. Worker processes get the specs
as typed records (`ModelSpec`, `DataSpec`) and call `resolve_job`, which ends here too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from infertune.data import Dataset, DataSpec, file_splits, load_dataset
from infertune.data.spec import DEFAULT_LABEL_FIELD, DEFAULT_TEXT_FIELD
from infertune.errors import ConfigError, DataError, UnsupportedModelError
from infertune.model import ZOO, Model
from infertune.model.run_dir import Manifest, find_manifest
from infertune.model.spec import ModelSpec

ModelLike = "str | os.PathLike | ModelSpec | Model"
DataLike = "str | os.PathLike | DataSpec | Dataset | Mapping[str, np.ndarray] | None"
_KINDS_HELP = ("a zoo name ({zoo}), a run directory, a Hugging Face folder (or a name in the local Hugging Face "
               "cache), an .onnx file or a folder holding one, a .keras file, a TensorFlow SavedModel folder, or a "
               "factory package.module:function")


def resolve(model, data=None, weights: str | None = None, task: str | None = None, *, pooling: str | None = None,
            num_heads: int | None = None, hidden_size: int | None = None, heldout: str | None = None,
            text_field: str = DEFAULT_TEXT_FIELD, label_field: str = DEFAULT_LABEL_FIELD) -> tuple[Model, Dataset | None]:
    """(Model, Dataset or None) for any model spec and any data spec.

    `data`: a zoo data set, a file (.npz, .txt, .jsonl, .csv, .tsv, .parquet), a `DataSpec`, a `Dataset`, a dict
    of arrays named like the model's inputs, or None for the model's own data set (if it has one).
    `weights` goes with a factory; `task` overrides the model's own ("classification", "embedding",
    "token-classification", "generic"); `pooling` picks a transformers embedding's pooling; `num_heads` and
    `hidden_size` state attention facts an ONNX graph does not; `heldout` is a file for the held-out split;
    `text_field` and `label_field` name the fields of a text file.
    Example: `model, data = infertune.resolve("./my-model", data="reviews.jsonl")`.
    """
    if isinstance(model, Model):
        loaded = _override(model, task=task, num_heads=num_heads, hidden_size=hidden_size)
        if weights is not None or pooling is not None:
            raise ConfigError("weights and pooling apply when infertune loads the model: pass a model spec, "
                              "not a loaded Model")
    else:
        spec = _model_spec(model, weights=weights, task=task, pooling=pooling, num_heads=num_heads,
                           hidden_size=hidden_size)
        loaded = load_spec(spec, data=data, text_field=text_field, label_field=label_field)
    return loaded, resolve_data(data, model=loaded, heldout=heldout, text_field=text_field, label_field=label_field)


def load_model(model, *, weights: str | None = None, data=None, task: str | None = None, **options: Any) -> Model:
    """The model alone: `resolve(model, data, ...)[0]`. `data` matters for a factory (it fixes the input shapes).

    Example: `infertune.load_model("digits-cnn").signature.describe_inputs()`.
    """
    return resolve(model, data=data, weights=weights, task=task, **options)[0]


def resolve_job(model: dict[str, Any], data: dict[str, Any] | None = None,
                artifact: str | None = None) -> tuple[Model, Dataset | None]:
    """What a worker process loads: the model of a `ModelSpec` dict, backed by `artifact` (an exported file) when
    given, so the worker skips building the torch module where it can, and the data of a `DataSpec` dict."""
    spec = ModelSpec.from_dict(model)
    if artifact is not None:
        from infertune.model.onnx_file import with_artifact

        loaded = with_artifact(describe_spec(spec, data=_data_spec(data)), artifact)
    else:
        loaded = load_spec(spec, data=_data_spec(data))
    return loaded, resolve_data(_data_spec(data), model=loaded)


def _data_spec(data: dict[str, Any] | None) -> DataSpec | None:
    return None if data is None else DataSpec.from_dict(data)


def _model_spec(model, **options) -> ModelSpec:
    if isinstance(model, ModelSpec):
        given = {k: v for k, v in options.items() if v is not None}
        return dataclasses.replace(model, **given) if given else model
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a spec string, a path, a ModelSpec or a Model, got {type(model).__name__}")
    return ModelSpec(model=os.fspath(model), **options)


def _override(model: Model, *, task=None, num_heads=None, hidden_size=None) -> Model:
    from infertune.model.spec import canonical_task

    changes: dict[str, Any] = {}
    if task is not None:
        changes["task"] = canonical_task(task)
    if num_heads or hidden_size:
        changes["meta"] = {**model.meta, **({"num_heads": num_heads} if num_heads else {}),
                           **({"hidden_size": hidden_size} if hidden_size else {})}
    return dataclasses.replace(model, **changes) if changes else model


# --- models -------------------------------------------------------------------------------------------------------

def locate(name: str) -> tuple[str, Path | str]:
    """What a model spec names: (kind, where). Kinds: zoo, run, hf, onnx, onnx-folder, keras, saved-model, ensemble,
    factory."""
    from infertune.model import hf, hub, onnx_file, tf_saved

    if name in ZOO:
        return "zoo", name
    path = Path(name).expanduser()
    if path.is_dir():
        if find_manifest(path) is not None:
            return "run", path
        if hf.is_folder(path):
            return "hf", path
        if onnx_file.is_folder(path):
            return "onnx-folder", path
        if tf_saved.is_folder(path):
            return "saved-model", path
        raise UnsupportedModelError(f"'{name}' is a folder infertune cannot read: it reads a run directory "
                                    f"(model/manifest.json), a Hugging Face folder (config.json with weights, or "
                                    f"modules.json), a folder with an .onnx file, or a TensorFlow SavedModel "
                                    f"(saved_model.pb)")
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".onnx":
            return "onnx", path
        if suffix in (".yaml", ".yml"):
            return "ensemble", path
        if suffix == ".keras":
            return "keras", path
        hint = {".safetensors": "weights alone: pass the folder that holds them with config.json, or a factory "
                                "package.module:function with --weights",
                ".bin": "weights alone: pass the folder that holds them with config.json",
                ".pt": "weights alone: pass a factory package.module:function with --weights",
                ".pth": "weights alone: pass a factory package.module:function with --weights",
                ".h5": "a legacy Keras file: re-save it with model.save('model.keras')"}.get(suffix)
        raise UnsupportedModelError(f"'{name}' is " + (hint or "not a model file infertune reads: pass "
                                                               + _KINDS_HELP.format(zoo=", ".join(ZOO))))
    if suffix in (".onnx", ".keras") or name.startswith(("/", "./", "../", "~")):
        raise UnsupportedModelError(f"model file '{name}' not found: check the path")
    if ":" in name:
        return "factory", name
    cached = hub.cached_snapshot(name)
    if cached is not None:
        return "hf", cached
    cache = f" or in the local Hugging Face cache ({hub.cache_location()})" if hub.looks_like_repo_id(name) else ""
    raise UnsupportedModelError(f"unknown model '{name}': it is not a zoo name ({', '.join(ZOO)}), a local path{cache}"
                                f"; infertune never downloads: pass a folder saved with save_pretrained, a file, or a "
                                f"factory package.module:function")


def load_spec(spec: ModelSpec, *, data=None, text_field: str = DEFAULT_TEXT_FIELD,
              label_field: str = DEFAULT_LABEL_FIELD) -> Model:
    """The model a spec names, with its weights (a torch module, or the ONNX file it is)."""
    kind, where = locate(spec.model)
    _check_weights(spec, kind)
    if kind == "zoo":
        from infertune.model.zoo import load_zoo

        return _apply_spec(load_zoo(spec.model), spec)
    if kind == "run":
        return _from_run_dir(Path(where), spec, data=data)
    if kind == "hf":
        from infertune.model import hf

        return hf.load(Path(where), spec)
    if kind == "factory":
        from infertune.model import factory

        return factory.load(spec, data=_factory_arrays(spec, data, text_field, label_field))
    if kind == "ensemble":
        return _ensemble(Path(where), spec, data=data)
    return describe_spec(spec, data=data)


def _ensemble(path: Path, spec: ModelSpec, *, data=None) -> Model:
    """An ensemble file: its members resolved like any model, then fused into one graph (ensemble.py)."""
    from infertune import ensemble

    described = ensemble.read_spec(path)
    members = [load_spec(ModelSpec(model=member), data=data) for member in described.members]
    return _apply_spec(ensemble.build(described, members, model_spec=spec), spec)


def describe_spec(spec: ModelSpec, *, data=None) -> Model:
    """The model a spec names, without building a torch module where its signature, task and tokenizer can be
    read without one (zoo, Hugging Face folders, ONNX and TensorFlow models); others load fully."""
    kind, where = locate(spec.model)
    _check_weights(spec, kind)
    if kind == "zoo":
        return _apply_spec(ZOO[spec.model].stub(spec.model), spec)
    if kind == "hf":
        from infertune.model import hf

        return hf.describe(Path(where), spec)
    if kind == "onnx":
        from infertune.model import onnx_file

        return onnx_file.load(Path(where), spec)
    if kind == "onnx-folder":
        from infertune.model import onnx_file

        return onnx_file.load_folder(Path(where), spec)
    if kind == "saved-model":
        from infertune.model import tf_saved

        return tf_saved.load(Path(where), spec)
    if kind == "keras":
        from infertune.model import keras_file

        return keras_file.load(Path(where), spec)
    return load_spec(spec, data=data)


def _check_weights(spec: ModelSpec, kind: str) -> None:
    if spec.weights is not None and kind != "factory":
        raise UnsupportedModelError(f"--weights applies to a factory model (package.module:function), not to "
                                    f"'{spec.model}', which carries its own weights")


def _apply_spec(model: Model, spec: ModelSpec) -> Model:
    """A spec's task and attention facts over what a zoo model says of itself."""
    return _override(dataclasses.replace(model, spec=spec), task=spec.task, num_heads=spec.num_heads,
                     hidden_size=spec.hidden_size)


def _factory_arrays(spec: ModelSpec, data, text_field: str, label_field: str) -> dict[str, np.ndarray] | None:
    """Some samples of the data, named like the factory's forward arguments: they fix its input shapes."""
    if data is None:
        return None
    if isinstance(data, Mapping):
        return {k: np.asarray(v) for k, v in data.items() if k != "labels"}
    if isinstance(data, Dataset):
        dataset = data
    else:
        data_spec = data if isinstance(data, DataSpec) else DataSpec(os.fspath(data), text_field=text_field,
                                                                     label_field=label_field)
        dataset = load_dataset(data_spec.data, text_field=data_spec.text_field, read_labels=False)
    split = dataset.splits.get("all") or next(iter(dataset.splits.values()))
    if split.inputs is None:
        raise DataError(f"factory '{spec.model}' takes arrays, but data '{dataset.name}' holds texts: pass an .npz "
                        f"with arrays named like its forward arguments")
    return split.inputs


def _from_run_dir(folder: Path, spec: ModelSpec, *, data=None) -> Model:
    """A run directory's chosen artifact, with the source model's name, task, labels and tokenizer, and the
    backend the search chose it on."""
    from infertune.model.onnx_file import with_artifact

    manifest = Manifest.read(find_manifest(folder))
    if manifest.file:
        file = find_manifest(folder).parent / manifest.file
        if not file.is_file():
            raise UnsupportedModelError(f"run directory artifact '{file}' is missing: re-run optimize")
        kind, _ = locate(manifest.spec.model)
        if kind in ("factory", "keras"):  # no cheap description: the exported graph names its own inputs
            from infertune.model import onnx_file

            if file.suffix == ".xml":
                raise UnsupportedModelError(f"'{folder}' holds an OpenVINO IR of '{manifest.spec.model}', whose "
                                            f"signature only the source model knows: bench or serve the source")
            source = dataclasses.replace(onnx_file.load(file, ModelSpec(str(file), task=manifest.task)),
                                         name=manifest.name or file.stem, labels=manifest.labels)
        else:
            source = describe_spec(manifest.spec)
        model = with_artifact(source, file)
    else:
        from infertune.passes import apply_passes
        from infertune.search.recipe import Recipe

        model, _ = apply_passes(load_spec(manifest.spec, data=data), list(Recipe.from_dict(manifest.recipe).passes))
    return dataclasses.replace(model, spec=spec, backend=manifest.backend, backend_options=dict(manifest.options))


# --- data ---------------------------------------------------------------------------------------------------------

def resolve_data(data, *, model: Model | None = None, input_specs: dict[str, tuple[str, tuple]] | None = None,
                 heldout: str | None = None, text_field: str = DEFAULT_TEXT_FIELD,
                 label_field: str = DEFAULT_LABEL_FIELD) -> Dataset | None:
    """The data set for `model`: `data`, or the model's own data set; arrays checked against the model's inputs
    (or `input_specs`), label names mapped through the model's labels. Without a model (sending requests to a
    server), labels are not read. None when there is no data and the model has no data set of its own."""
    specs = input_specs if input_specs is not None else _array_specs(model)
    if isinstance(data, Dataset):
        return data
    if isinstance(data, Mapping):
        from infertune.data.npz import check_arrays

        arrays = {k: np.asarray(v) for k, v in data.items() if k != "labels"}
        split = check_arrays(arrays, None if data.get("labels") is None else np.asarray(data["labels"]),
                             input_specs=specs, source="the data given", name="all")
        return Dataset(name="arrays", splits=file_splits(split), kind="arrays")
    if isinstance(data, DataSpec):
        spec = data if heldout is None else dataclasses.replace(data, heldout=heldout)
    elif data is not None:
        spec = DataSpec(os.fspath(data), heldout=heldout, text_field=text_field, label_field=label_field)
    elif model is not None and model.default_data is not None:
        spec = DataSpec(model.default_data, heldout=heldout)
    else:
        if heldout is not None:
            raise ConfigError(f"--heldout '{heldout}' needs --data: the held-out file goes with a data file")
        return None
    classifier = model is not None and model.task == "classification"
    dataset = load_dataset(spec.data, input_specs=specs, heldout=spec.heldout,
                           text_field=spec.text_field, label_field=spec.label_field,
                           label2id=model.label2id if classifier else None, read_labels=classifier)
    if model is not None and dataset.kind == "text" and not model.is_text:
        raise DataError(f"model '{model.name}' takes arrays ({model.signature.describe_inputs()}), not text: pass an "
                        f".npz with its inputs via --data")
    return dataclasses.replace(dataset, spec=spec)


def _array_specs(model: Model | None) -> dict[str, tuple[str, tuple]] | None:
    if model is None:
        return None
    return {s.name: (s.dtype, s.shape) for s in model.signature.inputs}
