"""Hugging Face folders, read locally only: transformers (config.json, weights, tokenizer files) and
sentence-transformers (modules.json, 1_Pooling/config.json, sentence_bert_config.json) layouts.

What a folder is (its task, signature, labels, tokenizer) is read from its JSON files without building weights
(`describe`), so a process that runs only the exported ONNX file never loads the torch module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infertune.errors import UnsupportedModelError
from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec
from infertune.model.spec import ModelSpec
from infertune.model.text import folder_encoder, has_tokenizer

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_SUPPORTED = "sequence classification, token classification, image classification and embeddings"


@dataclass(frozen=True)
class Layout:
    """What a folder holds: where the transformer's config and weights are, and the sentence-transformers
    pooling, normalisation and maximum length when it is a sentence-transformers folder."""

    folder: Path
    transformer: Path
    config: dict[str, Any]
    pooling: tuple[str, ...] | None = None
    normalize: bool = False
    max_length: int | None = None

    @property
    def architecture(self) -> str:
        return (self.config.get("architectures") or [""])[0]

    @property
    def is_vision(self) -> bool:
        return "image_size" in self.config and not has_tokenizer(self.folder)


def is_folder(path: Path) -> bool:
    """A transformers or sentence-transformers folder: a config and weights (an ONNX folder has no weights)."""
    root = path / "config.json"
    if (path / "modules.json").is_file():
        return True
    return root.is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def read_layout(folder: Path) -> Layout:
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else None
    if modules is None:
        return Layout(folder=folder, transformer=folder, config=_read_json(folder / "config.json"))
    transformer, pooling, normalize = None, None, False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        where = folder / str(module.get("path", ""))
        if kind == "Transformer":
            transformer = where
        elif kind == "Pooling":
            pooling = _pooling_modes(where / "config.json")
        elif kind == "Normalize":
            normalize = True
        else:
            raise UnsupportedModelError(f"'{folder}' has a sentence-transformers module {module.get('type')} "
                                        f"(modules.json), which infertune does not run: it runs Transformer, Pooling "
                                        f"and Normalize; export the model to ONNX yourself and pass the .onnx file")
    if transformer is None:
        raise UnsupportedModelError(f"'{folder}' lists no Transformer module in modules.json: save it with "
                                    f"SentenceTransformer.save")
    settings = transformer / "sentence_bert_config.json"
    if not settings.is_file():
        settings = folder / "sentence_bert_config.json"
    max_length = _read_json(settings).get("max_seq_length") if settings.is_file() else None
    return Layout(folder=folder, transformer=transformer, config=_read_json(transformer / "config.json"),
                  pooling=pooling or ("mean",), normalize=normalize,
                  max_length=int(max_length) if isinstance(max_length, int) else None)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UnsupportedModelError(f"'{path.parent}' has no {path.name}: save the model with save_pretrained")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnsupportedModelError(f"'{path}' is not valid JSON ({e}): re-save the model with save_pretrained") from e


def _pooling_modes(path: Path) -> tuple[str, ...]:
    """sentence-transformers' pooling config: `pooling_mode` (a name or a list), or the older `pooling_mode_*`
    booleans."""
    from infertune.model.pooling import MODES

    config = _read_json(path)
    legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
              "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
              "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = (modes,) if isinstance(modes, str) else tuple(modes)
    else:
        modes = tuple(mode for key, mode in legacy.items() if config.get(key)) or ("mean",)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UnsupportedModelError(f"'{path}' asks for pooling '{unknown[0]}', which infertune does not have "
                                    f"(it has {', '.join(MODES)})")
    return modes


def _task(layout: Layout, spec: ModelSpec) -> str:
    if spec.task is not None:
        return spec.task
    if layout.pooling is not None:
        return "embedding"
    arch = layout.architecture
    if arch.endswith(("ForSequenceClassification", "ForImageClassification")):
        return "classification"
    if arch.endswith("ForTokenClassification"):
        return "token-classification"
    if not arch or arch.endswith(("Model", "ForMaskedLM", "ForPreTraining")):
        return "embedding"
    raise UnsupportedModelError(f"'{layout.folder}' holds a {arch}, which infertune does not run (it runs "
                                f"{_SUPPORTED}): pass --task embedding to use its encoder's pooled states")


def _labels(config: dict[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    count = int(config.get("num_labels") or len(id2label) or 2)
    return tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count))


def describe(folder: Path, spec: ModelSpec) -> Model:
    """The folder's model without its weights: signature, task, labels, tokenizer and attention facts."""
    layout = read_layout(folder)
    task = _task(layout, spec)
    config = layout.config
    labels = _labels(config) if task in ("classification", "token-classification") else None
    if layout.is_vision:
        if task != "classification":
            raise UnsupportedModelError(f"'{folder}' is an image model; infertune runs image models for "
                                        f"classification only (got task '{task}')")
        size = config.get("image_size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        inputs = (TensorSpec("pixel_values", "float32", ("batch", int(config.get("num_channels", 3)), height, width)),)
        encode = None
    else:
        if not has_tokenizer(folder) and not has_tokenizer(layout.transformer):
            raise UnsupportedModelError(f"'{folder}' has no tokenizer files (tokenizer.json or a vocabulary): save "
                                        f"them beside the model with tokenizer.save_pretrained('{folder}')")
        names = ("input_ids", "attention_mask")
        inputs = tuple(TensorSpec(name, "int64", ("batch", "sequence")) for name in names)
        positions = config.get("max_position_embeddings")
        encode = folder_encoder(folder if has_tokenizer(folder) else layout.transformer, inputs=names,
                                max_length=layout.max_length, cap=positions if isinstance(positions, int) else None)
    if task == "embedding":
        modes = (spec.pooling,) if spec.pooling else (layout.pooling or ("mean",))
        width = int(config.get("hidden_size", 0)) * len(modes)
        outputs = (TensorSpec("sentence_embedding", "float32", ("batch", width or "width")),)
    elif task == "token-classification":
        outputs = (TensorSpec("logits", "float32", ("batch", "sequence", len(labels))),)
    elif task == "classification":
        outputs = (TensorSpec("logits", "float32", ("batch", len(labels))),)
    else:
        raise UnsupportedModelError(f"--task {task} does not apply to '{folder}': use classification, "
                                    f"token-classification or embedding")
    meta: dict[str, Any] = {"hf_architecture": layout.architecture}
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if isinstance(heads, int) and isinstance(hidden, int):
        meta.update(num_heads=spec.num_heads or heads, hidden_size=spec.hidden_size or hidden)
    if task == "embedding":
        meta["pooling"] = list((spec.pooling,) if spec.pooling else (layout.pooling or ("mean",)))
        meta["normalize"] = layout.normalize if layout.pooling is not None else False
    return Model(name=folder.resolve().name, spec=spec, signature=Signature(inputs=inputs, outputs=outputs), task=task,
                 encode_texts=encode, labels=labels, meta=meta)


def load(folder: Path, spec: ModelSpec) -> Model:
    """The folder's model with its torch module in eval mode (its own attention implementation: the export pass
    switches a copy to eager attention, which ONNX Runtime fuses)."""
    model = describe(folder, spec)
    return dataclasses.replace(model, module=build_module(folder, model))


def build_module(folder: Path, model: Model):
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers.utils import logging as hf_logging

    from infertune.model import hf_modules

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    layout = read_layout(folder)
    where = str(layout.transformer)
    options = dict(local_files_only=True)
    try:
        if model.task == "embedding":
            encoder = transformers.AutoModel.from_pretrained(where, **options)
            return hf_modules.pooled(encoder, tuple(model.meta["pooling"]), bool(model.meta["normalize"]))
        if model.task == "token-classification":
            return hf_modules.TokenClassifier(transformers.AutoModelForTokenClassification.from_pretrained(where, **options))
        if layout.is_vision:
            return hf_modules.ImageClassifier(transformers.AutoModelForImageClassification.from_pretrained(where, **options))
        return hf_modules.SequenceClassifier(transformers.AutoModelForSequenceClassification.from_pretrained(where, **options))
    except UnsupportedModelError:
        raise
    except Exception as e:  # transformers raises OSError, ValueError, KeyError... for folders it cannot load
        raise UnsupportedModelError(f"transformers cannot load '{folder}' as {model.task} ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}): check the folder, or pass --task") from e
