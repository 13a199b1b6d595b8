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
