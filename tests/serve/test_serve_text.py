"""A text model over HTTP: a BYTES tensor of strings in, the server tokenizes; answers match the engine."""

import concurrent.futures

import numpy as np
import pytest

from serve_helpers import running

SENTENCES = ["Return a new list.", "Open the file and return a stream; raise OSError upon failure of any kind.",
             "Wait until the thread terminates.", "x"]


@pytest.mark.slow
def test_minilm_served_embeddings_match_the_engine_under_concurrent_mixed_lengths():
    import infertune

    engine = infertune.load("minilm", backend="onnxruntime")
    expected = [engine.run(engine.encode([s]))["sentence_embedding"][0] for s in SENTENCES]
    with running("minilm", "--backend", "onnxruntime", "--cache-size", "0") as server:
        meta = server.client.get("/v2/models/minilm").json()
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

        def ask(sentence):
            return server.infer("minilm", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                                       "data": [sentence]}]})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, SENTENCES * 4))
        for sentence, answer in zip(SENTENCES * 4, answers):
            assert answer.status_code == 200, answer.text
            got = np.array(answer.json()["outputs"][0]["data"], dtype=np.float32)
            want = expected[SENTENCES.index(sentence)]
            assert float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)) > 0.99999
        import orjson

        from infertune.serve.codec import to_binary_strings

        strings = to_binary_strings(SENTENCES)  # the binary tensor data extension: length-prefixed UTF-8
        header = orjson.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(SENTENCES)],
                                           "parameters": {"binary_data_size": len(strings)}}],
                               "parameters": {"binary_data_output": True}})
        answer = server.infer("minilm", header + strings, headers={"Inference-Header-Content-Length": str(len(header))})
        assert answer.status_code == 200, answer.text
        length = int(answer.headers["inference-header-content-length"])
        got = np.frombuffer(answer.content[length:], "<f4").reshape(len(SENTENCES), -1)
        for row, want in zip(got, expected):
            assert float(row @ want / np.linalg.norm(row) / np.linalg.norm(want)) > 0.99999
        wrong = server.infer("minilm", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [3]}]})
        assert wrong.status_code == 400 and "holds 3 (int): send strings" in wrong.json()["error"]
