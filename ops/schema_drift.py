"""Schema drift across objects: which undeclared top-level fields arrive, since when, in how many
objects — aggregated from the ledger items the transform wrote (`unknown_fields`, see
lambdas/transform/drift.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

from lambdas.shared.ledger import parse_pk
from ops.errors import UsageError
from ops.ledger import scan_items

EXAMPLES = 3


@dataclass
class FieldDrift:
    type: str
    field: str
    objects: int = 0  # objects whose examined lines had it
    lines: int = 0  # examined lines that had it
    lines_examined: int = 0  # examined lines of those objects
    first_seen: str = ""  # finished_at of the first object with it (in the window)
    last_seen: str = ""
    examples: list[str] = field(default_factory=list)  # s3:// URLs of the latest objects with it


@dataclass
class DriftReport:
    table: str
    since: str
    type: str | None
    objects_with_drift: int = 0
    fields: list[FieldDrift] = field(default_factory=list)
    seconds: float = 0.0


def schema_drift(ddb, *, table: str, since: dt.datetime, type_: str | None = None, segments: int = 4) -> DriftReport:
    """One parallel Scan of items finished since `since` that recorded undeclared fields."""
    from lambdas.shared import schemas

    if type_ is not None:
        try:
            schemas.get(type_)
        except schemas.UnknownType as exc:
            raise UsageError(f"--type: {exc}") from None
    started = time.monotonic()
    fields = ("pk", "type", "finished_at", "unknown_fields", "fields_examined")
    values = {":since": {"S": since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    condition = "attribute_exists(#3) AND #2 >= :since"  # recorded drift, finished in the window
    if type_:
        condition += " AND #1 = :type"  # only this type
        values[":type"] = {"S": type_}
    items = scan_items(ddb, table=table, fields=fields, condition=condition, values=values, segments=segments)
    report = DriftReport(table=table, since=since.isoformat(), type=type_)
    by_field: dict[tuple[str, str], FieldDrift] = {}
    for item in sorted(items, key=lambda i: str(i.get("finished_at", ""))):
        try:
            counts = json.loads(item.get("unknown_fields") or "{}")
        except ValueError:
            continue  # not written by the transform: nothing to learn from it
        if not isinstance(counts, dict) or not counts:
            continue
        report.objects_with_drift += 1
        type_of = str(item.get("type") or _type_from_pk(item.get("pk", "")))
        for name, lines in counts.items():
            entry = by_field.setdefault((type_of, name), FieldDrift(type=type_of, field=name,
                                                                    first_seen=item.get("finished_at", "")))
            entry.objects += 1
            entry.lines += int(lines) if isinstance(lines, int) else 0
            entry.lines_examined += int(item.get("fields_examined") or 0)
            entry.last_seen = item.get("finished_at", "")
            entry.examples = ([item.get("pk", "")] + entry.examples)[:EXAMPLES]
    report.fields = sorted(by_field.values(), key=lambda f: (f.type, -f.objects, f.field))
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _type_from_pk(pk: str) -> str:
    try:
        key = parse_pk(pk)[1]
    except ValueError:
        return "?"
    parts = key.split("/")
    return parts[1] if len(parts) > 2 else "?"
