"""Train the DigitsCNN shipped in the package on the digits train split and write its weights.

Run from the repository root: `PYTHONPATH=src python scripts/train_digits_cnn.py`. Deterministic
(seed 0, one thread); a minute or less on a laptop CPU. Prints the held-out top-1 and writes
src/infertune/model/weights/digits_cnn.safetensors atomically. The calibration split is not used.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from infertune.data.digits import INPUT_NAME, load_digits
from infertune.data.metrics import top1_accuracy
from infertune.model.digits_cnn import WEIGHTS_PATH, build_digits_cnn, widths_metadata

SEED = 0
EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


def train(epochs: int = EPOCHS) -> nn.Module:
    """Train a default-width DigitsCNN with Adam on the train split; returns it in eval mode."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # reductions split across threads can change the last bits
    train_split = load_digits().split("train")
    x = torch.from_numpy(train_split.inputs[INPUT_NAME])
    y = torch.from_numpy(train_split.labels)
    model = build_digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    shuffler = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=shuffler)
        total = 0.0
        for start in range(0, len(y), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        schedule.step()
        print(f"epoch {epoch + 1:2d}/{epochs}  train loss {total / len(y):.4f}")
    return model.eval()


def heldout_top1(model: nn.Module) -> float:
    """Top-1 of `model` on the digits heldout split, eager torch."""
    heldout = load_digits().split("heldout")
    with torch.no_grad():
        logits = model(torch.from_numpy(heldout.inputs[INPUT_NAME])).numpy()
    return top1_accuracy(logits, heldout.labels)


def save_atomically(model: nn.Module, path: Path) -> None:
    """Write the state dict as safetensors via a temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata=widths_metadata(model))
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; the file ships in the package
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args()
    model = train(args.epochs)
    print(f"held-out top-1: {heldout_top1(model):.4f} (500 samples)")
    save_atomically(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
