"""Bronze bytes -> decompressed chunks -> blocks of whole JSONL lines.

Words used here:
- chunk: what one read of the (decompressed) stream gives, `block_bytes` at most.
- block: a run of whole lines of about `block_bytes`, cut at a newline; the start of a line that
  a chunk cuts off is carried over to the next block ("head"). A block is the unit the fast path
  reads with one Arrow call.
- over-long line: a line longer than `max_line_bytes` with no newline in sight. It is not held:
  its first RAW_PREVIEW_CHARS bytes are kept for quarantine and the rest is skipped to the next
  newline, so memory stays bounded whatever the producer wrote.
- bytes_in: decompressed bytes read, counted as chunks are handed out.
- object cap: `max_object_bytes` (ELT_MAX_OBJECT_BYTES) of decompressed bytes per object; past it
  the object is unreadable (a failed item), so a gzip bomb costs bounded time and disk.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from lambdas.transform.results import UnreadableObject
from lambdas.transform.sinks import RAW_PREVIEW_CHARS

BOM = b"\xef\xbb\xbf"
# 2 MiB: fewer blocks means fewer per-block Arrow set-ups, checks and sample reads. Counted under
# callgrind, 2 MiB does less work than 1 MiB both on clean input and with 1% bad lines; 4 MiB
# does less on clean input but more with bad lines (docs/transform.md has the figures).
DEFAULT_BLOCK_BYTES = 2 << 20
DEFAULT_MAX_OBJECT_BYTES = 4 << 30


class Chunks:
    """The decompressed chunks of a stream, counting the bytes handed out."""

    def __init__(self, raw: BinaryIO, *, gzipped: bool, size: int, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES):
        self.stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        self.gzipped = gzipped
        self.size = size
        self.max_bytes = max_bytes
        self.bytes_in = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = self.stream.read(self.size)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableObject(f"cannot decompress: {exc}") from None
        if not chunk:
            raise StopIteration
        self.bytes_in += len(chunk)
        if self.bytes_in > self.max_bytes:
            raise UnreadableObject(
                f"object is larger than the {self.max_bytes} byte limit{' decompressed' if self.gzipped else ''} "
                "(ELT_MAX_OBJECT_BYTES): split it into smaller objects, or raise the limit (and the "
                "Lambda's timeout) if objects this big are expected")
        return chunk


class LongLine(NamedTuple):
    """An over-long line, skipped: its first bytes and its length."""

    preview: bytes
    size: int


def whole_line_blocks(head: bytes, chunks: Iterator[bytes], *, block_bytes: int,
                      max_line_bytes: int) -> Iterator[bytes | LongLine]:
    """Blocks of whole lines from `head` (bytes read already) and then `chunks`; the last block may
    lack a final newline. Each block is the carried-over head joined to the new chunk up to its last
    newline: one copy (growing a buffer and slicing the block off it would make two)."""
    for chunk in chunks:
        if len(head) + len(chunk) < block_bytes:
            head += chunk
            continue
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            block = b"".join((head, memoryview(chunk)[: cut + 1])) if head else chunk[: cut + 1]
            head = chunk[cut + 1:]
        else:
            head += chunk
            cut = head.rfind(b"\n")
            if cut < 0:
                if len(head) > max_line_bytes:  # one line with no end in sight: skip it, resync
                    long_line, head = _skip_long_line(head, chunks)
                    yield long_line
                continue
            block, head = head[: cut + 1], head[cut + 1:]
        yield block
    if head:
        yield head


def _skip_long_line(buf: bytes, chunks: Iterator[bytes]) -> tuple[LongLine, bytes]:
    """Skip to the end of the line `buf` starts; return it as a LongLine and what follows it."""
    preview = buf[:RAW_PREVIEW_CHARS]
    size = len(buf)
    for chunk in chunks:
        cut = chunk.find(b"\n")
        if cut >= 0:
            return LongLine(preview, size + cut), chunk[cut + 1:]
        size += len(chunk)
    return LongLine(preview, size), b""
