"""ReadWriteLock: shared holders overlap, an exclusive holder is alone, no upgrade."""

from __future__ import annotations

import threading

import pytest

from zoolens.index.rwlock import ReadWriteLock

TIMEOUT = 10.0


def _in_threads(n: int, work) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:  # collected for the test thread
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    return errors


def test_shared_holders_overlap():
    lock, both_inside = ReadWriteLock(), threading.Barrier(3, timeout=TIMEOUT)

    def read() -> None:
        with lock.shared():
            both_inside.wait()  # breaks unless all three hold it at once

    assert _in_threads(3, read) == []


def test_exclusive_holder_is_alone():
    """Sensitivity twin of the test above: the same barrier breaks under exclusive holds."""
    lock, both_inside = ReadWriteLock(), threading.Barrier(2, timeout=0.5)

    def write() -> None:
        with lock.exclusive():
            both_inside.wait()

    errors = _in_threads(2, write)
    assert errors and all(isinstance(e, threading.BrokenBarrierError) for e in errors)


def test_readers_wait_for_the_writer_and_see_its_whole_change():
    lock, state, seen = ReadWriteLock(), [0, 0], []
    started = threading.Event()

    def write() -> None:
        for _ in range(200):
            with lock.exclusive():
                state[0] += 1
                started.set()
                state[1] += 1

    def read() -> None:
        started.wait(TIMEOUT)
        for _ in range(200):
            with lock.shared():
                seen.append(state[0] == state[1])

    writer = threading.Thread(target=write)
    writer.start()
    assert _in_threads(3, read) == []
    writer.join(TIMEOUT)
    assert len(seen) == 600 and all(seen)


def test_reentry_and_no_upgrade():
    lock = ReadWriteLock()
    with lock.exclusive(), lock.exclusive(), lock.shared():
        pass
    with lock.shared(), lock.shared(), pytest.raises(RuntimeError, match="upgrade"):
        lock.exclusive().__enter__()
    with lock.exclusive():  # every hold was released
        pass


def test_a_waiting_writer_stops_new_readers():
    lock, holding, order = ReadWriteLock(), threading.Event(), []

    def first_reader() -> None:
        with lock.shared():
            holding.set()
            while not lock._waiting:  # until the writer queues
                threading.Event().wait(0.01)
            threading.Event().wait(0.1)
            order.append("reader 1 done")

    def writer() -> None:
        holding.wait(TIMEOUT)
        with lock.exclusive():
            order.append("writer")

    def second_reader() -> None:
        holding.wait(TIMEOUT)
        while not lock._waiting:
            threading.Event().wait(0.01)
        with lock.shared():
            order.append("reader 2")

    threads = [threading.Thread(target=f) for f in (first_reader, writer, second_reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert order == ["reader 1 done", "writer", "reader 2"]
