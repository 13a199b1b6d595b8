"""The real MiniLM: slow (loads 90 MB, exports, compiles), so kept few."""

import numpy as np
import pytest

from infertune.bench import Timing, bench_backends
from infertune.resolver import load_model, resolve
from infertune.model.minilm import encode, model_dir

pytestmark = pytest.mark.slow


def test_tokenizer_keeps_natural_length_and_pads_to_the_longest():
    batch = encode(["Return the value.", "Return the number of items in the container, or zero when empty."])
    assert batch["input_ids"].shape[1] < 32  # the package's tokenizer.json would pad to 128
    assert batch["attention_mask"][1].all() and not batch["attention_mask"][0].all()
    single = encode(["Return the value."])
    assert single["input_ids"].shape == (1, int(batch["attention_mask"][0].sum()))


def test_embeddings_match_sentence_transformers():
    import torch
    from sentence_transformers import SentenceTransformer

    sentences = ["Return a new list of the items.", "Open the file and return a stream.", "Hello."]
    model = load_model("minilm")
    inputs = encode(sentences)
    with torch.inference_mode():
        ours = model.module(*[torch.from_numpy(inputs[n]) for n in model.signature.input_names]).numpy()
    theirs = SentenceTransformer(str(model_dir()), device="cpu").encode(sentences, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.9999


def test_every_fp32_backend_matches_torch_eager_on_held_out_sentences():
    configs = [("torch", {}), ("torch-compile", {}), ("onnxruntime", {}), ("onnxruntime", {"exporter": "dynamo"}),
               ("openvino", {})]
    model, data = resolve("minilm")
    results = bench_backends(model, configs, data=data, batch_sizes=(4,), timing=Timing(warmup=0, min_runs=2,
                             min_seconds=0.0), fidelity_samples=64, isolate=False)
    for result in results:
        assert result.ok, result.error
        assert result.precision == "fp32", result.backend
        assert result.fidelity["cosine_min"] >= 0.9999, (result.backend, result.fidelity)
        assert result.fidelity["neighbour_agreement_10"] >= 0.99
