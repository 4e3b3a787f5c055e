"""Schema drift: top-level fields of the input that the type's schema does not declare.

Arrow's reader ignores undeclared fields (they never reach silver), so the transform counts them on
the side, within bounds:

- JSONL: every line of the object's first `FIRST_LINES` lines, then `PER_BLOCK` lines spread over
  each later block (a sample: ~0.4% of the lines of a large object, ~0.1 ms per MiB), each decoded
  with Python's json. A field that appears in every line of a producer's new version is seen in the
  first block; one that appears in a few lines of a large object may be missed.
- JSON documents: every element (they are decoded in Python anyway).

`counts` maps a field name (at most `MAX_NAME_CHARS` characters) to the number of examined lines
that have it; at most `MAX_NAMES` names per object, the rest counted in `more_names`. The result
goes to the ledger item (`unknown_fields`) and the metrics; `eltops schema drift` aggregates it.
"""

from __future__ import annotations

import json

from lambdas.shared.schemas import EventSchema

FIRST_LINES = 256
PER_BLOCK = 16  # per 2 MiB block (blocks.DEFAULT_BLOCK_BYTES): the same share of lines as 8 per MiB
MAX_NAMES = 20
MAX_NAME_CHARS = 64


class Drift:
    def __init__(self, schema: EventSchema):
        self.known = frozenset(f.name for f in schema.arrow)
        self.counts: dict[str, int] = {}
        self.examined = 0  # lines (or elements) looked at
        self.more_names = 0  # distinct names past MAX_NAMES
        self._overflow: set[str] = set()

    def element(self, value) -> None:
        """One decoded line or array element."""
        self.examined += 1
        if not isinstance(value, dict):
            return
        for name in value:
            if name in self.known:
                continue
            name = name[:MAX_NAME_CHARS]
            if name in self.counts:
                self.counts[name] += 1
            elif len(self.counts) < MAX_NAMES:
                self.counts[name] = 1
            elif name not in self._overflow and len(self._overflow) < 10_000:
                self._overflow.add(name)
                self.more_names += 1

    def block(self, data: bytes) -> None:
        """A JSONL block (whole lines): every line while the first FIRST_LINES are not done, then
        PER_BLOCK lines spread over it."""
        if self.examined < FIRST_LINES:
            for line in data.split(b"\n", FIRST_LINES - self.examined):
                if len(line) < 2 or self.examined >= FIRST_LINES:
                    continue
                self._line(line)
            return
        step = max(1, len(data) // PER_BLOCK)
        last = -1
        for offset in range(0, len(data), step):
            start = data.rfind(b"\n", 0, offset) + 1 if offset else 0
            if start == last:  # a line longer than the step: look at it once
                continue
            last = start
            end = data.find(b"\n", start)
            line = data[start:end if end >= 0 else len(data)]
            if len(line) >= 2:
                self._line(line)

    def _line(self, line: bytes) -> None:
        if b'"' not in line:
            return
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            return  # a bad line: the transform quarantines it; not a schema question
        self.element(value)
