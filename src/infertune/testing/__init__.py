"""Tiny deterministic models and data that tests and users share (factories: `infertune.testing.models:tiny_mlp`)."""
