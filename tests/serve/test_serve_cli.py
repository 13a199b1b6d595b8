import pytest


@pytest.mark.parametrize("args, message", [
    (["digits-cnn", "--max-batch-size", "0"], "--max-batch-size must be a positive integer, got 0"),
    (["digits-cnn", "--max-delay-ms", "-1"], "--max-delay-ms must be 0 or more, got -1"),
    (["digits-cnn", "--token-file", "/nonexistent/token"], "--token-file '/nonexistent/token' not found"),
    (["digits-cnn", "--port", "70000"], "--port must be from 0"),
    (["no-such-model"], "no-such-model"),
    (["digits-cnn", "--backend", "onnxruntime", "--option", "bogus=1"], "bogus"),
])
def test_serve_bad_input_exits_2_with_one_line(cli, args, message):
    result = cli("serve", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_loadtest_without_a_server_exits_2(cli):
    result = cli("loadtest", "http://127.0.0.1:9", "--model", "digits-cnn", "--requests", "3")
    assert result.returncode == 2 and "no server answers at http://127.0.0.1:9" in result.stderr
