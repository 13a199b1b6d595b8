import numpy as np

from infertune.search.records import Metric
from infertune.search.trial import metric


def test_embeddings_measure_cosine_and_top10_neighbours_against_the_baseline():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((64, 16)).astype(np.float32)
    noisy = reference + 0.3 * rng.standard_normal(reference.shape).astype(np.float32)
    found = metric("embedding", noisy, None, reference)
    assert found.name == "cosine" and 0.9 < found.value < 1.0
    assert 0.0 < found.top10_agreement < 1.0
    assert found.worst_row < found.value  # the lowest row's cosine
    assert metric("embedding", reference, None, None) == Metric("cosine", 1.0, top10_agreement=1.0, worst_row=1.0)


def test_classifiers_use_labels_when_given_else_agreement():
    logits = np.eye(4, dtype=np.float32)
    assert metric("classification", logits, np.array([0, 1, 2, 0]), None) == Metric("top1", 0.75)
    assert metric("classification", logits, None, logits[[0, 1, 2, 0]]).value == 0.75


class Sleeper:
    """A session whose call sleeps: `slow_blocks` makes every other block of calls 10x slower, as a machine
    whose other tenant wakes up does."""

    def __init__(self, seconds: float, slow_blocks: bool = False, block: int = 10):
        self.seconds, self.slow_blocks, self.block, self.calls = seconds, slow_blocks, block, 0

    def run(self, inputs):
        import time

        self.calls += 1
        slow = self.slow_blocks and (self.calls // self.block) % 3 == 0
        time.sleep(self.seconds * (10 if slow else 1))
        return {"output": inputs["x"]}


def test_a_wildly_noisy_speedup_is_measured_again_then_marked_unstable(monkeypatch):
    from infertune.search import trial

    monkeypatch.setattr(trial, "BLOCK_S", 0.01)  # 10 calls a block at 1 ms
    batches = [{"x": np.zeros((1, 4), np.float32)}]
    noisy = trial.speedup(Sleeper(0.002, slow_blocks=True), Sleeper(0.001), batches, rounds=6, p50_ms=1.0,
                          say=lambda _: None)
    assert noisy.attempts == 2 and noisy.stable is False and noisy.high / noisy.low > trial.SPREAD_LIMIT
    steady = trial.speedup(Sleeper(0.002), Sleeper(0.001), batches, rounds=6, p50_ms=1.0, say=lambda _: None)
    assert steady.stable is True and steady.attempts == 1 and 1.5 < steady.value < 2.5


def test_a_trial_runs_the_file_an_earlier_trial_built_from_the_same_passes(tmp_path, mlp_model):
    """A settings variant (or a confirmation) of a built candidate runs that candidate's file, with its notes, and
    builds nothing; other passes, or passes whose file is gone, are built afresh."""
    from infertune.passes.export import ExportOnnx
    from infertune.passes.quantize.onnx_backend import Int8Dynamic
    from infertune.search.recipe import Recipe
    from infertune.search.trial import TrialJob, _build

    def job(trial_id, recipe):
        return TrialJob(id=trial_id, model={}, recipe=recipe.to_dict(), workdir=str(tmp_path / "trials" / trial_id),
                        baseline_recipe={}, baseline_outputs="")

    def build(trial_id, recipe):
        said = []
        artifact, outputs = _build(job(trial_id, recipe), mlp_model, recipe, None, said.append)
        return artifact, outputs, said

    leader = Recipe(passes=(ExportOnnx(), Int8Dynamic()), backend="onnxruntime")
    first, first_outputs, said = build("c04", leader)
    assert "applying passes" in said
    variant = Recipe(passes=leader.passes, backend="onnxruntime", options=(("threads", 1),))
    again, outputs, said = build("c04-s1", variant)
    assert said == ["running the artifact c04 built"]
    assert again.onnx_path == first.onnx_path and again.signature == first.signature
    assert [o.notes for o in outputs] == [o.notes for o in first_outputs]
    other = Recipe(passes=(ExportOnnx(), Int8Dynamic(per_channel=False)), backend="onnxruntime")
    assert "applying passes" in build("c05", other)[2]
    first.onnx_path.unlink()
    rebuilt, _, said = build("c04+confirm", leader)
    assert "applying passes" in said and rebuilt.onnx_path.is_file()
