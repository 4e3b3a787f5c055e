"""The one bounded executor: a cap on work in flight, results in order, the first error stops the
run, and Ctrl-C ends what is running through the stop event instead of waiting for it."""

import _thread
import sys
import threading

import pytest

from ops.executor import BoundedExecutor, Cancelled, bounded_map, pause
from ops.ratelimit import RateLimiter


def test_map_returns_results_in_the_items_order():
    assert bounded_map(lambda x: x * x, range(50), concurrency=7, name="t") == [x * x for x in range(50)]


def test_the_next_item_is_taken_only_when_there_is_room_for_it():
    # Each item finishes only once the executor holds three (or has taken them all), so the run
    # reaches its cap of three in flight every time, whatever the threads' timing; the cap holds
    # if the executor never asks for a 4th while three are unfinished.
    done, peak, taken = [], [], [0]
    room = threading.Condition()

    def items():
        for i in range(40):
            with room:
                peak.append(taken[0] - len(done))  # taken but not finished, when it asks for one more
                taken[0] += 1
                room.notify_all()
            yield i

    def work(i):
        with room:
            assert room.wait_for(lambda: taken[0] - len(done) >= 3 or taken[0] == 40, timeout=10)
        return i

    def finished(item, result):
        with room:
            done.append(result)
            room.notify_all()

    with BoundedExecutor(2, name="t", max_in_flight=3) as executor:
        executor.run(work, items(), on_result=finished)
    assert sorted(done) == list(range(40))
    assert max(peak) == 2  # it held 3 (the cap reached), and asked for a 4th only after one finished


def test_the_first_error_stops_the_run_and_is_raised_after_the_running_items_are_recorded():
    recorded, failed = [], []

    def work(item):
        if item == 3:
            raise ValueError("boom")
        return item

    with BoundedExecutor(1, name="t") as executor, pytest.raises(ValueError, match="boom"):
        executor.run(work, range(100), on_result=lambda i, r: recorded.append(r),
                     on_error=lambda i, e: failed.append(i))
    assert failed == [3]
    # Items finish in any order; what was already taken (at most max_in_flight = 2 beyond) may
    # still finish and is recorded, the rest are never started.
    assert {0, 1, 2} <= set(recorded) <= {0, 1, 2, 4, 5}


def test_ctrl_c_cancels_what_waits_through_the_stop_event():
    cancelled, finished = [], []
    all_running = threading.Barrier(4)

    def work(item):
        all_running.wait(10)
        if item == 0:
            _thread.interrupt_main()  # what Ctrl-C does to the main thread
            return item
        try:
            pause(executor.stop, 30)  # a back-off or rate-limit wait: must end at once on Ctrl-C
        except Cancelled:
            cancelled.append(item)
            raise
        finished.append(item)
        return item

    executor = BoundedExecutor(4, name="t")
    with executor, pytest.raises(KeyboardInterrupt):
        executor.run(work, range(4))
    assert executor.stop.is_set()
    assert sorted(cancelled) == [1, 2, 3] and finished == []


def test_a_rate_limited_worker_gives_up_when_the_run_stops():
    stop = threading.Event()
    limiter = RateLimiter(0.001, stop=stop)  # the next token is ~1000 s away
    limiter.acquire()
    outcome = []

    def waiter():
        try:
            limiter.acquire()
            outcome.append("acquired")
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=waiter)
    thread.start()
    stop.set()
    thread.join(30)
    assert outcome == ["cancelled"]


def _blocked_in_a_wait(thread: threading.Thread) -> bool:
    """Whether `thread` is parked in a threading wait (a Condition's, an Event's, a join) now."""
    frame = sys._current_frames().get(thread.ident)
    return frame is not None and frame.f_code.co_filename == threading.__file__


def test_ctrl_c_inside_submit_still_waits_for_the_item_the_pool_took():
    # Ctrl-C can land in the main thread after the pool has taken an item but before its future is
    # recorded (inside `submit`, or inside the pool's start of a new thread): the run must not end,
    # and the caller's clean-up must not run, while that item is still working. The item is held
    # until the main thread, after the Ctrl-C, is seen waiting: a run that did not wait for it
    # would return first and find it unfinished.
    finished, interrupted, release = [], threading.Event(), threading.Event()
    main = threading.current_thread()
    executor = BoundedExecutor(2, name="t")
    real_submit = executor._pool.submit

    def submit(fn, *args):
        real_submit(fn, *args)
        interrupted.set()
        raise KeyboardInterrupt  # after the pool took the item, before run() hears of its future

    def work(item):
        assert interrupted.wait(10)
        while not (release.is_set() or _blocked_in_a_wait(main)):  # the main thread waits for it
            release.wait(0.001)
        finished.append(item)

    executor._pool.submit = submit
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run(work, range(5))
        assert finished == [0]  # waited for: it was running; nothing else started
    finally:
        release.set()
        executor.shutdown()
    assert finished == [0]
