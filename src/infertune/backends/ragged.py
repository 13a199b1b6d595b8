"""A batch cut by length, the `by_length` setting of the ONNX Runtime and OpenVINO backends: rows sorted by their
real length (read from the attention mask), cut into parts, each part run without the padding columns none of its
rows needs, and the outputs put back in input order.

A batch of texts is padded to its longest row, so a runtime spends its work on padding: 32 consecutive held-out
MiniLM sentences hold 2.1x their real tokens, even 32 of similar lengths 1.3x (docs/benchmarks.md). Parts run at
once on streams of their own (OpenVINO `split`) are cut so that their padded work balances; parts run one after
another are cut where their padded work adds up to the least. Servers do the same before a batch reaches the
model (Hugging Face's text-embeddings-inference sorts by length; FasterTransformer removes padding inside its
kernels; infertune's `unpad` pass in the graph).

It applies where the numbers cannot depend on the padding: the model takes an attention mask on a sequence axis
that no output has (a pooled embedding, a classifier's logits), so every output row is computed from its own real
tokens. The search judges it like any candidate, against the held-out outputs of the model as given.
"""

from __future__ import annotations

import numpy as np

MASK_INPUT = "attention_mask"
SEQUENTIAL_GAIN = 0.9  # parts run one after another: two, and only where they leave at most this share of the work


def length_axes(signature) -> tuple[str, tuple[str, ...]] | None:
    """(mask input, inputs laid out on its sequence axis), where a batch of this model may be cut by length: it has
    an `attention_mask` input whose axes are symbolic, every output has the mask's first (batch) axis first, and no
    output carries its second (sequence) axis. None otherwise."""
    mask = next((spec for spec in signature.inputs if spec.name == MASK_INPUT), None)
    if mask is None or len(mask.shape) < 2 or not all(isinstance(axis, str) for axis in mask.shape[:2]):
        return None
    batch, axis = mask.shape[:2]
    if any(not spec.shape or spec.shape[0] != batch or axis in spec.shape for spec in signature.outputs):
        return None  # outputs not one row per input row, or token-level ones (their rows would come back trimmed)
    return mask.name, tuple(spec.name for spec in signature.inputs if len(spec.shape) >= 2 and spec.shape[1] == axis)


def real_lengths(mask: np.ndarray) -> np.ndarray:
    """Per row, one past the last position the mask marks real (0 for a row with none)."""
    marked = mask.reshape(len(mask), mask.shape[1], -1).any(axis=2)
    last = marked.shape[1] - np.argmax(marked[:, ::-1], axis=1)
    return np.where(marked.any(axis=1), last, 0)


def balanced_cuts(lengths: np.ndarray, count: int) -> list[tuple[int, int]]:
    """[start, stop) bounds into `lengths` (ascending) of at most `count` parts that minimize the largest part's
    padded work (its rows times its longest length): bisection on that bound, each bound tried by taking parts
    greedily from the longest rows down."""
    widths = np.maximum(lengths, 1).astype(np.int64)

    def parts(bound: int) -> list[tuple[int, int]] | None:
        found, stop = [], len(widths)
        while stop > 0:
            start = max(0, stop - max(1, bound // int(widths[stop - 1])))
            found.append((start, stop))
            if len(found) > count:
                return None
            stop = start
        return found[::-1]

    low, high = int(widths[-1]), int(len(widths) * widths[-1])
    while low < high:
        middle = (low + high) // 2
        if parts(middle) is None:
            low = middle + 1
        else:
            high = middle
    return parts(low)


def sequential_cuts(lengths: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) bounds into `lengths` (ascending) of the two parts whose padded work adds up to the least, or
    the whole where no cut leaves at most SEQUENTIAL_GAIN of it (each part is a call of its own)."""
    rows = len(lengths)
    widths = np.maximum(lengths, 1).astype(np.int64)
    whole = rows * int(widths[-1])
    if rows < 2:
        return [(0, rows)]
    at = np.arange(1, rows)
    work = at * widths[at - 1] + (rows - at) * widths[-1]
    best = int(np.argmin(work))
    if work[best] > SEQUENTIAL_GAIN * whole:
        return [(0, rows)]
    return [(0, int(at[best])), (int(at[best]), rows)]


def by_length(feed: dict[str, np.ndarray], axes: tuple[str, tuple[str, ...]],
              parallel: int = 0) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """(parts, order): `feed`'s rows sorted by real length and cut into parts, each trimmed to its longest row;
    `order[i]` is the row of `feed` that row i of the parts, concatenated, came from. With `parallel`, at most that
    many parts of balanced work (they run at once); otherwise the cut of least total work (`sequential_cuts`)."""
    mask, sequenced = axes
    lengths = real_lengths(feed[mask])
    order = np.argsort(lengths, kind="stable")
    ordered = lengths[order]
    bounds = balanced_cuts(ordered, parallel) if parallel else sequential_cuts(ordered)
    parts = []
    for start, stop in bounds:
        rows, width = order[start:stop], max(1, int(ordered[stop - 1]))
        parts.append({name: array[rows, :width] if name in sequenced else array[rows] for name, array in feed.items()})
    return parts, order


def in_input_order(values: list[np.ndarray], order: np.ndarray) -> list[np.ndarray]:
    """Outputs of the parts, concatenated in part order, put back in the order of the batch's rows."""
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return [value[back] for value in values]
