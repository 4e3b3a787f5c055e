"""results.py: a transform's result starts empty (nothing written, read or noted, JSONL until
sniffed), each result with lists and counts of its own, and UnreadableObject carries its reason."""

import pytest

from lambdas.transform.results import TransformResult, UnreadableObject


def test_a_new_result_has_nothing_counted_and_is_jsonl_until_sniffed():
    result = TransformResult()
    assert (result.rows, result.rejected, result.blank_lines, result.bytes_in, result.probes,
            result.fields_examined) == (0, 0, 0, 0, 0, 0)
    assert result.fmt == "jsonl"
    assert result.notes == [] and result.first_rejects == [] and result.unknown_fields == {}


def test_each_result_has_notes_rejects_and_fields_of_its_own():
    one, two = TransformResult(), TransformResult()
    one.notes.append("BOM removed")
    one.first_rejects.append((3, "not JSON"))
    one.unknown_fields["x"] = 1
    assert two.notes == [] and two.first_rejects == [] and two.unknown_fields == {}


def test_an_unreadable_object_is_an_error_with_its_reason():
    with pytest.raises(Exception, match="^cannot decompress: bad$") as raised:
        raise UnreadableObject("cannot decompress: bad")
    assert isinstance(raised.value, UnreadableObject)
