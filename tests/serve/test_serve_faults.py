"""Faults inside the server: a model that raises, returns the wrong row count or overflows on one request fails
that request alone (and is logged with its id); a non-finite answer is never cached; an exception in the batch
loop fails only the batch it took; a batch loop that ends turns readiness off and says why."""

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest

import infertune
from infertune.serve.batcher import Batcher, EngineFailed
from serve_helpers import metric, mlp_body, pixels_body, running

FAULTY = "infertune.testing.models:faulty_mlp"


@pytest.fixture(scope="module")
def faulty_server(mlp_data_npz):
    with running(FAULTY, "--data", str(mlp_data_npz), "--name", "faulty", "--max-batch-size", "8",
                 "--max-delay-ms", "40", "--cache-size", "64") as server:
        yield server


def test_a_fault_in_one_request_fails_it_alone_inside_its_batch(faulty_server):
    batches = metric(faulty_server, "infertune_batch_size_count")
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        busy = pool.submit(faulty_server.infer, "faulty", mlp_body(2.0))  # holds the engine 50 ms: the rest queue
        time.sleep(0.015)
        values = (0.1, 5.0, 0.2, 7.0)
        answers = [pool.submit(faulty_server.infer, "faulty", mlp_body(v, id=f"r-{v}")) for v in values]
        answers = dict(zip(values, (a.result() for a in answers)))
    assert busy.result().status_code == 200
    assert metric(faulty_server, "infertune_batch_size_count") - batches < 6  # some of them ran as one batch
    assert answers[0.1].status_code == 200 and answers[0.2].status_code == 200
    dropped = answers[5.0]
    assert dropped.status_code == 500 and "rows of 'output' for a batch of 1" in dropped.json()["error"]
    overflow = answers[7.0]
    assert overflow.status_code == 500, overflow.text
    assert "output 'output' holds a value that is not finite" in overflow.json()["error"]
    time.sleep(0.2)
    log = "".join(faulty_server.lines)
    assert "failed on request r-5.0" in log and "on request r-7.0" in log


def test_a_non_finite_answer_is_never_cached(faulty_server):
    hits = metric(faulty_server, "infertune_cache_hits_total")
    for _ in range(3):
        assert faulty_server.infer("faulty", mlp_body(7.0)).status_code == 500
    assert metric(faulty_server, "infertune_cache_hits_total") == hits
    for _ in range(2):
        assert faulty_server.infer("faulty", mlp_body(0.75)).status_code == 200
    assert metric(faulty_server, "infertune_cache_hits_total") == hits + 1


def test_finite_inputs_that_overflow_the_model_answer_500_naming_the_output(digits_server):
    huge = digits_server.infer("digits-cnn", pixels_body([3e38] * 64))
    assert huge.status_code == 500, huge.text
    assert "output 'logits' holds a value that is not finite" in huge.json()["error"]
    assert digits_server.infer("digits-cnn", pixels_body([0.5] * 64)).status_code == 200


def test_a_request_over_the_max_batch_is_refused_before_its_values_are_read(digits_server):
    """65,000 rows declared: the declared shape is refused before any value is read (the message would otherwise
    be about the value count)."""
    values = "[" + ",".join(["0.5"] * 1000) + "]"
    body = ('{"inputs":[{"name":"pixels","datatype":"FP32","shape":[65000,1,8,8],"data":' + values + "}]}").encode()
    answer = digits_server.infer("digits-cnn", body)
    assert answer.status_code == 400 and "65000 samples, more than the server's --max-batch-size" in answer.text


# -- the batch loop, in process ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_engine(mlp_onnx):
    return infertune.load(str(mlp_onnx), backend="onnxruntime")


def test_an_exception_in_the_batch_loop_fails_that_batch_and_the_next_request_is_served(mlp_engine, caplog):
    raised = []

    def on_queued(seconds):  # a metrics hook that fails once, as a bug in the loop would
        if not raised:
            raised.append(True)
            raise RuntimeError("injected into the batch loop")

    async def scenario():
        batcher = Batcher([mlp_engine], max_batch_size=4, max_delay_ms=0, max_queue=8, on_queued=on_queued)
        batcher.start()
        x = {"input": np.zeros((1, 16), np.float32)}
        try:
            with pytest.raises(EngineFailed, match="internal error while batching"):
                await batcher.submit(x, 1, None)
            served = await batcher.submit(x, 1, None)
            return served, batcher.alive, batcher.busy
        finally:
            await batcher.stop()

    with caplog.at_level(logging.ERROR, logger="infertune.serve"):
        served, alive, busy = asyncio.run(scenario())
    assert served["output"].shape == (1, 10) and alive and not busy
    assert any("an iteration failed" in r.getMessage() for r in caplog.records)


def test_a_batch_loop_that_ends_turns_readiness_off_and_is_logged(mlp_onnx, caplog):
    """A real server in this process (uvicorn in a thread), so the test can end its batch loop."""
    import uvicorn

    from infertune.serve.app import ServeConfig, create_app
    from infertune.serve.codec import ServedModel
    from infertune.serve.endpoint import Loaded
    from infertune.serve.protocol import guarded_protocol

    engine = infertune.load(str(mlp_onnx), backend="onnxruntime")
    loaded = Loaded([engine], ServedModel(name="mlp", signature=engine.model.signature),
                    [{"input": np.zeros((1, 16), np.float32)}], backend="onnxruntime")
    app = create_app({"mlp": (lambda: loaded, loaded)}, ServeConfig(), say=lambda _: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app.state.asgi, http=guarded_protocol(app.state.config.limits),
                                           loop="asyncio", log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=url, timeout=10) as client, caplog.at_level(logging.CRITICAL, "infertune.serve"):
            deadline = time.monotonic() + 30
            while True:  # the thread's server may not listen yet: a refused connection means wait
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.ConnectError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.post("/v2/models/mlp/infer", json=mlp_body(0.5)).status_code == 200
            state = app.state.infertune
            batcher = app.state.endpoints["mlp"].batcher
            state.loop.call_soon_threadsafe(batcher._task.cancel)  # the loop ends, as after a bug
            time.sleep(0.3)
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 503 and "the batch loop was cancelled" in ready.json()["error"]
            assert client.get("/v2/health/live").status_code == 503
            refused = client.post("/v2/models/mlp/infer", json=mlp_body(0.5))
            assert refused.status_code == 503 and "restarted" in refused.json()["error"]
            assert "infertune_batcher_alive{model=\"mlp\"} 0.0" in client.get("/metrics").text
        assert any(r.levelno == logging.CRITICAL and "batch loop was cancelled" in r.getMessage()
                   for r in caplog.records)
    finally:
        server.should_exit = True
        thread.join(30)
