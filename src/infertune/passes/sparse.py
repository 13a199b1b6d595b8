"""Sparse compute: a Linear whose weights are mostly zero runs as a CSR sparse matmul, where that is
measured faster than the dense kernel on this hardware; elsewhere the pass says it does not pay."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from dataclasses import dataclass

from infertune.passes.layer_timing import input_shapes, speedup
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class SparseLinear(Checked):
    min_sparsity: float = param(0.7, "only Linear layers with at least this share of zero weights are tried")
    min_speedup: float = param(1.05, "a layer runs sparse only where measured this much faster than dense")


@contextlib.contextmanager
def _quiet_beta():
    """torch calls its CSR support beta on every use; we measure it before we keep it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def _sparse_linear(layer):
    import torch
    from torch import nn

    class CsrLinear(nn.Module):
        """y = x W^T + b with W in CSR: torch.sparse.mm(W, x^T)^T."""

        def __init__(self, dense: nn.Linear):
            super().__init__()
            self.in_features, self.out_features = dense.in_features, dense.out_features
            with _quiet_beta():
                csr = dense.weight.detach().to_sparse_csr()
            # the parts as plain buffers (copyable, saveable); the CSR view is rebuilt per call, no copy
            self.register_buffer("crow", csr.crow_indices())
            self.register_buffer("col", csr.col_indices())
            self.register_buffer("values", csr.values())
            self.bias = None if dense.bias is None else nn.Parameter(dense.bias.detach().clone())

        def forward(self, x):
            flat = x.reshape(-1, self.in_features)
            with _quiet_beta():
                weight = torch.sparse_csr_tensor(self.crow, self.col, self.values,
                                                 (self.out_features, self.in_features), check_invariants=False)
            out = torch.sparse.mm(weight, flat.t()).t()
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return CsrLinear(layer).eval()


@register("sparse-linear", SparseLinear, formats=("torch",), stage="structure", searched=False,
          summary="CSR sparse matmul for highly sparse Linear layers, kept only where measured faster")
def sparse_linear(model, config: SparseLinear, ctx: PassContext) -> PassOutput:
    from torch import nn

    module = copy.deepcopy(model.module).eval()
    shapes = input_shapes(model, module, (nn.Linear,), model.example_inputs(batch_size=1))
    rows, replaced = [], 0
    for parent_name, parent in list(module.named_modules()):
        for name, layer in list(parent.named_children()):
            if not isinstance(layer, nn.Linear) or id(layer) not in shapes:
                continue
            sparsity = float((layer.weight == 0).float().mean())
            label = f"{parent_name}.{name}" if parent_name else name
            if sparsity < config.min_sparsity:
                rows.append({"layer": label, "sparsity": round(sparsity, 3), "speedup": None, "sparse": False})
                continue
            candidate = _sparse_linear(layer)
            gain = speedup(layer, candidate, shapes[id(layer)])
            keep = gain >= config.min_speedup
            if keep:
                setattr(parent, name, candidate)
                replaced += 1
            rows.append({"layer": label, "sparsity": round(sparsity, 3), "speedup": round(gain, 3), "sparse": keep})
    tried = sum(1 for r in rows if r["speedup"] is not None)
    notes = [f"{replaced} of {tried} Linear layers with sparsity >= {config.min_sparsity:.0%} run sparse"]
    if not replaced:
        notes.append("no speed-up on this hardware: " + ("no layer is sparse enough (run prune-magnitude first)"
                                                         if not tried else "the sparse kernel was not faster"))
    return PassOutput(dataclasses.replace(model, module=module), notes=notes, details={"layers": rows})
