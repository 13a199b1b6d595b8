"""`infertune predict --ray`: batch inference on Ray Data.

The driver plans blocks from what a file says of itself (its size, a few bytes at each block boundary, a
Parquet footer, an `.npz` member's header), never reading the data: `.txt` and `.jsonl` in line-aligned byte
ranges (their rows counted by tasks first, so each block knows the index of its first row), `.parquet` by row
group, `.npz` by row ranges, `.csv` / `.tsv` one block per file (a quoted cell may hold a newline, so a byte
range cannot be cut safely). Tasks read the blocks; a pool of actors (`--actors N` or `MIN,MAX`, `--cpus-per-actor`
each, the runtime's threads set to them) loads the engine once each and runs batches, texts sorted by length
inside a batch so padding is small, answers put back in place. Every output row carries its input index: the
driver writes an `.npz` / `.jsonl` / `.parquet` file in input order after checking that each index came exactly
once, or, for an output folder, actors write one Parquet part per batch, named by its first index (a retried
batch writes the same name again, so nothing is written twice), and the driver checks the parts cover every index
once. A killed actor is restarted and its batches run again.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import ray

from infertune.errors import ConfigError, DataError

BLOCK_BYTES = 4 << 20      # at most, for a text file's block
MIN_BLOCK_BYTES = 16 << 10
NPZ_BLOCK_ROWS = 4096      # at most
BLOCKS_PER_ACTOR = 4       # a small file is still cut so every actor gets work (a block goes to one actor)
ENGINE_BATCH = 32


@dataclass(frozen=True)
class Block:
    number: int
    path: str
    kind: str          # txt, jsonl, csv, tsv, parquet, npz
    start: int         # bytes (txt, jsonl), row group (parquet), row (npz)
    stop: int
    first_index: int   # global index of its first row (-1 until counted)
    first_line: int = 1


def predict_on_ray(model: dict[str, Any], *, data: str, out: str | os.PathLike, address: str | None,
                   backend: str | None, actors: tuple[int, int], cpus_per_actor: float, batch_size: int,
                   text_field: str = "text", say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `model` (a ModelSpec dict) over every sample of the file `data`; returns the summary (rows, seconds,
    rows/s, actors, retries)."""
    from infertune.cluster.connect import connected

    path = Path(data)
    if not path.is_file():
        raise ConfigError(f"--data '{data}' with --ray must be a file (.npz, .txt, .jsonl, .csv, .tsv, .parquet) that "
                          f"every node can read at that path")
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("npz", "txt", "jsonl", "csv", "tsv", "parquet"):
        raise DataError(f"data file '{data}' has the unknown extension '{path.suffix}': use .npz, .txt, .jsonl, .csv, "
                        f".tsv or .parquet with --ray")
    out = Path(out)
    folder = out.suffix == ""
    if not folder:
        from infertune.data.outputs import check_output_path

        check_output_path(out)
    with connected(address):
        import ray.data

        started = time.monotonic()
        blocks = _plan(path.resolve(), kind, text_field, ray, BLOCKS_PER_ACTOR * actors[1])
        total = sum(b.stop - b.start for b in blocks) if kind == "npz" else None
        say(f"{len(blocks)} blocks planned from {path.name}")
        tally = _Tally.options(num_cpus=0).remote()
        rows = ray.data.from_items([asdict(b) for b in blocks], override_num_blocks=len(blocks)) \
            .map_batches(_read, batch_size=1, fn_kwargs={"text_field": text_field}, num_cpus=0, concurrency=2)
        predictions = rows.map_batches(
            Predictor, batch_size=batch_size, concurrency=actors, num_cpus=cpus_per_actor,
            fn_constructor_kwargs=dict(model=model, backend=backend, threads=max(1, int(cpus_per_actor)),
                                       tally=tally, parts=str(out) if folder else None),
            max_restarts=-1, max_task_retries=-1)
        if folder:
            written = _collect_parts(predictions, out)
            count = written
        else:
            count = _write_file(predictions, out, say)
        seconds = time.monotonic() - started
        calls, distinct = ray.get(tally.counts.remote())
        summary = {"rows": count, "seconds": seconds, "rows_per_s": count / seconds if seconds else 0.0,
                   "actors": list(actors), "cpus_per_actor": cpus_per_actor, "blocks": len(blocks),
                   "retries": calls - distinct, "out": str(out)}
        if total is not None and count != total:
            raise DataError(f"{count} rows came back for {total} samples")
        return summary


# -- planning (driver) ------------------------------------------------------------------------------------------


def _plan(path: Path, kind: str, text_field: str, ray, blocks_wanted: int = 1) -> list[Block]:
    """Blocks of the file, at least `blocks_wanted` where the file is large enough (each block is read by one task
    and predicted by one actor, so fewer blocks than actors leaves actors idle)."""
    if kind == "npz":
        rows = _npz_rows(path)
        step = max(1, min(NPZ_BLOCK_ROWS, -(-rows // blocks_wanted)))
        return [Block(i, str(path), kind, start, min(start + step, rows), start)
                for i, start in enumerate(range(0, rows, step))]
    if kind == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(str(path)).metadata
        blocks, first = [], 0
        for group in range(meta.num_row_groups):
            blocks.append(Block(group, str(path), kind, group, group + 1, first))
            first += meta.row_group(group).num_rows
        return blocks
    if kind in ("csv", "tsv"):
        return [Block(0, str(path), kind, 0, path.stat().st_size, 0)]
    ranges = _line_ranges(path, max(MIN_BLOCK_BYTES, min(BLOCK_BYTES, path.stat().st_size // blocks_wanted)))
    counted = ray.get([_count.remote(str(path), kind, start, stop, text_field) for start, stop in ranges])
    blocks, first, line = [], 0, 1
    for number, ((start, stop), (rows, lines)) in enumerate(zip(ranges, counted)):
        blocks.append(Block(number, str(path), kind, start, stop, first, line))
        first += rows
        line += lines
    return blocks


def _line_ranges(path: Path, block_bytes: int = BLOCK_BYTES) -> list[tuple[int, int]]:
    """Byte ranges of about `block_bytes` that start and end on line boundaries, found by reading a few bytes at
    each cut."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as handle:
        position = block_bytes
        while position < size:
            handle.seek(position)
            while True:
                piece = handle.read(4096)
                if not piece:
                    position = size
                    break
                newline = piece.find(b"\n")
                if newline >= 0:
                    position = handle.tell() - len(piece) + newline + 1
                    break
            if position >= size:
                break
            cuts.append(position)
            position += block_bytes
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _npz_rows(path: Path) -> int:
    """The first axis of the archive's arrays, from their headers (nothing is decompressed)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        counts = set()
        for info in archive.infolist():
            if info.filename.endswith(".npy") and info.filename != "labels.npy":
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape = read(member, max_header_size=10_000)[0]
                counts.add(shape[0] if shape else 0)
    if len(counts) != 1:
        raise DataError(f"data file '{path}' holds arrays with different sample counts {sorted(counts)}: every input "
                        f"needs one row per sample")
    return counts.pop()


# -- tasks and actors (workers) ---------------------------------------------------------------------------------


@ray.remote(num_cpus=0.25, max_retries=3)
def _count(path: str, kind: str, start: int, stop: int, text_field: str) -> tuple[int, int]:
    """(rows, lines) of one byte range: its texts, checked as the reader will check them."""
    from infertune.data.text import decode, texts_of

    with open(path, "rb") as handle:
        handle.seek(start)
        content = decode(handle.read(stop - start), path)
    return len(texts_of(content, path, text_field=text_field)), content.count("\n")


def _read(batch: dict[str, np.ndarray], text_field: str) -> dict[str, np.ndarray]:
    """One block's rows, each with its global index."""
    block = Block(**{k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in batch.items()})
    if block.kind == "npz":
        with np.load(block.path, allow_pickle=False) as archive:
            arrays = {name: archive[name][block.start:block.stop] for name in archive.files if name != "labels"}
        count = block.stop - block.start
        return {"index": np.arange(block.first_index, block.first_index + count, dtype=np.int64), **arrays}
    if block.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(block.path).read_row_group(block.start, columns=[text_field])
        texts = [str(t) for t in table.column(text_field).to_pylist()]
    elif block.kind in ("csv", "tsv"):
        from infertune.data.text import load_text_file

        texts = list(load_text_file(block.path, text_field=text_field, read_labels=False).texts)
    else:
        from infertune.data.text import decode, texts_of

        with open(block.path, "rb") as handle:
            handle.seek(block.start)
            content = decode(handle.read(block.stop - block.start), block.path)
        texts = texts_of(content, block.path, text_field=text_field, first_line=block.first_line)
    return {"index": np.arange(block.first_index, block.first_index + len(texts), dtype=np.int64),
            "text": np.asarray(texts, dtype=object)}


class Predictor:
    """An actor: the engine loaded once, with the runtime's threads set to the actor's CPUs."""

    def __init__(self, model: dict[str, Any], backend: str | None, threads: int, tally, parts: str | None):
        from infertune.engine import load
        from infertune.model.spec import ModelSpec
        from infertune.resolver import resolve

        self.engine = load(resolve(ModelSpec.from_dict(model))[0], backend=backend, threads=threads)
        self.tally = tally
        self.parts = Path(parts) if parts else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["index"]
        if len(index):
            self.tally.seen.remote(int(index[0]))
        if "text" in batch:
            outputs = self._texts(list(batch["text"]))
        else:
            inputs = {name: np.ascontiguousarray(value) for name, value in batch.items() if name != "index"}
            outputs = self.engine.run(inputs)
        result = {"index": index, **{name: value for name, value in outputs.items()}}
        if self.parts is not None:
            return _write_part(self.parts, result)
        return result

    def _texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Texts by length, ENGINE_BATCH at a time (little padding), answers back in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(order), ENGINE_BATCH):
            chunk = order[start:start + ENGINE_BATCH]
            for name, value in self.engine.run(self.engine.encode([texts[i] for i in chunk])).items():
                parts.setdefault(name, []).append(value)
        inverse = np.argsort(np.asarray(order))
        return {name: np.concatenate(values)[inverse] for name, values in parts.items()}


def _write_part(folder: Path, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One batch's rows as `part-FIRST.parquet`, written to a temporary name then renamed (a retry rewrites the
    same name, so no row is ever there twice); what the driver gets back is the indices."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    index = result["index"]
    if not len(index):
        return {"index": index}
    columns = {"index": pa.array(index)}
    for name, value in result.items():
        if name != "index":
            columns[name] = pa.array(list(value)) if value.ndim > 1 else pa.array(value)
    final = folder / f"part-{int(index[0]):012d}.parquet"
    staging = folder / f".{final.name}.{os.getpid()}.tmp"
    pq.write_table(pa.table(columns), staging)
    os.replace(staging, final)
    return {"index": index}


@ray.remote
class _Tally:
    """Counts batch calls by first index: calls beyond the distinct batches are retries."""

    def __init__(self):
        self.calls, self.firsts = 0, set()

    def seen(self, first: int) -> None:
        self.calls += 1
        self.firsts.add(first)

    def counts(self) -> tuple[int, int]:
        return self.calls, len(self.firsts)


# -- writing (driver) -------------------------------------------------------------------------------------------


def _write_file(predictions, out: Path, say) -> int:
    """Every row into its place by index, each index checked to come exactly once, then the file."""
    from infertune.data.outputs import save_outputs

    chunks: list[dict[str, np.ndarray]] = []
    for batch in predictions.iter_batches(batch_size=None, batch_format="numpy"):
        chunks.append(batch)
    index = np.concatenate([c["index"] for c in chunks]) if chunks else np.zeros(0, np.int64)
    _check_once(index)
    order = np.argsort(index, kind="stable")
    names = [n for n in chunks[0] if n != "index"] if chunks else []
    outputs = {name: np.concatenate([_stack(c[name]) for c in chunks])[order] for name in names}
    save_outputs(out, outputs)
    say(f"wrote {len(index)} rows to {out}")
    return len(index)


def _collect_parts(predictions, folder: Path) -> int:
    seen = [batch["index"] for batch in predictions.iter_batches(batch_size=None, batch_format="numpy")]
    index = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    _check_once(index)
    import pyarrow.parquet as pq

    on_disk = np.concatenate([pq.read_table(p, columns=["index"]).column("index").to_numpy()
                              for p in sorted(folder.glob("part-*.parquet"))]) if index.size else index
    _check_once(on_disk)
    if len(on_disk) != len(index):
        raise DataError(f"the output folder '{folder}' holds {len(on_disk)} rows for {len(index)} predicted: remove "
                        f"stale parts from an earlier run and run again")
    return len(index)


def _check_once(index: np.ndarray) -> None:
    """Every index from 0 to n-1 exactly once."""
    if not len(index):
        return
    counts = np.bincount(index, minlength=int(index.max()) + 1)
    missing, twice = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(missing) or len(twice):
        raise DataError(f"{len(missing)} rows missing and {len(twice)} written more than once in the output (first "
                        f"missing {missing[:5].tolist()}, first doubled {twice[:5].tolist()})")


def _stack(value: np.ndarray) -> np.ndarray:
    if value.dtype == object:  # rows of arrays (tensor columns come back as objects)
        return np.stack(list(value))
    return value

