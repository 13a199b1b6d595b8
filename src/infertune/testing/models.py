"""Tiny deterministic models for tests: fast to run, export and compile on any backend."""

from __future__ import annotations

import warnings

import numpy as np


def _seeded():
    import torch

    torch.manual_seed(0)
    return torch


def tiny_mlp():
    """16 features -> 10 class scores."""
    _seeded()
    from torch import nn

    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def tiny_cnn():
    """(N, 1, 8, 8) images -> 10 class scores, with batch norm (for folding passes later)."""
    torch = _seeded()
    from torch import nn

    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with torch.no_grad():  # non-trivial running statistics, as after training
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def _mlp_wrapper(forward_hook):
    """A seeded 16 -> 10 linear layer whose forward is `forward_hook(linear, input)`."""
    _seeded()
    from torch import nn

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(16, 10)

        def forward(self, input):
            return forward_hook(self.linear, input)

    return Wrapped().eval()


def sign_branch():
    """Data-dependent control flow: tracing freezes one branch, so its ONNX export is wrong on the other."""
    return _mlp_wrapper(lambda linear, input: linear(input) if input.sum() > 0 else -linear(input))


def mlp_data(n: int = 64, seed: int = 0, *, positive: bool = False) -> dict[str, np.ndarray]:
    """Inputs named as `tiny_mlp`'s forward argument, plus labels from a fixed rule."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    if positive:
        x = np.abs(x)
    return {"input": x, "labels": (x[:, :10].argmax(axis=1)).astype(np.int64)}


def abort_on_forward():
    """A model whose forward kills its process with SIGABRT, as a crashing runtime would."""
    def forward(linear, input):
        import os

        os.abort()

    return _mlp_wrapper(forward)


def tiny_bert():
    """A 2-layer BERT (hidden 32, 2 heads, vocabulary 100) with mean pooling: MiniLM's shape, in miniature."""
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    _seeded()
    from transformers import BertConfig, BertModel

    from infertune.model.pooling import MeanPooledEncoder

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = MeanPooledEncoder(BertModel(config, add_pooling_layer=False)).eval()
    model.infertune_task = "embedding"  # 32-d outputs would otherwise be taken for class scores
    model.infertune_meta = {"num_heads": 2, "hidden_size": 32}
    return model


def bert_data(n: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids of varied lengths (padded to 12) with their attention mask, for `tiny_bert`."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 13, size=n)
    ids = np.zeros((n, 12), np.int64)
    mask = np.zeros((n, 12), np.int64)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1, 100, size=length)
        mask[i, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def slow_mlp():
    """A 16 -> 10 linear layer that sleeps 50 ms per call, so a server's queue fills and deadlines pass on
    demand. Inputs whose first value is 13.0 make it raise, a failure that only running the model reveals."""
    def forward(linear, input):
        import time

        time.sleep(0.05)
        if bool((input[:, 0] == 13.0).any()):
            raise ValueError("input holds the marker value 13.0")
        return linear(input)

    return _mlp_wrapper(forward)


def drops_a_row():
    """A model that returns one row fewer than it was given: a broken engine the server must catch."""
    return _mlp_wrapper(lambda linear, input: linear(input)[1:] if input.shape[0] > 1 else linear(input)[:0])


def faulty_mlp():
    """A 16 -> 10 linear layer with faults on demand, by the first value of a row: 13.0 raises, 7.0 makes that
    row's outputs infinite (as an overflow would), 5.0 drops a row from the batch's outputs, and 2.0 sleeps 50 ms
    (so that requests queue up behind it and batch together). Any other row is answered correctly, so a server
    must fail only the request that holds the fault."""
    def forward(linear, input):
        import time

        import torch

        first = input[:, 0]
        if bool((first == 2.0).any()):
            time.sleep(0.05)
        if bool((first == 13.0).any()):
            raise ValueError("input holds the marker value 13.0")
        output = linear(input)
        output = torch.where((first == 7.0)[:, None], torch.full_like(output, float("inf")), output)
        return output[1:] if bool((first == 5.0).any()) else output

    return _mlp_wrapper(forward)


def lstm_tagger():
    """An LSTM over (N, 12, 16) sequences, then a head on the last step: (N, 4) scores."""
    torch = _seeded()

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(16, 32, batch_first=True)
            self.head = torch.nn.Linear(32, 4)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    return Tagger().eval()


def token_tagger_onnx(path):
    """A one-layer BERT with a head on every token, exported to ONNX at `path`: (N, L) ids and attention mask in,
    (N, L, 3) tag scores out, a value per token (padded ones included). Returns `path`."""
    torch = _seeded()
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32), add_pooling_layer=False).eval()

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head = encoder, torch.nn.Linear(16, 3)

        def forward(self, input_ids, attention_mask):
            return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)

    ids, mask = torch.randint(1, 50, (2, 7)), torch.ones(2, 7, dtype=torch.int64)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, as passes/export.py does
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Tagger().eval(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["tags"], dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask",
                                                                                 "tags")})
    return path


def fused_qkv_attention():
    """Self-attention as timm writes it, over (N, 10, 12) tokens -> (N, 4) scores: one Linear makes q, k and v
    (chunked), the scale comes after the query-key matmul, and one Linear is applied twice (shared weights)."""
    torch = _seeded()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(12, 32)
            self.qkv = torch.nn.Linear(32, 96)
            self.mix = torch.nn.Linear(32, 32)
            self.head = torch.nn.Linear(32, 4)

        def forward(self, x):
            h = self.embed(x)
            q, k, v = self.qkv(h).chunk(3, dim=-1)
            attention = torch.softmax(q @ k.transpose(-1, -2) / 32 ** 0.5, dim=-1)
            return self.head(self.mix(self.mix(attention @ v)).mean(1))

    return Block().eval()
