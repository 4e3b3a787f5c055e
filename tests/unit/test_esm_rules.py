"""The event-source-mapping emulator follows Lambda's partial batch response rules."""

from ops.local.runtime import failed_ids

IDS = ["a", "b", "c"]


def test_no_failures_or_an_empty_response_means_every_message_succeeded():
    for response in (None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "ok"):
        assert failed_ids(response, IDS) == (set(), None)


def test_listed_identifiers_are_the_only_failures():
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, IDS) == ({"b"}, None)


def test_an_empty_null_or_unknown_identifier_fails_the_whole_batch():
    for bad in ("", None, "zzz"):
        failed, reason = failed_ids({"batchItemFailures": [{"itemIdentifier": bad}]}, IDS)
        assert failed == set(IDS) and "whole batch" in reason
