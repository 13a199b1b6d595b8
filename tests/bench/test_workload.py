"""Batches as users make them: for texts, similar lengths together (as sentence-transformers' `encode` sorts
them), measured beside consecutive batches; `predict` batches by length and still writes in input order."""

import numpy as np

import infertune
from infertune.bench.job import Timing
from infertune.bench.workload import build_workload, length_order
from infertune.testing.folders import keyword_texts, write_jsonl


def _texts(tmp_path, n=96):
    texts, labels = keyword_texts(n, seed=3)
    texts = [t + " and more" * (i % 7) for i, t in enumerate(texts)]  # lengths that vary a lot
    return write_jsonl(tmp_path / "texts.jsonl", texts, labels), texts


def test_grouped_batches_hold_texts_of_similar_length(keyword_folder, tmp_path):
    data, texts = _texts(tmp_path)
    model, dataset = infertune.resolve(str(keyword_folder), data=str(data))
    split = dataset.split("all")
    workload = build_workload(model, split, (1, 8))
    assert 1 not in workload.grouped and workload.grouped[8]

    def widths(batches):
        return [b["input_ids"].shape[1] for b in batches]

    # a grouped batch pads less than a consecutive one: its longest text is close to its shortest
    assert np.mean(widths(workload.grouped[8])) < np.mean(widths(workload.batches[8]))
    order = length_order(split)
    lengths = np.array([len(t) for t in split.texts])
    assert np.all(np.diff(lengths[order]) >= 0)


def test_bench_prints_both_figures_for_texts(keyword_folder, tmp_path):
    data, _ = _texts(tmp_path)
    result = infertune.benchmark(str(keyword_folder), data=str(data), backend="onnxruntime", batch_sizes=(1, 8),
                                 timing=Timing(warmup=1, min_runs=5, min_seconds=0.0, max_runs=20, max_seconds=2.0))
    assert result.grouped_at(8) is not None and result.grouped_at(8).items_per_s > 0
    assert result.grouped_at(1) is None and result.at(8).items_per_s > 0


def test_predict_batches_by_length_and_writes_in_input_order(keyword_folder, tmp_path):
    data, texts = _texts(tmp_path, n=40)
    out = tmp_path / "out.npz"
    infertune.predict(str(keyword_folder), data=str(data), out=out, batch_size=8)
    written = next(iter(np.load(out).values()))
    engine = infertune.load(str(keyword_folder))
    _, dataset = infertune.resolve(str(keyword_folder), data=str(data))
    split = dataset.split("all")
    one_by_one = np.concatenate([next(iter(engine.run(engine.model.inputs_for(split, np.array([i]))).values()))
                                 for i in range(len(texts))])
    np.testing.assert_allclose(written, one_by_one, atol=1e-4)
