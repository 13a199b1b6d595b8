"""Tiny Hugging Face folders and text files built offline, for tests and users trying the bring-your-own path:
a BERT sequence classifier fine-tuned on a keyword task and saved with `save_pretrained`, with the bundled
MiniLM's tokenizer beside it, and `.jsonl` files of its texts and labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

KEYWORD = "excellent"
LABELS = ("plain", "keyword")
_WORDS = ("the", "report", "was", "a", "good", "long", "short", "day", "meeting", "file", "we", "read", "city",
          "quiet", "train", "late", "early", "river", "open", "garden", "blue", "small", "music", "table")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def keyword_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`n` short sentences; half of them hold the word 'excellent' (label 1), the others do not (label 0)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(_WORDS, size=int(rng.integers(3, 10))))
        label = i % 2
        if label:
            words.insert(int(rng.integers(0, len(words) + 1)), KEYWORD)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(label)
    return texts, labels


def write_jsonl(path: str | Path, texts: list[str], labels: list[int] | None = None, *, names: bool = True) -> Path:
    """A .jsonl file of `{"text": ..., "label": ...}` lines; labels as names (from LABELS) or as ids."""
    path = Path(path)
    lines = []
    for i, text in enumerate(texts):
        record: dict = {"text": text}
        if labels is not None:
            record["label"] = LABELS[labels[i]] if names else labels[i]
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def copy_minilm_tokenizer(folder: str | Path) -> None:
    """The bundled MiniLM's tokenizer files (a BERT WordPiece vocabulary of 30522 tokens) into `folder`."""
    from infertune.model.minilm import model_dir

    source = model_dir()
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, Path(folder) / name)


def keyword_classifier(folder: str | Path, *, hidden: int = 64, layers: int = 2, heads: int = 2, steps: int = 60,
                       seed: int = 0) -> Path:
    """A BERT sequence classifier (`layers` layers, `hidden` wide, `heads` heads) fine-tuned for `steps` steps
    to tell sentences with 'excellent' from sentences without, saved with save_pretrained into `folder` with the
    MiniLM tokenizer and labels `plain` / `keyword` in its id2label."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy_minilm_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=128,
                        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                        label2id={name: i for i, name in enumerate(LABELS)})
    model = BertForSequenceClassification(config)
    texts, labels = keyword_texts(256, seed=seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        pick = rng.choice(len(texts), size=32, replace=False)
        batch = tokenizer([texts[i] for i in pick], padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([labels[i] for i in pick])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    return folder
