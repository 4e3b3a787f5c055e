"""S3 Inventory as a listing source: read a report instead of calling ListObjectsV2.

An S3 Inventory report is a folder `<prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/`
holding `manifest.json` (`sourceBucket`, `fileFormat`, `fileSchema`, `creationTimestamp`,
`files[{key, size, MD5checksum}]`), optionally `manifest.checksum` (the manifest's MD5), and the
data files under `…/data/`: gzipped CSV (every value quoted, keys URL-encoded), Parquet or ORC.
Listing 50M keys live costs 50,000 ListObjectsV2 calls; the report of the same bucket is a few
dozen GetObject calls.

Words used here:
- *report time*: when the report was taken (`creationTimestamp`, else the folder's stamp). Objects
  written after it are not in it, and AWS documents that objects written shortly before it may be
  missing too, so the *live tail* starts `TAIL_OVERLAP` earlier.
- *live tail*: when the window reaches past the report time, the objects newer than the report are
  listed live (ListObjectsV2) and merged by key (the live entry wins). `--by partition` lists only
  the tail's `dt=` days live (cheap), `--by modified` must list the whole prefix live, so it does
  that only when asked (`live_tail=True`); otherwise a warning says the tail is missing.

Each data file is downloaded to a temporary file and checked against the manifest's size and MD5
before any of its rows is used, then read row by row (CSV) or batch by batch (Parquet row groups,
ORC stripes): memory stays flat in the number of keys. Columns are found by name through
`fileSchema`, never by position. Delete markers and non-current versions (versioned inventories)
are left out, as are replay copies under `bronze/replay/` unless the prefix is inside it.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from ops.aws import error_code, with_retries
from ops.errors import OpsError, UsageError
from ops.listing import REPLAY_PREFIX, Listing, ObjectInfo, list_window
from ops.timewindow import Window, as_utc

FORMATS = ("CSV", "Parquet", "ORC")
TAIL_OVERLAP = dt.timedelta(hours=1)
STALE_AFTER = dt.timedelta(hours=48)  # a daily report older than this means deliveries stopped
REPORT_STAMP = re.compile(r"(?:^|/)(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/?$")
# Columns every listing needs, by normalised name (lower case, no '_'): CSV says LastModifiedDate,
# Parquet and ORC say last_modified_date.
NEEDED = {"bucket": "Bucket", "key": "Key", "size": "Size", "lastmodifieddate": "LastModifiedDate",
          "etag": "ETag"}
CHUNK = 1024 * 1024
BATCH_ROWS = 8_192  # Parquet/ORC rows turned into Python objects at once (bench/listing.py: peak RSS)


class InventoryError(OpsError):
    """A report that cannot be used: names the file and what is wrong with it."""


def _norm(name: str) -> str:
    return name.replace("_", "").replace(" ", "").lower()


@dataclass(frozen=True)
class DataFile:
    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class Manifest:
    """A parsed `manifest.json`."""

    url: str
    report_bucket: str  # where the data files are (the inventory's destination bucket)
    source_bucket: str
    file_format: str
    columns: tuple[str, ...]  # normalised names, in fileSchema order
    files: tuple[DataFile, ...]
    report_time: dt.datetime

    def age(self, now: dt.datetime) -> dt.timedelta:
        return as_utc(now) - self.report_time


def parse_s3_url(url: str, *, option: str = "--from-inventory") -> tuple[str, str]:
    if not isinstance(url, str) or not url.startswith("s3://") or "/" not in url[5:] or url[5:].startswith("/"):
        raise UsageError(f"{option} {url!r} is not an s3:// URL; use s3://<bucket>/<prefix>/<source-bucket>/"
                         "<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.json")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _get_bytes(s3, bucket: str, key: str) -> bytes:
    return with_retries(lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read(), action="s3:GetObject",
                        resource=f"s3://{bucket}/{key}")


def resolve_manifest_url(s3, url: str) -> str:
    """`…/manifest.json` as given; a configuration folder (`…/<config-id>/`) means its newest report."""
    bucket, key = parse_s3_url(url)
    if key.endswith("manifest.json"):
        return url
    folder = key.rstrip("/") + "/" if key.strip("/") else ""
    if REPORT_STAMP.search(folder):
        return f"s3://{bucket}/{folder}manifest.json"
    stamps = []
    token = None
    while True:
        call = {"Bucket": bucket, "Prefix": folder, "Delimiter": "/", **({"ContinuationToken": token} if token else {})}
        page = with_retries(lambda c=call: s3.list_objects_v2(**c), action="s3:ListBucket",
                            resource=f"s3://{bucket}/{folder}")
        stamps += [c["Prefix"] for c in page.get("CommonPrefixes", []) if REPORT_STAMP.search(c["Prefix"])]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    if not stamps:
        raise UsageError(f"--from-inventory {url}: no report folders (YYYY-MM-DDTHH-MMZ/) under it; give the "
                         "manifest.json of one report, or the folder of the inventory configuration")
    return f"s3://{bucket}/{max(stamps)}manifest.json"


def _schema_columns(file_format: str, schema: str) -> tuple[str, ...]:
    """Column names from `fileSchema`: a comma list (CSV), a Parquet message, or an ORC struct."""
    if file_format == "CSV":
        names = [c.strip() for c in schema.split(",")]
    elif file_format == "Parquet":
        names = re.findall(r"(?:required|optional|repeated)\s+\w+\s+(\w+)", schema)
    else:
        inner = schema.strip()
        inner = inner[len("struct<"):-1] if inner.startswith("struct<") and inner.endswith(">") else inner
        names = [part.split(":", 1)[0].strip() for part in inner.split(",")]
    return tuple(_norm(n) for n in names if n)


def read_manifest(s3, url: str) -> Manifest:
    """Fetch and check `manifest.json` (and `manifest.checksum` when the report has one)."""
    bucket, key = parse_s3_url(url)
    raw = _get_bytes(s3, bucket, key)
    checksum_key = key[: -len("manifest.json")] + "manifest.checksum" if key.endswith("manifest.json") else None
    if checksum_key:
        expected = _optional_bytes(s3, bucket, checksum_key)
        if expected is not None and expected.decode("ascii", "replace").strip() != hashlib.md5(raw).hexdigest():
            raise InventoryError(f"{url}: its MD5 does not match manifest.checksum; the report is incomplete or "
                                 "was changed: use another report")
    try:
        doc = json.loads(raw)
        source = doc["sourceBucket"]
        file_format = doc["fileFormat"]
        schema = doc["fileSchema"]
        files = tuple(DataFile(key=f["key"], size=int(f["size"]), md5=str(f["MD5checksum"]).lower())
                      for f in doc["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InventoryError(f"{url} is not an S3 Inventory manifest ({type(exc).__name__}: {exc}); it needs "
                             "sourceBucket, fileFormat, fileSchema and files[{key, size, MD5checksum}]") from None
    fmt = {f.lower(): f for f in FORMATS}.get(str(file_format).lower())
    if fmt is None:
        raise InventoryError(f"{url}: fileFormat {file_format!r} is not one of {', '.join(FORMATS)}")
    columns = _schema_columns(fmt, str(schema))
    missing = [NEEDED[c] for c in NEEDED if c not in columns]
    if missing:
        raise InventoryError(f"{url}: the report has no {', '.join(missing)} column; add "
                             f"{', '.join(m for m in missing if m not in ('Bucket', 'Key'))} to the inventory "
                             "configuration's optional fields, and use a report made after that")
    destination = str(doc.get("destinationBucket") or "")
    report_bucket = destination.rsplit(":", 1)[-1] if destination else bucket
    return Manifest(url=url, report_bucket=report_bucket or bucket, source_bucket=source, file_format=fmt,
                    columns=columns, files=files, report_time=_report_time(doc, key, url))


def _optional_bytes(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # a report without manifest.checksum is fine; any other error is not
        if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        return _get_bytes(s3, bucket, key)  # retried and translated (AccessDenied names the permission)


def _report_time(doc: dict, key: str, url: str) -> dt.datetime:
    created = doc.get("creationTimestamp")
    if created not in (None, ""):
        try:
            return dt.datetime.fromtimestamp(int(created) / 1000, tz=dt.UTC)
        except (TypeError, ValueError, OverflowError):
            raise InventoryError(f"{url}: creationTimestamp {created!r} is not epoch milliseconds") from None
    match = REPORT_STAMP.search(key.rsplit("/", 1)[0])
    if match:
        return dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H-%MZ").replace(tzinfo=dt.UTC)
    raise InventoryError(f"{url}: no creationTimestamp and no YYYY-MM-DDTHH-MMZ folder: the report's age is unknown")


@dataclass(frozen=True)
class Row:
    """One inventory row, as the reader needs it."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    is_latest: bool
    is_delete_marker: bool


def _download(s3, manifest: Manifest, data: DataFile, into) -> None:
    """Copy one data file into `into`, checking size and MD5 against the manifest."""
    where = f"s3://{manifest.report_bucket}/{data.key}"

    def fetch():
        into.seek(0)
        into.truncate()
        digest, size = hashlib.md5(), 0
        body = s3.get_object(Bucket=manifest.report_bucket, Key=data.key)["Body"]
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            into.write(chunk)
        return digest.hexdigest(), size

    md5, size = with_retries(fetch, action="s3:GetObject", resource=where)
    if size != data.size or md5 != data.md5:
        raise InventoryError(f"{where}: {size} bytes with MD5 {md5}, the manifest says {data.size} bytes with MD5 "
                             f"{data.md5}; the report is incomplete or corrupt: use another report, or list live")
    into.flush()
    into.seek(0)


def _flag(value) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _csv_rows(manifest: Manifest, data: DataFile, handle) -> Iterator[Row]:
    index = {name: i for i, name in enumerate(manifest.columns)}
    width = len(manifest.columns)
    latest, marker = index.get("islatest"), index.get("isdeletemarker")
    b, k, s, m, e = (index[c] for c in ("bucket", "key", "size", "lastmodifieddate", "etag"))
    text = io.TextIOWrapper(gzip.GzipFile(fileobj=handle), encoding="utf-8", newline="")
    try:
        for line, values in enumerate(csv.reader(text), start=1):
            if len(values) != width:
                raise InventoryError(f"s3://{manifest.report_bucket}/{data.key} line {line}: {len(values)} values, "
                                     f"fileSchema names {width}")
            is_marker = marker is not None and _flag(values[marker])
            yield Row(bucket=values[b], key=unquote_plus(values[k]), size=int(values[s] or 0), etag=values[e],
                      last_modified=_csv_time(values[m]) if values[m] else None,
                      is_latest=latest is None or _flag(values[latest]), is_delete_marker=is_marker)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        if isinstance(exc, InventoryError):
            raise
        raise InventoryError(f"s3://{manifest.report_bucket}/{data.key}: not a gzipped CSV inventory file ({exc})") from None


def _csv_time(text: str) -> dt.datetime:
    return as_utc(dt.datetime.fromisoformat(text))


def _columnar_rows(manifest: Manifest, data: DataFile, handle) -> Iterator[Row]:
    import pyarrow as pa

    where = f"s3://{manifest.report_bucket}/{data.key}"
    # Opened by path, not through the Python file object: pyarrow reading through one can abort
    # the interpreter at exit ("terminate called without an active exception", apache/arrow#34314).
    handle.flush()
    try:
        if manifest.file_format == "Parquet":
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(handle.name, pre_buffer=False)
            names = reader.schema_arrow.names
        else:
            import pyarrow.orc as orc

            reader = orc.ORCFile(handle.name)
            names = reader.schema.names
    except (pa.ArrowException, OSError) as exc:
        raise InventoryError(f"{where}: not a {manifest.file_format} inventory file ({exc})") from None
    by_norm = {_norm(n): n for n in names}
    wanted = [c for c in (*NEEDED, "islatest", "isdeletemarker") if c in manifest.columns]
    absent = [c for c in wanted if c not in by_norm]
    if absent:
        raise InventoryError(f"{where}: fileSchema names {', '.join(absent)} but the file has no such column")
    columns = [by_norm[c] for c in wanted]
    if manifest.file_format == "Parquet":
        # One thread, no pre-buffering: less memory held per file (bench/listing.py --format Parquet).
        batches = reader.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False)
    else:  # a stripe is read whole (up to 64 MB); its rows become Python objects a slice at a time
        batches = (stripe.slice(offset, BATCH_ROWS) for i in range(reader.nstripes)
                   for stripe in (reader.read_stripe(i, columns=columns),)
                   for offset in range(0, stripe.num_rows, BATCH_ROWS))
    for batch in batches:
        values = {c: batch.column(batch.schema.get_field_index(by_norm[c])).to_pylist() for c in wanted}
        latest, marker = values.get("islatest"), values.get("isdeletemarker")
        for i, key in enumerate(values["key"]):
            stamp = values["lastmodifieddate"][i]
            yield Row(bucket=values["bucket"][i], key=key, size=int(values["size"][i] or 0),
                      etag=values["etag"][i] or "", last_modified=as_utc(stamp) if stamp is not None else None,
                      is_latest=latest is None or latest[i] is not False,
                      is_delete_marker=marker is not None and marker[i] is True)


def iter_rows(s3, manifest: Manifest, *, on_file: Callable[[DataFile], None] | None = None) -> Iterator[Row]:
    """Every row of every data file, each file verified before it is read."""
    read = _csv_rows if manifest.file_format == "CSV" else _columnar_rows
    for data in manifest.files:
        with tempfile.NamedTemporaryFile(prefix="eltops-inventory-") as handle:  # a path for pyarrow
            _download(s3, manifest, data, handle)
            if on_file:
                on_file(data)
            yield from read(manifest, data, handle)


def _partition_day(key: str) -> dt.date | None:
    for segment in key.split("/")[:-1]:
        if segment.startswith("dt="):
            try:
                return dt.date.fromisoformat(segment[3:])
            except ValueError:
                return None
    return None


@dataclass
class InventoryStats:
    """What the reader saw and left out."""

    files: int = 0
    rows: int = 0
    delete_markers: int = 0
    noncurrent_versions: int = 0
    replay_copies: int = 0
    outside_prefix: int = 0
    outside_window: int = 0
    replaced_by_live: int = 0


def iter_inventory(s3, manifest: Manifest, *, prefix: str, window: Window, by: str = "modified",
                   stats: InventoryStats | None = None, exclude: frozenset[str] | set[str] = frozenset(),
                   live_days: frozenset[dt.date] | set[dt.date] = frozenset()) -> Iterator[ObjectInfo]:
    """The report's current objects under `prefix` in the window (streamed, in report order).
    Keys in `exclude` and (by partition) every key of `live_days` were listed live: left out."""
    if by not in ("modified", "partition"):
        raise UsageError(f"--by {by!r} is not modified or partition")
    stats = stats if stats is not None else InventoryStats()
    keep_replay = prefix.startswith(REPLAY_PREFIX)
    days = window.days()
    first, last = days[0], days[-1]

    def counted(data: DataFile) -> None:
        stats.files += 1

    for row in iter_rows(s3, manifest, on_file=counted):
        stats.rows += 1
        if row.is_delete_marker:
            stats.delete_markers += 1
            continue
        if not row.is_latest:
            stats.noncurrent_versions += 1
            continue
        if not row.key.startswith(prefix):
            stats.outside_prefix += 1
            continue
        if not keep_replay and row.key.startswith(REPLAY_PREFIX):
            stats.replay_copies += 1
            continue
        day = None
        if by == "modified":
            inside = row.last_modified is not None and row.last_modified in window
        else:
            day = _partition_day(row.key)
            inside = day is not None and first <= day <= last
        if not inside:
            stats.outside_window += 1
            continue
        if row.key in exclude or day in live_days:  # the live listing is newer (deletions included)
            stats.replaced_by_live += 1
            continue
        if row.bucket != manifest.source_bucket:
            raise InventoryError(f"{manifest.url}: a row names bucket {row.bucket!r}, the manifest's sourceBucket "
                                 f"is {manifest.source_bucket!r}")
        yield ObjectInfo(bucket=row.bucket, key=row.key, size=row.size, etag=row.etag.strip('"'),
                         last_modified=row.last_modified or manifest.report_time)


@dataclass
class InventorySource:
    """A listing from an inventory report plus its live tail; stream it with `objects()`."""

    s3: object
    manifest: Manifest
    bucket: str
    prefix: str
    window: Window
    by: str
    now: dt.datetime
    tail: list[ObjectInfo] = field(default_factory=list)
    tail_window: Window | None = None
    tail_listed: bool = False
    warnings: list[str] = field(default_factory=list)
    stats: InventoryStats = field(default_factory=InventoryStats)
    partitions: list[str] = field(default_factory=list)
    live_days: set[dt.date] = field(default_factory=set)  # by partition: the days listed live, whole

    def objects(self) -> Iterator[ObjectInfo]:
        """The tail (listed live) first, then the report's rows without what the tail covers."""
        yield from self.tail
        yield from iter_inventory(self.s3, self.manifest, prefix=self.prefix, window=self.window, by=self.by,
                                  stats=self.stats, exclude={o.key for o in self.tail}, live_days=self.live_days)

    def summary(self) -> dict:
        age = self.manifest.age(self.now)
        return {"source": "inventory", "manifest": self.manifest.url, "file_format": self.manifest.file_format,
                "report_time": self.manifest.report_time.isoformat(), "report_age_hours": round(max(0.0, age.total_seconds()) / 3600, 1),
                "live_tail": {"listed": self.tail_listed, "objects": len(self.tail),
                              "window": ([self.tail_window.start.isoformat(), self.tail_window.end.isoformat()]
                                         if self.tail_window else None)},
                "stats": vars(self.stats).copy(), "warnings": list(self.warnings)}


def open_inventory(s3, *, manifest_url: str, bucket: str | None, prefix: str, window: Window, by: str = "modified",
                   live_tail: bool | None = None, now: dt.datetime | None = None, concurrency: int = 8
                   ) -> InventorySource:
    """Read the manifest, decide about the live tail (listing it if so), and return the source.

    live_tail None: list the tail live with `--by partition` (only the tail's days), warn with
    `--by modified` (a live tail there lists the whole prefix); True/False force it."""
    if by not in ("modified", "partition"):
        raise UsageError(f"--by {by!r} is not modified or partition")
    now = as_utc(now or dt.datetime.now(dt.UTC))
    manifest = read_manifest(s3, resolve_manifest_url(s3, manifest_url))
    if bucket and bucket != manifest.source_bucket:
        raise UsageError(f"--bucket {bucket} but the inventory {manifest.url} lists bucket {manifest.source_bucket}; "
                         "use that report's bucket, or the report of this bucket's inventory configuration")
    source = InventorySource(s3=s3, manifest=manifest, bucket=manifest.source_bucket, prefix=prefix, window=window,
                             by=by, now=now)
    age = manifest.age(now)
    if age > STALE_AFTER:
        source.warnings.append(f"the report is {age.total_seconds() / 3600:.0f} h old (taken "
                               f"{manifest.report_time:%Y-%m-%dT%H:%MZ}); check that inventory deliveries still arrive")
    tail_start = max(window.start, manifest.report_time - TAIL_OVERLAP)
    if window.end <= tail_start:
        return source  # the report covers the whole window
    source.tail_window = Window(start=tail_start, end=window.end)
    if live_tail is None:
        live_tail = by == "partition"
    if not live_tail:
        source.warnings.append(
            f"objects written after the report ({manifest.report_time:%Y-%m-%dT%H:%MZ}, less "
            f"{TAIL_OVERLAP.total_seconds() / 3600:.0f} h for its lag) are not included: the window ends "
            f"{window.end:%Y-%m-%dT%H:%MZ}; pass --live-tail to list them live"
            + (" (that lists the whole prefix)" if by == "modified" else ""))
        return source
    if by == "partition":
        # Only the days from the tail's start on: a late object written into an older day after the
        # report is in neither (said below).
        days = Window(start=dt.datetime.combine(tail_start.date(), dt.time(), tzinfo=dt.UTC),
                      end=max(window.end, tail_start + dt.timedelta(microseconds=1)))
        live = list_window(s3, bucket=manifest.source_bucket, prefix=prefix, window=days, by="partition",
                           concurrency=concurrency)
        source.tail = live.objects
        source.partitions = live.partitions
        source.live_days = set(days.days())
        if window.start.date() < tail_start.date():
            source.warnings.append(f"days before {tail_start:%Y-%m-%d} come from the report only: an object written "
                                   "into one of them after the report is not included")
    else:
        live = list_window(s3, bucket=manifest.source_bucket, prefix=prefix, window=source.tail_window, by="modified",
                           concurrency=concurrency)
        source.tail = live.objects
    source.tail_listed = True
    return source


@dataclass
class InventoryListing(Listing):
    """A Listing (as `list_window` returns) read from an inventory report."""

    inventory: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {**super().summary(), "inventory": self.inventory}


def list_from_inventory(s3, *, manifest_url: str, bucket: str | None, prefix: str, window: Window,
                        by: str = "modified", live_tail: bool | None = None, now: dt.datetime | None = None,
                        concurrency: int = 8, on_progress: Callable[[int], None] | None = None) -> InventoryListing:
    """The whole listing in memory, sorted by key, like `list_window` (for ls and the local replays)."""
    source = open_inventory(s3, manifest_url=manifest_url, bucket=bucket, prefix=prefix, window=window, by=by,
                            live_tail=live_tail, now=now, concurrency=concurrency)
    objects = []
    for obj in source.objects():
        objects.append(obj)
        if on_progress and len(objects) % 10_000 == 0:
            on_progress(len(objects))
    objects.sort(key=lambda o: o.key)
    return InventoryListing(bucket=source.bucket, prefix=prefix, by=by, window=window, objects=objects,
                            partitions=source.partitions, skipped_replay_copies=source.stats.replay_copies,
                            inventory=source.summary())
