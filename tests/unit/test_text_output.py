"""Text output says what happened: an interrupted or partly failed replay does not read as done."""

from __future__ import annotations

from ops.commands.listing import _replay_text
from ops.replay import ReplayReport


def report(**kwargs) -> ReplayReport:
    return ReplayReport(**{"command": "replay sqs", "bucket": "b", "target": "q", "planned": 60, "bytes": 1024,
                           **kwargs})


def test_a_finished_replay_says_how_many_it_replayed():
    assert _replay_text(report(done=60)).splitlines()[0] == "replayed 60 object(s), 1.0 KiB -> q"
    assert _replay_text(report(dry_run=True)).splitlines()[0] == "would replay 60 object(s), 1.0 KiB -> q"


def test_an_interrupted_replay_says_how_many_of_how_many_were_done():
    head = _replay_text(report(done=20, interrupted=True)).splitlines()[0]
    assert head == "interrupted: replayed 20 of 60 object(s) -> q"


def test_a_partly_failed_replay_says_how_many_failed():
    failed = [{"key": f"k{i}", "error": "e"} for i in range(6)]
    head = _replay_text(report(planned=6, done=0, failed=failed)).splitlines()[0]
    assert head == "replayed 0 of 6 object(s), 1.0 KiB -> q; 6 failed"
    resumed = _replay_text(report(already_done=20, done=40)).splitlines()
    assert resumed[:2] == ["replayed 40 object(s), 1.0 KiB -> q", "20 already done (checkpoint None)"]


def test_an_error_page_an_endpoint_returns_is_one_line_without_its_html():
    from botocore.exceptions import ClientError

    from ops.aws import translate

    page = ("<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n"
            "<p>The server encountered an internal error.</p>\n")
    exc = ClientError({"Error": {"Code": "500", "Message": page}}, "ListMessageMoveTasks")
    message = str(translate(exc, action="sqs:ListMessageMoveTasks", resource="arn:aws:sqs:us-east-1:1:q"))
    assert "\n" not in message and "<" not in message
    assert "sqs:ListMessageMoveTasks on arn:aws:sqs:us-east-1:1:q failed" in message
    assert "500 Internal Server Error" in message


def test_reconcile_health_and_drift_text_give_windows_to_the_second():
    from types import SimpleNamespace

    from ops.commands.observe import _health_text, _reconcile_text

    start, end = "2026-12-01T14:29:34.357222+00:00", "2026-12-02T14:29:34.357222+00:00"
    r = SimpleNamespace(bucket="b", prefix="bronze/", start=start, end=end, by="partition", objects=0, partitions=0,
                        silver_objects=0, by_category={}, first_keys={}, not_bronze_keys=0, gaps=0, replayable=0,
                        api_calls={}, seconds=0.1)
    assert "[2026-12-01T14:29:34.357Z, 2026-12-02T14:29:34.357Z)" in _reconcile_text(r)
    h = SimpleNamespace(healthy=True, failing=[], checks=[], checked_at="2026-12-02T14:29:34Z", since=start)
    assert _health_text(h) == "HEALTHY at 2026-12-02T14:29:34Z, window since 2026-12-01T14:29:34.357Z"


def test_health_text_keeps_its_columns_with_a_long_queue_name():
    from types import SimpleNamespace

    from ops.commands.observe import _health_text

    checks = [SimpleNamespace(ok=True, name="dlq", subject=subject, summary="0 message(s)")
              for subject in ("elt-local-events-dlq", "elt-local-ingest-events-dlq")]
    h = SimpleNamespace(healthy=True, failing=[], checks=checks, checked_at="2026-12-02T14:29:34Z",
                        since="2026-12-01T14:29:34Z")
    rows = _health_text(h).splitlines()[1:]
    assert len({row.index("0 message(s)") for row in rows}) == 1
