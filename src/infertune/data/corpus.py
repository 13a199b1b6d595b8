"""An unlabeled English corpus built offline from what the machine already holds: the prose sentences of the
docstrings of installed packages (numpy, scipy, torch, transformers, ...) and of the standard library, for
distilling text models on far more text than a data set's train split.

Sources are read with `ast`, never imported, so building it runs no package code. The corpus is deterministic
for a given set of installed packages (a sorted set of sentences) and never holds a sentence of the held-out
texts it is given: held-out sentences are removed after a whitespace- and case-insensitive comparison.

    from infertune.data.corpus import build_corpus
    texts = build_corpus(exclude=dataset.split("heldout").texts, limit=50_000)
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from infertune.data.docstrings import _docstrings, _sentences

FORMAT = 1  # bump when the sentence rules change, so cached corpora are rebuilt
# Packages with many prose docstrings, scanned when installed (absent ones are skipped); "stdlib" is the
# standard library. Changing this list changes the corpus.
DEFAULT_PACKAGES = (
    "stdlib", "numpy", "scipy", "sklearn", "pandas", "sympy", "networkx", "torch", "transformers", "tensorflow",
    "keras", "ray", "pip", "setuptools", "huggingface_hub", "nncf", "pydantic", "hypothesis", "jinja2",
)


def normalise(text: str) -> str:
    """The form two sentences are compared in: case and runs of whitespace ignored."""
    return " ".join(text.split()).lower()


def build_corpus(*, exclude: Iterable[str], packages: Sequence[str] | None = None, limit: int | None = None,
                 cache: bool = True) -> tuple[str, ...]:
    """Sorted distinct docstring sentences of `packages`, none equal to a text of `exclude` (the held-out split).

    `packages`: import names (read, never imported), DEFAULT_PACKAGES when None; `limit` keeps that many, chosen
    by the SHA-1 of their text (a stable sample, not the alphabetically first); `cache` keeps the scanned sentences in infertune's cache, keyed by the packages' versions (a first scan of the
    default packages takes a minute or two).
    Example: `build_corpus(exclude=load_docstrings().split("heldout").texts, limit=20_000)`.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of sentences or None, got {limit}")
    found = build_corpus_filter(exclude)(package_sentences(DEFAULT_PACKAGES if packages is None else packages,
                                                           cache=cache))
    if limit is not None and len(found) > limit:
        found = sorted(sorted(found, key=lambda s: hashlib.sha1(s.encode()).hexdigest())[:limit])
    return tuple(found)


def build_corpus_filter(exclude: Iterable[str]):
    """A function that keeps, in order, the texts not equal to one of `exclude` (case and spacing ignored)."""
    banned = frozenset(normalise(text) for text in exclude)
    return lambda texts: tuple(t for t in texts if normalise(t) not in banned)


def package_sentences(packages: Sequence[str] = DEFAULT_PACKAGES, *, cache: bool = True) -> tuple[str, ...]:
    """Every distinct prose sentence (6-40 words) of the docstrings of the installed `packages`, sorted."""
    roots = [(name, root) for name in sorted(set(packages)) for root in _roots(name)]
    if not cache:
        return _scan(root for _, root in roots)
    from infertune.io import cache_root, write_bytes_atomic

    key = hashlib.blake2b(repr((FORMAT, sys.version_info[:2], [(n, str(r), _version(n)) for n, r in roots]))
                          .encode(), digest_size=12).hexdigest()
    path = cache_root() / "corpus" / f"{key}.txt"
    if path.is_file():
        return tuple(path.read_text(encoding="utf-8").splitlines())
    sentences = _scan(root for _, root in roots)
    write_bytes_atomic(path, "\n".join(sentences).encode("utf-8"))
    return sentences


def _roots(name: str) -> list[Path]:
    """The folder (or single file) holding a package's sources; none when it is not installed."""
    if name == "stdlib":
        return [Path(sysconfig.get_paths()["stdlib"])]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return sorted(Path(p) for p in spec.submodule_search_locations)
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _version(name: str) -> str:
    if name == "stdlib":
        return sys.version
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    # tests and vendored copies repeat the package's own prose or hold none
    return [f for f in sorted(root.rglob("*.py"))
            if not {"tests", "test", "site-packages", "_vendor", "vendored"} & set(f.relative_to(root).parts[:-1])]


def _scan(roots: Iterable[Path]) -> tuple[str, ...]:
    found: set[str] = set()
    for root in roots:
        for path in _files(root):
            try:
                with warnings.catch_warnings():  # invalid escapes in third-party sources are not ours to report
                    warnings.simplefilter("ignore")
                    tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError, OSError, RecursionError):
                continue  # a file for another Python version, or unreadable: it adds no sentences
            for doc in _docstrings(tree):
                found.update(_sentences(doc))
    return tuple(sorted(found))
