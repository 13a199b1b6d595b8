"""Schemathesis against the server's own OpenAPI schema: a few hundred generated requests, valid and invalid
by the schema, and none gets a 5xx; every error is JSON with an "error" message."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serve_helpers import running

EXAMPLES = {"POST": 150, "GET": 10}  # per operation and mode: the infer endpoint gets most, a few hundred in all


def test_no_generated_request_gets_a_server_error():
    calls = 0
    with running("digits-cnn", "--backend", "onnxruntime") as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES[operation.method.upper()], deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    nonlocal calls
                    calls += 1
                    response = case.call(base_url=server.url)
                    assert response.status_code < 500, \
                        f"{case.method} {case.formatted_path} {case.body!r}: {response.status_code} {response.text}"
                    if response.status_code >= 400 and case.path != "/metrics":
                        assert "error" in response.json(), response.text

                try:
                    check()
                except Unsatisfiable:  # an operation without a body, whose parameters are any string, has
                    # nothing to make invalid
                    assert mode is GenerationMode.NEGATIVE and not len(operation.body)
        assert server.client.get("/v2/health/live").status_code == 200
    assert calls >= 300
