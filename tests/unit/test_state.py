import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ops import state
from ops.errors import UsageError
from ops.state import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    Checkpoint,
    Report,
    atomic_write,
    default_checkpoint,
    identity_hash,
)

IDENTITY = {"command": "replay copy", "bucket": "b", "window": ["2025-01-01", "2025-01-02"]}
ROOT = Path(__file__).resolve().parents[2]


# --- where checkpoints live ---------------------------------------------------------------------------
def test_the_state_dir_is_elt_state_dir_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state.state_dir() == tmp_path / "explicit"
    monkeypatch.setenv("ELT_STATE_DIR", "")
    assert state.state_dir() == tmp_path / "xdg" / "eltops"
    monkeypatch.delenv("ELT_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state.state_dir() == tmp_path / "home" / ".local" / "state" / "eltops"


def test_the_default_checkpoint_is_named_by_command_and_identity(monkeypatch, tmp_path):
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path))
    path = default_checkpoint("replay copy", IDENTITY)
    assert path == tmp_path / "checkpoints" / f"replay-copy-{identity_hash(IDENTITY)}.json"
    assert default_checkpoint("replay copy", dict(reversed(list(IDENTITY.items())))) == path  # key order
    assert default_checkpoint("replay copy", {**IDENTITY, "bucket": "c"}) != path
    assert default_checkpoint("replay sqs", IDENTITY) != path
    assert len(identity_hash(IDENTITY)) == 12


def test_a_run_started_without_a_checkpoint_path_resumes_from_the_default_one(monkeypatch, tmp_path):
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path))
    first = Checkpoint(default_checkpoint("dlq redrive", IDENTITY), IDENTITY)
    first.mark(["a", "b"])
    first.save()
    again = Checkpoint(default_checkpoint("dlq redrive", IDENTITY), IDENTITY)
    assert again.resumed and again.done == {"a", "b"}
    assert list((tmp_path / "checkpoints").iterdir()) == [default_checkpoint("dlq redrive", IDENTITY)]


# --- the checkpoint file ----------------------------------------------------------------------------
def test_a_saved_checkpoint_resumes_with_its_keys_and_values(tmp_path):
    path = tmp_path / "c" / "run.json"
    first = Checkpoint(path, IDENTITY, interval=3600)
    assert not first.resumed and "a" not in first
    stamp = first.value("stamp", lambda: "20260101T000000Z")
    first.mark("a")
    first.mark(["b", "c"])
    first.save()
    data = json.loads(path.read_text())
    assert (data["identity"], data["done"], data["values"]) == (IDENTITY, ["a", "b", "c"], {"stamp": stamp})
    again = Checkpoint(path, IDENTITY)
    assert again.resumed and again.done == {"a", "b", "c"} and "b" in again and "d" not in again
    assert again.value("stamp", lambda: pytest.fail("a resumed run reuses the first run's value")) == stamp
    assert again.value("plain", 5) == 5


def test_a_checkpoint_from_a_different_run_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "run.json"
    first = Checkpoint(path, IDENTITY)
    first.mark("a")
    first.save()
    before = path.read_bytes()
    with pytest.raises(UsageError, match="belongs to a different run .*use another --checkpoint, --fresh to start over in this file, or delete"):
        Checkpoint(path, {**IDENTITY, "window": ["2025-02-01", "2025-02-02"]})
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b""])
def test_an_unreadable_checkpoint_is_a_usage_error_that_says_how_to_start_over(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=f"checkpoint {path} is unreadable .*delete it to start over"):
        Checkpoint(path, IDENTITY)


def test_marks_are_folded_into_the_file_once_the_interval_has_passed(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: clock[0])
    path = tmp_path / "run.json"
    checkpoint = Checkpoint(path, IDENTITY, interval=10)
    checkpoint.mark("a")  # the first mark saves: nothing was saved yet
    assert json.loads(path.read_text())["done"] == ["a"]
    clock[0] += 9.9
    checkpoint.mark("b")
    assert json.loads(path.read_text())["done"] == ["a"] and checkpoint.journal_path.exists()
    clock[0] += 0.1
    checkpoint.mark("c")
    assert json.loads(path.read_text())["done"] == ["a", "b", "c"]
    assert not checkpoint.journal_path.exists()  # everything journaled is in the file


# --- the crash journal ------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from ops.state import Checkpoint
    checkpoint = Checkpoint(sys.argv[1], {"run": 1}, interval=3600)
    checkpoint.save()
    for i in range(int(sys.argv[2])):
        checkpoint.mark(f"key-{i}")
    print("marked", flush=True)
    sys.stdin.read()  # blocks until the test kills it (the pipe never closes first)
""")


def test_a_run_killed_with_sigkill_loses_no_key_it_marked(tmp_path):
    path = tmp_path / "run.json"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "25"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline() == "marked\n"
        assert json.loads(path.read_text())["done"] == []  # only the journal has them
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    resumed = Checkpoint(path, {"run": 1})
    assert resumed.resumed and resumed.done == {f"key-{i}" for i in range(25)}


def test_a_torn_last_journal_line_and_a_garbled_one_are_ignored(tmp_path):
    path = tmp_path / "run.json"
    journal = path.with_name("run.json.journal")
    journal.write_bytes(b'"a"\n\xff garbled\n"b"\n"c')  # killed while writing "c"
    checkpoint = Checkpoint(path, IDENTITY)
    assert checkpoint.resumed and checkpoint.done == {"a", "b"}
    checkpoint.mark("c")
    checkpoint.save()
    assert not journal.exists() and Checkpoint(path, IDENTITY).done == {"a", "b", "c"}


def test_a_journal_and_a_file_are_read_together(tmp_path):
    path = tmp_path / "run.json"
    first = Checkpoint(path, IDENTITY, interval=3600)
    first.save()
    first.mark(["a", "b"])
    path.with_name("run.json.journal").open("ab").write(b'"c"\n')
    assert Checkpoint(path, IDENTITY).done == {"a", "b", "c"}


def test_an_empty_journal_is_not_a_resumed_run(tmp_path):
    path = tmp_path / "run.json"
    path.with_name("run.json.journal").write_bytes(b"")
    assert not Checkpoint(path, IDENTITY).resumed
    path.with_name("run.json.journal").write_bytes(b'"only-torn')
    assert not Checkpoint(path, IDENTITY).resumed


# --- atomic writes ------------------------------------------------------------------------------------
def test_an_atomic_write_replaces_the_file_and_creates_its_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "f.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["f.json"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "f.json"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, failing, broken)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.json"]


def test_an_interrupted_atomic_write_cleans_up_too(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    monkeypatch.setattr(state.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new")
    assert os.listdir(tmp_path) == []


# --- reports ------------------------------------------------------------------------------------------
def test_a_report_appends_one_json_line_per_record_with_its_time(tmp_path):
    path = tmp_path / "reports" / "run.jsonl"
    report = Report(path)
    report.write(key="bronze/ü.jsonl", action="copied")
    report.write(key="k2", action="skipped", time="fixed")
    report.close()
    report.close()
    Report(path).write(key="k3")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["key"], r.get("action")) for r in lines] == [("bronze/ü.jsonl", "copied"), ("k2", "skipped"),
                                                            ("k3", None)]
    assert lines[1]["time"] == "fixed" and lines[0]["time"].endswith("+00:00")
    assert "ü" in path.read_text(encoding="utf-8")


def test_without_a_path_a_report_writes_nothing(tmp_path):
    report = Report(None)
    report.write(key="k")
    report.close()
    assert report.path is None


@pytest.mark.parametrize("text", ["[]", "3", '"x"', "null", '{"identity": {}, "done": 5}'])
def test_a_checkpoint_that_is_json_but_not_a_checkpoint_is_a_usage_error(tmp_path, text):
    path = tmp_path / "cp.json"
    path.write_text(text)
    with pytest.raises(UsageError, match="is not an eltops checkpoint"):
        Checkpoint(path, {})
    assert path.read_text() == text  # left alone


def test_a_finished_run_is_retired_and_an_unfinished_one_resumed(tmp_path):
    from ops.state import FINISHED, INTERRUPTED

    first = Checkpoint(tmp_path / "cp.json", {"a": 1})
    first.value("window", ["w1"])
    first.mark(["k1"])
    first.finish(INTERRUPTED)
    again = Checkpoint(tmp_path / "cp.json", {"a": 1})
    assert again.resumed and again.done == {"k1"} and again.previous_state == INTERRUPTED
    again.finish(FINISHED)
    new = Checkpoint(tmp_path / "cp.json", {"a": 1})
    assert not new.resumed and new.done == set() and new.value("window", ["w2"]) == ["w2"]
    with pytest.raises(UsageError, match="nothing to resume"):
        Checkpoint(tmp_path / "cp.json", {"a": 1}, resume_only=True)
    fresh = Checkpoint(tmp_path / "other.json", {"a": 1})
    fresh.mark(["k9"])
    fresh.save()
    assert not Checkpoint(tmp_path / "other.json", {"a": 1}, fresh=True).resumed


# --- how a run ended ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "stamp", "not_there"), [
    (FINISHED, "finished_at", "stopped_at"), (FAILED, "stopped_at", "finished_at"),
    (INTERRUPTED, "stopped_at", "finished_at"),
])
def test_a_run_records_how_it_ended_and_when(tmp_path, state, stamp, not_there):
    path = tmp_path / "run.json"
    checkpoint = Checkpoint(path, IDENTITY)
    checkpoint.mark("key-a")
    running = json.loads(path.read_text())
    assert running["state"] == RUNNING and "finished_at" not in running and "stopped_at" not in running
    checkpoint.finish(state)
    data = json.loads(path.read_text())
    assert (data["state"], data[stamp], data["started_at"]) == (state, data["saved_at"], running["started_at"])
    assert not_there not in data
    assert dt.datetime.fromisoformat(data["saved_at"]).utcoffset() == dt.timedelta(0)


def test_a_resumed_run_keeps_its_start_and_knows_how_the_last_one_ended(tmp_path):
    path = tmp_path / "run.json"
    first = Checkpoint(path, IDENTITY)
    first.mark(["key-a"])
    first.finish(FAILED)
    started = json.loads(path.read_text())["started_at"]
    path.with_name("run.json.journal").write_bytes(b'"key-b"\n')
    again = Checkpoint(path, IDENTITY)
    assert (again.resumed, again.previous_state, again.started_at) == (True, FAILED, started)
    assert again.done == {"key-a", "key-b"}


def test_a_run_killed_before_its_first_save_resumes_as_running(tmp_path):
    path = tmp_path / "run.json"
    path.with_name("run.json.journal").write_bytes(b'"key-a"\n')
    again = Checkpoint(path, IDENTITY)
    assert (again.resumed, again.previous_state, again.done) == (True, RUNNING, {"key-a"})
    assert Checkpoint(tmp_path / "other.json", IDENTITY).previous_state is None


def test_one_key_is_marked_whole_and_the_journal_folder_is_created(tmp_path):
    path = tmp_path / "new" / "deeper" / "run.json"
    checkpoint = Checkpoint(path, IDENTITY, interval=3600)
    checkpoint.save = lambda: None  # only the journal, as between two saves
    checkpoint.mark("key-a")
    assert checkpoint.done == {"key-a"}
    assert path.with_name("run.json.journal").read_bytes() == b'"key-a"\n'


def test_something_that_is_not_a_checkpoint_is_refused_saying_what_a_checkpoint_is(tmp_path):
    path = tmp_path / "run.json"
    for content in ("[1, 2]", '{"done": "a"}', '{"values": []}'):
        path.write_text(content)
        with pytest.raises(UsageError) as info:
            Checkpoint(path, IDENTITY)
        assert str(info.value) == (f"checkpoint {path} is not an eltops checkpoint (a JSON object with identity, "
                                   "values and done); point --checkpoint elsewhere, or delete it to start over")


def test_an_atomic_write_goes_through_a_hidden_temporary_file_beside_the_target(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    real, seen = os.replace, []
    monkeypatch.setattr(state.os, "replace", lambda src, dst: (seen.append(Path(src)), real(src, dst)))
    atomic_write(path, b"x")
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".f.json.") and path.read_bytes() == b"x"


def test_resuming_a_run_that_does_not_exist_or_finished_is_refused_saying_what_to_do(tmp_path):
    path = tmp_path / "run.json"
    with pytest.raises(UsageError) as info:
        Checkpoint(path, IDENTITY, resume_only=True)
    assert str(info.value) == f"--resume {path}: no such checkpoint; run without --resume to start a new run"
    Checkpoint(path, IDENTITY).finish(FINISHED)
    finished_at = json.loads(path.read_text())["finished_at"]
    with pytest.raises(UsageError) as info:
        Checkpoint(path, IDENTITY, resume_only=True)
    shown = dt.datetime.fromisoformat(finished_at).astimezone(dt.UTC).isoformat(timespec="milliseconds")
    assert str(info.value) == (f"--resume {path}: that run finished at {shown.replace('+00:00', 'Z')}; there is "
                               "nothing to resume "
                               "(run without --resume for a new run)")


def test_another_run_s_checkpoint_is_refused_naming_that_run_and_the_ways_out(tmp_path):
    path = tmp_path / "run.json"
    Checkpoint(path, {"run": 1}).save()
    with pytest.raises(UsageError) as info:
        Checkpoint(path, {"run": 2})
    assert str(info.value) == (f"checkpoint {path} belongs to a different run ({{'run': 1}}); use another "
                               "--checkpoint, --fresh to start over in this file, or delete it")


def test_a_checkpoint_with_only_its_identity_resumes_as_a_running_run_with_nothing_done(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"identity": IDENTITY}))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    checkpoint = Checkpoint(path, IDENTITY)
    assert (checkpoint.resumed, checkpoint.previous_state, checkpoint.done, checkpoint.values) == (
        True, RUNNING, set(), {})
    started = dt.datetime.fromisoformat(checkpoint.started_at)
    assert started.utcoffset() == dt.timedelta(0) and before <= started <= dt.datetime.now(dt.UTC)
    assert started.microsecond == 0


def test_a_new_run_starts_now_in_utc_and_is_not_resumed(tmp_path):
    checkpoint = Checkpoint(tmp_path / "run.json", IDENTITY)
    assert checkpoint.resumed is False and checkpoint.previous_state is None and checkpoint.state == RUNNING
    assert dt.datetime.fromisoformat(checkpoint.started_at).utcoffset() == dt.timedelta(0)


def test_a_report_creates_its_folders_and_writes_odd_values_as_text(tmp_path):
    path = tmp_path / "a" / "b" / "run.jsonl"
    report = Report(path)
    report.write(key=Path("bronze/x.jsonl"), at=dt.date(2025, 1, 2))
    report.close()
    (line,) = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert (line["key"], line["at"]) == ("bronze/x.jsonl", "2025-01-02")


def test_by_default_marks_are_folded_into_the_file_every_second(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: clock[0])
    checkpoint = Checkpoint(tmp_path / "run.json", IDENTITY)
    checkpoint.mark("key-a")
    clock[0] += 1.0
    checkpoint.mark("key-b")
    assert json.loads((tmp_path / "run.json").read_text())["done"] == ["key-a", "key-b"]


def test_a_resumed_run_keeps_the_start_time_its_file_records(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"identity": IDENTITY, "state": FAILED, "started_at": "2020-01-01T00:00:00+00:00",
                                "done": ["key-a"], "values": {}}))
    checkpoint = Checkpoint(path, IDENTITY)
    assert (checkpoint.started_at, checkpoint.done) == ("2020-01-01T00:00:00+00:00", {"key-a"})
    checkpoint.finish(FINISHED)
    assert json.loads(path.read_text())["started_at"] == "2020-01-01T00:00:00+00:00"
