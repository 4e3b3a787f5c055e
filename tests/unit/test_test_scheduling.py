"""make test's scheduler (tests/conftest.py) driven as pytest-xdist drives it, with workers that
only record what they are sent: the slowest files go out first, and the policy-coverage file only
once every other file has finished on every worker."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

pytest.importorskip("xdist")
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A pytest-xdist worker as the scheduler sees it: the test indexes it is sent, in order."""

    def __init__(self, name):
        self.name, self.sent, self.shutting_down = name, [], False
        self.gateway = SimpleNamespace(id=name)

    def send_runtest_some(self, indexes):
        self.sent.append(indexes)

    def shutdown(self):
        self.shutting_down = True


def scheduler(files, workers=2):
    """The scheduler, every worker having collected two tests in each of `files` (in that order)."""
    config = SimpleNamespace(getoption=lambda name: "loadfile", getvalue=lambda name: [f"{workers}*popen"],
                             option=SimpleNamespace(loadscopereorder=True))
    sched = conftest.pytest_xdist_make_scheduler(config, None)
    collection = [f"{f}::test_{i}" for f in files for i in (1, 2)]
    nodes = [Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
    for node in nodes:
        sched.add_node_collection(node, collection)
    sched.schedule()
    return sched, nodes, collection


def files_sent(node, collection):
    return [collection[batch[0]].split("::")[0] for batch in node.sent]


def finish(sched, node, collection):
    """The worker runs everything it was sent (the scheduler then sends it more, or not)."""
    for batch in list(node.sent):
        for index in batch:
            sched.mark_test_complete(node, index)


def test_every_slow_first_file_exists():
    assert [f for f in conftest.SLOW_FIRST if not (ROOT / f).is_file()] == []


def test_the_slowest_files_go_out_first_whatever_their_number_of_tests():
    small = [f"tests/unit/test_small_{i}.py" for i in range(6)]
    files = small + list(conftest.SLOW_FIRST[:3])
    sched, nodes, collection = scheduler(files)
    first = [files_sent(node, collection)[0] for node in nodes]
    assert first == list(conftest.SLOW_FIRST[:2])  # one each, in the order of SLOW_FIRST
    second = [files_sent(node, collection)[1] for node in nodes]
    assert conftest.SLOW_FIRST[2] in second  # the next slow one before any small file


def test_the_policy_coverage_file_goes_out_only_when_every_other_file_has_finished():
    files = [conftest.RUNS_LAST] + [f"tests/unit/test_small_{i}.py" for i in range(4)]
    sched, (a, b), collection = scheduler(files)
    assert conftest.RUNS_LAST not in files_sent(a, collection) + files_sent(b, collection)
    finish(sched, a, collection)
    assert conftest.RUNS_LAST not in files_sent(a, collection)  # b still runs its files
    finish(sched, b, collection)
    finish(sched, a, collection)
    finish(sched, b, collection)
    sent = [files_sent(node, collection) for node in (a, b)]
    assert sum(s.count(conftest.RUNS_LAST) for s in sent) == 1  # sent once, to a worker as its last file
    assert [s[-1] for s in sent].count(conftest.RUNS_LAST) == 1
    assert sorted(f for s in sent for f in s) == sorted(files)  # and every file was sent once
