"""The Lambdas' small shared helpers: configuration, clients, logging, steps, schemas."""

import json
import logging

import pyarrow as pa
import pytest

from lambdas.shared import aws, config, log, schemas, steps


# --- configuration ------------------------------------------------------------------------------------
def test_configuration_takes_the_environment_then_the_defaults():
    values = config.read(config.INGEST_ENV, {"ELT_QUEUE_URL": "q", "ELT_LEDGER_TABLE": "t",
                                             "ELT_LOG_LEVEL": "DEBUG", "UNRELATED": "x"})
    assert values == {"ELT_QUEUE_URL": "q", "ELT_LEDGER_TABLE": "t", "ELT_LEDGER_TTL_DAYS": "30",
                      "ELT_CLAIM_LEASE_SECONDS": "120", "ELT_LOG_LEVEL": "DEBUG"}


@pytest.mark.parametrize("environ", [{}, {"ELT_SILVER_BUCKET": "", "ELT_LEDGER_TABLE": ""}])
def test_every_missing_or_empty_required_variable_is_named(environ):
    with pytest.raises(config.ConfigError, match="^missing environment variable\\(s\\): ELT_SILVER_BUCKET, "
                                                 "ELT_LEDGER_TABLE$"):
        config.read(config.TRANSFORM_ENV, environ)


def test_an_empty_optional_variable_is_missing_too():
    environ = {"ELT_SILVER_BUCKET": "s", "ELT_LEDGER_TABLE": "t", "ELT_ROW_GROUP_ROWS": ""}
    with pytest.raises(config.ConfigError, match="ELT_ROW_GROUP_ROWS$"):
        config.read(config.TRANSFORM_ENV, environ)


def test_without_an_environment_given_the_process_environment_is_read(monkeypatch):
    for var in config.INGEST_ENV:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("ELT_QUEUE_URL", "from-env")
    monkeypatch.setenv("ELT_LEDGER_TABLE", "table-from-env")
    assert config.read(config.INGEST_ENV)["ELT_QUEUE_URL"] == "from-env"


# --- clients ------------------------------------------------------------------------------------------
def test_lambda_clients_retry_in_standard_mode_with_bounded_timeouts(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    sqs = aws.client("sqs")
    assert sqs.meta.service_model.service_name == "sqs"
    assert sqs.meta.endpoint_url == "http://127.0.0.1:1"
    cfg = sqs.meta.config
    assert (cfg.retries["mode"], cfg.retries["total_max_attempts"]) == ("standard", 6)
    assert (cfg.connect_timeout, cfg.read_timeout) == (5, 30)


# --- steps ----------------------------------------------------------------------------------------------
def test_a_step_does_nothing_without_a_hook_and_calls_the_hook_with_its_context(monkeypatch):
    steps.step(steps.AFTER_CLAIM, object="s3://b/k")
    seen = []
    monkeypatch.setattr(steps, "HOOK", lambda name, context: seen.append((name, context)))
    steps.step(steps.AFTER_SEND, object="s3://b/k", etag="e")
    assert seen == [("after-send", {"object": "s3://b/k", "etag": "e"})]


def test_a_kill_is_not_an_exception_so_handler_code_cannot_catch_it():
    assert not issubclass(steps.Killed, Exception) and issubclass(steps.Killed, BaseException)


# --- logging --------------------------------------------------------------------------------------------
@pytest.fixture
def captured(capsys):
    """What the handler writes to whatever sys.stdout is at the time (pytest's capture here)."""
    log.set_context()
    yield capsys
    log.set_context()


def lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_log_line_is_one_json_object_with_context_and_fields(captured):
    logger = log.get_logger("unit")
    log.set_context(aws_request_id="r1", function="ingest", absent=None)
    log.log(logger, logging.WARNING, "queued ü", object="s3://b/k", count=3)
    text = captured.readouterr().out
    (entry,) = [json.loads(line) for line in text.splitlines()]
    assert {k: entry[k] for k in ("level", "logger", "message", "aws_request_id", "function", "object",
                                  "count")} == {"level": "WARNING", "logger": "elt.unit", "message": "queued ü",
                                                "aws_request_id": "r1", "function": "ingest",
                                                "object": "s3://b/k", "count": 3}
    assert "absent" not in entry and entry["time"].endswith("+00:00")
    assert "ü" in text


def test_the_context_is_replaced_by_the_next_call(captured):
    logger = log.get_logger("unit")
    log.set_context(aws_request_id="r1")
    log.set_context(aws_request_id="r2")
    log.log(logger, logging.INFO, "m")
    log.set_context()
    log.log(logger, logging.INFO, "m")
    assert [e.get("aws_request_id") for e in lines(captured)] == ["r2", None]


def test_an_exception_is_logged_with_its_traceback_and_odd_values_as_text(captured):
    logger = log.get_logger("unit")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed", extra={"fields": {"when": object}})
    (entry,) = lines(captured)
    assert "ValueError: bad" in entry["exception"] and entry["when"] == str(object)


def test_loggers_share_one_handler_under_elt_and_do_not_propagate(captured):
    first, second = log.get_logger("a"), log.get_logger("b")
    root = logging.getLogger("elt")
    assert (first.name, second.name) == ("elt.a", "elt.b")
    assert sum(isinstance(h, log.StdoutHandler) for h in root.handlers) == 1 and root.propagate is False


# --- schemas -----------------------------------------------------------------------------------------
def test_a_known_type_has_its_schema_and_silver_adds_lineage():
    shipments = schemas.get("shipments")
    assert shipments.name == "shipments"
    assert shipments.silver.names == shipments.arrow.names + ["_source_key", "_line", "_ingested_at"]
    assert shipments.silver.field("_ingested_at").type == pa.timestamp("us", tz="UTC")


def test_an_unknown_type_names_itself_and_the_known_ones():
    with pytest.raises(schemas.UnknownType) as info:
        schemas.get("invoices")
    assert isinstance(info.value, KeyError) and info.value.type == "invoices" and info.value.args == ("invoices",)
    assert str(info.value) == f"unknown event type 'invoices'; known types: {', '.join(sorted(schemas.REGISTRY))}"


@pytest.fixture
def unconfigured_root():
    """The `elt` logger as in a fresh Lambda container (restored afterwards)."""
    root = logging.getLogger("elt")
    saved = root.handlers[:], root.level, root.propagate, root.__dict__.pop("_elt_configured", None)
    root.handlers.clear()
    root.setLevel(logging.NOTSET)
    root.propagate = True
    yield root
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
    if saved[3] is not None:
        root._elt_configured = saved[3]


@pytest.mark.parametrize(("level", "expected"), [(None, logging.INFO), ("debug", logging.DEBUG),
                                                 ("WARNING", logging.WARNING)])
def test_the_first_logger_installs_one_json_handler_at_elt_log_level(unconfigured_root, monkeypatch, level,
                                                                     expected):
    if level is None:
        monkeypatch.delenv("ELT_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("ELT_LOG_LEVEL", level)
    log.get_logger("a")
    log.get_logger("b")
    (handler,) = unconfigured_root.handlers
    assert isinstance(handler, log.StdoutHandler) and isinstance(handler.formatter, log.JsonFormatter)
    assert (unconfigured_root.level, unconfigured_root.propagate) == (expected, False)


def test_a_line_logged_without_fields_is_json_too(captured):
    log.get_logger("unit").warning("plain %s", "text")
    (entry,) = lines(captured)
    assert (entry["message"], entry["level"]) == ("plain text", "WARNING")


def test_each_thread_logs_its_own_context_as_the_embedded_aws_runs_both_handlers_side_by_side(captured):
    import threading

    logger = log.get_logger("unit")
    both_set = threading.Barrier(2)

    def handler(function: str) -> None:
        log.set_context(aws_request_id=f"req-{function}", function=function)
        both_set.wait(10)  # the other handler has set its context too
        log.log(logger, logging.INFO, f"from {function}")

    threads = [threading.Thread(target=handler, args=(name,)) for name in ("ingest", "transform")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    entries = lines(captured)
    assert sorted((e["message"], e["function"], e["aws_request_id"]) for e in entries) == [
        ("from ingest", "ingest", "req-ingest"), ("from transform", "transform", "req-transform")]
