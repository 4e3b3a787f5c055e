import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ELTOPS = [sys.executable, "-m", "ops"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class LocalAws:
    """`eltops local up` in a subprocess; `env` holds the variables it exported."""

    def __init__(self, tmp: Path):
        self.log = tmp / "local-up.log"
        self.proc = subprocess.Popen([*ELTOPS, "local", "up", "--log-file", str(self.log)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=clean_env())
        self.env: dict[str, str] = {}
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "# ready":  # a comment, so the whole output can be sourced
                break
            for name, value in re.findall(r"(\w+)=(\S+)", line.removeprefix("export ")):
                self.env[name] = value
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("eltops local up ended before ready: " + self.proc.stderr.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def clean_env(**extra) -> dict[str, str]:
    # ELT_CALL_RECORD stays: the policy-coverage check reads what subprocesses record too.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ELT_")) or k == "ELT_CALL_RECORD"}
    env.update(extra)
    return env


@pytest.fixture
def local_aws(tmp_path):
    aws = LocalAws(tmp_path)
    try:
        yield aws
    finally:
        aws.stop()
