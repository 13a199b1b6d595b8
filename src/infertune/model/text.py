"""Tokenizing text for a model: natural length (each batch padded to its longest text), truncated at the model's
maximum, producing exactly the inputs the model's signature names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertune.errors import UnsupportedModelError

# the inputs a tokenizer can fill, by the names transformers models (and their ONNX exports) give them
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TextEncoder:
    """`encoder(["a text", ...]) -> {"input_ids": int64[batch, longest], "attention_mask": ..., ...}`.

    Wraps a `tokenizers.Tokenizer`; `inputs` are the model input names to fill (a subset of TOKEN_INPUTS).
    One text is encoded on the calling thread: `encode_batch` wakes a thread pool, which costs more than it saves.
    """

    def __init__(self, tokenizer, *, max_length: int, inputs: tuple[str, ...] = ("input_ids", "attention_mask"),
                 pad_id: int = 0, pad_token: str = "[PAD]", source: str = ""):
        unknown = [name for name in inputs if name not in TOKEN_INPUTS]
        if unknown:
            raise UnsupportedModelError(f"model input '{unknown[0]}' is not one a tokenizer fills "
                                        f"({', '.join(TOKEN_INPUTS)}): give the model arrays in an .npz instead")
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # no length: pad to the batch's longest
        tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.inputs = tuple(inputs)
        self.source = source

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = ([self.tokenizer.encode(str(texts[0]))] if len(texts) == 1
                     else self.tokenizer.encode_batch([str(t) for t in texts]))
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        return {name: np.array([getattr(e, fields[name]) for e in encodings], dtype=np.int64) for name in self.inputs}

    def __repr__(self) -> str:
        return f"TextEncoder({self.source or 'tokenizer'}, max_length={self.max_length}, inputs={self.inputs})"


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds tokenizer files transformers can read (a fast tokenizer, or a vocabulary)."""
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "spiece.model",
                                                       "sentencepiece.bpe.model", "vocab.json"))


def folder_encoder(folder: Path, *, inputs: tuple[str, ...], max_length: int | None = None,
                   cap: int | None = None) -> TextEncoder:
    """The tokenizer saved in a Hugging Face folder (read offline), at natural length, truncated at `max_length`
    or the tokenizer's own `model_max_length`, and never past `cap` (the model's position table)."""
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)
    except Exception as e:  # transformers raises OSError, ValueError and others for files it cannot read
        raise UnsupportedModelError(f"cannot read the tokenizer in '{folder}' ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}): save it with "
                                    f"tokenizer.save_pretrained('{folder}')") from e
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if fast is None:
        raise UnsupportedModelError(f"the tokenizer in '{folder}' has no fast (Rust) version: save a tokenizer.json "
                                    f"with a fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))")
    limit = max_length or _sane(getattr(tokenizer, "model_max_length", None)) or 512
    if cap is not None:
        limit = min(limit, cap)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad_token = tokenizer.pad_token if tokenizer.pad_token is not None else "[PAD]"
    wanted = tuple(name for name in inputs if name in TOKEN_INPUTS)
    return TextEncoder(_copy(fast), max_length=int(limit), inputs=wanted, pad_id=int(pad_id), pad_token=str(pad_token),
                       source=str(folder))


def _sane(length) -> int | None:
    """transformers writes a huge number when a tokenizer has no maximum of its own."""
    return int(length) if isinstance(length, int) and 0 < length < 1_000_000 else None


def _copy(tokenizer):
    """A copy, so padding and truncation set here do not change the tokenizer object transformers caches."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer.to_str())
