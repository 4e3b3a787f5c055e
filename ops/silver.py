"""Read back what the pipeline wrote: silver row counts from Parquet, quarantine line counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ops.executor import BoundedExecutor


@dataclass(frozen=True)
class SilverSummary:
    silver_objects: int
    silver_rows: int
    quarantine_objects: int
    quarantine_rows: int
    rows_by_key: dict


def _keys(s3, bucket: str, prefix: str) -> list[dict]:
    return [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]


def summarize(s3, *, bucket: str, type_prefix: str = "", workers: int = 8,
              key_filter: Callable[[str], bool] | None = None) -> SilverSummary:
    """Count rows in silver/ (from each Parquet footer) and lines in quarantine/."""
    silver = [o for o in _keys(s3, bucket, "silver/" + type_prefix) if o["Key"].endswith(".parquet")]
    quarantine = _keys(s3, bucket, "quarantine/" + type_prefix)
    if key_filter:
        silver = [o for o in silver if key_filter(o["Key"])]
        quarantine = [o for o in quarantine if key_filter(o["Key"])]

    def parquet_rows(obj: dict) -> tuple[str, int]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        # A buffer, not a Python file object (apache/arrow#34314: abort at interpreter exit).
        return obj["Key"], pq.read_metadata(pa.BufferReader(body)).num_rows

    def lines(obj: dict) -> int:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return sum(1 for line in body.splitlines() if line.strip())

    with BoundedExecutor(workers, name="silver") as executor:
        rows_by_key = dict(executor.map(parquet_rows, silver))
        q_rows = sum(executor.map(lines, quarantine))
    return SilverSummary(silver_objects=len(silver), silver_rows=sum(rows_by_key.values()),
                         quarantine_objects=len(quarantine), quarantine_rows=q_rows, rows_by_key=rows_by_key)
