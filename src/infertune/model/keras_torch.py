"""A Keras model rebuilt from torch layers: a chain of Dense / Conv2D / pooling / BatchNormalization / Flatten /
activation layers becomes an `nn.Sequential` of nn.Linear, nn.Conv2d, nn.BatchNorm2d... with the same weights,
channels-first inside (one permute at the input), so every torch pass (structured pruning, distillation, QAT,
low-rank) can rewrite its layers as it rewrites a torch model's. What the rebuild cannot express (a layer it does
not know, a branch, padding 'same' with strides) is reported and the model stays on Keras' torch backend."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"linear": None, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
               "elu": nn.ELU, "selu": nn.SELU, "softplus": nn.Softplus, "silu": nn.SiLU, "swish": nn.SiLU,
               "softmax": lambda: nn.Softmax(dim=-1)}


class NotConvertible(Exception):
    """The Keras model holds something the rebuild cannot express; the message says what."""


class ChannelsFirst(nn.Module):
    """NHWC (Keras' layout) to NCHW (torch's), once, at the model's input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class Rescale(nn.Module):
    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


def to_torch(keras_model) -> tuple[nn.Sequential, list[str]]:
    """The model as torch layers, with a line per Keras layer converted; NotConvertible says why not."""
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise NotConvertible(f"{len(keras_model.inputs)} inputs and {len(keras_model.outputs)} outputs (one each "
                             f"is rebuilt)")
    _check_chain(keras_model)
    rank = len(keras_model.inputs[0].shape)
    layers: list[nn.Module] = [ChannelsFirst()] if rank == 4 else []
    state = {"rank": rank, "spatial": None}  # spatial: (H, W) of the NCHW tensor that a Flatten turned into rows
    done: list[str] = []
    for layer in keras_model.layers:
        kind = type(layer).__name__
        converted = _convert(layer, kind, state)
        if converted is None:
            raise NotConvertible(f"layer '{layer.name}' ({kind}) has no torch rebuild")
        layers.extend(converted)
        if converted:
            done.append(kind)
    if state["spatial"] is not None:
        raise NotConvertible("a Flatten of an image feeds the output with no Dense after it (channels-first order)")
    return nn.Sequential(*layers).eval(), done


def _check_chain(keras_model) -> None:
    """Every layer reads exactly the previous layer's output (a Sequential, or a functional model that is one). A
    Sequential is a chain by construction (and its layers' call records count every rebuild of its graph)."""
    import keras

    ops = [op for op in getattr(keras_model, "operations", keras_model.layers) if not isinstance(op, keras.layers.Layer)]
    if ops:  # `layers` leaves out raw ops (keras.ops.*), which the rebuild would drop
        raise NotConvertible(f"the model calls the op '{ops[0].name}' outside a layer (ops are not rebuilt)")
    if isinstance(keras_model, keras.Sequential):
        return
    previous = keras_model.inputs[0]._keras_history.operation  # the InputLayer (a Sequential does not list it)
    for layer in keras_model.layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) != 1:
            raise NotConvertible(f"layer '{layer.name}' is called {len(nodes)} times (shared layers are not rebuilt)")
        parents = [t._keras_history.operation for t in nodes[0].input_tensors]
        if type(layer).__name__ != "InputLayer" and (len(parents) != 1 or parents[0] is not previous):
            raise NotConvertible(f"layer '{layer.name}' ({type(layer).__name__}) does not read only the previous "
                                 f"layer (branches and merges are not rebuilt)")
        previous = layer
    if keras_model.outputs[0]._keras_history.operation is not previous:
        raise NotConvertible("the model's output is not its last layer's")


def _convert(layer, kind: str, state: dict) -> list[nn.Module] | None:
    if kind in ("InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
        return []  # nothing at inference
    if getattr(layer, "quantization_mode", None) is not None:
        raise NotConvertible(f"layer '{layer.name}' is quantized by Keras ({layer.quantization_mode})")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise NotConvertible(f"layer '{layer.name}' is {layer.data_format} (channels_last is rebuilt)")
    if kind == "Dense":
        return _dense(layer, state)
    if kind == "Conv2D":
        return _conv(layer, state)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        if layer.padding != "valid":
            raise NotConvertible(f"layer '{layer.name}' pools with padding '{layer.padding}'")
        pool = nn.MaxPool2d if kind == "MaxPooling2D" else nn.AvgPool2d
        return [pool(tuple(layer.pool_size), stride=tuple(layer.strides))]
    if kind == "GlobalAveragePooling2D" and not layer.keepdims:
        state["rank"] = 2
        return [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if kind == "Flatten":
        if state["rank"] == 4:
            shape = layer.input.shape  # (batch, H, W, C): the next Dense's rows are reordered from HWC to CHW
            state["spatial"] = (shape[1], shape[2], shape[3])
        state["rank"] = 2
        return [nn.Flatten()]
    if kind == "BatchNormalization":
        if state["spatial"] is not None:
            raise NotConvertible(f"layer '{layer.name}' normalizes flattened image features before a Dense")
        return _batch_norm(layer, state)
    if kind in ("Activation", "ReLU", "Softmax"):
        return _activation_layer(layer, kind, state)
    if kind == "Rescaling":
        scale, offset = np.asarray(layer.scale), np.asarray(layer.offset)
        if scale.size != 1 or offset.size != 1:
            raise NotConvertible(f"layer '{layer.name}' rescales per channel")
        return [Rescale(float(scale), float(offset))]
    return None


def _activation(layer, fn, state: dict) -> list[nn.Module]:
    name = getattr(fn, "__name__", str(fn))
    if name == "softmax" and state["rank"] == 4:
        raise NotConvertible(f"layer '{layer.name}' takes a softmax over channels-last features")
    if name not in ACTIVATIONS:
        raise NotConvertible(f"layer '{layer.name}' uses activation '{name}'")
    make = ACTIVATIONS[name]
    return [] if make is None else [make()]


def _activation_layer(layer, kind: str, state: dict) -> list[nn.Module]:
    if kind == "ReLU":
        if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
            raise NotConvertible(f"layer '{layer.name}' is a ReLU with a cap, slope or threshold")
        return [nn.ReLU()]
    if kind == "Softmax":
        if layer.axis not in (-1, state["rank"] - 1) or state["rank"] == 4:
            raise NotConvertible(f"layer '{layer.name}' takes a softmax over axis {layer.axis}")
        return [nn.Softmax(dim=-1)]
    return _activation(layer, layer.activation, state)


def _dense(layer, state: dict) -> list[nn.Module]:
    if state["rank"] == 4:
        raise NotConvertible(f"layer '{layer.name}' (Dense) reads a 4-d channels-last tensor")
    kernel = torch.from_numpy(np.asarray(layer.kernel.numpy(), np.float32))  # (in, out)
    if state["spatial"] is not None:  # after Flatten of NCHW: row c*H*W + h*W + w was Keras' (h*W + w)*C + c
        height, width, channels = state["spatial"]
        kernel = kernel.reshape(height, width, channels, -1).permute(2, 0, 1, 3).reshape(kernel.shape)
        state["spatial"] = None
    linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.use_bias)
    with torch.no_grad():
        linear.weight.copy_(kernel.T)
        if layer.use_bias:
            linear.bias.copy_(torch.from_numpy(np.asarray(layer.bias.numpy(), np.float32)))
    return [linear, *_activation(layer, layer.activation, state)]


def _conv(layer, state: dict) -> list[nn.Module]:
    if state["rank"] != 4:
        raise NotConvertible(f"layer '{layer.name}' (Conv2D) reads a {state['rank']}-d tensor")
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    if layer.padding == "same" and strides != (1, 1):
        raise NotConvertible(f"layer '{layer.name}' pads 'same' with strides {strides} (Keras pads asymmetrically)")
    kernel = torch.from_numpy(np.asarray(layer.kernel.numpy(), np.float32))  # (kh, kw, in / groups, out)
    conv = nn.Conv2d(kernel.shape[2] * layer.groups, kernel.shape[3], tuple(kernel.shape[:2]), stride=strides,
                     padding=layer.padding, dilation=dilation, groups=layer.groups, bias=layer.use_bias)
    with torch.no_grad():
        conv.weight.copy_(kernel.permute(3, 2, 0, 1))
        if layer.use_bias:
            conv.bias.copy_(torch.from_numpy(np.asarray(layer.bias.numpy(), np.float32)))
    return [conv, *_activation(layer, layer.activation, state)]


def _batch_norm(layer, state: dict) -> list[nn.Module]:
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0] if len(layer.axis) == 1 else None
    if axis not in (-1, state["rank"] - 1):
        raise NotConvertible(f"layer '{layer.name}' normalizes axis {layer.axis} (the channels axis is rebuilt)")
    mean = np.asarray(layer.moving_mean.numpy(), np.float32)
    norm = (nn.BatchNorm2d if state["rank"] == 4 else nn.BatchNorm1d)(mean.shape[0], eps=layer.epsilon,
                                                                          affine=True)
    if state["rank"] == 3:
        raise NotConvertible(f"layer '{layer.name}' normalizes a 3-d tensor")
    with torch.no_grad():
        norm.running_mean.copy_(torch.from_numpy(mean))
        norm.running_var.copy_(torch.from_numpy(np.asarray(layer.moving_variance.numpy(), np.float32)))
        norm.weight.copy_(torch.from_numpy(np.asarray(layer.gamma.numpy(), np.float32)) if layer.scale
                          else torch.ones_like(norm.weight))
        norm.bias.copy_(torch.from_numpy(np.asarray(layer.beta.numpy(), np.float32)) if layer.center
                        else torch.zeros_like(norm.bias))
    return [norm]
