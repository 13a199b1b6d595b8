"""Text data files: `.txt` (one text a line), `.jsonl`, `.csv` / `.tsv` with a header, and `.parquet`, each with
an optional label (an integer class id, or a label name the model maps with its `label2id`).

Every refusal names the file, the line (or row) and the fix, so a user can go straight to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from infertune.data.dataset import Split
from infertune.data.spec import DEFAULT_LABEL_FIELD, DEFAULT_TEXT_FIELD
from infertune.errors import DataError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
_EXAMPLE_LINE = '{"text": "A sentence to run.", "label": "positive"}'


def load_text_file(path: str | Path, *, text_field: str = DEFAULT_TEXT_FIELD, label_field: str = DEFAULT_LABEL_FIELD,
                   label2id: Mapping[str, int] | None = None, read_labels: bool = True, name: str = "all") -> Split:
    """The texts of a file, in file order, with int64 labels when the file has them (and `read_labels`).

    `label2id` maps label names to class ids (a transformers config's `label2id`); without it, labels must be
    integer ids. Example: `load_text_file("reviews.jsonl", label2id={"negative": 0, "positive": 1})`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(f"data file '{path}' has the unknown extension '{path.suffix}': use .txt, .jsonl, .csv, .tsv "
                        f"or .parquet for texts, .npz for arrays")
    if suffix == ".parquet":
        rows: Iterator[tuple[str, dict[str, Any]]] = _parquet_rows(path, [text_field, label_field])
        fields = {"text": text_field, "label": label_field}
    else:
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"data file '{path}' is empty: write one text a line"
                            + ("" if suffix == ".txt" else f" ({_format_hint(suffix)})"))
        content = _decode(raw, path)
        if suffix == ".txt":
            rows = (("line", {"text": line}) for line in content.splitlines())
            fields = {"text": "text", "label": None}
        elif suffix == ".jsonl":
            rows = _jsonl_rows(content, path)
            fields = {"text": text_field, "label": label_field}
        else:
            rows = _csv_rows(content, path, "\t" if suffix == ".tsv" else ",", text_field)
            fields = {"text": text_field, "label": label_field}
    texts, labels = _collect(path, rows, fields, label2id if read_labels else None, read_labels)
    if not texts:
        raise DataError(f"data file '{path}' holds no texts (only blank lines): write one text a line")
    return Split(name=name, texts=tuple(texts),
                 labels=None if labels is None else np.asarray(labels, dtype=np.int64))


def texts_of(content: str, path: str | Path, *, text_field: str = DEFAULT_TEXT_FIELD,
             first_line: int = 1) -> list[str]:
    """The texts of a piece of a .txt or .jsonl file that starts at line `first_line` (whole lines only), checked
    as `load_text_file` checks them: what a cluster's readers call on their share of a large file."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        rows = ((f"line {n}", {"text": line}) for n, line in enumerate(content.splitlines(), start=first_line))
        return _collect(path, rows, {"text": "text", "label": None}, None, False)[0]
    return _collect(path, _jsonl_rows(content, path, first_line), {"text": text_field, "label": DEFAULT_LABEL_FIELD},
                    None, False)[0]


def decode(raw: bytes, path: str | Path) -> str:
    return _decode(raw, Path(path))


def _format_hint(suffix: str) -> str:
    return {".jsonl": f"one JSON object a line, like {_EXAMPLE_LINE}",
            ".csv": "a header line naming the columns (text, label), then one row a text",
            ".tsv": "a header line naming the columns (text, label), then one row a text"}.get(suffix, "")


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, as spreadsheet programs write, is not part of the text
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"data file '{path}' line {line} is not UTF-8 (byte 0x{raw[e.start]:02x}): re-save the file "
                        f"as UTF-8") from None


def _jsonl_rows(content: str, path: Path, first_line: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(content.splitlines(), start=first_line):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"data file '{path}' line {number} is not JSON ({e.msg}): write one JSON object a line, "
                            f"like {_EXAMPLE_LINE}") from None
        if not isinstance(record, dict):
            raise DataError(f"data file '{path}' line {number} holds a JSON {type(record).__name__}, not an object: "
                            f"write one JSON object a line, like {_EXAMPLE_LINE}")
        yield f"line {number}", record


def _csv_rows(content: str, path: Path, delimiter: str, text_field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import csv
    import io

    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [column.strip() for column in header]
    if text_field not in header:
        kind = "tab-separated" if delimiter == "\t" else "comma-separated"
        raise DataError(f"data file '{path}' line 1 (the header) has no column '{text_field}' (its {kind} columns: "
                        f"{', '.join(header) or 'none'}): name the text column '{text_field}' or pass --text-field")
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"data file '{path}' line {number} has {len(row)} columns, the header has "
                                f"{len(header)}: quote cells that hold the delimiter")
            yield f"line {number}", dict(zip(header, row))
    except csv.Error as e:
        raise DataError(f"data file '{path}' line {reader.line_num} is not valid CSV ({e}): check its quoting") from None


def _parquet_rows(path: Path, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"data file '{path}' is Parquet, which needs pyarrow: pip install 'infertune[ray]' (or "
                        f"pyarrow), or give the texts as .jsonl / .csv") from None
    try:
        table = pq.read_table(str(path))
    except Exception as e:  # pyarrow raises ArrowInvalid and OSError for files it cannot read
        raise DataError(f"data file '{path}' is not a readable Parquet file ({str(e).splitlines()[0]}): write it with "
                        f"pandas.DataFrame.to_parquet or pyarrow") from None
    if table.num_rows == 0:
        raise DataError(f"data file '{path}' is empty (0 rows): write one row a text")
    if columns[0] not in table.column_names:
        raise DataError(f"data file '{path}' has no column '{columns[0]}' (its columns: "
                        f"{', '.join(table.column_names)}): name the text column '{columns[0]}' or pass --text-field")
    present = [c for c in columns if c in table.column_names]
    for number, record in enumerate(table.select(present).to_pylist(), start=1):
        yield f"row {number}", record


def _collect(path: Path, rows, fields: dict[str, str | None], label2id: Mapping[str, int] | None,
             read_labels: bool) -> tuple[list[str], list[int] | None]:
    text_field, label_field = fields["text"], fields["label"]
    texts: list[str] = []
    labels: list[int] = []
    labelled: bool | None = None  # whether the file's records carry a label, fixed by the first record
    for where, record in rows:
        if text_field not in record:
            present = ", ".join(sorted(record)) or "none"
            raise DataError(f"data file '{path}' {where} has no field '{text_field}' (it has: {present}): name the "
                            f"text field '{text_field}' or pass --text-field")
        text = record[text_field]
        if text is None or isinstance(text, (dict, list, bool)) or not isinstance(text, (str, int, float)):
            raise DataError(f"data file '{path}' {where}: field '{text_field}' holds "
                            f"{'null' if text is None else type(text).__name__}, not a string: write the text as a "
                            f"string")
        text = str(text)
        if not text.strip():
            if fields["label"] is None:  # a blank line of a .txt file separates nothing: skip it
                continue
            raise DataError(f"data file '{path}' {where}: field '{text_field}' is empty: give every record a text, or "
                            f"drop the record")
        texts.append(text.strip() if fields["label"] is None else text)
        if not read_labels or label_field is None:
            continue
        has = label_field in record and record[label_field] is not None and record[label_field] != ""
        if labelled is None:
            labelled = has
        elif has != labelled:
            raise DataError(f"data file '{path}' {where} {'has' if has else 'has no'} field '{label_field}' while "
                            f"the records before it {'do not' if has else 'do'}: label every record or none")
        if has:
            labels.append(_label_id(record[label_field], path, where, label_field, label2id))
    return texts, (labels if labelled else None)


def _label_id(value: Any, path: Path, where: str, field: str, label2id: Mapping[str, int] | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"data file '{path}' {where}: '{field}' holds {value!r}, not a class id or a label name: "
                        f"write an integer id or one of the model's label names")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and (label2id is None or value not in label2id):
        value = int(value)  # CSV cells are strings: "1" is the id 1 unless the model has a label named "1"
    if isinstance(value, int):
        if value < 0 or (label2id and value >= len(label2id)):
            known = f" (the model has {len(label2id)} labels, ids 0-{len(label2id) - 1})" if label2id else ""
            raise DataError(f"data file '{path}' {where}: label id {value} is out of range{known}: class ids start at 0")
        return value
    if label2id is None:
        raise DataError(f"data file '{path}' {where}: label '{value}' is a name, but the model has no label names "
                        f"(no id2label in its config): write labels as integer class ids")
    if value not in label2id:
        names = ", ".join(label2id)
        raise DataError(f"data file '{path}' {where}: label '{value}' is not a label of the model (its labels: "
                        f"{names}): fix the label or drop the record")
    return int(label2id[value])
