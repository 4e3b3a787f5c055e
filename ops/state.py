"""Run state on the laptop: resumable checkpoints (written atomically) and JSONL audit reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from ops.errors import UsageError
from ops.timewindow import describe_time


def state_dir() -> Path:
    """$ELT_STATE_DIR, else $XDG_STATE_HOME/eltops, else ~/.local/state/eltops."""
    if os.environ.get("ELT_STATE_DIR"):
        return Path(os.environ["ELT_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "eltops"


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def default_checkpoint(command: str, identity: dict) -> Path:
    return state_dir() / "checkpoints" / f"{command.replace(' ', '-')}-{identity_hash(identity)}.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename: a kill leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


RUNNING, INTERRUPTED, FAILED, FINISHED = "running", "interrupted", "failed", "finished"


class Checkpoint:
    """The keys a run has finished, plus values the run must reuse when resumed (its resolved
    window, a generated replay stamp), and the run's state.

    Its life: a run writes `running`; at the end it records `finished` (all done: the checkpoint
    is retired, and the same command run again starts a new run with a new window), `failed` (some
    objects failed: the next run resumes and retries only those) or `interrupted` (Ctrl-C). A run
    killed outright leaves `running`, which resumes too. `fresh=True` starts over whatever the file
    holds; `resume_only=True` (--resume FILE) refuses a file that is missing or finished.

    Every finished key is appended at once to `<path>.journal` (one line, flushed), so even a
    SIGKILL loses no finished work; the journal is folded into the JSON file (written atomically)
    every `interval` seconds and at the end. Loading reads both and ignores a torn last line."""

    def __init__(self, path: str | os.PathLike, identity: dict, *, interval: float = 1.0, fresh: bool = False,
                 resume_only: bool = False):
        self.path = Path(path)
        self.identity = identity
        self.interval = interval
        self.lock = threading.Lock()
        self.done: set[str] = set()
        self.values: dict = {}
        self.resumed = False
        self.previous_state: str | None = None  # the state of the run found in the file
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.state = RUNNING
        self._saved_at = 0.0
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        data = self._load() if self.path.exists() else None
        if resume_only and data is None:
            raise UsageError(f"--resume {self.path}: no such checkpoint; run without --resume to start a new run")
        if data is not None and not fresh:
            if data.get("identity") != identity:
                raise UsageError(
                    f"checkpoint {self.path} belongs to a different run ({data.get('identity')}); "
                    "use another --checkpoint, --fresh to start over in this file, or delete it")
            self.previous_state = data.get("state", RUNNING)
            if self.previous_state == FINISHED:
                if resume_only:
                    raise UsageError(f"--resume {self.path}: that run finished at {describe_time(data.get('finished_at'))}; "
                                     "there is nothing to resume (run without --resume for a new run)")
            else:
                self.done = set(data.get("done", []))
                self.values = data.get("values", {})
                self.started_at = data.get("started_at", self.started_at)
                self.resumed = True
        if self.resumed or data is None:
            self._read_journal()
        elif self.journal_path.exists():
            self.journal_path.unlink()  # a retired or abandoned run's journal
        self._journal = None

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"checkpoint {self.path} is unreadable ({exc}); delete it to start over") from None
        if not isinstance(data, dict) or not isinstance(data.get("done", []), list) or not isinstance(
                data.get("values", {}), dict):
            raise UsageError(f"checkpoint {self.path} is not an eltops checkpoint (a JSON object with identity, "
                             "values and done); point --checkpoint elsewhere, or delete it to start over")
        return data

    def _read_journal(self) -> None:
        if not self.journal_path.exists():
            return
        lines = self.journal_path.read_bytes().split(b"\n")
        for raw in lines[:-1]:  # the last piece is empty, or a line torn by a kill
            try:
                key = json.loads(raw)
            except ValueError:
                continue
            if isinstance(key, str):
                self.done.add(key)
        self.resumed = self.resumed or bool(self.done)
        if self.resumed and self.previous_state is None:
            self.previous_state = RUNNING  # killed before its first save

    def finish(self, state: str) -> None:
        """Record how the run ended (finished, failed or interrupted) and save."""
        with self.lock:
            self.state = state
        self.save()

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def value(self, name: str, default):
        """A value fixed by the first run (reused on resume)."""
        with self.lock:
            if name not in self.values:
                self.values[name] = default() if callable(default) else default
            return self.values[name]

    def mark(self, keys) -> None:
        keys = [keys] if isinstance(keys, str) else list(keys)
        with self.lock:
            self.done.update(keys)
            if self._journal is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = open(self.journal_path, "ab")  # noqa: SIM115 - closed in save()
            self._journal.write(b"".join(json.dumps(k).encode("utf-8") + b"\n" for k in keys))
            self._journal.flush()
            due = time.monotonic() - self._saved_at >= self.interval
        if due:
            self.save()

    def save(self) -> None:
        with self.lock:
            now = dt.datetime.now(dt.UTC).isoformat()
            payload = {"identity": self.identity, "state": self.state, "started_at": self.started_at,
                       "values": self.values, "done": sorted(self.done), "saved_at": now}
            if self.state != RUNNING:
                payload["finished_at" if self.state == FINISHED else "stopped_at"] = now
            self._saved_at = time.monotonic()
            atomic_write(self.path, json.dumps(payload, indent=0).encode("utf-8"))
            # Everything journaled is in the file now: start the journal afresh.
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self.journal_path.exists():
                self.journal_path.unlink()


class Report:
    """One JSON line per object (key, action, result, …), appended and flushed as work completes."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.lock = threading.Lock()
        self._out = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, **record) -> None:
        if self._out is None:
            return
        record.setdefault("time", dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self.lock:
            self._out.write(line + "\n")
            self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
