"""Text data files: .txt, .jsonl, .csv, .tsv and .parquet read in file order, labels by id or by the model's label
names, deterministic splits; each bad input refused with one line naming the file, the line and the fix, and
exit code 2 on the command line."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from infertune.data import load_dataset
from infertune.data.text import load_text_file
from infertune.errors import DataError

LABEL2ID = {"plain": 0, "keyword": 1}


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_txt_is_one_text_a_line_in_order_skipping_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first text\n\n  second text  \nthird\n", encoding="utf-8")
    split = load_text_file(path)
    assert split.texts == ("first text", "second text", "third") and split.labels is None


def test_jsonl_labels_by_name_or_id_and_a_custom_text_field(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"body": "a", "label": "keyword"}, {"body": "b", "label": 0}, {"body": "c", "label": "1"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    split = load_text_file(path, text_field="body", label2id=LABEL2ID)
    assert split.texts == ("a", "b", "c") and split.labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_a_header(tmp_path, suffix, sep):
    path = tmp_path / f"t{suffix}"
    rows = ["id", "text", "label"], ["1", '"one, quoted"', "plain"], ["2", "two", "keyword"]
    path.write_text("".join(sep.join(row) + "\n" for row in rows), encoding="utf-8")
    split = load_text_file(path, label2id=LABEL2ID)
    assert split.texts == ("one, quoted", "two")
    assert split.labels.tolist() == [0, 1]


def test_parquet_rows_in_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["x", "y", "z"], "label": [1, 0, 1]}), str(path))
    split = load_text_file(path)
    assert split.texts == ("x", "y", "z") and split.labels.tolist() == [1, 0, 1]


def test_splits_are_deterministic_disjoint_and_sized(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("\n".join(f"text {i}" for i in range(40)), encoding="utf-8")
    first, again = load_dataset(path), load_dataset(path)
    assert first.sizes() == {"train": 10, "calibration": 10, "heldout": 20}
    for name in ("train", "calibration", "heldout"):
        assert first.split(name).texts == again.split(name).texts
    parts = [set(first.split(name).texts) for name in ("train", "calibration", "heldout")]
    assert sum(len(p) for p in parts) == 40 and len(set.union(*parts)) == 40
    held = tmp_path / "held.txt"
    held.write_text("held out a\nheld out b\n", encoding="utf-8")
    with_file = load_dataset(path, heldout=held)
    assert with_file.split("heldout").texts == ("held out a", "held out b")
    assert with_file.sizes()["calibration"] == 20


# (file name, content, the message's distinctive part); each message also names the file
BAD_INPUTS = {
    "unknown extension": ("data.xlsx", b"text\nhello\n", r"has the unknown extension '\.xlsx': use \.npz for arrays, "
                                                          r"or \.txt, \.jsonl, \.csv, \.tsv or \.parquet"),
    "empty file": ("data.jsonl", b"\n  \n", r"is empty: write one text a line \(one JSON object a line"),
    "not JSON": ("data.jsonl", b'{"text": "fine", "label": 0}\n{"text": "broken",\n',
                 r"line 2 is not JSON \(.*\): write one JSON object a line, like"),
    "missing field": ("data.jsonl", b'{"text": "fine", "label": 0}\n{"body": "no text here", "label": 1}\n',
                      r"line 2 has no field 'text' \(it has: body, label\): name the text field 'text' or pass "
                      r"--text-field"),
    "unknown label": ("data.jsonl", b'{"text": "a", "label": "keyword"}\n{"text": "b", "label": "positive"}\n',
                      r"line 2: label 'positive' is not a label of the model \(its labels: plain, keyword\): fix the "
                      r"label or drop the record"),
    "not UTF-8": ("data.txt", "first line\nsecond line caf\u00e9\n".encode("latin-1"),
                  r"line 2 is not UTF-8 \(byte 0xe9\): re-save the file as UTF-8"),
}


@pytest.fixture()
def bad_file(tmp_path, request):
    name, content, message = BAD_INPUTS[request.param]
    path = tmp_path / name
    path.write_bytes(content)
    return path, message


@pytest.mark.parametrize("bad_file", list(BAD_INPUTS), indirect=True)
def test_bad_text_input_raises_naming_the_file_the_line_and_the_fix(bad_file):
    path, message = bad_file
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(path, label2id=LABEL2ID)
    assert f"data file '{path}'" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("bad_file", ["unknown label", "not UTF-8"], indirect=True)
def test_bad_text_input_exits_2_on_the_command_line(bad_file, keyword_folder, cli, tmp_path):
    path, message = bad_file
    result = cli("optimize", str(keyword_folder), "--data", str(path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert re.search(message, line) and str(path) in line
    assert not (tmp_path / "run" / "results.json").exists()


def test_label_ids_out_of_the_models_range_are_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: label id 2 is out of range \(the model has 2 labels, ids 0-1\)"):
        load_text_file(path, label2id=LABEL2ID)


def test_hf_name_not_in_the_local_cache_exits_2_saying_so(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = cli("bench", "some-org/some-model")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "unknown model 'some-org/some-model'" in line
    assert f"in the local Hugging Face cache ({tmp_path / 'empty-cache'})" in line
    assert "never downloads: pass a folder saved with save_pretrained" in line


def test_hf_name_in_the_local_cache_is_read_from_it(keyword_folder, tmp_path, monkeypatch):
    """A hub name found in the cache (as huggingface_hub lays it out) resolves to its snapshot, offline."""
    cache = tmp_path / "cache"
    repo = cache / "models--some-org--keyword-bert"
    shutil.copytree(keyword_folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = ("from infertune.model.spec import ModelSpec; from infertune.resolver import describe_spec, locate; "
            "print(locate('some-org/keyword-bert')[0]); m = describe_spec(ModelSpec('some-org/keyword-bert')); "
            "print(m.task, m.labels, m.encode_texts(['an excellent day'])['input_ids'].shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["hf", "classification ('plain', 'keyword') (1, 5)"], result.stdout
