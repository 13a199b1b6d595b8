"""A sentence-transformers folder given by its path: the bundled MiniLM behaves as the zoo name does, and a copy
switched to CLS pooling matches sentence-transformers' own encode (the real MiniLM: slow)."""

import json
import shutil

import numpy as np
import pytest

import infertune
from infertune.model.minilm import model_dir

pytestmark = pytest.mark.slow

SENTENCES = ["Return a new list of the items.", "Open the file and return a stream; raise OSError upon failure.",
             "x", "A long text that runs past the model's maximum length. " * 40]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _embed(spec: str) -> np.ndarray:
    engine = infertune.load(spec, backend="torch")
    return np.concatenate([engine.run(engine.encode([s]))["sentence_embedding"] for s in SENTENCES])


def test_minilm_folder_path_gives_the_zoo_embeddings():
    folder = model_dir()
    model, _ = infertune.resolve(str(folder))
    assert model.task == "embedding" and model.meta["pooling"] == ["mean"] and model.meta["normalize"] is True
    assert model.encode_texts.max_length == 256  # sentence_bert_config.json's max_seq_length
    cosine = _cosines(_embed(str(folder)), _embed("minilm"))
    print(f"\nMiniLM folder vs zoo name: min cosine {cosine.min():.7f}")
    assert cosine.min() >= 0.9999


def test_cls_pooling_copy_matches_sentence_transformers_encode(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "minilm-cls"
    shutil.copytree(model_dir(), folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(model_dir() / "model.safetensors")
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    config_path.write_text(json.dumps(config))
    model, _ = infertune.resolve(str(folder))
    assert model.meta["pooling"] == ["cls"]
    ours = _embed(str(folder))
    theirs = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    cosine = _cosines(ours, theirs)
    mean_vs_cls = _cosines(ours, _embed(str(model_dir())))
    print(f"\nCLS copy vs sentence-transformers encode: min cosine {cosine.min():.7f}; "
          f"vs the mean-pooled original: {mean_vs_cls.min():.3f}")
    assert cosine.min() >= 0.9999
    assert mean_vs_cls.min() < 0.99  # the pooling did change: CLS is not the mean
