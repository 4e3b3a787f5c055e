"""blocks.py on small inputs: the decompressed chunks of a stream (the byte count, the object cap,
corrupt gzip) and the blocks of whole lines cut from chunks of chosen sizes (where a block ends,
the head carried over, over-long lines skipped to the next newline)."""

import gzip
import io
import re
import tempfile

import pytest

from lambdas.transform.blocks import Chunks, LongLine, whole_line_blocks
from lambdas.transform.results import UnreadableObject
from lambdas.transform.sinks import RAW_PREVIEW_CHARS

DATA = b"".join(b'{"n": %d}\n' % n for n in range(100))


def blocks(chunks, *, head=b"", block_bytes=16, max_line_bytes=1000):
    return list(whole_line_blocks(head, iter(chunks), block_bytes=block_bytes, max_line_bytes=max_line_bytes))


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_chunks_are_the_decompressed_bytes_in_reads_of_at_most_size(gzipped, size):
    raw = io.BytesIO(gzip.compress(DATA) if gzipped else DATA)
    chunks = Chunks(raw, gzipped=gzipped, size=size)
    read = []
    for chunk in chunks:
        read.append(chunk)
        assert chunks.bytes_in == sum(map(len, read))  # counted as each chunk is handed out
    assert b"".join(read) == DATA
    assert max(map(len, read)) == min(size, len(DATA))
    assert list(chunks) == []  # the end stays the end


def test_an_empty_stream_has_no_chunks():
    chunks = Chunks(io.BytesIO(b""), gzipped=False, size=8)
    assert list(chunks) == [] and chunks.bytes_in == 0


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_object_of_exactly_the_cap_is_read_and_one_byte_more_is_unreadable(gzipped):
    def read(data, cap):
        return b"".join(Chunks(io.BytesIO(gzip.compress(data) if gzipped else data), gzipped=gzipped, size=7,
                               max_bytes=cap))

    assert read(DATA, len(DATA)) == DATA
    with pytest.raises(UnreadableObject) as raised:
        read(DATA, len(DATA) - 1)
    # The reason is what the DLQ runbook matches on: the limit, the variable behind it and the fix.
    reason = str(raised.value)
    limit = re.match(rf"object is larger than the {len(DATA) - 1} byte limit( decompressed)? \(ELT_MAX_OBJECT_BYTES\): ",
                     reason)
    assert limit and bool(limit.group(1)) is gzipped
    assert "split it into smaller objects" in reason and "the Lambda's timeout" in reason


def test_the_default_cap_is_4_gib():
    assert Chunks(io.BytesIO(b""), gzipped=False, size=1).max_bytes == 4 << 30


# mtime=0: the same bytes (and test ids) in every pytest-xdist worker, whenever each collects them.
@pytest.mark.parametrize("raw", [b"not gzip at all", gzip.compress(DATA, mtime=0)[:-12], gzip.compress(DATA, mtime=0)[:30],
                                 gzip.compress(DATA, mtime=0)[:10] + b"\xff" * 40],
                         ids=["not gzip", "truncated end", "truncated early", "corrupt after the header"])
def test_a_corrupt_or_truncated_gzip_stream_is_unreadable(raw):
    with pytest.raises(UnreadableObject, match="^cannot decompress: "):
        b"".join(Chunks(io.BytesIO(raw), gzipped=True, size=16))


def test_blocks_end_at_the_last_newline_of_the_chunk_that_fills_them():
    assert blocks([b"ab\ncd\nef", b"gh\nij\n", b"kl"], block_bytes=8) == [b"ab\ncd\n", b"efgh\nij\n", b"kl"]


def test_short_chunks_gather_until_they_reach_block_bytes():
    # 4 + 4 = 8 < 9: gathered; the third reaches 9 and ends a block at its own last newline.
    assert blocks([b"a\nb\n", b"c\nd\n", b"e\nf\n", b"g"], block_bytes=9) == [b"a\nb\nc\nd\ne\nf\n", b"g"]


def test_a_block_is_cut_as_soon_as_head_and_chunk_reach_block_bytes_exactly():
    assert blocks([b"a\nb\n", b"c\nd\n", b"e\n"], block_bytes=8) == [b"a\nb\nc\nd\n", b"e\n"]
    assert blocks([b"a\nb\n", b"c\nd\n", b"e\n"], block_bytes=9) == [b"a\nb\nc\nd\ne\n"]


def test_a_chunk_with_no_newline_ends_a_block_at_the_heads_last_newline():
    assert blocks([b"a\nb", b"cdef", b"g\n"], block_bytes=6) == [b"a\n", b"bcdefg\n"]
    assert blocks([b"ab\ncd", b"efgh", b"ij\nk"], block_bytes=4) == [b"ab\n", b"cdefghij\n", b"k"]


def test_a_chunk_with_no_newline_ends_a_block_at_the_last_newline_of_a_head_of_several_lines():
    assert blocks([b"a\nb\nc", b"dddd"], block_bytes=6) == [b"a\nb\n", b"cdddd"]


def test_a_head_that_is_one_newline_ends_a_block_of_one_empty_line():
    # The newline at the head's first byte still ends a line: what follows is a line of its own,
    # never taken with it for one over-long line.
    assert blocks([b"\n", b"xxxxxx", b"\n"], block_bytes=2, max_line_bytes=5) == [b"\n", b"xxxxxx\n"]


def test_the_head_read_already_starts_the_first_block():
    assert blocks([b"c\nd"], head=b"a\nb", block_bytes=4) == [b"a\nbc\n", b"d"]
    assert blocks([], head=b"a\nb") == [b"a\nb"]
    assert blocks([]) == []


def test_blocks_join_to_the_stream_and_each_but_the_last_ends_a_line():
    for size in (1, 3, 10, 64, 5000):
        chunks = [DATA[i:i + size] for i in range(0, len(DATA), size)]
        for block_bytes in (1, 16, 100, 1 << 20):
            got = blocks(chunks, block_bytes=block_bytes)
            assert b"".join(got) == DATA
            assert all(block.endswith(b"\n") for block in got)


def test_an_over_long_line_is_skipped_to_its_newline_keeping_its_start_and_length():
    got = blocks([b"ok\n" + b"x" * 6, b"x" * 6, b"xx\nnext\n"], block_bytes=4, max_line_bytes=10)
    assert got == [b"ok\n", LongLine(b"x" * 12, 14), b"next\n"]


def test_a_line_of_exactly_max_line_bytes_is_kept_and_one_byte_more_is_skipped():
    assert blocks([b"x" * 10, b"\n"], block_bytes=4, max_line_bytes=10) == [b"x" * 10 + b"\n"]
    assert blocks([b"x" * 11, b"\n"], block_bytes=4, max_line_bytes=10) == [LongLine(b"x" * 11, 11)]


def test_an_over_long_line_may_end_the_object():
    assert blocks([b"x" * 11, b"y" * 5], block_bytes=4, max_line_bytes=10) == [LongLine(b"x" * 11, 16)]
    assert blocks([b"x" * 11, b"y" * 5, b"\n"], block_bytes=4, max_line_bytes=10) == [LongLine(b"x" * 11, 16)]


def test_what_follows_an_over_long_line_in_its_last_chunk_is_read_on():
    got = blocks([b"x" * 11, b"yy\na\nb", b"\nc\n"], block_bytes=4, max_line_bytes=10)
    assert got == [LongLine(b"x" * 11, 13), b"a\nb\nc\n"]


def test_an_over_long_lines_preview_is_its_first_raw_preview_chars_bytes():
    line = bytes(range(256)).replace(b"\n", b"") * (3 * RAW_PREVIEW_CHARS // 255)
    chunks = [line[i:i + RAW_PREVIEW_CHARS // 2] for i in range(0, len(line), RAW_PREVIEW_CHARS // 2)]
    [long_line, after] = blocks([*chunks, b"\n{}\n"], block_bytes=1024, max_line_bytes=RAW_PREVIEW_CHARS)
    assert long_line == LongLine(line[:RAW_PREVIEW_CHARS], len(line)) and after == b"{}\n"


def test_a_gzip_stream_is_read_whatever_mode_its_file_object_reports():
    # GzipFile takes its mode from the file object when none is given: a body staged in a
    # read-write file whose mode says "w+b" would be taken for an output and not read.
    with tempfile.SpooledTemporaryFile(mode="w+b") as raw:
        raw.write(gzip.compress(DATA))
        raw.seek(0)
        assert b"".join(Chunks(raw, gzipped=True, size=64)) == DATA


def test_a_chunk_of_whole_lines_with_no_head_is_handed_on_as_it_is():
    # Not copied: a block the size of a chunk is the chunk itself.
    chunks = [b"a\nb\n", b"c\n"]
    got = blocks(chunks, block_bytes=2)
    assert got == chunks and got[0] is chunks[0] and got[1] is chunks[1]
