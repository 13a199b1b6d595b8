"""infertune: make a trained model respond faster, and prove what it cost.

The public verbs are imported lazily so that `import infertune` stays cheap (no torch, no runtimes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["apply_passes", "benchmark", "export_onnx", "load", "load_model", "optimize", "serve", "__version__"]

if TYPE_CHECKING:
    from infertune.bench import benchmark
    from infertune.engine import load
    from infertune.model import load_model
    from infertune.passes import apply_passes
    from infertune.passes.export import export_onnx
    from infertune.search.run import optimize
    from infertune.serve.server import serve

_LAZY = {
    "benchmark": "infertune.bench",
    "load": "infertune.engine",
    "load_model": "infertune.model",
    "export_onnx": "infertune.passes.export",
    "apply_passes": "infertune.passes",
    "optimize": "infertune.search.run",
    "serve": "infertune.serve.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'infertune' has no attribute '{name}'")
