"""A run directory's artifact record (`DIR/model/manifest.json`): which model it came from, the recipe, the
backend it was chosen on, and the file it is (or none, when the recipe rebuilds a torch artifact)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infertune.errors import UnsupportedModelError
from infertune.model.spec import ModelSpec

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    spec: ModelSpec                  # the source model, as the search loaded it
    recipe: dict[str, Any]           # the recipe that built the artifact (a search.recipe.Recipe as a dict)
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    file: str | None = None          # the artifact's file beside the manifest; None: rebuild with the recipe
    name: str | None = None          # the source model's name, task and labels, for an artifact whose source
    task: str | None = None          # cannot be described without building it (a factory, a Keras file)
    labels: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.spec.to_dict(), "recipe": self.recipe, "backend": self.backend,
                "options": self.options, "file": self.file, "name": self.name, "task": self.task,
                "labels": list(self.labels) if self.labels is not None else None}

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text())
            source = data["source"]
            # run directories of earlier versions stored the model as a string and its weights beside it
            spec = ModelSpec.from_dict(source) if isinstance(source, dict) else \
                ModelSpec(model=source, weights=data.get("weights"))
            labels = data.get("labels")
            return cls(spec=spec, recipe=data["recipe"], backend=data["backend"], options=data.get("options") or {},
                       file=data.get("file"), name=data.get("name"), task=data.get("task"),
                       labels=tuple(labels) if labels is not None else None)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UnsupportedModelError(f"run directory manifest '{path}' is unreadable ({type(e).__name__}: {e}): "
                                        f"re-run infertune optimize") from e


def find_manifest(path: Path) -> Path | None:
    """The manifest of a run directory (DIR/model/manifest.json) or of its model folder, or None."""
    for candidate in (path / MANIFEST, path / "model" / MANIFEST):
        if candidate.is_file():
            return candidate
    return None
