import json

import pytest
from click.testing import CliRunner

from ops.cli import cli


def test_global_options_work_after_the_command(tmp_path):
    out = tmp_path / "e.jsonl"
    result = CliRunner().invoke(cli, ["gen-events", "--type", "orders", "--count", "5", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 5
    result = CliRunner().invoke(cli, ["--json", "gen-events", "--type", "orders", "--count", "5", "--out", str(out)])
    assert json.loads(result.stdout)["rows"] == 5


def test_an_unknown_type_is_a_usage_error_naming_the_known_ones(tmp_path):
    result = CliRunner().invoke(cli, ["gen-events", "--type", "invoices", "--count", "5", "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "unknown event type 'invoices'; known types: orders, shipments" in result.stderr


def test_a_bad_ratio_out_of_range_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["gen-events", "--type", "orders", "--count", "5", "--bad-ratio", "2",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--bad-ratio" in result.stderr


def test_every_command_has_help_with_an_example():
    import click

    def walk(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, path + [name])
            else:
                yield path + [name], command

    for path, _command in walk(cli, []):
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output, f"eltops {' '.join(path)} --help has no example"


def test_a_path_that_cannot_be_written_is_a_clear_error_not_a_traceback(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    result = CliRunner().invoke(cli, ["gen-events", "--type", "orders", "--count", "5", "--out",
                                      str(blocked / "inside.jsonl")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert f"cannot use {blocked / 'inside.jsonl'}: Not a directory" in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["dlq", "inspect", "--queue-url", "elt dev events dlq"], "is not an SQS queue URL, name or ARN"),
    (["dlq", "redrive", "--queue-url", "http://127.0.0.1:4566/123456789012/dlq", "--to-url",
      "https://sqs.us-east-1.amazonaws.com/elt-dev-events", "--yes"], "'--to-url'"),
    (["replay", "sqs", "--bucket", "b", "--since", "1h", "--queue-url", "sqs://q"], "is not an SQS queue URL"),
    (["provision", "queue", "--name", "elt dev events"], "76 characters at most (the command adds '-dlq')"),
    (["provision", "queue", "--name", "events.fifo.fifo"], "ending '.fifo' for a FIFO queue"),
    (["provision", "ensure-dlq", "--queue-url", "http://127.0.0.1:4566/123456789012/q", "--dlq-name", "x" * 81],
     "is not a valid SQS queue name"),
])
def test_a_queue_url_or_name_that_cannot_be_one_is_a_usage_error_before_any_call(args, says, monkeypatch):
    # No AWS endpoint is reachable here: a check that waited for a call would fail differently.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
