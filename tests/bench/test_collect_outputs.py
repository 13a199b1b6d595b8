"""The held-out outputs every quality figure is computed from: batches of mixed samples, outputs in sample order."""

import numpy as np

from infertune.backends import load_session
from infertune.bench.job import collect_outputs
from infertune.data import Split


def test_outputs_come_back_in_sample_order_from_batches_of_mixed_lengths():
    """The tiny BERT over 80 texts sorted by length: batches of 32 mix short and long ones (their padding is what
    requests batched as they arrive meet), and each sample's output is the one it gets alone, in its place."""
    from infertune.resolver import load_model
    from infertune.testing.models import bert_data

    data = bert_data(80, seed=3)
    order = np.argsort(data["attention_mask"].sum(1), kind="stable")
    split = Split(name="heldout", inputs={k: v[order] for k, v in data.items()})
    model = load_model("infertune.testing.models:tiny_bert", data=bert_data())
    session = load_session(model, "torch")
    seen = []
    run = session.run
    session.run = lambda feed: seen.append(feed["attention_mask"].sum(1)) or run(feed)  # records what each batch held
    (name, got), = collect_outputs(session, model, split, 80).items()
    assert len(seen) == 3 and sum(len(s) for s in seen) == 80
    assert all(s.max() - s.min() > 0.5 * (np.ptp(data["attention_mask"].sum(1))) for s in seen[:2])  # mixed lengths
    for i in (0, 17, 40, 79):
        alone = run({k: v[i:i + 1] for k, v in split.inputs.items()})[name]
        np.testing.assert_allclose(got[i], alone[0], rtol=1e-4, atol=1e-5)
