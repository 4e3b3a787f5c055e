"""Conditional S3 writes: replace an object only if it is still the object that was looked at.

PutObject and CompleteMultipartUpload both take `If-None-Match: *` (create only if absent) and
`If-Match: <etag>` (replace only that object). S3 answers 412 PreconditionFailed when the object
changed, 409 ConditionalRequestConflict when another conditional write to the key is in flight, and
404 when an `If-Match` object was deleted; all three mean "look again"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).

s3transfer's managed upload does not pass these headers, so objects up to `MULTIPART_THRESHOLD`
go up in one PutObject and larger ones as a multipart upload whose CompleteMultipartUpload carries
the condition (an upload that loses is aborted, so no parts are left behind).
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 64 << 20  # S3 allows 5 MiB..5 GiB per part and 10,000 parts
LOST_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "NoSuchUpload")
NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


class PreconditionLost(Exception):
    """The object changed (or appeared, or went) since it was looked at: look again."""


@dataclass(frozen=True)
class Current:
    """What a key holds now: its ETag (quoted, as If-Match wants it) and user metadata."""

    etag: str
    metadata: dict


def head(s3, *, bucket: str, key: str) -> Current | None:
    """The object's ETag and metadata, None when there is none."""
    try:
        got = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
            return None
        raise
    return Current(etag=got["ETag"], metadata=got.get("Metadata") or {})


def condition(current: Current | None) -> dict:
    """The request parameters that make a write replace exactly `current` (or create only)."""
    return {"IfMatch": current.etag} if current is not None else {"IfNoneMatch": "*"}


def put_file(s3, *, bucket: str, key: str, path: str, extra: dict, when: dict | None = None,
             threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE) -> str:
    """Upload `path` to `bucket/key` with `extra` (Metadata, ContentType) and the condition
    `when` (from `condition()`; None: unconditional). Returns the new ETag; raises
    PreconditionLost when the condition failed."""
    when = when or {}
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        try:
            if size <= threshold:
                return s3.put_object(Bucket=bucket, Key=key, Body=f, **extra, **when)["ETag"]
            return _multipart(s3, bucket=bucket, key=key, f=f, extra=extra, when=when, part_size=part_size)
        except ClientError as exc:
            if when and _lost(exc):
                raise PreconditionLost(f"s3://{bucket}/{key} changed since it was looked at "
                                       f"({exc.response.get('Error', {}).get('Code')})") from None
            raise


def _multipart(s3, *, bucket: str, key: str, f, extra: dict, when: dict, part_size: int) -> str:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts = []
        while chunk := f.read(part_size):
            number = len(parts) + 1
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": parts}, **when)["ETag"]
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError:  # noqa: S110 - best effort: the original error is the one to report
            pass
        raise


def _lost(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in LOST_CODES or status in (409, 412)
