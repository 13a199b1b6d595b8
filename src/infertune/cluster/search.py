"""`infertune optimize --ray`: the search's trials on a Ray cluster.

The driver (where `optimize` runs) keeps the queue, the verdicts and the run directory, as on one machine. Each
trial is a Ray task pinned to one node (node affinity, not soft) that asks for all of that node's CPUs, so two
trials never share a node's cores and every timing stays as honest as on one machine; inside the task the trial
runs as it does locally, in a fresh process with a time limit (`bench.isolated.run_worker`). Where several nodes
share one machine (a test cluster), each takes its own cores, by CPU affinity.

Every node times the baseline before its first candidate; a candidate is judged against the baseline of the node
it ran on (its interleaved comparison runs the baseline in its own process anyway), and its record names the node.
A task lost with its node or its worker is submitted again on another node, up to MAX_ATTEMPTS times. The chosen
candidate's files are read back from its node at the end (or rebuilt elsewhere when that node is gone).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from infertune.search.recipe import Recipe
from infertune.search.records import Attempts, TrialRecord
from infertune.search.select import judged_baseline

MAX_ATTEMPTS = 3
REFRESH_S = 2.0  # how often the driver asks Ray which nodes are alive
SUSPECT_S = 30.0  # a node a task was lost on takes no task for this long (Ray may not have marked it dead yet)


@dataclass
class _Flight:
    kind: str             # "baseline" (the run's own), "node-baseline", "candidate" or "one"
    trial_id: str
    recipe: Recipe
    common: dict
    timeout: float
    node: str
    attempt: int = 1
    lost_on: tuple[str, ...] = ()


class RayTrials:
    """The executor `search.run.run_search` drives when `ray` is given: `baseline`, then `free` / `submit` /
    `next_finished` while candidates remain, `run_one` for confirmations, `fetch_artifact` for the best."""

    def __init__(self, address: str, out: Path, common: dict, progress, say: Callable[[str], None],
                 append: Callable[[TrialRecord], None]):
        self.address, self.out, self.common, self.progress, self.say, self.append = \
            address, out, common, progress, say, append
        self.nodes: dict[str, dict[str, Any]] = {}       # alive nodes with CPUs: id -> {node_id, ip, cpus}
        self.unusable: set[str] = set()                   # nodes whose baseline failed
        self.baselines: dict[str, TrialRecord] = {}      # node id -> that node's baseline record
        self.flights: dict[Any, _Flight] = {}             # object ref -> what it runs
        self.reference = None                             # object ref of the baseline's held-out outputs (.npz)
        self.outputs: bytes | None = None                 # those outputs, as the run's own baseline sent them back
        self.retry: list[_Flight] = []                    # lost tasks waiting for a node
        self.suspect: dict[str, float] = {}               # node id -> when a task was lost on it
        self.seen: dict[str, dict[str, Any]] = {}         # every node met, alive or not
        self.refreshed = 0.0
        self._context = None

    # -- the executor contract ----------------------------------------------------------------------------------

    def __enter__(self) -> "RayTrials":
        from infertune.cluster.connect import connected

        self._context = connected(self.address)
        self.ray = self._context.__enter__()
        self.task = self.ray.remote(max_retries=0)(_trial_task)
        self.reader = self.ray.remote(max_retries=0, num_cpus=0)(_read_files)
        self._refresh(force=True)
        if not self.nodes:
            raise _no_nodes(self.address)
        self.say(f"Ray cluster: {len(self.nodes)} nodes with CPUs ("
                 + ", ".join(f"{n['ip']} {n['cpus']:g} CPU" for n in self.nodes.values()) + "); one trial per node")
        return self

    def __exit__(self, *exc) -> None:
        for ref in list(self.flights):
            self.ray.cancel(ref, force=True)
        self.flights.clear()
        self._context.__exit__(*exc)

    def baseline(self, recipe: Recipe, timeout: float, saved: TrialRecord | None,
                 done: dict[str, TrialRecord]) -> TrialRecord:
        """The run's baseline (on one node, its held-out outputs the reference for every candidate); the other
        nodes time theirs meanwhile. A resumed run keeps the baselines of nodes still alive."""
        from infertune.io import atomic_open

        local_reference = Path(self.common["baseline_outputs"])
        if saved is not None and local_reference.is_file():
            main = saved
            self.reference = self.ray.put(local_reference.read_bytes())
            for record in [saved] + [r for k, r in done.items() if k.startswith("baseline@")]:
                if record.node_id in self.nodes:
                    self.baselines[record.node_id] = record
        else:
            first = self._idle_nodes()[0]
            self._launch(_Flight("baseline", "baseline", recipe, self.common, timeout, first))
            self._baselines_for_idle_nodes(recipe, timeout)
            while True:
                finished = self._wait_one()
                if finished is None:
                    continue
                flight, record = finished
                if flight.kind == "baseline":
                    break
            if record.failed:
                return record
            with atomic_open(local_reference) as handle:
                handle.write(self.outputs)
            self.reference = self.ray.put(self.outputs)
            main = judged_baseline(record)
            self.append(main)
            self.baselines[flight.node] = main
        self._baselines_for_idle_nodes(recipe, timeout)
        return main

    def baseline_for(self, record: TrialRecord, baseline: TrialRecord) -> TrialRecord:
        """The baseline timed on the node `record` ran on (its metric is the run's baseline's)."""
        same = self.baselines.get(record.node_id)
        return baseline if same is None else same.replace(metric=baseline.metric)

    def free(self) -> bool:
        self._refresh()
        self._dispatch_retries()
        self._baselines_for_idle_nodes(Recipe.from_dict(self.common["baseline_recipe"]), 900.0)
        return bool(self._ready_nodes())

    def running(self, waiting: bool = False) -> bool:
        """True while a candidate runs or waits to run again, or, with candidates `waiting`, while a node's
        baseline runs."""
        return any(f.kind == "candidate" for f in list(self.flights.values()) + self.retry) or \
            (waiting and bool(self.flights))

    def submit(self, trial_id: str, recipe: Recipe, timeout: float) -> None:
        self._launch(_Flight("candidate", trial_id, recipe, self.common, timeout, self._ready_nodes()[0]))

    def next_finished(self) -> tuple[str, Recipe, TrialRecord] | None:
        """The next candidate to finish, or None when what finished was something else (a node's baseline, or a
        task lost and submitted again)."""
        finished = self._wait_one()
        if finished is None or finished[0].kind != "candidate":
            return None
        flight, record = finished
        return flight.trial_id, flight.recipe, record

    def run_one(self, trial_id: str, recipe: Recipe, common: dict, timeout: float,
                near: TrialRecord | None = None) -> TrialRecord:
        """One trial, waited for: on the node `near` ran on when it can (a confirmation times the same node)."""
        self._refresh(force=True)
        wanted = near.node_id if near is not None else None
        ready = self._ready_nodes()
        node = wanted if wanted in ready else (ready or self._idle_nodes() or [None])[0]
        if node is None:
            return TrialRecord(id=trial_id, error="no node of the Ray cluster is free to run it")
        self._launch(_Flight("one", trial_id, recipe, common, timeout, node))
        while True:
            finished = self._wait_one()
            if finished is not None and finished[0].kind == "one":
                return finished[1]

    def fetch_artifact(self, record: TrialRecord) -> TrialRecord:
        """The chosen candidate with its files readable here: read back from its node, or rebuilt on another when
        that node is gone."""
        path = record.artifact
        if not path or Path(path).exists():
            return record  # the same machine, or a file system every node shares
        node = record.node_id
        local = self.out / "trials" / record.id / "fetched"
        try:
            files = self.ray.get(self.reader.options(scheduling_strategy=self._on(node)).remote(path), timeout=300)
        except Exception as e:  # the node is gone: build it again elsewhere
            self.say(f"{record.id}: its files could not be read back from node {_short(node)} "
                     f"({type(e).__name__}); building it again on another node")
            again = self.run_one(f"{record.id}+rebuild", Recipe.from_dict(record.recipe),
                                 {**self.common, "confirm": True, "rounds": 1}, 900.0)
            if again.failed or not again.artifact:
                raise RuntimeError(f"the chosen candidate {record.id} could not be rebuilt: "
                                   f"{again.error or 'no artifact'}") from e
            files = self.ray.get(self.reader.options(scheduling_strategy=self._on(again.node_id))
                                 .remote(again.artifact), timeout=300)
        local.mkdir(parents=True, exist_ok=True)
        from infertune.io import atomic_open

        for name, content in files.items():
            with atomic_open(local / name) as handle:
                handle.write(content)
        return record.replace(artifact=str(local / Path(path).name))

    def describe(self) -> dict[str, Any]:
        return {"address": self.address, "nodes": list(self.nodes.values()),
                "baselines": {node: {"id": b.id, "node": b.node, "latency_ms": b.latency.to_dict(),
                                     "throughput": None if b.throughput is None else b.throughput.to_dict()}
                              for node, b in self.baselines.items() if b.latency is not None}}

    # -- nodes and tasks ----------------------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.refreshed < REFRESH_S:
            return
        self.refreshed = time.monotonic()
        alive = {}
        for n in self.ray.nodes():
            cpus = n.get("Resources", {}).get("CPU", 0.0)
            if n.get("Alive") and cpus >= 1:
                alive[n["NodeID"]] = {"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress"), "cpus": cpus}
        self.seen.update(alive)
        for gone in set(self.nodes) - set(alive):
            self.say(f"node {_short(gone)} ({self.nodes[gone]['ip']}) left the cluster")
            self.baselines.pop(gone, None)
        self.nodes = alive

    def _busy(self) -> set[str]:
        return {f.node for f in self.flights.values()}

    def _idle_nodes(self) -> list[str]:
        busy, now = self._busy(), time.monotonic()
        return [n for n in sorted(self.nodes, key=lambda n: (self.nodes[n]["ip"], n))
                if n not in busy and n not in self.unusable and now - self.suspect.get(n, -SUSPECT_S) >= SUSPECT_S]

    def _ready_nodes(self) -> list[str]:
        return [n for n in self._idle_nodes() if n in self.baselines]

    def _baselines_for_idle_nodes(self, recipe: Recipe, timeout: float) -> None:
        waiting = {f.node for f in self.retry if f.kind == "node-baseline"}
        for node in self._idle_nodes():
            if node not in self.baselines and node not in waiting:
                common = {**self.common, "baseline_outputs": str(self.out.resolve() / "trials"
                                                                   / f"baseline@{_short(node)}" / "outputs.npz")}
                self._launch(_Flight("node-baseline", f"baseline@{_short(node)}", recipe, common, timeout, node))

    def _on(self, node: str):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

    def _launch(self, flight: _Flight):
        from infertune.search.trial import TrialJob

        cpus = self.nodes[flight.node]["cpus"]
        job = TrialJob(id=flight.trial_id, recipe=flight.recipe.to_dict(),
                       workdir=str(self.out.resolve() / "trials" / flight.trial_id), **flight.common)
        from dataclasses import asdict

        ref = self.task.options(num_cpus=cpus, scheduling_strategy=self._on(flight.node)).remote(
            asdict(job), flight.timeout, None if flight.kind == "baseline" else self.reference, _run_key(self.out))
        self.flights[ref] = flight
        if self.progress:
            self.progress(f"{flight.trial_id}: {flight.recipe.describe()}",
                          f"running on {self.nodes[flight.node]['ip']} ({_short(flight.node)})")
        return ref

    def _wait_one(self) -> tuple[_Flight, TrialRecord] | None:
        """Wait for one task; a lost one is submitted again (None is returned), a node's baseline is recorded."""
        from ray.exceptions import RayError, RayTaskError

        self._dispatch_retries()
        while not self.flights:  # only lost tasks wait, for a node that is gone or cannot take them
            if not self.retry:
                raise RuntimeError("nothing is running on the Ray cluster to wait for")
            self._refresh(force=True)
            self._dispatch_retries()
            self._baselines_for_idle_nodes(Recipe.from_dict(self.common["baseline_recipe"]), 900.0)
            if self.flights:
                break  # a node that had no baseline yet times one; the lost task waits for it
            if not self._idle_nodes() and not self._suspect_alive():
                flight = self.retry.pop(0)
                return flight, TrialRecord(id=flight.trial_id, recipe=flight.recipe.to_dict(),
                                           backend=flight.recipe.backend,
                                           error="lost with its node, and no node of the cluster is left to run it",
                                           attempts=Attempts(flight.attempt - 1, flight.lost_on))
            time.sleep(0.2)
        ready, _ = self.ray.wait(list(self.flights), num_returns=1)
        flight = self.flights.pop(ready[0])
        try:
            found = self.ray.get(ready[0])
        except RayTaskError as e:  # infertune's own code failed in the task: a failed trial, not a lost one
            found = {"error": f"{type(e.cause).__name__ if e.cause else 'RayTaskError'}: "
                              f"{str(e.cause or e).splitlines()[0]}"}
        except RayError as e:  # the task's worker or node was lost
            return self._lost(flight, e)
        outputs = found.pop("_outputs", None)
        if flight.kind == "baseline":
            self.outputs = outputs
        record = TrialRecord.from_dict({"id": flight.trial_id, "recipe": flight.recipe.to_dict(),
                                        "backend": flight.recipe.backend, **found})
        if record.node is None:
            record = record.replace(node={**self.nodes.get(flight.node, {"node_id": flight.node})})
        if flight.attempt > 1:
            record = record.replace(attempts=Attempts(flight.attempt, flight.lost_on))
        if flight.kind == "node-baseline":
            if record.failed:
                self.unusable.add(flight.node)
                self.say(f"node {_short(flight.node)}: its baseline failed ({record.error}); no trial runs there")
            else:
                record = judged_baseline(record)
                self.baselines[flight.node] = record
                self.append(record)
        return flight, record

    def _lost(self, flight: _Flight, error: Exception) -> tuple[_Flight, TrialRecord] | None:
        """A task lost with its worker or node: submitted again (another node first) until MAX_ATTEMPTS."""
        self._refresh(force=True)
        self.suspect[flight.node] = time.monotonic()
        where = f"{self.seen.get(flight.node, {}).get('ip', '?')} ({_short(flight.node)})"
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if flight.kind == "node-baseline" and flight.node not in self.nodes:
            return None  # its node is gone: nothing to time there
        if flight.attempt >= MAX_ATTEMPTS:
            self.say(f"{flight.trial_id}: lost {flight.attempt} times, last on {where} ({reason}); not tried again")
            if flight.kind == "node-baseline":
                self.unusable.add(flight.node)
                return None
            return flight, TrialRecord(id=flight.trial_id, recipe=flight.recipe.to_dict(),
                                       backend=flight.recipe.backend,
                                       error=f"lost with its node or worker {flight.attempt} times, last: {reason}",
                                       attempts=Attempts(flight.attempt, flight.lost_on + (where,)))
        self.say(f"{flight.trial_id}: lost on {where} ({reason}); running it again (attempt {flight.attempt + 1})")
        self.retry.append(_Flight(flight.kind, flight.trial_id, flight.recipe, flight.common, flight.timeout,
                                  flight.node, flight.attempt + 1, flight.lost_on + (where,)))
        self._dispatch_retries()
        return None

    def _suspect_alive(self) -> bool:
        """A node still alive that only waits out its suspicion: worth waiting for."""
        if any(n in self.nodes for n in self.suspect):
            time.sleep(1.0)
            return True
        return False

    def _dispatch_retries(self) -> None:
        """Lost tasks go to the first node that can take them, a node other than the one they were lost on first;
        a node's own baseline goes back to its node."""
        for flight in list(self.retry):
            if flight.kind == "node-baseline":
                options = [flight.node] if flight.node in self._idle_nodes() else []
            else:
                options = self._ready_nodes() if flight.kind in ("candidate", "one") else self._idle_nodes()
            if options:
                self.retry.remove(flight)
                self._launch(_Flight(flight.kind, flight.trial_id, flight.recipe, flight.common, flight.timeout,
                                     options[0], flight.attempt, flight.lost_on))
                self.say(f"{flight.trial_id}: attempt {flight.attempt} on {self.nodes[options[0]]['ip']} "
                         f"({_short(options[0])})")


def _no_nodes(address: str):
    from infertune.errors import ConfigError

    return ConfigError(f"the Ray cluster at '{address}' has no alive node with a whole CPU to run trials on: add a "
                       f"worker (`ray start --address=HEAD:PORT`)")


def _short(node: str | None) -> str:
    return (node or "?")[:8]


def _run_key(out: Path) -> str:
    return hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]


# -- in the task, on the node ----------------------------------------------------------------------------------


def _trial_task(job: dict[str, Any], timeout: float, reference: bytes | None, run_key: str) -> dict[str, Any]:
    """One trial on this node: the same fresh process with a time limit as on one machine, on this node's cores.
    The baseline's reference outputs come along as bytes; the run's own baseline sends its outputs back."""
    from infertune.bench.isolated import run_worker
    from infertune.cluster.connect import node_of_this_process
    from infertune.io import atomic_open

    job = _writable(job, run_key)
    outputs = Path(job["baseline_outputs"])
    if reference is not None and not outputs.is_file():
        with atomic_open(outputs) as handle:
            handle.write(reference)
    with _own_cores() as cores:
        record = run_worker("infertune.search.worker", job, timeout=timeout)
    import ray

    record["node"] = {**node_of_this_process(),
                      "cpus": ray.get_runtime_context().get_assigned_resources().get("CPU"), "cores": cores}
    if reference is None and "error" not in record and outputs.is_file():
        record["_outputs"] = outputs.read_bytes()
    return record


def _writable(job: dict[str, Any], run_key: str) -> dict[str, Any]:
    """The job's paths (under the driver's run directory) where this node can write them: the same path where it
    can (one machine, or a shared file system), else under this node's temporary folder."""
    try:
        Path(job["workdir"]).mkdir(parents=True, exist_ok=True)
        Path(job["baseline_outputs"]).parent.mkdir(parents=True, exist_ok=True)
        return job
    except OSError:
        root = Path(tempfile.gettempdir()) / "infertune-trials" / run_key
        return {**job, "workdir": str(root / Path(job["workdir"]).name),
                "baseline_outputs": str(root / Path(job["baseline_outputs"]).parent.name
                                        / Path(job["baseline_outputs"]).name)}


class _own_cores:
    """While the trial runs, this process (and so the trial's) keeps to this node's share of the machine's cores:
    all of them on a node that is a machine of its own; a disjoint set where several nodes share one machine."""

    def __enter__(self) -> list[int]:
        import ray

        self.before = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))
        if not self.before or cpus < 1 or cpus >= len(self.before):
            return self.before
        context = ray.get_runtime_context()
        here = ray.util.get_node_ip_address()
        peers = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("NodeManagerAddress") == here)
        rank = peers.index(context.get_node_id()) if context.get_node_id() in peers else 0
        start = (rank * cpus) % len(self.before)
        cores = [self.before[(start + i) % len(self.before)] for i in range(cpus)]
        os.sched_setaffinity(0, cores)
        return cores

    def __exit__(self, *exc) -> None:
        if self.before:
            os.sched_setaffinity(0, self.before)


def _read_files(path: str) -> dict[str, bytes]:
    """The artifact's graph and its weights (.onnx + .data, .xml + .bin), as the run directory copies them."""
    source = Path(path)
    return {item.name: item.read_bytes() for item in source.parent.iterdir()
            if item.name.startswith(source.stem) and item.is_file()}
