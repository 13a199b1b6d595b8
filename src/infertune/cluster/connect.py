"""Joining a Ray cluster: an existing one at ADDRESS, or a local one started here and stopped at the end."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from infertune.errors import ConfigError

LOCAL = "local"  # `--ray` without an address


def require_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs Ray: pip install 'infertune[ray]' (ray[data,serve])") from e
    return ray


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[object]:
    """Ray, initialised on `address` (host:port of an existing cluster's head, or 'auto'), or on a local cluster
    started for this block when `address` is None or 'local'. The local one uses this machine's cores and is
    shut down at the end; an existing cluster is left as it was."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_ACCEPT_CALLBACKS", "0")
    quiet = dict(log_to_driver=False, configure_logging=True, logging_level="WARNING")
    try:
        if address in (None, LOCAL):
            ray.init(include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as e:
        raise ConfigError(f"cannot reach a Ray cluster at '{address}' ({e}): start one with `ray start --head`, "
                          f"or pass --ray without an address for a local one") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def node_of_this_process() -> dict[str, str]:
    """Where a task or actor runs: its node id and IP, as results record them."""
    import ray

    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address()}


def node_cpus() -> list[tuple[str, float]]:
    """(node id, CPUs) of each alive node of the cluster."""
    import ray

    return [(n["NodeID"], n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
