"""`infertune serve` with uvicorn's plain httptools protocol in place of the guarded one: the "before" side of
benchmarks/serving.py's HTTP limits comparison. A benchmark aid, never a way to serve."""

import sys

import uvicorn.protocols.http.httptools_impl as httptools_impl

import infertune.serve.protocol as protocol
from infertune.cli import main

protocol.guarded_protocol = lambda limits, on_refused=None, on_connections=None: type(
    "Plain", (httptools_impl.HttpToolsProtocol,), {"opened": {}})

if __name__ == "__main__":
    sys.argv[0] = "infertune"
    main()
