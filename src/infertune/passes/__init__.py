"""Techniques applied to a model: export now; quantize, prune, distill, ... as passes later."""
