"""Trained candidates in a search: their training time reaches the results, the table and the report."""

import json

from infertune.data import save_npz
from infertune.passes.quantize.qat import Qat
from infertune.search.recipe import Recipe

QUICK = {"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 50, "max_seconds": 5.0}


def test_a_qat_candidate_records_its_training_time_in_results_and_report(tmp_path):
    import infertune
    from infertune.report.terminal import optimize_table
    from infertune.testing.models import mlp_data

    data = tmp_path / "data.npz"
    save_npz(data, mlp_data(200))
    out = tmp_path / "run"
    result = infertune.optimize("infertune.testing.models:tiny_mlp", data=str(data), max_drop=0.05, out=out,
                                recipes=[Recipe(passes=(Qat(steps=5, lr=1e-4),), backend="onnxruntime")],
                                timing=QUICK)
    (candidate,) = json.loads((out / "results.json").read_text())["candidates"]
    assert candidate["precision"] == "int8" or "int8" in str(candidate["precision"])
    assert candidate["train_seconds"] > 0 and result.baseline["train_seconds"] is None
    assert "trained 5 steps" in " ".join(candidate["notes"])
    assert "<th>training s</th>" in (out / "report.html").read_text()
    optimize_table(result)  # the terminal table has a training column and does not fail on it


def test_a_spent_time_budget_counts_the_trained_candidates_it_never_reached(tmp_path, capsys):
    """The trained candidates wait until after refine; a budget spent before then leaves them untried, and the stop
    counts them with the rest (on a 2-core Zen 3 the demo said 6 not tried, its refine variants, for 9)."""
    import infertune
    from infertune.report.terminal import optimize_table
    from infertune.resolver import load_model
    from infertune.search.run import _trains
    from infertune.search.space import candidate_recipes
    from infertune.testing.models import mlp_data

    data = tmp_path / "data.npz"
    save_npz(data, mlp_data(200))
    result = infertune.optimize("infertune.testing.models:tiny_mlp", data=str(data), max_drop=0.05,
                                out=tmp_path / "run", timing=QUICK, time_budget=1)  # spent by the baseline
    model = load_model("infertune.testing.models:tiny_mlp", data=mlp_data(4))
    every = candidate_recipes(model, has_calibration=True, has_training=True, time_budget=1)
    assert any(_trains(r) for r in every)
    assert result.candidates == [] and result.data["stopped"] == \
        f"time budget of 1 s spent; {len(every)} candidates not tried"
    optimize_table(result)
    assert f"stopped: time budget of 1 s spent; {len(every)} candidates not tried" in capsys.readouterr().out
