import orjson
import pytest

from infertune.model.signature import Signature, TensorSpec
from infertune.serve.codec import MAX_TEXT_CHARS, RequestError, ServedModel, decode

ARRAYS = ServedModel("m", Signature(inputs=(TensorSpec("x", "float32", ("batch", "sequence")),),
                                    outputs=(TensorSpec("y", "float32", ("batch", 2)),)))
TEXT = ServedModel("t", ARRAYS.signature, encode_texts=lambda texts: {})


def body(**tensor) -> bytes:
    return orjson.dumps({"inputs": [tensor]})


def test_a_dynamic_axis_of_size_zero_is_a_bad_shape():
    with pytest.raises(RequestError, match=r"input 'x' has shape \[1, 0\], expected \[-1, -1\]"):
        decode(body(name="x", datatype="FP32", shape=[1, 0], data=[]), ARRAYS)


def test_booleans_are_not_numbers_and_cache_keys_follow_the_values():
    with pytest.raises(RequestError, match=r"holds True \(bool\): send numbers"):
        decode(body(name="x", datatype="FP32", shape=[1, 2], data=[1.0, True]), ARRAYS)
    a = decode(body(name="x", datatype="FP32", shape=[1, 2], data=[1.0, 2.0]), ARRAYS)
    b = decode(body(name="x", datatype="FP32", shape=[1, 2], data=[[1, 2]]), ARRAYS)  # nested, ints
    c = decode(body(name="x", datatype="FP32", shape=[1, 2], data=[1.0, 3.0]), ARRAYS)
    assert a.key == b.key != c.key and a.rows == 1


def test_an_overlong_string_is_refused_before_tokenizing():
    with pytest.raises(RequestError, match=f"over the limit of {MAX_TEXT_CHARS}"):
        decode(body(name="text", datatype="BYTES", shape=[1], data=["a" * (MAX_TEXT_CHARS + 1)]), TEXT)
    assert decode(body(name="text", datatype="BYTES", shape=[2], data=["a", "b"]), TEXT).texts == ["a", "b"]


def binary_request(tensors: list[dict], raw: bytes, **extra) -> tuple[bytes, bytes]:
    header = orjson.dumps({"inputs": tensors, **extra})
    return header + raw, str(len(header)).encode()


def test_binary_inputs_decode_to_the_same_arrays_and_key_as_json():
    import numpy as np

    values = np.array([[1.5, -2.0, 3.25]], np.float32)
    as_json = decode(body(name="x", datatype="FP32", shape=[1, 3], data=values.ravel().tolist()), ARRAYS)
    raw, length = binary_request([{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                   "parameters": {"binary_data_size": 12}}], values.tobytes())
    as_binary = decode(raw, ARRAYS, length)
    np.testing.assert_array_equal(as_binary.inputs["x"], values)
    assert as_binary.inputs["x"].flags.writeable and as_binary.key == as_json.key

    from infertune.serve.codec import to_binary_strings

    strings = to_binary_strings(["ab", "Ünï"])
    assert len(strings) == 4 + 2 + 4 + 5  # a 4-byte length before each string's UTF-8
    raw, length = binary_request([{"name": "text", "datatype": "BYTES", "shape": [2],
                                   "parameters": {"binary_data_size": len(strings)}}], strings)
    assert decode(raw, TEXT, length).texts == ["ab", "Ünï"]


@pytest.mark.parametrize("size, raw, length, message", [
    (12, b"\0" * 8, None, r"binary_data_size 12, but only 8 bytes follow the JSON"),
    (8, b"\0" * 8, None, r"has 8 bytes of binary data; shape \[1, 3\] of FP32 needs 12"),
    (12, b"\0" * 16, None, r"4 bytes after the JSON belong to no input"),
    (-1, b"", None, r"binary_data_size must be a byte count, got -1"),
    (12, b"\0" * 12, b"999999", r"Inference-Header-Content-Length must be the size in bytes of the JSON"),
    (12, b"\0" * 8 + b"\0\0\xc0\x7f", None, r"not finite"),
])
def test_bad_binary_requests_name_what_is_wrong(size, raw, length, message):
    request, header_length = binary_request([{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                              "parameters": {"binary_data_size": size}}], raw)
    with pytest.raises(RequestError, match=message):
        decode(request, ARRAYS, length or header_length)


def test_binary_outputs_are_raw_little_endian_after_the_json():
    import numpy as np

    from infertune.serve.codec import encode

    decoded = decode(body(name="x", datatype="FP32", shape=[1, 3], data=[1.0, 2.0, 3.0]) [:-1] +
                     b',"parameters":{"binary_data_output":true}}', ARRAYS)
    outputs = {"y": np.array([[0.5, -1.0]], np.float32)}
    response, headers = encode(ARRAYS, decoded, outputs)
    length = int(headers["Inference-Header-Content-Length"])
    meta = orjson.loads(response[:length])["outputs"][0]
    assert meta["parameters"] == {"binary_data_size": 8} and "data" not in meta
    np.testing.assert_array_equal(np.frombuffer(response[length:], "<f4").reshape(meta["shape"]), outputs["y"])
    plain, none = encode(ARRAYS, decode(body(name="x", datatype="FP32", shape=[1, 3], data=[1.0, 2.0, 3.0]), ARRAYS),
                         outputs)
    assert none is None and orjson.loads(plain)["outputs"][0]["data"] == [0.5, -1.0]
