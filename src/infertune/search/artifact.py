"""The chosen artifact in DIR/model: the ONNX file or OpenVINO IR copied in, or, for a PyTorch artifact,
the recipe that rebuilds it from the source model (deterministic passes); `manifest.json` says which."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from infertune.errors import UnsupportedModelError
from infertune.io import write_json_atomic

MANIFEST = "manifest.json"


def save_artifact(directory: Path, *, model: str, weights: str | None, record: dict[str, Any]) -> None:
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = {"source": model, "weights": weights, "recipe": record["recipe"], "backend": record["backend"],
                "options": {k: v for k, v in record["recipe"]["backend"].items() if k != "name"}, "file": None}
    path = record.get("artifact")
    if path:
        src = Path(path)
        for item in src.parent.iterdir():  # the graph and its weights (.onnx + .data, or .xml + .bin)
            if item.name.startswith(src.stem):
                shutil.copy2(item, staging / item.name)
        manifest["file"] = src.name
    write_json_atomic(staging / MANIFEST, manifest)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def find_manifest(path: Path) -> Path | None:
    for candidate in (path / MANIFEST, path / "model" / MANIFEST):
        if candidate.is_file():
            return candidate
    return None


def load_artifact(manifest_path: Path):
    """(Model, backend, options) for a saved artifact."""
    from infertune.model import ZOO, load_model
    from infertune.model.onnx_file import load as load_onnx
    from infertune.model.zoo import zoo_onnx
    from infertune.search.recipe import Recipe, apply_recipe

    manifest = json.loads(manifest_path.read_text())
    source = manifest["source"]
    if manifest["file"]:
        file = manifest_path.parent / manifest["file"]
        if not file.is_file():
            raise UnsupportedModelError(f"run directory artifact '{file}' is missing: re-run optimize")
        if source in ZOO:
            model = zoo_onnx(source, file)
        elif file.suffix == ".xml":
            raise UnsupportedModelError("an OpenVINO IR of a non-zoo model needs its source's signature")
        else:
            model = load_onnx(file)
    else:
        model, _ = apply_recipe(source if manifest["weights"] is None else load_model(source, weights=manifest["weights"]),
                                Recipe.from_dict(manifest["recipe"]))
    return model, manifest["backend"], manifest["options"]
