"""Real English sentences from Python standard-library docstrings, as a text data set for text models.

The docstrings are read from the standard library's source files with `ast`, not by importing the
modules, so the sentences depend only on the Python version (not on what else was imported or
monkeypatched, nor on -OO); they take well under a second to find, once per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sysconfig
from pathlib import Path
from typing import Iterator

from infertune.data.dataset import Dataset, Split
from infertune.errors import DataError

# Pure-Python standard-library modules with prose docstrings, sorted; changing this list changes the data.
MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "configparser", "contextlib",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "ftplib",
    "functools", "gettext", "gzip", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar",
    "http.server", "imaplib", "inspect", "ipaddress", "json", "logging", "logging.handlers", "mailbox",
    "multiprocessing", "netrc", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "sched", "secrets", "selectors", "shlex", "shutil", "smtplib", "socket", "socketserver", "statistics",
    "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "tokenize", "traceback",
    "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.dom.minidom", "zipfile",
)
HELDOUT_SIZE = 512
CALIBRATION_SIZE = 256
MIN_SENTENCES = 1000
MIN_WORDS, MAX_WORDS = 6, 40

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=\S)")
# Code, markup and abbreviations whose periods would cut sentences in the wrong place.
_NOT_PROSE = re.compile(r">>>|::|[{}\[\]=<>`*|\\_#@$%^~]|\(\)|\.\.\.|\be\.g\.|\bi\.e\.|\betc\.|\bvs\.")


def load_docstrings() -> Dataset:
    """The docstrings data set: sentences in `Split.texts`, no labels.

    Each sentence goes to a split by the SHA-1 of its text: in hash order, the first 512 are heldout,
    the next 256 calibration, the rest train; each split then lists its sentences sorted.
    Example: `load_docstrings().split("heldout").texts[:3]`.
    """
    sentences = docstring_sentences()
    if len(sentences) < MIN_SENTENCES:
        raise DataError(
            f"found only {len(sentences)} docstring sentences in the standard library, need "
            f"{MIN_SENTENCES}: add modules to MODULES in {__name__}"
        )
    by_hash = sorted(sentences, key=lambda s: hashlib.sha1(s.encode("ascii")).hexdigest())
    edge = HELDOUT_SIZE + CALIBRATION_SIZE
    parts = {
        "train": by_hash[edge:],
        "calibration": by_hash[HELDOUT_SIZE:edge],
        "heldout": by_hash[:HELDOUT_SIZE],
    }
    splits = {name: Split(name=name, texts=tuple(sorted(texts))) for name, texts in parts.items()}
    return Dataset(name="docstrings", splits=splits, kind="text")


@functools.lru_cache(maxsize=1)  # an immutable tuple, so sharing it between callers is safe
def docstring_sentences() -> tuple[str, ...]:
    """Every distinct prose sentence of 6-40 words in the docstrings of `MODULES`, sorted."""
    return find_sentences()


def find_sentences() -> tuple[str, ...]:
    """`docstring_sentences` without the in-memory cache: parses the standard library afresh."""
    found: set[str] = set()
    for module_name in MODULES:
        tree = ast.parse(_source_file(module_name).read_text(encoding="utf-8"))
        for doc in _docstrings(tree):
            found.update(_sentences(doc))
    return tuple(sorted(found))


def _source_file(module_name: str) -> Path:
    """The module's file in this interpreter's standard library (never a same-named local file)."""
    base = Path(sysconfig.get_paths()["stdlib"], *module_name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"standard-library source of {module_name!r} not found under '{base.parent}': the docstrings "
        "data set needs a Python installation that ships its .py sources"
    )


def _docstrings(tree: ast.Module) -> Iterator[str]:
    """Module, then its public classes and functions, then their methods, each in sorted name order."""
    yield ast.get_docstring(tree) or ""
    for node in _sorted_defs(tree.body):
        yield ast.get_docstring(node) or ""
        if isinstance(node, ast.ClassDef):
            for method in _sorted_defs(node.body):
                if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield ast.get_docstring(method) or ""


def _sorted_defs(body: list[ast.stmt]) -> list[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Public (and __init__) definitions in `body`, also those inside if/try blocks, sorted by name."""
    defs = []
    pending = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_") or node.name == "__init__":
                defs.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            pending.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            pending.extend(stmt for handler in getattr(node, "handlers", []) for stmt in handler.body)
    return sorted(defs, key=lambda node: (node.name, node.lineno))


def _sentences(doc: str) -> Iterator[str]:
    """Sentences of the prose paragraphs of one docstring; indented blocks and doctests are code."""
    for paragraph in _PARAGRAPH.split(doc):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", "\t", ">>>")) for line in lines):
            continue
        for sentence in _SENTENCE_END.split(" ".join(line.strip() for line in lines)):
            if _is_prose(sentence):
                yield sentence


def _is_prose(sentence: str) -> bool:
    return (
        sentence.isascii()
        and sentence.endswith(".")
        and sentence[:1].isupper()
        and MIN_WORDS <= len(sentence.split()) <= MAX_WORDS
        and not _NOT_PROSE.search(sentence)
        and sentence.count("(") <= 1
        and sentence.count(":") <= 1
    )
