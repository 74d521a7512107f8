"""Group commit: the service calls of many concurrent requests share one durable transaction.

A durable commit waits for the disk (an fsync of the SQLite or PostgreSQL write-ahead log: about 5 ms on
the benchmark machine), and the audit chain admits one writer at a time, so calls committed one by one
can never exceed about one per fsync, however many cores serve them. A server therefore hands its form
saves to a :class:`GroupCommitter` (one writer thread per process): the writer takes every call that is
waiting, runs them one after the other in one :meth:`CaptureService.unit_of_work` (each call in its own
savepoint, so a refused call writes nothing and gets its own error, and every call sees the ones before
it, as if they had been committed one by one), commits once, and only then answers each caller: an
acknowledged save is on disk. Validation, scoring and the audit records of each call are those of the
call made alone. A call that fails for a reason of the database (not a refusal by the service; its
savepoint rolled back) is run again alone after the commit; if the transaction itself fails, every caller
of the batch gets the error (never a second run: the error may come after the commit).

Two things keep a batch short. A caller names the form its call saves, and the batch loads all of them
ahead with a few queries (:meth:`CaptureService.prefetch_forms`) instead of several per call. And the
audit-chain head is locked only to chain the batch's records at its end (``late_chain``): the subjects'
rows, locked by the prefetch, keep the changes in order meanwhile, so the batches of several worker
processes overlap except for that last step.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from regenheart.capture.errors import CaptureError
from regenheart.capture.service import CaptureService

T = TypeVar("T")
log = logging.getLogger("regenheart.capture")

MAX_BATCH = 64  # calls per transaction: bounds the time the audit-chain head is held by one batch
IDLE_SECONDS = 5.0  # the writer thread ends after this long without work (started again on demand)


FormKey = tuple[str, str, str]  # (subject code, visit code, form code)


class _Job:
    __slots__ = ("call", "form", "future")

    def __init__(self, call: Callable[[], Any], form: FormKey | None):
        self.call = call
        self.form = form
        self.future: Future[Any] = Future()


class GroupCommitter:
    """Runs capture calls from any thread in shared transactions of one writer thread (see the module doc).

    ``run(call)`` blocks until the transaction holding ``call`` has committed, then returns its result or
    raises its exception. ``call`` must use only ``capture`` (the unit of work is that service's); a call of
    another service would open a transaction of its own and wait for the writer's lock.
    """

    def __init__(self, capture: CaptureService, *, max_batch: int = MAX_BATCH, idle_seconds: float = IDLE_SECONDS):
        self.capture = capture
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.batches = 0  # committed transactions (for tests and measurements)
        self.calls = 0  # calls answered

    def run(self, call: Callable[[], T], *, form: FormKey | None = None) -> T:
        """Run ``call`` in the next group transaction; returns once that transaction is durable. ``form``:
        the (subject, visit, form) the call saves, loaded ahead with the others of the batch."""
        job = _Job(call, form)
        self._queue.put(job)
        self._ensure_writer()
        return job.future.result()

    def submit(self, call: Callable[[], T], *, form: FormKey | None = None) -> Future[T]:
        """As :meth:`run`, without waiting: the future is resolved once the call's transaction is durable."""
        job = _Job(call, form)
        self._queue.put(job)
        self._ensure_writer()
        return job.future

    # ------------------------------------------------------------------ writer thread
    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._work, name="regenheart-group-commit", daemon=True)
                self._writer.start()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:  # end only if no job slipped in since (a caller starts a new writer otherwise)
                    if self._queue.empty():
                        self._writer = None
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._run_batch(batch)
            except Exception as exc:  # no caller may wait forever, and the writer goes on
                log.exception("a group of %d calls failed", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run_batch(self, batch: list[_Job]) -> None:
        # A caller that gave up (its future cancelled, e.g. the client disconnected) before its call started:
        # the call is not run. Once running, a future can no longer be cancelled.
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[_Job, bool, Any]] = []  # (job, succeeded, result or exception)
        again: list[_Job] = []
        try:
            with self.capture.unit_of_work(forms=[job.form for job in batch if job.form], late_chain=True):
                for job in batch:
                    try:
                        outcomes.append((job, True, job.call()))
                    except CaptureError as exc:  # refused: its savepoint rolled back, the others stand
                        outcomes.append((job, False, exc))
                    except Exception:  # noqa: BLE001 - a database error (e.g. a deadlock victim): alone, later
                        again.append(job)
        except Exception as exc:  # the transaction failed: every caller is told
            # Not run again: the error may come after the commit (closing the session), and a save run twice
            # would be stored twice. A caller that sees the error reloads and finds out what is stored.
            log.exception("a group transaction of %d calls failed", len(batch))
            for job in batch:
                job.future.set_exception(exc)
            return
        self.batches += 1
        for job, succeeded, value in outcomes:  # only now: the transaction is durable
            self.calls += 1
            if succeeded:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        for job in again:
            self._run_alone(job)

    def _run_alone(self, job: _Job) -> None:
        self.calls += 1
        try:
            job.future.set_result(job.call())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            job.future.set_exception(exc)
