"""The batcher on real engines, without HTTP: joining, padding, isolation of a failing item, the row check."""

import asyncio

import numpy as np
import pytest

import infertune
from infertune.serve.batcher import Batcher, DeadlineExceeded, EngineFailed, QueueFull


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def mlp_engine(mlp_onnx):
    return infertune.load(str(mlp_onnx), backend="onnxruntime")


async def submit_all(batcher, items, deadline=None):
    batcher.start()
    try:
        futures = [batcher.submit(x, x["input"].shape[0], deadline) for x in items]
        return await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await batcher.stop()


def test_joined_batches_answer_each_item_its_own_rows(mlp_engine):
    rng = np.random.default_rng(0)
    items = [{"input": rng.standard_normal((n, 16)).astype(np.float32)} for n in (1, 3, 2, 1)]
    batcher = Batcher([mlp_engine], max_batch_size=8, max_delay_ms=50, max_queue=16)
    results = run(submit_all(batcher, items))
    for item, result in zip(items, results):
        np.testing.assert_allclose(result["output"], mlp_engine.run(item)["output"], rtol=1e-5, atol=1e-5)


def test_a_full_queue_refuses_and_a_past_deadline_is_answered_before_compute(mlp_engine):
    async def scenario():
        batcher = Batcher([mlp_engine], max_batch_size=4, max_delay_ms=0, max_queue=1)
        batcher.start()
        x = {"input": np.zeros((1, 16), np.float32)}
        try:
            late = batcher.submit(x, 1, asyncio.get_running_loop().time() - 1)
            with pytest.raises(QueueFull, match="--max-queue 1"):
                batcher.submit(x, 1, None)
            with pytest.raises(DeadlineExceeded):
                await late
        finally:
            await batcher.stop()

    run(scenario())


def test_an_engine_that_drops_rows_fails_the_batch_with_a_clear_error(mlp_npz):
    engine = infertune.load("infertune.testing.models:drops_a_row", data=dict(np.load(mlp_npz)))
    items = [{"input": np.zeros((1, 16), np.float32)}, {"input": np.ones((2, 16), np.float32)}]
    results = run(submit_all(Batcher([engine], max_batch_size=8, max_delay_ms=50, max_queue=8), items))
    assert all(isinstance(r, EngineFailed) and "rows of 'output' for a batch of" in str(r) for r in results)


@pytest.mark.slow
def test_padded_text_batches_match_each_sentence_alone():
    engine = infertune.load("minilm", backend="onnxruntime")
    sentences = ["a short one.", "Return the number of items in a container, counting every nested element too.",
                 "Another sentence of middling length here."]
    items = [engine.encode([s]) for s in sentences]
    batcher = Batcher([engine], max_batch_size=8, max_delay_ms=50, max_queue=8,
                      pad_axes={name: 1 for name in items[0]})

    async def scenario():
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x, 1, None) for x in items))
        finally:
            await batcher.stop()

    for item, result in zip(items, run(scenario())):
        alone = engine.run(item)
        name = next(iter(alone))
        cosine = float(np.dot(alone[name][0], result[name][0]) /
                       (np.linalg.norm(alone[name][0]) * np.linalg.norm(result[name][0])))
        assert cosine > 0.99999


class WhereItRan:
    """A real engine, noting the thread each call ran on."""

    def __init__(self, engine):
        self.engine, self.threads = engine, []

    def run(self, inputs):
        import threading

        self.threads.append(threading.current_thread().name)
        return self.engine.run(inputs)


def test_a_lone_short_call_runs_on_the_loop_and_a_slow_or_crowded_one_in_a_thread(mlp_engine, mlp_npz,
                                                                                   monkeypatch):
    import threading

    from infertune.serve import batcher as batcher_module

    x = {"input": np.zeros((1, 16), np.float32)}
    loop_thread = threading.current_thread().name

    async def calls(engine, concurrent):
        batcher = Batcher([engine], max_batch_size=1, max_delay_ms=0, max_queue=8)
        batcher.start()
        try:
            await batcher.warm_up([x])
            engine.threads.clear()
            await asyncio.gather(*(batcher.submit(x, 1, None) for _ in range(concurrent)))
        finally:
            await batcher.stop()

    fast = WhereItRan(mlp_engine)
    run(calls(fast, 1))
    assert fast.threads == [loop_thread]  # no hop: nothing else is in flight and the call is short

    slow = WhereItRan(infertune.load("infertune.testing.models:slow_mlp", data=dict(np.load(mlp_npz))))
    run(calls(slow, 1))  # 50 ms: the loop must stay free for probes and deadlines
    assert slow.threads and all(t.startswith("infertune-engine") for t in slow.threads)

    monkeypatch.setattr(batcher_module, "INLINE_ALONE_BELOW_S", 1.0)  # now 50 ms counts as short
    run(calls(slow, 1))
    assert slow.threads == [loop_thread]
    run(calls(slow, 2))  # the second request waits while the first runs: the loop must stay free to take it
    assert len(slow.threads) == 2 and slow.threads[0].startswith("infertune-engine")
