"""A Keras model on the torch backend as a plain torch module: positional tensors in, one tensor (or a tuple)
out, in inference mode (dropout off, batch norm on its moving statistics)."""

from __future__ import annotations

from torch import nn


class KerasModule(nn.Module):
    # Keras layers cast their inputs to their float32 compute dtype: casting the weights to bf16 breaks them
    # (the torch backends run bf16 and fp16 under torch.autocast instead)
    runs_low_precision_by_autocast = True

    def __init__(self, keras_model, inputs: int):
        super().__init__()
        self.keras_model = keras_model  # a torch.nn.Module itself under Keras' torch backend
        self.inputs = inputs

    def forward(self, *tensors):
        result = self.keras_model(tensors[0] if self.inputs == 1 else list(tensors), training=False)
        if isinstance(result, dict):
            return tuple(result.values())
        return tuple(result) if isinstance(result, list) else result
