"""scripts/mutation.py itself (make mutation), on a small fake tree: no mutmut run."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation.py"


@pytest.fixture
def mutation(monkeypatch, tmp_path):
    """The script as a module, its ROOT (and work directory) moved to an empty tmp_path."""
    spec = importlib.util.spec_from_file_location("mutation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "WORK", tmp_path / ".mutation")
    return module


def write(root: Path, rel: str, text: str = "def f():\n    return 1\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_module_list_expands_the_globs_in_order_without_packages_repeats_or_modules_without_functions(mutation, tmp_path):
    for rel in ("pkg/b.py", "pkg/a.py", "pkg/__init__.py", "ops/state.py", "ops/other.py"):
        write(tmp_path, rel)
    write(tmp_path, "pkg/empty.py", "")
    write(tmp_path, "pkg/names.py", '"""Re-exports."""\nfrom pkg.a import f\n\n__all__ = ["f"]\n')
    write(tmp_path, "pkg/record.py", "import dataclasses\n\n\n@dataclasses.dataclass\nclass R:\n    n: int = 0\n")
    write(tmp_path, "pkg/method.py", "class C:\n    async def go(self):\n        return 1\n")
    mutation.MODULE_GLOBS = ("pkg/*.py", "ops/state.py", "pkg/a.py")
    assert mutation.modules() == ["pkg/a.py", "pkg/b.py", "pkg/method.py", "ops/state.py"]


def test_the_first_focused_pattern_a_module_matches_chooses_its_tests(mutation, tmp_path):
    for rel in ("tests/unit/test_blocks.py", "tests/unit/test_t1.py", "tests/unit/test_t2.py"):
        write(tmp_path, rel)
    mutation.FOCUSED = {"pkg/blocks.py": ("tests/unit/test_blocks.py",), "pkg/*.py": ("tests/unit/test_t*.py",)}
    assert mutation.focused_tests("pkg/blocks.py") == ["tests/unit/test_blocks.py"]
    assert mutation.focused_tests("pkg/core.py") == ["tests/unit/test_t1.py", "tests/unit/test_t2.py"]


def test_a_module_without_a_focused_entry_runs_against_the_tests_that_import_it(mutation, tmp_path):
    write(tmp_path, "tests/unit/test_a.py", "from pkg import core\n")
    write(tmp_path, "tests/functional/test_b.py", "import pkg.core as c\n")
    write(tmp_path, "tests/unit/test_c.py", "from pkg import corex\n")
    mutation.FOCUSED = {}
    assert mutation.focused_tests("pkg/core.py") == ["tests/functional/test_b.py", "tests/unit/test_a.py"]


def test_the_equivalent_mutants_are_read_from_the_docs_table_rows(mutation, tmp_path):
    write(tmp_path, "docs/testing.md", "\n".join([
        "| mutant | why it is equivalent |",
        "|---|---|",
        "| `ops.state.xǁCheckpointǁsave__mutmut_33` | only the layout |",
        "| `lambdas.shared.keys.x_validate_dt__mutmut_8` | both fail |",
        "| `not_a_mutant_name` | ignored |",
        "a line mentioning `ops.state.x_f__mutmut_1` outside a table",
    ]))
    write(tmp_path, "README.md", "| `ops.timewindow.x_parse_time__mutmut_7` | the same |\n")
    assert mutation.equivalent_mutants() == {
        "ops.state.xǁCheckpointǁsave__mutmut_33": "only the layout",
        "lambdas.shared.keys.x_validate_dt__mutmut_8": "both fail",
        "ops.timewindow.x_parse_time__mutmut_7": "the same",
    }


def test_the_score_leaves_out_equivalent_survivors_but_not_listed_mutants_that_were_killed(mutation):
    result = mutation.Result(module="m.py", tests=["t.py"], seconds=4.0, statuses={
        "m1": "killed", "m2": "timeout", "m3": "survived", "m4": "survived", "m5": "killed", "m6": "no tests"})
    result.equivalent = {"m4", "m5"}  # m5 listed, but the tests kill it: it counts
    assert result.killed == 3
    assert result.survivors == ["m3", "m6"]
    assert result.score == pytest.approx(100 * 3 / 5)
    assert result.rate == pytest.approx(6 / 4.0)


def test_the_total_adds_up_the_modules_and_is_timed_by_the_whole_run(mutation):
    a = mutation.Result(module="a.py", tests=["t"], seconds=10, statuses={"m1": "killed", "m2": "survived"},
                        equivalent={"m2"})
    b = mutation.Result(module="b.py", tests=["t"], seconds=20, statuses={"m1": "killed", "m2": "survived",
                                                                          "m3": "killed"})
    whole = mutation.total([a, b], seconds=25)
    assert (len(whole.statuses), whole.killed, len(whole.equivalent_survivors)) == (5, 3, 1)
    assert whole.score == pytest.approx(75.0)
    assert whole.rate == pytest.approx(5 / 25)
    assert mutation.Result(module="c.py", tests=[]).score is None


def test_the_work_config_narrows_mutmut_to_one_module_and_its_tests_and_keeps_the_rest(mutation, tmp_path):
    write(tmp_path, "setup.cfg", "[mutmut]\nsource_paths =\n    lambdas\n    ops\nonly_mutate = everything\n"
                                 "[tool:pytest]\naddopts = -ra\n")
    text = mutation._work_config("ops/state.py", ["tests/unit/test_state.py", "tests/functional/test_x.py"])
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(text)
    assert parsed["mutmut"]["only_mutate"] == "ops/state.py"
    assert parsed["mutmut"]["pytest_add_cli_args_test_selection"].split() == [
        "tests/unit/test_state.py", "tests/functional/test_x.py"]
    assert parsed["mutmut"]["source_paths"].split() == ["lambdas", "ops"]
    assert parsed["tool:pytest"]["addopts"] == "-ra"


def test_report_prints_the_last_runs_table_and_survivors_without_running_mutmut(mutation, tmp_path, capsys,
                                                                             monkeypatch):
    write(tmp_path, "pkg/core.py")
    write(tmp_path, "tests/unit/test_core.py")
    write(tmp_path, "docs/testing.md", "| `pkg.core.x_f__mutmut_3` | equivalent |\n")
    mutation.MODULE_GLOBS = ("pkg/*.py",)
    mutation.FOCUSED = {"pkg/core.py": ("tests/unit/test_core.py",)}
    # mutmut's exit codes: 1 killed, 0 survived, 36 timeout
    write(tmp_path, ".mutation/pkg__core.py/mutants/pkg/core.py.meta", json.dumps({"exit_code_by_key": {
        "pkg.core.x_f__mutmut_1": 1, "pkg.core.x_f__mutmut_2": 0, "pkg.core.x_f__mutmut_3": 0,
        "pkg.core.x_f__mutmut_4": 36}}))
    monkeypatch.setattr(mutation, "diff", lambda module, mutant, mutmut: f"diff of {mutant}")
    monkeypatch.setattr(mutation.subprocess, "run", lambda *a, **k: pytest.fail("--report ran something"))
    out_json = tmp_path / "out.json"
    assert mutation.main(["--report", "--min-score", "60", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| pkg/core.py |"))
    assert [cell.strip() for cell in row.strip("|").split("|")][:6] == ["pkg/core.py", "4", "2", "1", "1",
                                                                       "66.7%"]
    assert "pkg.core.x_f__mutmut_2\ndiff of pkg.core.x_f__mutmut_2" in out
    assert "pkg.core.x_f__mutmut_3\n" not in out
    saved = json.loads(out_json.read_text(encoding="utf-8"))
    assert (saved[0]["mutants"], saved[0]["killed"], saved[0]["survivors"]) == (4, 2, ["pkg.core.x_f__mutmut_2"])
    assert mutation.main(["--report", "--min-score", "70"]) == 1


def test_a_module_without_results_is_an_error_in_the_report(mutation, tmp_path, capsys):
    write(tmp_path, "pkg/core.py")
    write(tmp_path, "tests/unit/test_core.py")
    mutation.MODULE_GLOBS = ("pkg/*.py",)
    mutation.FOCUSED = {"pkg/core.py": ("tests/unit/test_core.py",)}
    assert mutation.main(["--report"]) == 2
    assert "| pkg/core.py | error |" in capsys.readouterr().out


def test_jobs_below_one_is_refused(mutation, capsys):
    with pytest.raises(SystemExit) as exit_:
        mutation.main(["--jobs", "0"])
    assert exit_.value.code == 2
    assert "--jobs 0" in capsys.readouterr().err


def test_mutmut_runs_without_plugin_autoload_and_writes_bytecode_even_when_the_caller_forbids_it(mutation):
    env = mutation.mutmut_env({"PATH": "/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert env["PATH"] == "/bin" and env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    assert "PYTHONDONTWRITEBYTECODE" not in env  # each mutant's pytest would rewrite conftest.py again


def test_the_plugins_mutation_runs_leave_out_are_ones_no_test_uses(mutation):
    """A disabled plugin whose fixture a test asks for fails mutmut's clean run; this says which."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SCRIPT.parents[1] / "setup.cfg", encoding="utf-8")
    args = parser["mutmut"]["pytest_add_cli_args"].split()
    disabled = {args[i + 1].removeprefix("no:") for i, a in enumerate(args) if a == "-p"}
    assert {"logging", "legacypath", "recwarn", "unittest"} <= disabled
    fixtures = {"logging": ("caplog",), "legacypath": ("tmpdir", "testdir"), "recwarn": ("recwarn",),
                "unittest": ("unittest",), "subtests": ("subtests",), "doctest": ("doctest_namespace",),
                "capture": ("capsys", "capfd"), "tmpdir": ("tmp_path",), "monkeypatch": ("monkeypatch",)}
    tests = SCRIPT.parents[1] / "tests"
    text = "\n".join(p.read_text(encoding="utf-8") for p in tests.rglob("*.py") if p.name != Path(__file__).name)
    used = {name for name in disabled for word in fixtures.get(name, ()) if re.search(rf"\b{word}\b", text)}
    assert used == set(), f"tests use plugins make mutation disables: {used}"


def test_under_the_mutation_pytest_args_a_failing_test_still_fails_but_nothing_renders_why(tmp_path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SCRIPT.parents[1] / "setup.cfg", encoding="utf-8")
    args = parser["mutmut"]["pytest_add_cli_args"].split()
    write(tmp_path, "test_probe.py", "def helper(n):\n    return [n] * 3\n\n\n"
                                     "def test_probe():\n    assert helper(1) == [1, 1, 2]\n\n\n"
                                     "def test_passes():\n    assert helper(2) == [2, 2, 2]\n")
    # mutmut's own leading arguments (--tb=native) come first, the configured ones after them.
    run = subprocess.run([sys.executable, "-m", "pytest", "--rootdir=.", "--tb=native", "-x", "-q",
                          "test_probe.py", *args], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAILED test_probe.py::test_probe" in run.stdout
    assert "Traceback" not in run.stdout and "helper(1)" not in run.stdout  # no traceback rendered
    assert "[1, 1, 1]" not in run.stdout  # and no explanation of the assert built
