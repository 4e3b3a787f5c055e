"""What a transform returns, and the error that makes an object a failed item."""

from __future__ import annotations

from dataclasses import dataclass, field


class UnreadableObject(Exception):
    """The object cannot be read at all (corrupt gzip, not JSON, too large): a failed item."""


@dataclass
class TransformResult:
    rows: int = 0  # rows written to silver
    rejected: int = 0  # lines sent to quarantine
    blank_lines: int = 0
    fmt: str = "jsonl"  # what the content is (sniffed), whatever the file name says
    bytes_in: int = 0  # decompressed bytes read
    notes: list[str] = field(default_factory=list)  # things worth a log line (BOM removed, format mismatch)
    first_rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) of the first few
    probes: int = 0  # probe runs (locate.py): type errors the screen missed
    unknown_fields: dict[str, int] = field(default_factory=dict)  # drift.py: undeclared top-level fields
    fields_examined: int = 0  # lines (or elements) drift.py looked at
