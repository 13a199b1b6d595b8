"""`optimize`: baseline, then candidates cheapest-first, each in its own process with a time limit; verdicts
against the accuracy budget and the baseline's speed; the run directory, written as trials finish, so a
kill or Ctrl-C leaves a valid run that `resume=True` continues."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from infertune.errors import ConfigError
from infertune.io import write_json_atomic
from infertune.search.recipe import Recipe
from infertune.search.records import Latency, Status, TrialRecord
from infertune.search.refine import combined_queue, lost_settings, next_leader, refine_queue
from infertune.search.select import best, fallback_turn, judged_baseline, mark_pareto, ranked, verdict

OBJECTIVES = ("latency", "throughput", "size")
CONFIRM_AT_MOST = 4  # leaders measured again before one is written as best
CONFIRM_ROUNDS = 12
SETTING_ROUNDS = 3  # rounds of runtime settings: the first leader's, then those of a variant that beat it, ...
CONFIRM_FLOOR_S = 240.0  # a confirmation may rebuild (a torch artifact): past the budget it still gets this long


@dataclass
class Result:
    """The run: `data` is results.json as written (its records are dicts, the public contract)."""
    directory: Path
    data: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        return next((c for c in self.data["candidates"] if c["id"] == self.data["best"]), None)

    @property
    def baseline(self) -> dict[str, Any]:
        return self.data["baseline"]

    @property
    def candidates(self) -> list[dict[str, Any]]:
        return self.data["candidates"]

    def save(self, path: str | Path) -> Path:
        """Copy the run directory to `path` (a no-op when it is already there)."""
        path = Path(path)
        if path.resolve() != self.directory.resolve():
            shutil.copytree(self.directory, path, dirs_exist_ok=True)
        return path


def _check(max_drop: float, min_top10: float, objective: str, batch_size: int, time_budget: float | None) -> None:
    if not 0 <= max_drop <= 1:
        raise ConfigError(f"--max-drop must be between 0 and 1 (0.01 = one point), got {max_drop}")
    if not 0 <= min_top10 <= 1:
        raise ConfigError(f"--min-top10 must be between 0 and 1 (0.9 = nine of ten nearest neighbours kept), "
                          f"got {min_top10}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size}")
    if time_budget is not None and time_budget <= 0:
        raise ConfigError(f"--time-budget must be a positive number of seconds, got {time_budget}")


def _prepare(out: Path, resume: bool, say: Callable[[str], None]) -> list[TrialRecord]:
    trials = out / "trials.jsonl"
    if trials.exists() and not resume:
        raise ConfigError(f"'{out}' already holds a run: pass --resume to continue it, or another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out '{out}' is not writable ({e.strerror}): choose another folder") from e
    if not trials.exists():
        return []
    done = []
    for number, line in enumerate(trials.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            found = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write: that trial runs again
            say(f"{trials}: line {number} is cut ({len(line)} characters, not a whole record, as a kill mid-write "
                f"leaves it); skipped, so its trial runs again")
            continue
        if isinstance(found, dict) and "id" in found:
            done.append(TrialRecord.from_dict(found))
    return done


def run_search(source, dataset, *, max_drop: float = 0.01, min_top10: float = 0.9, objective: str = "latency",
               batch_size: int = 1, time_budget: float | None = None, out: str | Path | None = None,
               resume: bool = False, recipes: list[Recipe] | None = None, trial_timeout: float = 900.0,
               timing: dict | None = None, progress: Callable[[str, str], None] | None = None,
               say: Callable[[str], None] | None = None, ray: str | None = None,
               refine: bool | None = None) -> Result:
    """Find the fastest (or smallest) artifact of `source` (a Model) within `max_drop` of the baseline on the
    held-out split of `dataset` (and, for embeddings, keeping at least `min_top10` of each sample's ten nearest
    neighbours). Trials reload both in fresh processes from their specs. `infertune.optimize` resolves a spec,
    then calls this. With `ray` (a cluster's address, or 'local'), trials run on Ray, one per node at a time,
    each holding the node's CPUs (see `infertune.cluster.search`); model and data paths must be readable there.
    With `refine` (by default when searching, not when `recipes` are given), the candidates are followed by the
    runtime settings of the baseline's recipe and of the leader's (`space.setting_variants`), each a candidate
    judged like the others; a settings variant that beats the leader beyond its spread leads in turn, for up to
    `SETTING_ROUNDS` rounds (`refine.next_leader`).
    """
    from infertune.bench.hardware import fingerprint, versions
    from infertune.search.space import baseline_recipe, candidate_recipes, mixed_precision_fallback, needs_met

    say = say or (lambda line: None)
    _check(max_drop, min_top10, objective, batch_size, time_budget)
    model = source.spec.model
    if dataset is None:
        raise ConfigError(f"optimize needs data to measure accuracy: pass --data (a data file with the inputs of "
                          f"'{model}' or its texts, labels optional)")
    if dataset.spec is None:
        raise ConfigError("optimize measures each candidate in a fresh process, which reloads the data: pass data as "
                          "a zoo name or a file, not as arrays in memory")
    out = Path(out) if out is not None else Path("runs") / f"{source.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    done = {trial.id: trial for trial in _prepare(out, resume, say)}
    base = baseline_recipe(source)
    has_data = dict(has_calibration="calibration" in dataset.splits,
                    has_training=dataset.splits.get("train") is not None and len(dataset.splits["train"]) > 0)
    needs = needs_met(source, **has_data)
    queue = [("baseline", base)] + [(f"c{i + 1:02d}", r) for i, r in enumerate(
        recipes if recipes is not None else candidate_recipes(
            source, **has_data, max_drop=max_drop, time_budget=time_budget, objective=objective))]
    started = time.monotonic()
    common = dict(model=source.spec.to_dict(), data=dataset.spec.to_dict(), baseline_recipe=base.to_dict(),
                  baseline_outputs=str(out.resolve() / "baseline_outputs.npz"), batch_size=batch_size,
                  throughput_batch=max(batch_size, 32), objective=objective, **({"timing": timing} if timing else {}))
    trials_file = out / "trials.jsonl"
    finished: list[TrialRecord] = []
    later = []  # (id, recipe): mixed-precision fallbacks of int8 candidates another measured ahead of
    budget_limited: dict[str, float] = {}  # trial id -> seconds of the time budget left when it started
    stopped = None

    def timeout_left() -> float:
        left = None if time_budget is None else time_budget - (time.monotonic() - started)
        return trial_timeout if left is None else min(trial_timeout, max(left, 60))

    with _executor(ray, out, common, progress, say, lambda r: _append(trials_file, r)) as trials:
        try:
            baseline_id, recipe = queue.pop(0)
            saved = done.get(baseline_id)
            record = saved if saved is not None and saved.recipe == recipe.to_dict() else None
            record = trials.baseline(recipe, timeout_left(), record, done)
            if record.failed:
                raise ConfigError(f"the baseline ({recipe.describe()}) failed, so nothing can be compared: "
                                  f"{record.error}")
            finished.append(record)

            def queue_fallback(trial_id: str, recipe, record: TrialRecord) -> TrialRecord:
                """Queue the mixed-precision fallback of an int8 candidate over budget where `fallback_turn`
                says; the record comes back with the reason saying so. A resumed run queues it again."""
                fallback = mixed_precision_fallback(recipe, max_drop) if record.status is Status.REJECTED \
                    and record.reason.startswith("over budget") else None
                if fallback is None:
                    return record
                record, when = fallback_turn(record, finished[1:], objective)
                if when == "next":
                    queue.insert(0, (f"{trial_id}-mixed", fallback))
                elif when == "later":
                    later.append((f"{trial_id}-mixed", fallback))
                return record

            def drain() -> None:
                nonlocal stopped
                while True:
                    while queue and trials.free():
                        trial_id, recipe = queue.pop(0)
                        if trial_id in done and done[trial_id].recipe == recipe.to_dict():
                            finished.append(done[trial_id])
                            queue_fallback(trial_id, recipe, done[trial_id])  # its reason already says where
                            continue
                        if time_budget is not None and time.monotonic() - started >= time_budget:
                            waiting = len(queue) + 1 + (0 if tail_queued else len(later) + len(trained))
                            stopped = f"time budget of {time_budget:.0f} s spent; {waiting} candidates not tried"
                            queue.clear()
                            break
                        limit = timeout_left()
                        if limit < trial_timeout:  # the budget's remainder (at least 60 s) limits this trial
                            budget_limited[trial_id] = time_budget - (time.monotonic() - started)
                        trials.submit(trial_id, recipe, limit)
                    if not trials.running(waiting=bool(queue)):
                        if queue:
                            stopped = f"no node is left to run trials on; {len(queue)} candidates not tried"
                        break
                    finished_one = trials.next_finished()
                    if finished_one is None:  # on a cluster: a node's baseline, or a lost trial sent again
                        continue
                    trial_id, recipe, record = finished_one
                    if record.failed and trial_id in budget_limited and record.error.startswith("timed out"):
                        record = record.replace(error=(
                            f"{record.error}: the time budget's remainder ({budget_limited[trial_id]:.0f} s of "
                            f"--time-budget {time_budget:.0f} when it started; a trial gets at least 60 s) cut it, "
                            f"not the {trial_timeout:.0f} s a trial may take otherwise"))
                    record = verdict(record, trials.baseline_for(record, finished[0]), max_drop=max_drop,
                                     objective=objective, min_top10=min_top10)
                    record = queue_fallback(trial_id, recipe, record)
                    _append(trials_file, record)
                    finished.append(record)
                    if progress is not None:
                        progress(f"{trial_id}: {recipe.describe()}", outcome(record))

            refining = (recipes is None if refine is None else refine) and objective != "size"
            trained = [item for item in queue if refining and _trains(item[1])]  # the dearest: after refining
            queue[:] = [item for item in queue if item not in trained]
            tail_queued = False  # whether `later` and `trained` are in the queue yet (else a stop counts them too)
            drain()
            leader, lost = None, frozenset()
            if refining and not stopped:
                # refine follows a confirmed leader, not one noisy ratio: two candidates inside each other's spread
                # (NNCF int8 with and without the bf16 hint, 3.92x and 3.57x on one run, the other way on the next)
                # would send every variant down the branch that happened to measure well
                _confirm_best(finished, trials, common, done, timeout_left(), objective,
                              lambda r: _append(trials_file, r))
                leader = next(iter(ranked(finished[1:], objective)), None)  # whose variants refine tries
                for _ in range(SETTING_ROUNDS):
                    queue.extend(refine_queue(finished, base, leader, source.format, objective, needs,
                                               settings_only=True, skip=lost))
                    if queue:
                        say(f"refine: {len(queue)} variants of {leader.id}'s runtime settings")
                    drain()
                    better = next_leader(finished, leader) if leader is not None and not stopped else None
                    if better is None:
                        break
                    lost |= lost_settings(finished, leader)
                    say(f"refine: {better.id} beat {leader.id} beyond the spread, and leads in turn")
                    leader = better
            if refining and not stopped:
                queue.extend(refine_queue(finished, base, leader, source.format, objective, needs, skip=lost))
                if queue:
                    say(f"refine: {len(queue)} variants (the leader's inserted passes and pass values, then the "
                        f"baseline's runtime settings)")
                drain()
            if refining and not stopped and leader is not None:
                queue.extend(combined_queue(finished, leader))
                if queue:
                    say(f"refine: {queue[0][0]} combines the leader's variants that each beat it "
                        f"({queue[0][1].describe()})")
                drain()
            if not stopped:
                queue.extend(later + trained)
                tail_queued = True
                drain()
            if objective != "size" and len(finished) > 1:
                _confirm_best(finished, trials, common, done, max(timeout_left(), min(trial_timeout, CONFIRM_FLOOR_S)),
                              objective, lambda r: _append(trials_file, r))
        except KeyboardInterrupt:
            stopped = "interrupted; run again with --resume to continue"
            raise
        finally:
            if finished:
                chosen = best(finished[1:], objective) if len(finished) > 1 else None
                if chosen is not None:
                    _swap(finished, chosen, trials.fetch_artifact(chosen))
                result = _finish(out, finished, source=source, dataset=dataset, max_drop=max_drop,
                                 min_top10=min_top10, objective=objective, stopped=stopped, hardware=fingerprint(),
                                 versions=versions(), cluster=trials.describe())
    return result


def outcome(record: TrialRecord) -> str:
    """A judged trial in one line, as the progress shows it when the trial ends."""
    if record.failed:
        return f"failed: {record.error.splitlines()[0] if record.error else ''}"
    parts = [record.status.value if record.status else "measured"]
    if record.metric is not None:
        parts.append(f"{record.metric.name} {record.metric.value:.4f}")
    if record.speedup is not None:
        parts.append(f"{record.speedup.value:.2f}x at batch {record.speedup.batch}")
    text = ", ".join(parts)
    return f"{text} ({record.reason})" if record.reason else text


def _trains(recipe: Recipe) -> bool:
    from infertune.passes.registry import entry_for

    return any("training" in entry_for(config).needs for config in recipe.passes)


def _executor(ray: str | None, out: Path, common: dict, progress, say, append):
    if ray is None:
        return LocalTrials(out, common, progress, append)
    from infertune.cluster.search import RayTrials

    return RayTrials(ray, out, common, progress, say, append)


class LocalTrials:
    """Trials one after another, each in a fresh process with a time limit, on this machine."""

    def __init__(self, out: Path, common: dict, progress, append: Callable[[TrialRecord], None]):
        self.out, self.common, self.progress, self.append = out, common, progress, append
        self.next: tuple[str, Recipe, float] | None = None

    def __enter__(self) -> "LocalTrials":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def baseline(self, recipe: Recipe, timeout: float, saved: TrialRecord | None,
                 done: dict[str, TrialRecord]) -> TrialRecord:
        if saved is not None:
            return saved
        record = _run("baseline", recipe, self.out, self.common, timeout, self.progress)
        if not record.failed:
            record = judged_baseline(record)
            self.append(record)
        return record

    def baseline_for(self, record: TrialRecord, baseline: TrialRecord) -> TrialRecord:
        return baseline

    def free(self) -> bool:
        return self.next is None

    def running(self, waiting: bool = False) -> bool:
        return self.next is not None

    def submit(self, trial_id: str, recipe: Recipe, timeout: float) -> None:
        self.next = (trial_id, recipe, timeout)

    def next_finished(self) -> tuple[str, Recipe, TrialRecord]:
        trial_id, recipe, timeout = self.next
        self.next = None
        return trial_id, recipe, _run(trial_id, recipe, self.out, self.common, timeout, self.progress)

    def run_one(self, trial_id: str, recipe: Recipe, common: dict, timeout: float,
                near: TrialRecord | None = None) -> TrialRecord:
        return _run(trial_id, recipe, self.out, common, timeout, self.progress)

    def fetch_artifact(self, record: TrialRecord) -> TrialRecord:
        return record

    def describe(self) -> dict[str, Any] | None:
        return None


def _confirm_best(finished: list[TrialRecord], trials, common: dict, done: dict[str, TrialRecord], timeout: float,
                  objective: str, append: Callable[[TrialRecord], None]) -> None:
    """Before a best is written, the leader's speed-up is measured again in a fresh process (more rounds). A
    leader that does not confirm (not faster beyond the spread, or unstable) is rejected with both figures and
    the next one is tried, up to CONFIRM_AT_MOST; `best` then chooses among confirmed candidates only."""
    for _ in range(CONFIRM_AT_MOST):
        order = ranked(finished[1:], objective)
        if not order or order[0].speedup.confirmed is not None:
            return
        leader = order[0]
        trial_id = f"{leader.id}+confirm"
        saved = done.get(trial_id)
        if saved is not None and saved.recipe == leader.recipe:
            record = saved
        else:
            record = trials.run_one(trial_id, Recipe.from_dict(leader.recipe),
                                    {**common, "confirm": True, "rounds": CONFIRM_ROUNDS}, timeout, near=leader)
            record = record.replace(confirms=leader.id)
            append(record)
        _swap(finished, leader, _confirmed(leader, record))


def _confirmed(leader: TrialRecord, record: TrialRecord) -> TrialRecord:
    """The leader with its confirming run's speed-up; rejected when that run failed, or is not faster beyond its
    spread, or is unstable."""
    first = leader.speedup
    if record.failed:
        return leader.replace(status=Status.REJECTED,
                              reason=f"speed-up not confirmed: the confirming run failed: {record.error}",
                              speedup=dataclasses.replace(first, confirm_error=record.error))
    again = record.speedup
    leader = leader.replace(speedup=dataclasses.replace(first, confirmed=again))
    if again.low <= 1.0 or again.stable is False:
        leader = leader.replace(status=Status.REJECTED, reason=(
            f"speed-up not confirmed in a fresh process: {first.value:.2f}x at first, then {again.value:.2f}x "
            f"(p10-p90 {again.low:.2f}-{again.high:.2f}x over {again.rounds} rounds"
            f"{', unstable' if again.stable is False else ''})"))
    return leader


def _swap(records: list[TrialRecord], old: TrialRecord, new: TrialRecord) -> None:
    """Put `new` where `old` is (the same object) in `records`."""
    records[next(i for i, r in enumerate(records) if r is old)] = new


def _run(trial_id: str, recipe: Recipe, out: Path, common: dict, timeout: float, progress) -> TrialRecord:
    from infertune.bench.isolated import run_worker
    from infertune.search.trial import TrialJob

    job = TrialJob(id=trial_id, recipe=recipe.to_dict(), workdir=str(out.resolve() / "trials" / trial_id), **common)
    label = f"{trial_id}: {recipe.describe()}"
    report = (lambda stage: progress(label, stage)) if progress else None
    record = run_worker("infertune.search.worker", asdict(job), timeout=timeout, progress=report)
    return TrialRecord.from_dict({"id": trial_id, "recipe": recipe.to_dict(), "backend": recipe.backend, **record})


def _append(path: Path, record: TrialRecord) -> None:
    """One line per finished trial, flushed at once: a kill loses at most that line. Every record starts on a
    fresh line, so a line cut by an earlier kill never swallows the next record."""
    line = json.dumps(record.to_dict(), default=str) + "\n"
    with open(path, "a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode())
        handle.flush()
        os.fsync(handle.fileno())


def _peaks() -> dict[str, float] | None:
    """This machine's GEMM peaks by dtype (measured once per hardware, cached): the roofs in the report."""
    try:
        from infertune.bench.flops import peaks

        return peaks()
    except Exception:  # a runtime that cannot measure one costs the report its roofs, not the run
        return None


def _finish(out: Path, finished: list[TrialRecord], *, source, dataset, max_drop, min_top10, objective, stopped,
            hardware, versions, cluster: dict[str, Any] | None = None) -> Result:
    from infertune.search.artifact import save_artifact

    baseline = finished[0]
    by_node = {node: Latency.from_dict(b["latency_ms"]) for node, b in (cluster or {}).get("baselines", {}).items()}
    candidates = [_with_speedup_p50(c, by_node.get(c.node_id, baseline.latency)) for c in finished[1:]]
    baseline, *candidates = mark_pareto([baseline, *candidates])
    chosen = best(candidates, objective)
    reason = None if chosen else "no candidate was within the budget and confirmed faster than the baseline"
    data = {"model": source.spec.model, "model_spec": source.spec.to_dict(),
            "data": {"name": dataset.name, "spec": dataset.spec.to_dict(), "kind": dataset.kind,
                     "splits": dataset.sizes()},
            "baseline": baseline.to_dict(), "candidates": [c.to_dict() for c in candidates],
            "best": chosen.id if chosen else None, "best_reason": reason, "stopped": stopped,
            "budget": {"metric": baseline.metric.name, "max_drop": max_drop,
                       **({"min_top10_agreement": min_top10} if baseline.metric.top10_agreement is not None else {})},
            "objective": objective,
            "hardware": hardware, "peaks": _peaks(), "versions": versions,
            **({"cluster": cluster} if cluster else {})}
    final = chosen or baseline
    Recipe.from_dict(final.recipe).save(out / "recipe.yaml")
    save_artifact(out / "model", model=source, record=final)
    write_json_atomic(out / "results.json", data)
    try:
        from infertune.report.html import write_report

        write_report(out, data)
    except Exception as e:  # a report that fails to render never costs the run its results
        (out / "report.error.txt").write_text(f"{type(e).__name__}: {e}\n")
    return Result(directory=out, data=data)


def _with_speedup_p50(candidate: TrialRecord, baseline: Latency) -> TrialRecord:
    """The p50 ratio against the baseline timed on the same node, for each measured candidate."""
    if candidate.status is Status.FAILED or candidate.latency is None:
        return candidate
    return candidate.replace(speedup_p50=baseline.p50 / candidate.latency.p50)
