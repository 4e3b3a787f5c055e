"""Named points between the steps of a handler, where fault-injection tests can kill it.

In production no hook is set and `step()` does nothing. A test sets `HOOK`; raising `Killed` from
it simulates the process dying there (a timeout, an out-of-memory kill): `Killed` is not an
`Exception`, so no handler code catches it, just as nothing runs after a real kill.
"""

from __future__ import annotations

from collections.abc import Callable

AFTER_CLAIM = "after-claim"  # ingest: the ledger claim is written, the work unit is not sent
AFTER_SEND = "after-send"  # ingest: the work unit is sent, the ledger still says CLAIMED
AFTER_READ = "after-read"  # transform: the source's body is open (IfMatch passed), nothing written
BEFORE_SILVER_WRITE = "before-silver-write"  # transform: silver looked at, its conditional write not sent
AFTER_SILVER_WRITE = "after-silver-write"  # transform: silver is written, the ledger is not DONE
BEFORE_DELETE = "before-delete"  # event source mapping: the handler returned, messages not deleted
STEPS = (AFTER_CLAIM, AFTER_SEND, AFTER_READ, BEFORE_SILVER_WRITE, AFTER_SILVER_WRITE, BEFORE_DELETE)

HOOK: Callable[[str, dict], None] | None = None


class Killed(BaseException):
    """The process died at a named step (raised only by test hooks)."""


def step(name: str, **context) -> None:
    if HOOK is not None:
        HOOK(name, context)
