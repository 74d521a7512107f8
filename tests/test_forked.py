"""regenheart.forked: steps in child processes give the same results and exceptions as run in place."""

from __future__ import annotations

import os

import pytest

from regenheart import forked
from regenheart.store.db import DatabaseError

needs_fork = pytest.mark.skipif(not forked.can_fork(), reason="fork start method not available here")


def _square_sum(values, offset=0):
    return sum(v * v for v in values) + offset


def _raise_database_error(path):
    raise DatabaseError(f"no database at {path}")


class _Stubborn(Exception):
    def __init__(self, a, b):  # unpicklable: pickle calls __init__ with the one message argument
        super().__init__(f"{a}/{b}")


def _raise_stubborn():
    raise _Stubborn("x", "y")


def _pid_and_niceness():
    return os.getpid(), os.nice(0)


def _echo_twice(link, prefix):
    link.send(f"{prefix}ready")
    return prefix + link.recv() * 2


def test_result_of_a_child_step_is_the_functions_value():
    step = forked.start("sum", _square_sum, [1, 2, 3], offset=4)
    assert step.result() == 18
    assert step.result() == 18  # asking again gives the same value


def test_a_child_steps_exception_is_raised_by_result_with_its_type_and_message(tmp_path):
    step = forked.start("fail", _raise_database_error, tmp_path / "x.db")
    with pytest.raises(DatabaseError, match="no database at"):
        step.result()


@needs_fork
def test_an_exception_that_does_not_pickle_comes_back_as_its_traceback():
    with pytest.raises(forked.StepFailed, match=r"_Stubborn: x/y"):
        forked.start("stubborn", _raise_stubborn).result()


@needs_fork
def test_child_runs_in_another_process_at_the_niceness_asked():
    pid, niceness = forked.start("nice", _pid_and_niceness, niceness=3).result()
    assert pid != os.getpid()
    assert niceness == os.nice(0) + 3


def test_serial_mode_runs_in_this_process(monkeypatch):
    monkeypatch.setenv(forked.SERIAL_ENV, "1")
    assert not forked.can_fork()
    pid, _ = forked.start("here", _pid_and_niceness).result()
    assert pid == os.getpid()
    with pytest.raises(DatabaseError):
        forked.start("fail", _raise_database_error, "x").result()


@needs_fork
def test_linked_step_receives_its_input_later():
    step = forked.start_linked("echo", _echo_twice, "> ")
    assert step.link.recv() == "> ready"
    step.link.send("ab")
    assert step.result() == "> abab"


@needs_fork
def test_cancel_stops_a_waiting_child():
    step = forked.start_linked("waits", _echo_twice, "")
    step.cancel()
    with pytest.raises(forked.StepFailed, match="cancelled"):
        step.result()


def _pool_replaced(engine):
    before = engine.pool  # kept alive, so that a new pool cannot reuse its identity
    return forked.fresh_engine(engine).pool is not before


def test_fresh_engine_drops_the_inherited_pool_only_in_a_child(tmp_path, monkeypatch):
    from regenheart.store.db import make_engine

    engine = make_engine(tmp_path / "x.db")
    with engine.connect():
        pass
    if forked.can_fork():
        assert forked.start("pool", _pool_replaced, engine).result() is True
    monkeypatch.setenv(forked.SERIAL_ENV, "1")
    assert forked.start("pool", _pool_replaced, engine).result() is False  # run in place: the pool is kept
    engine.dispose()


def test_long_lived_loads_without_collections_then_leaves_what_it_made_out_of_later_ones():
    import gc

    gc.unfreeze()
    made: list[list[object]] = []
    try:
        with forked.long_lived():
            assert not gc.isenabled()  # no collection while the long-lived objects are made
            for _ in range(100):
                cycle: list[object] = []
                cycle.append(cycle)
                made.append(cycle)
        assert gc.isenabled()  # the collector's state is given back
        assert gc.get_freeze_count() >= 100  # what existed is frozen: no later pass walks it
        assert all(not any(item is cycle for item in gc.get_objects()) for cycle in made[:3])
    finally:
        gc.unfreeze()


def test_long_lived_gives_back_a_disabled_collector_disabled():
    import gc

    gc.disable()
    try:
        with forked.long_lived():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def _frozen_count():
    import gc

    return gc.get_freeze_count()


@needs_fork
def test_a_child_leaves_what_it_inherited_out_of_its_collections():
    import gc

    gc.unfreeze()
    tracked = len(gc.get_objects())
    assert forked.start("frozen", _frozen_count).result() >= tracked
