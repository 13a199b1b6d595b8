"""Dynamic batching: requests from many clients joined into one engine call.

Every path resolves every waiting future (results, a missed deadline, an engine failure, shutdown), and an
engine whose output rows differ from the batch's is an error, as in Ray Serve's batching. When a batch fails,
its items run again one by one, so one item the model cannot handle fails alone.

Waiting for a batch to fill costs latency, so the batcher waits (at most `max_delay_ms` after the oldest item
arrived) only while more requests are likely on their way: while fewer rows wait than were recently in flight
at once. A lone client is served at once; many clients get full batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

log = logging.getLogger("infertune.serve")
PEAK_WINDOW_S = 0.05  # a burst of concurrent requests is remembered this long, or 4 engine calls if longer
INLINE_BELOW_S = 0.0003  # engine calls faster than this on average run on the event loop, not in a thread
INLINE_ALONE_BELOW_S = 0.01  # ... and so do calls up to this long when the batch is all there is in flight


class QueueFull(Exception):
    pass


class DeadlineExceeded(Exception):
    pass


class EngineFailed(Exception):
    pass


@dataclass(eq=False)
class Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float
    deadline: float | None = None
    group: tuple = ()   # items join one batch only within a group (their unpadded shapes agree)
    length: int = 0     # the padded axis' length, for length-aware batches
    request_id: str | None = None  # the client's id, for the log


class Batcher:
    """Joins submitted items into batches of at most `max_batch_size` rows and runs them on `engines`, one
    batch per engine at a time, in threads (the runtimes release the GIL), or on the event loop where a thread
    hop would cost more than it frees (see `_inline`).

    `pad_axes`: input name -> axis padded with zeros to the batch's longest item (sequence inputs whose
    padding is masked, as in a tokenized text model); other inputs batch only with items of the same shape.
    """

    def __init__(self, engines: list[Any], *, max_batch_size: int, max_delay_ms: float, max_queue: int,
                 pad_axes: dict[str, int] | None = None, on_batch: Callable[[int, float], None] | None = None,
                 on_queued: Callable[[float], None] | None = None, on_idle: Callable[[], None] | None = None,
                 on_depth: Callable[[int], None] | None = None, name: str = "model",
                 target_p99_ms: float | None = None, on_window: Callable[[float, int], None] | None = None):
        self.engines = engines
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self.max_queue = max_queue
        self.pad_axes = pad_axes or {}
        self.on_batch = on_batch  # (rows, compute seconds) after each engine call
        self.on_queued = on_queued  # (seconds an item waited) as its batch starts
        self.on_idle = on_idle  # nothing queued or running any more (a drain waits for it)
        self.on_depth = on_depth or (lambda depth: None)  # (requests waiting) whenever that changes
        self.on_window = on_window  # (window ms, cap rows) whenever the target-driven choice changes them
        self.target = None
        if target_p99_ms:
            from infertune.serve.adaptive import LatencyTarget

            self.target = LatencyTarget(target_p99_ms, max_batch_size, max_delay_ms)
        self.name = name
        self.failure: str | None = None  # why the batch loop ended, if it ever does (then nothing is served)
        self._queue: deque[Pending] = deque()
        self._idle: asyncio.Queue | None = None
        self._wake: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(max_workers=len(engines), thread_name_prefix="infertune-engine")
        self._task: asyncio.Task | None = None
        self._running_rows = 0
        self._inflight = 0
        self._peak = (0, 0.0)  # (most rows in flight at once, when)
        self._batches: set[asyncio.Task] = set()
        self._stopping = False
        self._compute_s = INLINE_ALONE_BELOW_S  # moving average of an engine call: unknown, so threads, until
        # warm-up or the first calls measure it

    # -- the HTTP side ---------------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._running_rows > 0

    @property
    def alive(self) -> bool:
        """The batch loop runs (Ray Serve's `is_batching_task_alive`): false once it has ended for any reason."""
        return self._task is not None and not self._task.done()

    def submit(self, inputs: dict[str, np.ndarray], rows: int, deadline: float | None,
               request_id: str | None = None) -> asyncio.Future:
        """Queue one request's rows; the future gets its outputs (a dict of arrays) or an exception."""
        if len(self._queue) >= self.max_queue:  # answered items (deadline, client gone) leave first
            self._queue = deque(p for p in self._queue if not p.future.done())
        if not self.alive:
            raise EngineFailed(f"the batcher is not running ({self.failure or 'not started'}): the server must be "
                               f"restarted")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"the queue holds {len(self._queue)} requests (--max-queue {self.max_queue})")
        loop = asyncio.get_running_loop()
        now = loop.time()
        length = max((a.shape[axis] for name, axis in self.pad_axes.items() if (a := inputs.get(name)) is not None),
                     default=0)
        group = tuple((n, a.shape[1:]) for n, a in inputs.items() if n not in self.pad_axes)
        item = Pending(inputs=inputs, rows=rows, future=loop.create_future(), enqueued=now, deadline=deadline,
                       group=group, length=length, request_id=request_id)
        self._queue.append(item)
        self.on_depth(len(self._queue))
        self._inflight += rows
        item.future.add_done_callback(lambda _: self._leave(rows))
        in_flight = self._inflight
        if in_flight >= self._peak[0] or now - self._peak[1] > self._peak_window:
            self._peak = (in_flight, now)
        self._wake.set()
        return item.future

    def _leave(self, rows: int) -> None:
        self._inflight -= rows

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._idle = asyncio.Queue()
        for engine in self.engines:
            self._idle.put_nowait(engine)
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task) -> None:
        """The loop never returns on its own: if it ends, say so, fail what waits, and let readiness say why."""
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        self.failure = f"the batch loop ended: {type(error).__name__}: {error}" if error is not None \
            else "the batch loop was cancelled"
        log.critical("%s; model %s is not served any more (readiness now answers 503)", self.failure, self.name,
                     exc_info=error)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(EngineFailed(f"the server cannot serve this model: {self.failure}"))
        self._notify_idle()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._batches):
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(EngineFailed("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def warm_up(self, batches: list[dict[str, np.ndarray]], say: Callable[[str], None] | None = None) -> None:
        """Run each engine on each representative batch (every batch size it will see), so the first requests
        do not pay for lazy initialisation and compilation."""
        loop = asyncio.get_running_loop()
        smallest = min(batches, key=lambda b: next(iter(b.values())).shape[0], default=None)
        for i, engine in enumerate(self.engines):
            for batch in batches:
                outputs = await loop.run_in_executor(self._executor, engine.run, batch)
                _check_rows(outputs, next(iter(batch.values())).shape[0])
            if smallest is not None:  # a warm call at the smallest batch: where the inline choice starts
                started = time.perf_counter()
                await loop.run_in_executor(self._executor, engine.run, smallest)
                self._compute_s = time.perf_counter() - started
            if say:
                say(f"warmed up instance {i + 1}/{len(self.engines)} at batch sizes "
                    f"{sorted({next(iter(b.values())).shape[0] for b in batches})}")

    # -- forming batches --------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            engine = await self._idle.get()
            batch: list[Pending] = []
            handed = False  # whether the engine and the batch went on to _finish
            try:
                batch = await self._next_batch(loop)
                if not batch:
                    continue
                if self.on_queued:
                    now = loop.time()
                    for item in batch:
                        self.on_queued(now - item.enqueued)
                self._running_rows += sum(p.rows for p in batch)
                handed = True
                if self._inline(sum(p.rows for p in batch)):
                    try:
                        results = self._compute(engine, batch)
                    except Exception as e:
                        results = self._failed(batch, e, "the batch failed")
                    self._finish(engine, batch, results)
                else:
                    task = loop.create_task(self._run(engine, batch))
                    self._batches.add(task)
                    task.add_done_callback(self._batches.discard)
            except Exception as e:  # one iteration's failure fails only the batch it took; the loop goes on
                if not batch:  # it failed while choosing: what it was choosing from fails, or it would fail again
                    batch, self._queue = list(self._queue), deque()
                log.exception("batch loop: an iteration failed; answering its %d requests 500 and going on",
                              len(batch))
                error = EngineFailed(f"internal error while batching ({type(e).__name__}); the server log has the "
                                     f"details")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
            finally:
                if not handed:
                    self._idle.put_nowait(engine)

    async def _next_batch(self, loop) -> list[Pending]:
        """Wait for work, then for the batch to fill while more requests are likely, then take it."""
        while not self._queue:
            self._wake.clear()
            await self._wake.wait()
        if self.target is not None and self.target.adjust(loop.time(), sum(p.rows for p in self._queue)) \
                and self.on_window is not None:
            self.on_window(self.target.delay * 1000, self.target.cap)
        until = self._queue[0].enqueued + self.window
        while self._should_wait(loop.time()):
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), until - loop.time())
            except (asyncio.TimeoutError, ValueError):
                break
            if loop.time() >= until:
                break
        return self._take(loop.time())

    def _inline(self, rows: int) -> bool:
        """Whether to run this batch on the event loop. A thread hop there and back costs about 0.1 ms here; it
        pays only when the loop has other work meanwhile. A call faster than a hop runs inline; so does a short
        call on a single engine when no other request is in flight (a lone client), which holds the loop for
        at most INLINE_ALONE_BELOW_S."""
        if self._compute_s < INLINE_BELOW_S:
            return True
        return len(self.engines) == 1 and self._compute_s < INLINE_ALONE_BELOW_S and self._inflight == rows

    @property
    def _peak_window(self) -> float:
        return max(PEAK_WINDOW_S, 4 * self._compute_s)

    def _should_wait(self, now: float) -> bool:
        if not self._queue or now >= self._queue[0].enqueued + self.window:
            return False
        waiting = sum(p.rows for p in self._queue)
        peak, when = self._peak
        expected = (peak if now - when <= self._peak_window else self._inflight) - self._running_rows
        return waiting < min(self.cap, expected)

    def _take(self, now: float) -> list[Pending]:
        """The oldest live item, then items of its group (closest in length first when not all fit), up to
        max_batch_size rows. Items past their deadline are answered here, before any compute."""
        live = []
        for item in self._queue:
            if item.future.done():  # the client gave up (its own timeout) while it waited
                continue
            if item.deadline is not None and now >= item.deadline:
                item.future.set_exception(DeadlineExceeded("the deadline passed while the request was queued"))
                if self.target is not None:  # its wait counts: a p99 of the answered ones only would flatter
                    self.target.observe_request(now, now - item.enqueued, item.rows)
                continue
            live.append(item)
        if not live:
            self._queue.clear()
            return []
        first = live[0]
        cap = self.cap
        mates = [p for p in live[1:] if p.group == first.group]
        if self.pad_axes and first.rows + sum(p.rows for p in mates) > cap:
            mates.sort(key=lambda p: abs(p.length - first.length))  # stable: oldest first among equals
        batch, rows = [first], first.rows
        for item in mates:
            if rows + item.rows <= cap:
                batch.append(item)
                rows += item.rows
        taken = {id(p) for p in batch}
        self._queue = deque(p for p in live if id(p) not in taken)
        self.on_depth(len(self._queue))
        return batch

    @property
    def cap(self) -> int:
        """Most rows one batch takes now: --max-batch-size, or the target-driven choice."""
        return self.target.cap if self.target is not None else self.max_batch_size

    @property
    def window(self) -> float:
        """Seconds a batch may wait to fill after its oldest item arrived."""
        return self.target.delay if self.target is not None else self.max_delay

    # -- running them ----------------------------------------------------------------------------------------

    async def _run(self, engine, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        results: list[tuple[Any, BaseException | None]] = [(None, EngineFailed("the batch did not run"))] * len(batch)
        try:
            results = await loop.run_in_executor(self._executor, self._compute, engine, batch)
        except BaseException as e:  # the executor is shut down, this task is cancelled at exit, or a hook failed
            results = self._failed(batch, e, "the batch did not run")
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self._finish(engine, batch, results)

    def _failed(self, batch: list[Pending], error: BaseException, what: str) -> list[tuple[Any, BaseException]]:
        if not isinstance(error, asyncio.CancelledError):
            log.error("model %s: %s (%d requests, ids %s): %s: %s", self.name, what, len(batch),
                      _ids(batch), type(error).__name__, error, exc_info=error)
        return [(None, EngineFailed(f"{what}: {type(error).__name__}"))] * len(batch)

    def _finish(self, engine, batch: list[Pending], results: list[tuple[Any, BaseException | None]]) -> None:
        self._running_rows -= sum(p.rows for p in batch)
        self._idle.put_nowait(engine)
        if self.target is not None:
            now = asyncio.get_running_loop().time()
            for item in batch:
                self.target.observe_request(now, now - item.enqueued, item.rows)
        for item, (outputs, error) in zip(batch, results):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(outputs)
        if not self.busy:
            self._notify_idle()

    def _notify_idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle()

    def _compute(self, engine, batch: list[Pending]) -> list[tuple[Any, BaseException | None]]:
        """Run one batch; each item gets its rows or its own error. When the whole batch fails (an exception, or
        a row count that differs from the batch's), each item runs again alone, so one bad item fails alone."""
        started = time.perf_counter()
        rows = sum(p.rows for p in batch)
        try:
            outputs = engine.run(self._join(batch))
            _check_rows(outputs, rows)
        except Exception as e:
            if len(batch) > 1:
                return [self._compute(engine, [item])[0] for item in batch]  # isolate the item that fails
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            error = e if isinstance(e, EngineFailed) else EngineFailed(
                f"the model failed on this request: {type(e).__name__}: {message}"[:500])
            log.warning("model %s failed on request %s: %s", self.name, batch[0].request_id or "(no id)", error)
            return [(None, error)]
        seconds = time.perf_counter() - started
        self._compute_s = 0.8 * self._compute_s + 0.2 * seconds
        if self.target is not None:
            self.target.observe_batch(rows, seconds)
        if self.on_batch:
            self.on_batch(rows, seconds)
        results, start = [], 0
        for item in batch:
            own = {n: a[start:start + item.rows] for n, a in outputs.items()}
            start += item.rows
            bad = _non_finite(own)
            if bad is None:
                results.append((own, None))
                continue
            error = EngineFailed(f"the model's output '{bad}' holds a value that is not finite (inf or NaN) for "
                                 f"finite inputs: the inputs may be out of the range the model handles")
            log.warning("model %s on request %s: %s", self.name, item.request_id or "(no id)", error)
            results.append((None, error))
        return results

    def _join(self, batch: list[Pending]) -> dict[str, np.ndarray]:
        if len(batch) == 1:
            return batch[0].inputs
        joined = {}
        for name in batch[0].inputs:
            arrays = [p.inputs[name] for p in batch]
            axis = self.pad_axes.get(name)
            if axis is not None:
                longest = max(a.shape[axis] for a in arrays)
                arrays = [_pad(a, axis, longest) for a in arrays]
            joined[name] = np.concatenate(arrays, axis=0)
        return joined


def _non_finite(outputs: dict[str, np.ndarray]) -> str | None:
    """The first floating-point output holding inf or NaN, or None."""
    for name, array in outputs.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return name
    return None


def _ids(batch: list[Pending]) -> str:
    ids = [p.request_id for p in batch if p.request_id]
    return ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "") if ids else "none given"


def _check_rows(outputs: dict[str, np.ndarray], rows: int) -> None:
    for name, array in outputs.items():
        if array.shape[0] != rows:
            raise EngineFailed(f"the engine returned {array.shape[0]} rows of '{name}' for a batch of {rows}: the "
                               f"model must keep the batch dimension")


def _pad(array: np.ndarray, axis: int, length: int) -> np.ndarray:
    if array.shape[axis] == length:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, length - array.shape[axis])
    return np.pad(array, widths)
