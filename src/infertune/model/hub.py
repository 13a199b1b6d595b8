"""Hugging Face model names, looked up in the local Hugging Face cache only: infertune never downloads."""

from __future__ import annotations

import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and ".." not in name


def cached_snapshot(name: str) -> Path | None:
    """The folder of `name`'s newest snapshot in the local Hugging Face cache, or None when it is not there."""
    if not looks_like_repo_id(name):
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id=name, local_files_only=True)
    except Exception:  # not cached, an invalid name, or no huggingface_hub: all mean "not in the cache"
        return None
    return Path(folder)


def cache_location() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return "~/.cache/huggingface/hub"
