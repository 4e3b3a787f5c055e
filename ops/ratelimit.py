"""A thread-safe token bucket: at most `rate` acquisitions per second, shared by a worker pool."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, rate: float | None, *, burst: float | None = None, clock=time.monotonic, sleep=time.sleep):
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self, n: float = 1.0) -> None:
        """Block until `n` tokens are available (n may exceed the burst: it waits proportionally)."""
        if not self.rate:
            return
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= min(n, self.capacity):
                    self.tokens -= n
                    return
                wait = (min(n, self.capacity) - self.tokens) / self.rate
            self.sleep(wait)
