"""`infertune serve`: KServe v2 over HTTP with dynamic batching, a response cache and overload control."""
