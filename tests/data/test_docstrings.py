"""The docstrings zoo data set: enough real sentences, disjoint stable splits, prose only."""

import hashlib

import pytest

from infertune.data import load_dataset
from infertune.data.docstrings import docstring_sentences, find_sentences, load_docstrings


@pytest.fixture(scope="module")
def docstrings():
    return load_docstrings()


def test_docstrings_has_at_least_1000_sentences(docstrings):
    assert sum(len(split) for split in docstrings.splits.values()) >= 1000


def test_docstrings_heldout_has_512_and_calibration_256_texts(docstrings):
    assert len(docstrings.split("heldout")) == 512 >= 256
    assert len(docstrings.split("calibration")) == 256
    assert len(docstrings.split("train")) >= 1000 - 512 - 256


def test_docstrings_splits_are_disjoint_and_cover_every_sentence(docstrings):
    texts = {name: set(split.texts) for name, split in docstrings.splits.items()}
    assert not texts["heldout"] & texts["train"]
    assert not texts["heldout"] & texts["calibration"]
    assert not texts["calibration"] & texts["train"]
    assert texts["heldout"] | texts["calibration"] | texts["train"] == set(docstring_sentences())


def test_docstrings_load_identically_twice(docstrings):
    again = load_docstrings()
    for name, split in docstrings.splits.items():
        assert again.split(name).texts == split.texts
    assert find_sentences() == docstring_sentences()


def test_docstrings_heldout_is_the_512_lowest_sha1_hashes(docstrings):
    by_hash = sorted(docstring_sentences(), key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    assert docstrings.split("heldout").texts == tuple(sorted(by_hash[:512]))


def test_docstrings_splits_are_sorted_texts_without_labels(docstrings):
    assert docstrings.kind == "text"
    for split in docstrings.splits.values():
        assert split.texts == tuple(sorted(split.texts))
        assert split.inputs is None and split.labels is None


def test_docstring_sentences_are_ascii_prose_of_6_to_40_words(docstrings):
    for split in docstrings.splits.values():
        for text in split.texts:
            assert text.isascii() and text.endswith(".") and text[0].isupper(), text
            assert 6 <= len(text.split()) <= 40, text
            assert ">>>" not in text and "{" not in text and "=" not in text, text


def test_load_dataset_docstrings_returns_the_text_data_set():
    dataset = load_dataset("docstrings")
    assert dataset.name == "docstrings" and dataset.kind == "text"


def test_docstring_split_take_keeps_texts_in_index_order(docstrings):
    heldout = docstrings.split("heldout")
    subset = heldout.take([3, 1])
    assert subset.texts == (heldout.texts[3], heldout.texts[1])
    assert subset.name == "heldout" and subset.labels is None


def test_docstring_sentences_do_not_depend_on_what_was_imported_or_patched(monkeypatch):
    import inspect

    before = find_sentences()
    monkeypatch.setattr(inspect, "getfile", lambda obj: "patched")  # as torch does on import
    assert find_sentences() == before
