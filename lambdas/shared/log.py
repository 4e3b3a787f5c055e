"""JSON-lines logging: one JSON object per line (level, message, aws_request_id, object, counts)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from contextvars import ContextVar

# Per thread (and per asyncio task): the embedded AWS runs ingest and transform on threads of one
# process, so a module global would give one handler's request id and name to the other's lines.
_CONTEXT: ContextVar[dict | None] = ContextVar("elt_log_context", default=None)  # a mutable default would be shared


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **(_CONTEXT.get() or {}),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (Lambda, pytest capture, redirection)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def install_stdout_handler() -> None:
    root = logging.getLogger("elt")
    handler = StdoutHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    """A logger under `elt` that writes JSON lines to stdout (CloudWatch in AWS)."""
    root = logging.getLogger("elt")
    if not getattr(root, "_elt_configured", False):
        install_stdout_handler()
        root.setLevel(os.environ.get("ELT_LOG_LEVEL", "INFO").upper())
        root.propagate = False
        root._elt_configured = True
    return logging.getLogger(f"elt.{name}")


def set_context(**fields) -> None:
    """Fields added to every line this thread logs until its next call (the current aws_request_id)."""
    _CONTEXT.set({k: v for k, v in fields.items() if v is not None})


def log(logger: logging.Logger, level: int, message: str, **fields) -> None:
    logger.log(level, message, extra={"fields": fields})
