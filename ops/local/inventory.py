"""The embedded AWS's stand-in for S3 Inventory: writes a report in the documented layout.

moto stores inventory configurations but never delivers a report, so the tests, the runbook
rehearsal and bench/listing.py write one with this module: `<prefix>/<source-bucket>/<config-id>/
<YYYY-MM-DDTHH-MMZ>/manifest.json` plus `manifest.checksum`, data files under `<prefix>/<source-
bucket>/<config-id>/data/`, as gzipped CSV (every value quoted, keys URL-encoded), Parquet or ORC.
Rows are streamed into the data files, so a report of millions of keys costs flat memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote_plus

CSV_FIELDS = ("Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag",
              "StorageClass")
PARQUET_SCHEMA = ("message s3.inventory { required binary bucket (STRING); required binary key (STRING); "
                  "optional binary version_id (STRING); optional boolean is_latest; optional boolean "
                  "is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP(MILLIS,true)); "
                  "optional binary e_tag (STRING); optional binary storage_class (STRING);}")
ORC_SCHEMA = ("struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,"
              "size:bigint,last_modified_date:timestamp,e_tag:string,storage_class:string>")


@dataclass(frozen=True)
class Entry:
    """One object version as the report lists it."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    version_id: str = ""
    is_latest: bool = True
    is_delete_marker: bool = False


def live_entries(s3, bucket: str, prefix: str = "") -> Iterator[Entry]:
    """The bucket's current objects, as a report taken now would list them."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield Entry(key=obj["Key"], size=int(obj["Size"]), etag=obj["ETag"].strip('"'),
                        last_modified=obj["LastModified"])


def _csv_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _csv_values(bucket: str, e: Entry) -> dict[str, object]:
    marker = e.is_delete_marker
    return {"Bucket": bucket, "Key": quote_plus(e.key, safe="/"), "VersionId": e.version_id,
            "IsLatest": str(e.is_latest).lower(), "IsDeleteMarker": str(marker).lower(),
            "Size": "" if marker else e.size, "LastModifiedDate": _csv_time(e.last_modified),
            "ETag": "" if marker else e.etag, "StorageClass": "" if marker else "STANDARD"}


def _write_csv(handle, bucket: str, rows: Iterable[Entry], fields: tuple[str, ...]) -> int:
    count = 0
    with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=6) as gz:
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for e in rows:
            values = _csv_values(bucket, e)
            writer.writerow([values[f] for f in fields])
            count += 1
        text.flush()
        text.detach()
    return count


def _write_columnar(handle, bucket: str, rows: Iterable[Entry], file_format: str, batch_rows: int) -> int:
    import pyarrow as pa

    schema = pa.schema([("bucket", pa.string()), ("key", pa.string()), ("version_id", pa.string()),
                        ("is_latest", pa.bool_()), ("is_delete_marker", pa.bool_()), ("size", pa.int64()),
                        ("last_modified_date", pa.timestamp("ms", tz="UTC")), ("e_tag", pa.string()),
                        ("storage_class", pa.string())])
    if file_format == "Parquet":
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(handle.name, schema)  # by path: apache/arrow#34314
        write, close = writer.write_batch, writer.close
    else:
        import pyarrow.orc as orc

        writer = orc.ORCWriter(handle.name)
        write, close = (lambda b: writer.write(pa.Table.from_batches([b]))), writer.close
    count = 0
    chunk: list[Entry] = []

    def flush() -> None:
        cols = [[bucket] * len(chunk), [e.key for e in chunk], [e.version_id or None for e in chunk],
                [e.is_latest for e in chunk], [e.is_delete_marker for e in chunk],
                [None if e.is_delete_marker else e.size for e in chunk], [e.last_modified for e in chunk],
                [None if e.is_delete_marker else e.etag for e in chunk],
                [None if e.is_delete_marker else "STANDARD" for e in chunk]]
        write(pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)],
                                         schema=schema))
        chunk.clear()

    for e in rows:
        chunk.append(e)
        count += 1
        if len(chunk) >= batch_rows:
            flush()
    if chunk or not count:
        flush()
    close()
    return count


def write_report(s3, *, source_bucket: str, entries: Iterable[Entry], report_bucket: str,
                 prefix: str = "inventory", config_id: str = "bronze-daily", taken: dt.datetime | None = None,
                 file_format: str = "CSV", rows_per_file: int = 250_000, batch_rows: int = 50_000,
                 versioned: bool = False, csv_fields: tuple[str, ...] | None = None) -> str:
    """Write a report of `entries` into `report_bucket`; returns its manifest's s3:// URL.
    `csv_fields` orders (or drops) the CSV columns, as an inventory configuration's field list does."""
    taken = (taken or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    base = f"{prefix.strip('/')}/{source_bucket}/{config_id}"
    folder = f"{base}/{taken:%Y-%m-%dT%H-%MZ}"
    extension = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}[file_format]
    fields = csv_fields or (CSV_FIELDS if versioned else
                            tuple(f for f in CSV_FIELDS if f not in ("VersionId", "IsLatest", "IsDeleteMarker")))
    files = []
    it = iter(entries)
    while True:
        with tempfile.NamedTemporaryFile(prefix="eltops-inventory-write-") as handle:  # a path for pyarrow
            part = _take(it, rows_per_file)
            first = next(part, None)
            if first is None and files:
                break
            rows = _chain(first, part)
            if file_format == "CSV":
                count = _write_csv(handle, source_bucket, rows, fields)
            else:
                count = _write_columnar(handle, source_bucket, rows, file_format, batch_rows)
            handle.seek(0)
            digest, size = hashlib.md5(), 0
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
            handle.seek(0)
            key = f"{base}/data/{uuid.uuid4()}.{extension}"
            s3.upload_fileobj(handle, report_bucket, key)
            files.append({"key": key, "size": size, "MD5checksum": digest.hexdigest()})
            if count < rows_per_file:
                break
    schema = ", ".join(fields) if file_format == "CSV" else PARQUET_SCHEMA if file_format == "Parquet" else ORC_SCHEMA
    manifest = {"sourceBucket": source_bucket, "destinationBucket": f"arn:aws:s3:::{report_bucket}",
                "version": "2016-11-30", "creationTimestamp": str(int(taken.timestamp() * 1000)),
                "fileFormat": file_format, "fileSchema": schema, "files": files}
    body = json.dumps(manifest, indent=2).encode()
    s3.put_object(Bucket=report_bucket, Key=f"{folder}/manifest.json", Body=body)
    s3.put_object(Bucket=report_bucket, Key=f"{folder}/manifest.checksum", Body=hashlib.md5(body).hexdigest().encode())
    return f"s3://{report_bucket}/{folder}/manifest.json"


def _take(it: Iterator, n: int) -> Iterator:
    for _ in range(n):
        try:
            yield next(it)
        except StopIteration:
            return


def _chain(first, rest: Iterator) -> Iterator:
    if first is not None:
        yield first
        yield from rest
