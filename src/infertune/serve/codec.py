"""KServe v2 (Open Inference Protocol) JSON in and out: a request is decoded and checked against the model's
signature before it may join a batch, so a malformed item is answered 400 alone and never reaches the engine.

The binary tensor data extension (as Triton and KServe define it, so tritonclient works) is supported both ways:
a request whose `Inference-Header-Content-Length` header gives the JSON's size carries the raw little-endian
bytes of inputs marked `"parameters": {"binary_data_size": n}` after the JSON; outputs asked for with
`"binary_data": true` (or the request parameter `binary_data_output`) come back the same way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from infertune.model.signature import Signature

# numpy dtype name <-> KServe v2 datatype
DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
             "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}
TEXT_INPUT = "text"
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_TYPE = "application/octet-stream"
MAX_TEXT_CHARS = 20_000
_ALLOWED = {"f": {int, float}, "i": {int}, "b": {bool}}  # exact types: JSON true is not the number 1


class RequestError(Exception):
    """A request the server answers with `status` and a message naming the problem (never a traceback)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class ServedModel:
    """What the HTTP layer knows of a model: its name, signature, and tokenizer for text models."""

    name: str
    signature: Signature
    encode_texts: Any = None  # list[str] -> dict of arrays, for text models
    max_batch_size: int = 32
    default_data: str | None = None

    @property
    def is_text(self) -> bool:
        return self.encode_texts is not None

    def body_limit(self) -> int:
        """The largest body a valid request can need: `max_batch_size` rows of every input as JSON numbers (32
        bytes a value, more than any float's text) or of MAX_TEXT_CHARS escaped characters, plus 64 KiB. A larger
        body is refused (413) from its Content-Length, before any of it is read or parsed. 8 MiB when an input
        has a dimension of unknown size."""
        slack = 64 * 1024
        if self.is_text:
            return self.max_batch_size * MAX_TEXT_CHARS * 6 + slack  # \uXXXX is 6 bytes a character
        per_row = 0
        for spec in self.signature.inputs:
            if not all(isinstance(d, int) for d in spec.shape[1:]):
                return 8 * 1024 * 1024
            per_row += math.prod(spec.shape[1:])
        return self.max_batch_size * per_row * 32 + slack

    def metadata(self) -> dict[str, Any]:
        if self.is_text:
            inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
        else:
            inputs = [_tensor_meta(s.name, s.dtype, s.shape) for s in self.signature.inputs]
        return {"name": self.name, "versions": ["1"], "platform": "infertune", "inputs": inputs,
                "outputs": [_tensor_meta(s.name, s.dtype, s.shape) for s in self.signature.outputs],
                "parameters": {"max_batch_size": self.max_batch_size,
                               **({"default_data": self.default_data} if self.default_data else {})}}


def _tensor_meta(name: str, dtype: str, shape) -> dict[str, Any]:
    return {"name": name, "datatype": DATATYPES.get(dtype, dtype.upper()),
            "shape": [d if isinstance(d, int) else -1 for d in shape]}


@dataclass
class Decoded:
    """A checked request: model inputs (tokenized for text), its row count, and what identifies it."""

    inputs: dict[str, np.ndarray]
    rows: int
    request_id: str | None
    outputs: list[str] | None
    timeout_ms: float | None
    key: bytes = b""  # hash of the model's name and the request's inputs: the response cache's key
    texts: list[str] | None = field(default=None, repr=False)
    binary: frozenset[str] = frozenset()  # outputs to answer as binary data


def decode(body: bytes, model: ServedModel, header_length: bytes | None = None) -> Decoded:
    """Parse and check an infer request; raise RequestError(400) naming the input, the expected and the
    received shape or type. `header_length`: the Inference-Header-Content-Length header, when sent."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise RequestError(400, f"{HEADER_LENGTH} must be the size in bytes of the JSON at the start of the "
                                    f"body ({len(body)} bytes), got {header_length.decode(errors='replace')!r}")
        body, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"request body is not valid JSON ({e}): send a KServe v2 infer request "
                                f'{{"inputs": [{{"name", "shape", "datatype", "data"}}]}}') from None
    if not isinstance(request, dict):
        raise RequestError(400, f"request body must be a JSON object, got {type(request).__name__}")
    items = request.get("inputs")
    if not isinstance(items, list) or not items:
        raise RequestError(400, 'request needs "inputs": a non-empty list of {"name", "shape", "datatype", "data"}')
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, f'"id" must be a string, got {type(request_id).__name__}')
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, '"parameters" must be a JSON object')
    timeout_ms = _timeout(parameters.get("timeout_ms"))
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise RequestError(400, f"parameters.binary_data_output must be true or false, got {binary_output!r}")
    outputs, binary_outputs = _requested_outputs(request.get("outputs"), model, binary_output)
    tensors: dict[str, dict] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, 'each entry of "inputs" must be an object with a string "name"')
        if item["name"] in tensors:
            raise RequestError(400, f"input '{item['name']}' is given twice")
        tensors[item["name"]] = item
    raw = _binary_parts(tensors, binary)
    if model.is_text:
        texts = _texts(tensors, model, raw.get(TEXT_INPUT))
        key = _key(model.name, outputs, [t.encode() for t in texts])
        return Decoded(inputs={}, rows=len(texts), request_id=request_id, outputs=outputs, timeout_ms=timeout_ms,
                       key=key, texts=texts, binary=binary_outputs)
    inputs = {}
    for spec in model.signature.inputs:
        if spec.name not in tensors:
            raise RequestError(400, f"input '{spec.name}' is missing: model '{model.name}' expects "
                                    f"{_expects(model)}")
        inputs[spec.name] = _array(tensors.pop(spec.name), spec, model, raw.get(spec.name))
    if tensors:
        raise RequestError(400, f"unknown input '{next(iter(tensors))}': model '{model.name}' expects "
                                f"{_expects(model)}")
    rows = {a.shape[0] for a in inputs.values()}
    if len(rows) > 1:
        raise RequestError(400, f"inputs differ in their first (batch) dimension: "
                                f"{', '.join(f'{n}: {a.shape[0]}' for n, a in inputs.items())}")
    n = rows.pop()
    _check_rows(n, model)
    key = _key(model.name, outputs, [f"{k}:{a.dtype}:{a.shape}".encode() + a.tobytes() for k, a in inputs.items()])
    return Decoded(inputs=inputs, rows=n, request_id=request_id, outputs=outputs, timeout_ms=timeout_ms, key=key,
                   binary=binary_outputs)


def encode(model: ServedModel, decoded: Decoded, outputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str] | None]:
    """The response body, and its headers when it carries binary data (None: plain JSON)."""
    tensors, raw = [], []
    for name in decoded.outputs or list(outputs):
        array = outputs[name]
        tensor = {"name": name, "datatype": DATATYPES.get(str(array.dtype), str(array.dtype).upper()),
                  "shape": list(array.shape)}
        if name in decoded.binary:
            data = to_binary(array)
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = array.ravel()
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model.name, "model_version": "1", "outputs": tensors}
    if decoded.request_id is not None:
        body["id"] = decoded.request_id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return header, None
    return header + b"".join(raw), {HEADER_LENGTH: str(len(header)), "Content-Type": BINARY_TYPE}


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _expects(model: ServedModel) -> str:
    if model.is_text:
        return f"one BYTES input '{TEXT_INPUT}' of shape [n] holding n strings"
    return "; ".join(f"'{s.name}' {DATATYPES.get(s.dtype, s.dtype)} {_shape(s.shape)}" for s in model.signature.inputs)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape) + "]"


def _timeout(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise RequestError(400, f'parameters.timeout_ms must be a positive number of milliseconds, got {value!r}')
    return float(value)


def _requested_outputs(value, model: ServedModel, binary_output: bool) -> tuple[list[str] | None, frozenset[str]]:
    """The outputs asked for (None: all), and those to answer as binary data."""
    names = model.signature.output_names
    if value is None:
        return None, frozenset(names if binary_output else ())
    if not isinstance(value, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise RequestError(400, '"outputs" must be a list of {"name": ...}')
    wanted, binary = [], set()
    for output in value:
        name = output["name"]
        if name not in names:
            raise RequestError(400, f"unknown output '{name}': model '{model.name}' has {', '.join(names)}")
        parameters = output.get("parameters") or {}
        flag = parameters.get("binary_data", binary_output) if isinstance(parameters, dict) else None
        if not isinstance(flag, bool):
            raise RequestError(400, f"output '{name}': parameters.binary_data must be true or false")
        wanted.append(name)
        if flag:
            binary.add(name)
    if not wanted:
        return None, frozenset(names if binary_output else ())
    return wanted, frozenset(binary)


def _binary_parts(tensors: dict[str, dict], binary) -> dict[str, memoryview]:
    """Each binary input's bytes, cut from what follows the JSON in the order the inputs came."""
    parts, offset = {}, 0
    for name, item in tensors.items():
        parameters = item.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(400, f"input '{name}': parameters.binary_data_size must be a byte count, got {size!r}")
        if "data" in item:
            raise RequestError(400, f"input '{name}' has both \"data\" and binary_data_size: send one of them")
        if offset + size > len(binary):
            raise RequestError(400, f"input '{name}' says binary_data_size {size}, but only {len(binary) - offset} "
                                    f"bytes follow the JSON for it: send the {HEADER_LENGTH} header and the tensor "
                                    f"bytes after the JSON")
        parts[name] = binary[offset:offset + size]
        offset += size
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} bytes after the JSON belong to no input: the inputs' "
                                f"binary_data_size add up to {offset}")
    return parts


def _check_shape_field(item: dict, name: str) -> list[int]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise RequestError(400, f"input '{name}' needs \"shape\": a list of non-negative integers, got {shape!r}")
    return shape


def _flat(data, name: str) -> list:
    if not isinstance(data, list):
        raise RequestError(400, f"input '{name}' needs \"data\": a list of values, got {type(data).__name__}")
    if data and isinstance(data[0], list):  # nested row-major lists are allowed, as in KServe v2
        try:
            return np.asarray(data, dtype=object).ravel().tolist()
        except ValueError:
            raise RequestError(400, f"input '{name}' has ragged nested data: every row must be as long") from None
    return data


def _array(item: dict, spec, model: ServedModel, raw: memoryview | None = None) -> np.ndarray:
    name = spec.name
    expected_type = DATATYPES.get(spec.dtype, spec.dtype)
    if item.get("datatype") != expected_type:
        raise RequestError(400, f"input '{name}' has datatype {item.get('datatype')!r}, expected {expected_type}")
    shape = _check_shape_field(item, name)
    if shape:  # the declared rows against --max-batch-size before any value is read (limits before cost)
        _check_rows(shape[0], model)
    if len(shape) != len(spec.shape) or any(isinstance(d, int) and d != s for d, s in zip(spec.shape, shape)) \
            or 0 in shape[1:]:
        raise RequestError(400, f"input '{name}' has shape {shape}, expected {_shape(spec.shape)}")
    kind = np.dtype(spec.dtype).kind
    if raw is not None:
        wire = np.dtype("uint8" if kind == "b" else spec.dtype).newbyteorder("<")
        if len(raw) != math.prod(shape) * wire.itemsize:
            raise RequestError(400, f"input '{name}' has {len(raw)} bytes of binary data; shape {shape} of "
                                    f"{expected_type} needs {math.prod(shape) * wire.itemsize}")
        array = np.frombuffer(raw, dtype=wire).reshape(shape)
        if kind == "b":
            if (array > 1).any():
                raise RequestError(400, f"input '{name}' (BOOL) holds a byte other than 0 or 1")
            array = array.astype(bool)
        else:
            array = array.astype(spec.dtype)  # native byte order, and a copy the engine may keep
        if kind == "f" and not np.isfinite(array).all():
            raise RequestError(400, f"input '{name}' holds a value that is not finite (NaN or infinity)")
        return array
    data = _flat(item.get("data"), name)
    if len(data) != math.prod(shape):
        raise RequestError(400, f"input '{name}' has {len(data)} values; shape {shape} needs {math.prod(shape)}")
    allowed = _ALLOWED[kind if kind in "fb" else "i"]
    if not set(map(type, data)) <= allowed:
        bad = next(v for v in data if type(v) not in allowed)
        raise RequestError(400, f"input '{name}' ({expected_type}) holds {bad!r} ({type(bad).__name__}): "
                                f"send {'numbers' if kind == 'f' else 'integers' if kind in 'iu' else 'booleans'}")
    try:
        array = np.asarray(data, dtype=spec.dtype).reshape(shape)
    except OverflowError:
        raise RequestError(400, f"input '{name}' holds a value out of range for {expected_type}") from None
    if kind == "f" and not np.isfinite(array).all():
        raise RequestError(400, f"input '{name}' holds a value that is not finite (NaN or infinity) or overflows "
                                f"{expected_type}")
    return array


def _texts(tensors: dict[str, dict], model: ServedModel, raw: memoryview | None = None) -> list[str]:
    item = tensors.pop(TEXT_INPUT, None)
    if item is None:
        raise RequestError(400, f"input '{TEXT_INPUT}' is missing: model '{model.name}' expects {_expects(model)}")
    if tensors:
        raise RequestError(400, f"unknown input '{next(iter(tensors))}': model '{model.name}' expects "
                                f"{_expects(model)}")
    if item.get("datatype") != "BYTES":
        raise RequestError(400, f"input '{TEXT_INPUT}' has datatype {item.get('datatype')!r}, expected BYTES")
    shape = _check_shape_field(item, TEXT_INPUT)
    if len(shape) == 1:
        _check_rows(shape[0], model)
    data = _flat(item.get("data"), TEXT_INPUT) if raw is None else _binary_strings(raw)
    if len(shape) != 1 or shape[0] != len(data):
        raise RequestError(400, f"input '{TEXT_INPUT}' has shape {shape} and {len(data)} strings; "
                                f"expected shape [{len(data)}]")
    bad = next((v for v in data if not isinstance(v, str)), None)
    if bad is not None:
        raise RequestError(400, f"input '{TEXT_INPUT}' holds {bad!r} ({type(bad).__name__}): send strings")
    long = next((i for i, v in enumerate(data) if len(v) > MAX_TEXT_CHARS), None)
    if long is not None:  # the model reads at most a few hundred tokens; tokenizing megabytes would stall the loop
        raise RequestError(400, f"string {long} of input '{TEXT_INPUT}' has {len(data[long])} characters, over the "
                                f"limit of {MAX_TEXT_CHARS}: split or shorten it")
    _check_rows(len(data), model)
    return data


def _binary_strings(raw: memoryview) -> list[str]:
    """BYTES as binary data: each element a 4-byte little-endian length, then that many bytes (UTF-8 here)."""
    texts, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(400, f"input '{TEXT_INPUT}': binary data ends inside a 4-byte length prefix")
        size = int.from_bytes(raw[offset:offset + 4], "little")
        offset += 4
        if offset + size > len(raw) or size > 4 * MAX_TEXT_CHARS:
            raise RequestError(400, f"input '{TEXT_INPUT}': a string of {size} bytes does not fit the binary data "
                                    f"(or the limit of {4 * MAX_TEXT_CHARS} bytes)")
        try:
            texts.append(str(raw[offset:offset + size], "utf-8"))
        except UnicodeDecodeError:
            raise RequestError(400, f"input '{TEXT_INPUT}': string {len(texts)} is not UTF-8") from None
        offset += size
    return texts


def to_binary(array: np.ndarray) -> bytes:
    """A tensor as binary data: little-endian, row major, no padding."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def to_binary_strings(texts: list[str]) -> bytes:
    return b"".join(len(b).to_bytes(4, "little") + b for b in (t.encode() for t in texts))


def _check_rows(n: int, model: ServedModel) -> None:
    if n < 1:
        raise RequestError(400, "the request holds no samples: the first (batch) dimension is 0")
    if n > model.max_batch_size:
        raise RequestError(400, f"the request holds {n} samples, more than the server's --max-batch-size "
                                f"{model.max_batch_size}: split it, or start the server with a larger one")


def _key(name: str, outputs: list[str] | None, parts: list[bytes]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(name.encode() + b"\0" + ",".join(outputs or []).encode() + b"\0")
    for part in parts:
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.digest()
