"""One base error, one subclass per kind.

`InputError` and its subclasses are "your input is wrong": the CLI prints them on one line and exits 2.
Everything else under `InfertuneError` is "this step failed on this model": exit 1, and the search
(later) records it against the candidate and moves on.
"""

from __future__ import annotations


class InfertuneError(Exception):
    """Base class of every error infertune raises on purpose."""


class InputError(InfertuneError):
    """The user's input (model, data, option) is wrong; the message names the value and the fix."""


class ConfigError(InputError):
    """An option or config value is out of range or unknown."""


class DataError(InputError):
    """A data set does not fit the model: missing input, wrong dtype, sample counts, non-finite values."""


class UnsupportedModelError(InputError):
    """The model cannot be loaded, or this operation does not apply to it."""


class BackendUnavailableError(InfertuneError):
    """A runtime is not installed or has no device here (for example CUDA without a GPU)."""


class ExportError(InfertuneError):
    """Export to another format failed, or its outputs differ from the source beyond tolerance."""


class PassError(InfertuneError):
    """A pass could not be applied to this model (its structure, its outputs): the search records it and
    moves on; it is not the user's input error."""
