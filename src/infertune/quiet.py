"""Third-party start-up chatter that says nothing to our users (torchao's optional CUDA kernels on a CPU
machine, torch's notes to library authors) is lowered to errors-only before those libraries load."""

from __future__ import annotations

import logging

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx._internal.exporter._registration", "nncf")


def quiet_third_party_logs() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
