"""One home for errors: the OpsError hierarchy and the exit codes the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3  # some items failed; the report lists them
    UNHEALTHY = 4  # eltops health: something needs attention; eltops reconcile: gaps found, not replayed
    INTERRUPTED = 130


class OpsError(Exception):
    """An error with a message for the operator: what was wrong, where, how to fix it."""

    exit_status = ExitStatus.ERROR


class UsageError(OpsError):
    """A bad option value (exit 2)."""

    exit_status = ExitStatus.USAGE


class NotConfigured(OpsError):
    """No AWS account or endpoint to talk to."""


class AccessDenied(OpsError):
    """AWS refused a call: names the permission to grant."""


class NeedsAttention(OpsError):
    """The check ran and found something wrong (exit 4): `eltops health`, gaps from `eltops reconcile`."""

    exit_status = ExitStatus.UNHEALTHY


class PartialFailure(OpsError):
    """Some items failed (exit 3); `report` holds the result with the failures."""

    exit_status = ExitStatus.PARTIAL

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
