"""The offline text corpus: deterministic, and never holding a held-out sentence."""

import pytest

from infertune.data.corpus import build_corpus, normalise, package_sentences
from infertune.data.docstrings import load_docstrings

SMALL = ("email", "http", "json", "logging", "unittest")  # standard-library packages: a quick scan


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_CACHE_DIR", str(tmp_path / "cache"))


def test_corpus_builds_identically_twice_with_and_without_the_cache():
    heldout = load_docstrings().split("heldout").texts
    first = build_corpus(exclude=heldout, packages=SMALL)
    cached = build_corpus(exclude=heldout, packages=SMALL)
    fresh = build_corpus(exclude=heldout, packages=SMALL, cache=False)
    assert len(first) > 300
    assert first == cached == fresh == tuple(sorted(set(first)))


def test_corpus_never_overlaps_the_heldout_split():
    heldout = load_docstrings().split("heldout").texts
    everything = package_sentences(SMALL)
    assert set(everything) & set(heldout)  # the stdlib's own docstrings: the held-out split is in there
    corpus = build_corpus(exclude=heldout, packages=SMALL)
    assert not {normalise(s) for s in corpus} & {normalise(s) for s in heldout}
    assert len(corpus) == len(everything) - len(set(everything) & set(heldout))


def test_corpus_excludes_heldout_texts_whatever_their_case_and_spacing():
    everything = package_sentences(SMALL)
    heldout = [everything[0].upper(), "  ".join(everything[1].split())]
    corpus = build_corpus(exclude=heldout, packages=SMALL)
    assert everything[0] not in corpus and everything[1] not in corpus and everything[2] in corpus


def test_corpus_limit_is_a_stable_sample_of_the_whole():
    corpus = build_corpus(exclude=(), packages=SMALL, limit=100)
    assert len(corpus) == 100 and corpus == build_corpus(exclude=(), packages=SMALL, limit=100)
    assert set(corpus) <= set(package_sentences(SMALL)) and corpus != package_sentences(SMALL)[:100]


def test_corpus_skips_packages_that_are_not_installed():
    assert package_sentences(("no_such_package_here",), cache=False) == ()
