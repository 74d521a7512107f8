"""Run a function in a forked child process, so that independent steps of a long run use both cores.

:func:`start` forks a child that calls ``fn(*args, **kwargs)`` and sends back its return value (or
its exception) through a pipe; :meth:`Forked.result` waits for it. The child inherits the parent's
memory when it is forked, so arguments are not copied or pickled: a step can read the data frames the
parent already holds. Only the return value and an exception cross the pipe (pickled), so a step
should return something small (a dictionary, a list of findings) and write large outputs to files.

A child must not use a database connection it inherited: a step that reads the database calls
:func:`fresh_engine` first (SQLAlchemy's documented pattern for ``fork``). The child ends with
``os._exit`` (``multiprocessing``'s fork start), so the parent's open files and connections are never
closed or flushed from the child.

Where ``fork`` is not available (Windows, macOS's default) or ``REGENHEART_SERIAL=1`` is set (for a
profiler that should see every step), :func:`start` runs the function at once in the calling process:
the results are the same, only the time differs.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SERIAL_ENV = "REGENHEART_SERIAL"


def can_fork() -> bool:
    """True when :func:`start` runs steps in child processes (fork available and not disabled)."""
    if os.environ.get(SERIAL_ENV, "") not in ("", "0"):
        return False
    # macOS offers fork but its system libraries are not fork-safe once threads exist.
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class StepFailed(RuntimeError):
    """A child step raised an exception that could not be sent back as itself; the message holds its traceback."""


class Forked(Generic[T]):
    """A step running in a child process (or already run, when forking is off)."""

    def __init__(self, name: str, process: Any = None, reader: Any = None, outcome: tuple[bool, Any] | None = None):
        self.name = name
        self._process = process
        self._reader = reader
        self._outcome = outcome
        self.link: Any = None  # the parent's end of a two-way pipe (start_linked)
        self.cpu_seconds: float | None = None  # CPU time the step took in the child (after result())

    def result(self) -> T:
        """The step's return value; its exception is raised here. Waits for the child to finish."""
        if self._outcome is None:
            try:
                ok, value, self.cpu_seconds = self._reader.recv()
                self._outcome = (ok, value)
            except EOFError:  # the child died without an answer (killed, out of memory, os._exit in the step)
                self._process.join()
                self._outcome = (False, StepFailed(f"step {self.name!r} ended without a result "
                                                   f"(exit code {self._process.exitcode})"))
            finally:
                self._reader.close()
                if self.link is not None:
                    self.link.close()
            self._process.join()
        ok, value = self._outcome
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        """Stop the child if it is still running (the caller gave up on the step); no result is kept."""
        if self._outcome is None and self._process is not None:
            self._process.terminate()
            self._process.join()
            self._reader.close()
            if self.link is not None:
                self.link.close()
            self._outcome = (False, StepFailed(f"step {self.name!r} was cancelled"))


_in_child = False  # set in a forked child: fresh_engine then drops the pool it inherited


def _child(writer: Any, fn: Callable[..., Any], args: tuple, kwargs: dict, niceness: int = 0) -> None:
    global _in_child
    _in_child = True
    # Everything inherited stays out of this child's garbage collections: each full pass would walk the
    # parent's whole heap (the imported libraries: 0.1-0.2 s a pass) and copy its pages (copy-on-write).
    gc.freeze()
    if niceness:
        os.nice(niceness)
    started = time.process_time()
    try:
        outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        outcome = (False, exc)
    ok, value = outcome
    if not ok:
        try:  # an exception must also unpickle in the parent (a custom __init__ may not)
            pickle.loads(pickle.dumps(value))
        except Exception:  # noqa: BLE001 - any pickling failure: send the traceback's text instead
            outcome = (False, StepFailed("".join(traceback.format_exception(value)).rstrip()))
    cpu = time.process_time() - started
    try:
        writer.send((*outcome, cpu))
    except Exception as exc:  # noqa: BLE001 - the return value does not pickle
        writer.send((False, StepFailed(f"step result {type(value).__name__} cannot be sent back: {exc}"), cpu))
    finally:
        writer.close()


def start(name: str, fn: Callable[..., T], /, *args: Any, niceness: int = 0, **kwargs: Any) -> Forked[T]:
    """Start ``fn(*args, **kwargs)`` in a forked child named ``name``; :meth:`Forked.result` collects it.

    ``niceness`` > 0 lowers the child's scheduling priority (``os.nice``): a step whose result is needed
    only later then leaves the core to the parent's more urgent work when both want the same core."""
    if not can_fork():
        started = time.process_time()
        try:
            step: Forked[T] = Forked(name, outcome=(True, fn(*args, **kwargs)))
        except Exception as exc:  # noqa: BLE001 - raised at result(), where a child's would be
            step = Forked(name, outcome=(False, exc))
        step.cpu_seconds = time.process_time() - started
        return step
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(writer, fn, args, kwargs, niceness), name=f"regenheart-{name}",
                              daemon=True)
    process.start()
    writer.close()  # the parent keeps only the reading end: EOF when the child ends
    return Forked(name, process, reader)


def start_linked(name: str, fn: Callable[..., T], /, *args: Any, niceness: int = 0) -> Forked[T]:
    """Like :func:`start`, for a step that gets its input later: the child calls ``fn(link, *args)``, where
    ``link`` is one end of a two-way pipe and :attr:`Forked.link` the other (send a job, receive a reply).
    Needs fork (see :func:`can_fork`): a caller without it does the work itself. ``niceness`` as in
    :func:`start`."""
    if not can_fork():
        raise RuntimeError("start_linked needs the fork start method; check can_fork() first")
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe(duplex=True)
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_linked_child, args=(writer, theirs, fn, args, niceness),
                              name=f"regenheart-{name}", daemon=True)
    process.start()
    writer.close()
    theirs.close()
    step: Forked[T] = Forked(name, process, reader)
    step.link = mine
    return step


def _linked_child(writer: Any, link: Any, fn: Callable[..., Any], args: tuple, niceness: int = 0) -> None:
    _child(writer, fn, (link, *args), {}, niceness)


@contextmanager
def long_lived() -> Iterator[None]:
    """For loading what lives until the process ends (imported libraries, a PDF engine and its fonts):
    no garbage collection while it loads, and all of it left out of every later collection.

    Each full collection walks every object the process holds: with the analysis and report libraries
    loaded that is 0.1-0.2 s a pass, several passes a run, for objects that are never garbage. Python's
    documentation of :func:`gc.freeze` recommends the same before ``fork`` (it also keeps the pages shared
    with children). Garbage made later is collected as before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def fresh_engine(engine: Any) -> Any:
    """In a forked child: the parent's SQLAlchemy engine with its inherited pool dropped (not closed),
    so the child opens connections of its own. Run in place (no fork), the engine as it is."""
    if _in_child:
        engine.dispose(close=False)
    return engine
