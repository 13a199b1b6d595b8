"""infertune: make a trained model respond faster, and prove what it cost.

The public verbs are imported lazily so that `import infertune` stays cheap (no torch, no runtimes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["apply_passes", "benchmark", "export_onnx", "load", "load_model", "optimize", "predict", "resolve",
           "serve", "__version__"]

if TYPE_CHECKING:
    from infertune.api import apply_passes, benchmark, optimize
    from infertune.engine import load
    from infertune.passes.export import export_onnx
    from infertune.predict import predict
    from infertune.resolver import load_model, resolve
    from infertune.serve.server import serve

_LAZY = {
    "resolve": "infertune.resolver",
    "load_model": "infertune.resolver",
    "benchmark": "infertune.api",
    "load": "infertune.engine",
    "export_onnx": "infertune.passes.export",
    "apply_passes": "infertune.api",
    "optimize": "infertune.api",
    "predict": "infertune.predict",
    "serve": "infertune.serve.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'infertune' has no attribute '{name}'")
