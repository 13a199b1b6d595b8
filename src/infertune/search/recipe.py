"""A recipe: an ordered list of pass configs plus a backend and its runtime settings. Saved as YAML with a
format version, loaded only into registered configs (never arbitrary objects), so re-applying it
reproduces the artifact."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infertune.errors import ConfigError

FORMAT = "infertune.recipe"
VERSION = 1


@dataclass(frozen=True)
class Recipe:
    passes: tuple[Any, ...] = ()
    backend: str = "torch"
    options: tuple[tuple[str, Any], ...] = ()   # backend settings, as sorted pairs (hashable)

    @property
    def backend_options(self) -> dict[str, Any]:
        return dict(self.options)

    def describe(self) -> str:
        from infertune.passes.registry import entry_for

        steps = [" ".join([entry_for(config).name, *changed_fields(config)]) for config in self.passes]
        settings = [f"{k}={v}" for k, v in self.options]
        return " > ".join(steps + [" ".join([self.backend, *settings])])

    def to_dict(self) -> dict[str, Any]:
        from infertune.passes.registry import config_to_dict

        return {"format": FORMAT, "version": VERSION, "passes": [config_to_dict(c) for c in self.passes],
                "backend": {"name": self.backend, **self.backend_options}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> "Recipe":
        from infertune.backends import make_backend_settings
        from infertune.passes.registry import config_from_dict

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source} is not an infertune recipe (format: {FORMAT} is missing)")
        if data.get("version") != VERSION:
            raise ConfigError(f"{source} has recipe version {data.get('version')!r}; this infertune reads version "
                              f"{VERSION}: upgrade infertune or re-run optimize")
        passes = []
        for index, step in enumerate(data.get("passes") or []):
            if not isinstance(step, dict) or "pass" not in step:
                raise ConfigError(f"{source}: pass #{index + 1} needs a 'pass' name")
            values = {k: v for k, v in step.items() if k != "pass"}
            passes.append(config_from_dict(str(step["pass"]), values))
        backend = dict(data.get("backend") or {})
        name = backend.pop("name", None)
        if not name:
            raise ConfigError(f"{source}: backend.name is missing (torch, torch-compile, onnxruntime, openvino)")
        make_backend_settings(name, **backend)  # unknown backends and options fail here, naming the value
        return cls(passes=tuple(passes), backend=name, options=tuple(sorted(backend.items())))

    def save(self, path: str | Path) -> None:
        import yaml

        from infertune.io import write_bytes_atomic

        write_bytes_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False).encode())

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe file '{path}' not found: check --recipe")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"recipe '{path}' is not valid YAML: {str(e).splitlines()[0]}") from e
        return cls.from_dict(data, source=f"recipe '{path}'")


def apply_recipe(model, recipe: Recipe, *, data=None, workdir: str | Path | None = None, progress=None):
    """The recipe's passes applied to `model`; returns (artifact model, pass outputs)."""
    from infertune.passes import apply_passes

    return apply_passes(model, list(recipe.passes), data=data, workdir=workdir, progress=progress)


def with_options(recipe: Recipe, **options: Any) -> Recipe:
    return dataclasses.replace(recipe, options=tuple(sorted({**recipe.backend_options, **options}.items())))


def changed_fields(config: Any) -> list[str]:
    """`field=value` for each field of a pass config that differs from its default, so that two recipes of one pass
    read apart (`int8-nncf preset=performance float_attention=True`)."""
    changed = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.default is dataclasses.MISSING or value != field.default:
            changed.append(f"{field.name}={value}")
    return changed


__all__ = ["Recipe", "apply_recipe", "with_options"]
