"""`DataSpec`: what the user named as data, as a typed record that crosses processes and files as a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from infertune.errors import ConfigError

DEFAULT_TEXT_FIELD = "text"
DEFAULT_LABEL_FIELD = "label"


@dataclass(frozen=True)
class DataSpec:
    """A data set as the user named it: a zoo data set or a file, an optional held-out file, and which fields
    of a text file hold the text and the label.

    Example: `DataSpec("reviews.jsonl", heldout="test.jsonl", text_field="sentence")`.
    """

    data: str
    heldout: str | None = None
    text_field: str = DEFAULT_TEXT_FIELD
    label_field: str = DEFAULT_LABEL_FIELD

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError(f"data must be a non-empty string (a zoo data set or a file), got {self.data!r}")
        for flag, value in (("--text-field", self.text_field), ("--label-field", self.label_field)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{flag} must be a non-empty field name, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"data spec has unknown field '{unknown[0]}': its fields are {', '.join(sorted(known))}")
        return cls(**data)
