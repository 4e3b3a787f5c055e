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


class Checkpoint:
    """The keys a run has finished, plus values the run must reuse when resumed (its resolved
    window, a generated replay stamp).

    Every finished key is appended at once to `<path>.journal` (one line, flushed), so even a
    SIGKILL loses no finished work; the journal is folded into the JSON file (written atomically)
    every `interval` seconds and at the end. Loading reads both and ignores a torn last line."""

    def __init__(self, path: str | os.PathLike, identity: dict, *, interval: float = 1.0):
        self.path = Path(path)
        self.identity = identity
        self.interval = interval
        self.lock = threading.Lock()
        self.done: set[str] = set()
        self.values: dict = {}
        self.resumed = False
        self._saved_at = 0.0
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"checkpoint {self.path} is unreadable ({exc}); delete it to start over") from None
            if data.get("identity") != identity:
                raise UsageError(
                    f"checkpoint {self.path} belongs to a different run ({data.get('identity')}); "
                    "use another --checkpoint, or delete that file to start over")
            self.done = set(data.get("done", []))
            self.values = data.get("values", {})
            self.resumed = True
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        if self.journal_path.exists():
            lines = self.journal_path.read_bytes().split(b"\n")
            for raw in lines[:-1]:  # the last piece is empty, or a line torn by a kill
                try:
                    self.done.add(json.loads(raw))
                except ValueError:
                    continue
            self.resumed = self.resumed or bool(self.done)
        self._journal = None

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
            payload = {"identity": self.identity, "values": self.values, "done": sorted(self.done),
                       "saved_at": dt.datetime.now(dt.UTC).isoformat()}
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
