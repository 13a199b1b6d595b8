"""Files are written atomically: a temporary file in the same folder, then a rename, so a crash or a kill
leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces `path` only when the block ends without an error."""
    path = Path(path)
    if path.is_dir():
        from infertune.errors import ConfigError

        raise ConfigError(f"'{path}' is a folder: give a file path to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from infertune.errors import ConfigError

        raise ConfigError(f"cannot create the folder for '{path}' ({e.strerror}): choose a writable path") from e
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # os.open with O_EXCL rather than mkstemp, so the file gets the user's umask, not owner-only
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        from infertune.errors import ConfigError

        raise ConfigError(f"cannot write '{path}' ({e.strerror}): choose a writable path") from e
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_root() -> Path:
    """infertune's cache: `$INFERTUNE_CACHE_DIR`, else ~/.cache/infertune (exports and conversions, keyed by
    content, so a model is converted once)."""
    return Path(os.environ.get("INFERTUNE_CACHE_DIR") or Path.home() / ".cache" / "infertune")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
