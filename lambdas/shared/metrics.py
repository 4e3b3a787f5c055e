"""CloudWatch Embedded Metric Format (EMF) from the Lambdas, without a dependency.

Each handler invocation collects counts per event type and writes, when it ends, one JSON line per
(type, metric set) to stdout; CloudWatch Logs turns each into metrics (no PutMetricData call, no
latency). The lines go through the JSON logger (message "metrics", logger `elt.metrics`, always at
INFO whatever ELT_LOG_LEVEL says), so every stdout line stays one log object; EMF allows the extra
keys. A record follows the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):

    {"_aws": {"Timestamp": <epoch ms>, "CloudWatchMetrics": [{"Namespace": "ServerlessElt",
              "Dimensions": [["function", "type"], ["function"]], "Metrics": [{"Name": "Objects", …}, …]}]},
     "function": "elt-dev-transform", "type": "orders", "Objects": 3, "DurationPerObject": [812, 40, 38], …}

At most 100 metrics per record and 100 values per array (the spec's limits; longer arrays are
split over several records), 30 dimensions at most (we use two, three for skip reasons; each record
also carries the set without `type`, for per-function alarms). The
`function` dimension is the Lambda's name (AWS_LAMBDA_FUNCTION_NAME), or its role (ingest,
transform) outside Lambda.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable

NAMESPACE = "ServerlessElt"
MAX_METRICS = 100
MAX_VALUES = 100
MAX_DIMENSIONS = 30
UNKNOWN_TYPE = "unknown"

# metric name -> unit
UNITS = {
    "Objects": "Count",  # objects handled to their end (transform: written; ingest: queued)
    "RowsWritten": "Count",
    "RowsQuarantined": "Count",
    "ObjectsSkipped": "Count",  # by reason (its own record, dimension `reason`)
    "BytesIn": "Bytes",
    "DurationPerObject": "Milliseconds",
    "Superseded": "Count",
    "Failed": "Count",
    "ObjectsWithUnknownFields": "Count",  # schema drift (see lambdas/transform/drift.py)
}
_VALUE = re.compile(r"[^A-Za-z0-9_.:-]")


def _dimension_value(value: str) -> str:
    """Dimension values from input (types, reasons) kept short and plain: at most 64 characters
    of [A-Za-z0-9_.:-]; anything else becomes '_'."""
    return _VALUE.sub("_", str(value or UNKNOWN_TYPE))[:64] or UNKNOWN_TYPE


class Metrics:
    """One invocation's metrics; `flush()` writes them (and starts afresh)."""

    def __init__(self, role: str, *, out: Callable[[dict], None] | None = None, clock=time.time, environ=None):
        environ = os.environ if environ is None else environ
        self.function = _dimension_value(environ.get("AWS_LAMBDA_FUNCTION_NAME") or role)
        self.out = out or _stdout
        self.clock = clock
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(int))  # whole counts stay ints
        self._values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._skipped: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, name: str, value: float = 1, *, type_: str | None = None) -> None:
        if name not in UNITS or name == "ObjectsSkipped":
            raise ValueError(f"unknown metric {name!r}")
        self._sums[_dimension_value(type_)][name] += value

    def value(self, name: str, value: float, *, type_: str | None = None) -> None:
        """One observation of a distribution (DurationPerObject)."""
        self._values[_dimension_value(type_)][name].append(round(float(value), 3))

    def skipped(self, reason: str, *, type_: str | None = None) -> None:
        self._skipped[(_dimension_value(type_), _dimension_value(reason))] += 1

    def records(self) -> list[dict]:
        """The EMF records of what was collected."""
        stamp = int(self.clock() * 1000)
        records = []
        for type_ in sorted(set(self._sums) | set(self._values)):
            sums = dict(self._sums.get(type_, {}))
            arrays = {k: v for k, v in self._values.get(type_, {}).items() if v}
            first = True
            while first or any(arrays.values()):
                chunk = {k: v[:MAX_VALUES] for k, v in arrays.items() if v}
                arrays = {k: v[MAX_VALUES:] for k, v in arrays.items()}
                values = {**(sums if first else {}), **chunk}
                first = False
                if values:
                    records.append(self._record(stamp, {"function": self.function, "type": type_}, values))
        for (type_, reason), count in sorted(self._skipped.items()):
            records.append(self._record(stamp, {"function": self.function, "type": type_, "reason": reason},
                                        {"ObjectsSkipped": count}))
        return records

    @staticmethod
    def _record(stamp: int, dimensions: dict, values: dict) -> dict:
        """Two dimension sets: with the type (and reason), and without the type, so an alarm can
        watch a function as a whole (the Terraform observability module does)."""
        names = sorted(values)[:MAX_METRICS]
        keys = list(dimensions)[:MAX_DIMENSIONS]
        return {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [keys, [k for k in keys if k != "type"]],
            "Metrics": [{"Name": n, "Unit": UNITS[n]} for n in names]}]},
            **dimensions, **{n: values[n] for n in names}}

    def flush(self) -> None:
        for record in self.records():
            self.out(record)
        self._sums.clear()
        self._values.clear()
        self._skipped.clear()


def _stdout(record: dict) -> None:
    from lambdas.shared.log import get_logger, log

    logger = get_logger("metrics")
    logger.setLevel(logging.INFO)  # metrics are not chatter: ELT_LOG_LEVEL=WARNING keeps them
    log(logger, logging.INFO, "metrics", **record)
