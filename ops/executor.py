"""One bounded executor for every pooled command (after s3transfer's BoundedExecutor).

A thread pool with a cap on work in flight (submitting more blocks, so a million-object listing
never becomes a million queued futures) and a `stop` event for Ctrl-C: the main thread waits in
short slices, so KeyboardInterrupt reaches it at once; it then sets `stop`, cancels what has not
started, and waits only for what is running. Workers see `stop` wherever they would wait: the
rate limiter, retry back-off (`pause`), loops that check `stopping()`; each raises or returns
`Cancelled` there instead of sleeping on. So a pooled command stops within about one request's
time (a round trip, or a 1 s long poll) of Ctrl-C, and what finished is still recorded.

Ctrl-C can land anywhere in the main thread, including inside `submit` after the pool has taken
the item (or inside the pool's start of a new thread, which then runs unregistered): the future of
such an item is known to nobody. So every item counts itself in while it runs, and once `stop` is
set no item starts; the executor waits for that count to reach zero, not only for the futures it
knows. Without this, a command's clean-up (a redrive releasing the messages it holds) could run
while a worker it never heard of was still receiving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()
POLL_SECONDS = 0.1  # how often the waiting main thread wakes (KeyboardInterrupt lands between waits)


class Cancelled(Exception):  # noqa: N818 - the state, like concurrent.futures.CancelledError
    """The run is stopping (Ctrl-C, or a fatal error elsewhere): the worker gives up its item."""


def pause(stop: threading.Event | None, seconds: float) -> None:
    """Sleep up to `seconds`, raising Cancelled as soon as `stop` is set."""
    if stop is None:
        threading.Event().wait(seconds)
        return
    if stop.wait(seconds):
        raise Cancelled()


class BoundedExecutor:
    """At most `concurrency` tasks running and `max_in_flight` submitted; `stop` tells them to end."""

    def __init__(self, concurrency: int, *, name: str, max_in_flight: int | None = None,
                 stop: threading.Event | None = None):
        self.concurrency = max(1, concurrency)
        self.max_in_flight = max(self.concurrency, max_in_flight or 2 * self.concurrency)
        self.stop = stop or threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=name)
        self._running = 0  # items inside `work` now (counted by the items themselves)
        self._idle = threading.Condition()

    def _counted(self, work: Callable[[T], R]) -> Callable[[T], R]:
        def run(item: T) -> R:
            with self._idle:
                if self.stop.is_set():  # stopping: an item not yet started never starts
                    raise Cancelled()
                self._running += 1
            try:
                return work(item)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        return run

    def _wait_idle(self) -> None:
        """Wait until no item runs (called once `stop` is set, so none can start after)."""
        with self._idle:
            while self._running:
                self._idle.wait(POLL_SECONDS)

    def stopping(self) -> bool:
        return self.stop.is_set()

    def run(self, work: Callable[[T], R], items: Iterable[T], *, on_result: Callable[[T, R], None] | None = None,
            on_error: Callable[[T, BaseException], None] | None = None) -> None:
        """Run `work(item)` for every item, calling `on_result(item, result)` in this thread as each
        finishes (completion order). The first error stops the run: items not started are
        skipped, running ones finish (their results are still reported), then the error is raised,
        after `on_error(item, error)` for every failed item. Ctrl-C does the same and re-raises
        KeyboardInterrupt. Items that gave up because of the stop (Cancelled) are neither."""
        in_flight: dict[Future, T] = {}
        first: list[BaseException] = []
        work = self._counted(work)

        def collect(finished) -> None:
            for future in finished:
                item = in_flight.pop(future)
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    if on_result is not None:
                        on_result(item, future.result())
                elif not isinstance(error, Cancelled):
                    if on_error is not None:
                        on_error(item, error)
                    if not first:
                        first.append(error)
                        self.stop.set()

        def wait_some(limit: int) -> None:
            while len(in_flight) > limit:
                finished, _ = wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                collect(finished)

        pending = iter(items)
        try:
            while not self.stop.is_set():
                wait_some(self.max_in_flight - 1)  # room first: the next item is taken only then
                if self.stop.is_set():
                    break
                item = next(pending, _END)
                if item is _END:
                    break
                in_flight[self._pool.submit(work, item)] = item
            wait_some(0)
        except BaseException:
            self.stop.set()
            for future in in_flight:
                future.cancel()
            # What is running sees `stop` and ends within about one request; record it.
            wait([f for f in in_flight if not f.cancelled()])
            self._wait_idle()  # and what started without the main thread hearing of it
            collect(list(in_flight))
            raise
        if first:
            raise first[0]

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`work(item)` for every item; the results in the items' order."""
        items = list(items)
        results: dict[int, R] = {}
        self.run(lambda pair: (pair[0], work(pair[1])), list(enumerate(items)),
                 on_result=lambda _, pair: results.__setitem__(pair[0], pair[1]))
        return [results[i] for i in range(len(items))]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.stop.is_set():
            self._wait_idle()  # a thread the pool started but never registered (Ctrl-C in its start)

    def __enter__(self) -> BoundedExecutor:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.stop.set()
        self.shutdown()


def bounded_map(work: Callable[[T], R], items: Iterable[T], *, concurrency: int, name: str) -> list[R]:
    """One-shot `BoundedExecutor.map`: the pool's results in order, Ctrl-C handled."""
    with BoundedExecutor(concurrency, name=name) as executor:
        return executor.map(work, items)
