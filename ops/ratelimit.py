"""A thread-safe token bucket: at most `rate` acquisitions per second, shared by a worker pool.
With `stop` (the executor's event), a waiting worker raises Cancelled as soon as it is set."""

from __future__ import annotations

import threading
import time

from ops.executor import Cancelled


class RateLimiter:
    def __init__(self, rate: float | None, *, burst: float | None = None, clock=time.monotonic, sleep=None,
                 stop: threading.Event | None = None):
        self.rate = rate
        self.stop = stop
        self.capacity = burst if burst is not None else max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep or self._sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self, n: float = 1.0) -> None:
        """Block until `n` tokens are available (n may exceed the burst: it waits proportionally)."""
        if not self.rate:
            return
        while True:
            if self.stop is not None and self.stop.is_set():
                raise Cancelled()
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= min(n, self.capacity):
                    self.tokens -= n
                    return
                wait = (min(n, self.capacity) - self.tokens) / self.rate
            self.sleep(wait)

    def _sleep(self, seconds: float) -> None:
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds):
            raise Cancelled()
