"""`ModelSpec`: what the user named as a model, as a typed record. `infertune.resolve` turns it into a `Model`;
it crosses process boundaries (bench and search workers) and files (a run directory's manifest) as a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from infertune.errors import ConfigError

# the task names infertune uses, and the names users of transformers / Optimum / sentence-transformers know them by
TASKS = ("classification", "embedding", "token-classification", "generic")
TASK_ALIASES = {
    "sequence-classification": "classification", "text-classification": "classification",
    "image-classification": "classification", "feature-extraction": "embedding",
    "sentence-similarity": "embedding", "token-classification": "token-classification", "ner": "token-classification",
}
POOLING = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")  # sentence-transformers names


def canonical_task(task: str | None) -> str | None:
    """The task name infertune uses for `task` (an alias such as feature-extraction is accepted)."""
    if task is None:
        return None
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS:
        raise ConfigError(f"--task '{task}' is not one of {', '.join(TASKS)} "
                          f"(or {', '.join(sorted(TASK_ALIASES))})")
    return name


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it: a zoo name, a path (file or folder), a Hugging Face name, or a factory
    `pkg.mod:fn`, with the options that change how it loads. `infertune.resolve(spec)` gives the same model back
    in any process.

    Example: `ModelSpec("./my-model", task="embedding", pooling="cls")`.
    """

    model: str
    weights: str | None = None       # a factory's weights (safetensors, or a state dict loaded weights_only)
    task: str | None = None          # overrides what the model says (or what its outputs suggest)
    pooling: str | None = None       # embeddings of a transformers folder: mean, cls, max, ...
    num_heads: int | None = None     # attention facts for graph fusion, where the graph does not say them
    hidden_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a non-empty string (zoo name, path or pkg.mod:fn), got {self.model!r}")
        object.__setattr__(self, "task", canonical_task(self.task))
        if self.pooling is not None and self.pooling not in POOLING:
            raise ConfigError(f"--pooling '{self.pooling}' is not one of {', '.join(POOLING)}")
        for flag, value in (("--num-heads", self.num_heads), ("--hidden-size", self.hidden_size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{flag} must be a positive integer, got {value!r}")
        if self.num_heads and self.hidden_size and self.hidden_size % self.num_heads:
            raise ConfigError(f"--hidden-size {self.hidden_size} is not a multiple of --num-heads {self.num_heads}: "
                              f"each head takes hidden_size / num_heads channels")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> "ModelSpec":
        """A spec from its dict; a plain string (what run directories of earlier versions stored) is a model name."""
        if isinstance(data, str):
            return cls(model=data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model spec has unknown field '{unknown[0]}': its fields are {', '.join(sorted(known))}")
        return cls(**data)

    def with_model(self, model: str) -> "ModelSpec":
        return dataclasses.replace(self, model=model)
