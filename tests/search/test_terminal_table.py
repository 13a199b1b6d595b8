"""The summary table prints what a trial recorded as written: a pass value or an error message that looks like rich
markup neither restyles the table nor stops it."""

from pathlib import Path
from types import SimpleNamespace

from infertune.report.terminal import optimize_table


def test_values_and_errors_that_look_like_markup_print_as_written(capsys):
    recipe = {"format": "infertune.recipe", "version": 1, "backend": {"name": "onnxruntime"},
              "passes": [{"pass": "int8-dynamic", "exclude": ["/layers[0]/[/x]"]}]}
    baseline = {"id": "baseline", "recipe": {"format": "infertune.recipe", "version": 1, "backend": {"name": "torch"}},
                "status": "ok", "metric": {"name": "cosine", "value": 1.0, "drop": 0.0}}
    failed = {"id": "c01", "recipe": recipe, "status": "failed", "reason": "[ONNXRuntimeError] [/bold] not loaded"}
    data = {"model": "m", "objective": "latency", "budget": {"max_drop": 0.01, "metric": "cosine"},
            "baseline": baseline, "candidates": [failed], "best": None, "best_reason": "none was faster"}
    optimize_table(SimpleNamespace(data=data, directory=Path("run")))
    printed = capsys.readouterr().out.replace("\n", " ").replace("│", " ")
    assert "[/bold]" in printed and "[/x]" in printed and "exclude=" in printed
