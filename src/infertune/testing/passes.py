"""A pass for tests of the search's failure handling: it kills its process, as a crashing runtime would.
Registered only when imported (INFERTUNE_PLUGINS=infertune.testing.passes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from infertune.passes.registry import PassContext, PassOutput, param, register


@dataclass(frozen=True)
class AbortProcess:
    signal: str = param("abort", "how the process dies: abort (SIGABRT)")


@register("test-abort", AbortProcess, formats=("torch", "onnx"), searched=False,
          summary="kills its process (tests only)")
def abort_process(model, config: AbortProcess, ctx: PassContext) -> PassOutput:
    os.abort()
