"""benchmarks/passes.py picks its rows by label: a pattern a label holds, or one ending in '$' that must end it, so
a run can name one row whose label begins others ("openvino + NNCF int8 (transformer scheme)" and its variants)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "passes.py"


@pytest.fixture(scope="module")
def passes():
    spec = importlib.util.spec_from_file_location("benchmark_passes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _labels(passes, *patterns):
    return [row[0] for row in passes.selected("minilm", list(patterns))]


def test_a_pattern_ending_in_a_dollar_names_one_row(passes):
    nncf = "openvino + NNCF int8 (transformer scheme)"
    assert sum(nncf in label for label in _labels(passes, nncf)) > 1  # the plain row and its variants
    assert [label for label in _labels(passes, nncf + "$") if nncf in label] == [nncf]
    # with the fp32 rows it is compared with, and the torch baseline
    assert _labels(passes, nncf + "$") == [passes.TORCH_BASE, passes.OV_BASE, nncf]


def test_patterns_ignore_case_and_one_that_matches_nothing_stops_the_run(passes):
    assert "onnxruntime int8 dynamic per-channel, fused" in _labels(passes, "INT8 DYNAMIC PER-CHANNEL, FUSED$")
    with pytest.raises(SystemExit, match="match no minilm row"):
        passes.selected("minilm", ["no such row$"])
