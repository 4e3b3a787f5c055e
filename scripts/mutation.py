"""Mutation testing of the core modules with mutmut 3, one module at a time against its focused tests.

    python scripts/mutation.py                      # every module below (make mutation)
    python scripts/mutation.py lambdas/shared/ledger.py ops/state.py
    python scripts/mutation.py --list               # the modules and the tests each one runs against
    python scripts/mutation.py --jobs 2             # two modules at a time (make mutation)

Each module gets its own mutmut work directory under `.mutation/<module>/` (mutmut reads its
configuration from the working directory's setup.cfg and copies the tree to `mutants/` there): the
`[mutmut]` section of the project's setup.cfg, narrowed to that one module and its focused tests.
Each run starts afresh: mutmut keeps a mutant's verdict until the function it mutates changes, so
after new tests its cached survivors would stay survivors. `--reuse` keeps the verdicts (to re-read
a report, or to resume a run that was stopped). The report is a table (module, mutants, killed, equivalent, score) and every surviving
mutant as a diff, with each module's wall time and mutants/s, and a total line. `--jobs N` runs N
modules at once, each on one mutmut worker, the largest first: mutmut's own setup (copying the tree,
generating mutants, the stats and clean test runs) is serial within a module, so modules side by
side keep both cores busy where `--max-children 2` would leave one idle. The score is killed / (mutants - equivalent): the equivalent mutants (no test can
tell them from the original) are listed, with the reason, in docs/testing.md.

Exit status: 0 when every module reaches --min-score, 1 otherwise, 2 when mutmut itself failed.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
# The modules under test: globs, expanded at run time (the transform is being split into modules).
MODULE_GLOBS = (
    "lambdas/shared/*.py",
    "lambdas/ingest/*.py",
    "lambdas/transform/*.py",
    "ops/timewindow.py",
    "ops/state.py",
    "ops/listing.py",
    "ops/replay.py",
    "ops/dlq.py",
    "ops/ledger.py",
)
# Each module's focused tests (globs): its own unit tests and the functional tests of its component.
# A module with no entry is tested by the unit and functional test files that import it.
FOCUSED = {
    "lambdas/shared/aws.py": ("tests/unit/test_lambda_helpers.py",),
    "lambdas/shared/config.py": ("tests/unit/test_lambda_helpers.py", "tests/unit/test_docs.py"),
    "lambdas/shared/keys.py": ("tests/unit/test_keys.py",),
    "lambdas/shared/ledger.py": ("tests/unit/test_ledger.py",),
    "lambdas/shared/log.py": ("tests/unit/test_lambda_helpers.py",),
    "lambdas/shared/schemas.py": ("tests/unit/test_lambda_helpers.py", "tests/unit/test_transform*.py"),
    "lambdas/shared/steps.py": ("tests/unit/test_lambda_helpers.py",),
    "lambdas/shared/work_unit.py": ("tests/unit/test_work_unit.py",),
    "lambdas/ingest/app.py": ("tests/unit/test_ingest_app.py",),  # the handler on bare moto: ms per test
    "lambdas/ingest/*.py": ("tests/unit/test_s3_events.py", "tests/functional/test_ingest_handler.py"),
    # The transform's modules with fast unit tests of their own (ahead of the glob: the first match wins).
    "lambdas/transform/blocks.py": ("tests/unit/test_transform_blocks.py",),
    "lambdas/transform/line_index.py": ("tests/unit/test_line_index.py",),
    "lambdas/transform/json_array.py": ("tests/unit/test_json_array.py",),
    "lambdas/transform/app.py": ("tests/unit/test_handler_transform.py",),  # the handler on bare moto
    "lambdas/transform/arrow_read.py": ("tests/unit/test_arrow_read.py",),
    "lambdas/transform/pipeline.py": ("tests/unit/test_pipeline.py",),
    "lambdas/transform/sinks.py": ("tests/unit/test_sinks.py",),
    "lambdas/transform/conditional_write.py": ("tests/unit/test_conditional_write.py",),  # on bare moto
    "lambdas/transform/diagnose.py": ("tests/unit/test_diagnose.py",),
    "lambdas/transform/drift.py": ("tests/unit/test_drift.py",),
    "lambdas/transform/locate.py": ("tests/unit/test_locate.py",),
    "lambdas/transform/row_checks.py": ("tests/unit/test_row_checks.py",),
    "lambdas/transform/*.py": ("tests/unit/test_transform*.py", "tests/functional/test_transform_handler.py"),
    "ops/timewindow.py": ("tests/unit/test_timewindow.py",),
    "ops/state.py": ("tests/unit/test_state.py", "tests/functional/test_listing_replay.py"),
    # Unit tests on one moto mock per module (tests/unit/test_{listing,replay,ops_ledger}.py): the
    # functional tests provision the whole pipeline per test and ran these modules at ~0.3 mutant/s.
    "ops/listing.py": ("tests/unit/test_listing.py",),
    "ops/replay.py": ("tests/unit/test_replay.py",),
    "ops/dlq.py": ("tests/unit/test_dlq.py",),  # on bare moto with short polls (the functional ones wait 1 s a scan)
    "ops/ledger.py": ("tests/unit/test_ops_ledger.py",),
}
TEST_DIRS = ("tests/unit", "tests/functional")
DOCS = ("docs", "README.md")  # where the equivalent-mutant table lives (docs/testing.md)
SKIP_ROOT = {"setup.cfg", "mutants", "build", "dist"}  # not linked into a work directory
# A segfault (or SIGKILL) is noticed too: the mutant crashed the test process (such as pipeline.py's
# mutants that hand Arrow a block starting with a `null` line, which crashes its JSON reader).
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass
class Result:
    module: str
    tests: list[str]
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut status
    equivalent: set[str] = field(default_factory=set)
    error: str = ""
    seconds: float | None = None  # wall time of the run (None: read back with --report)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in KILLED)

    @property
    def survivors(self) -> list[str]:
        return sorted(n for n, s in self.statuses.items() if s not in KILLED and n not in self.equivalent)

    @property
    def equivalent_survivors(self) -> set[str]:
        """Listed as equivalent and not killed (a listed mutant the tests kill is not equivalent)."""
        return {n for n in self.equivalent if self.statuses.get(n, "killed") not in KILLED}

    @property
    def score(self) -> float | None:
        counted = len(self.statuses) - len(self.equivalent_survivors)
        return 100.0 * self.killed / counted if counted else None

    @property
    def rate(self) -> float | None:
        """Mutants tested per second of wall time."""
        return len(self.statuses) / self.seconds if self.seconds and self.statuses else None


def modules() -> list[str]:
    """The modules under test: the globs expanded, less packages' __init__ and modules without a
    function (mutmut 3 mutates function bodies only; a module of re-exports or of a dataclass has
    none, and mutmut stops on it with "could not find any test case for any mutant")."""
    found = []
    for pattern in MODULE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT).as_posix()
            if path.name != "__init__.py" and rel not in found and _has_functions(path):
                found.append(rel)
    return found


def _has_functions(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in ast.walk(tree))


def focused_tests(module: str) -> list[str]:
    patterns = next((globs for pattern, globs in FOCUSED.items() if fnmatch.fnmatch(module, pattern)), None)
    if patterns is not None:
        found = {p for pattern in patterns for p in ROOT.glob(pattern)}
    else:
        dotted = module[: -len(".py")].replace("/", ".")
        package, _, name = dotted.rpartition(".")
        imports = re.compile(rf"\b{re.escape(dotted)}\b|from {re.escape(package)} import [^\n]*\b{name}\b")
        found = {t for d in TEST_DIRS for t in (ROOT / d).glob("test_*.py")
                 if imports.search(t.read_text(encoding="utf-8"))}
    return sorted(p.relative_to(ROOT).as_posix() for p in found)


def equivalent_mutants() -> dict[str, str]:
    """`mutant name -> reason` from the docs' table rows: | `lambdas.x.x_f__mutmut_3` | why |"""
    found = {}
    for place in DOCS:
        path = ROOT / place
        files = sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.exists() else []
        for doc in files:
            for line in doc.read_text(encoding="utf-8").splitlines():
                m = re.match(r"\|\s*`([\w.ǁ]+__mutmut_\d+)`\s*\|\s*(.*?)\s*\|?\s*$", line)
                if m:
                    found[m.group(1)] = m.group(2)
    return found


def _work_config(module: str, tests: list[str]) -> str:
    """The project's setup.cfg with its [mutmut] section narrowed to one module and its tests."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    if not parser.has_section("mutmut"):
        parser.add_section("mutmut")
    parser["mutmut"]["only_mutate"] = module
    parser["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def mutmut_env(environ) -> dict[str, str]:
    """The environment mutmut runs in: every mutant is a fresh pytest.main in a forked child."""
    env = dict(environ)
    # No plugin autoload: scanning the installed distributions for pytest11 entry points cost
    # ~60 ms of each mutant (no test needs a plugin).
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # Bytecode is written (into the work directory's copy, mutants/): pytest drops a conftest
    # outside a package from sys.modules every session, and without a cached rewrite each mutant
    # parsed and rewrote tests/conftest.py's assertions again (15-30 ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_module(module: str, tests: list[str], *, reuse: bool, mutmut: list[str], report: bool = False) -> Result:
    result = Result(module=module, tests=tests)
    work = WORK / module.replace("/", "__")
    if report:
        return read_results(result, work)
    started = time.monotonic()
    try:
        return _run_mutmut(result, work, reuse=reuse, mutmut=mutmut)
    finally:
        result.seconds = time.monotonic() - started


def _run_mutmut(result: Result, work: Path, *, reuse: bool, mutmut: list[str]) -> Result:
    module, tests = result.module, result.tests
    if not reuse and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        link = work / entry.name
        if entry.name not in SKIP_ROOT and not entry.name.startswith(".") and not link.is_symlink():
            link.symlink_to(entry)
    (work / "setup.cfg").write_text(_work_config(module, tests), encoding="utf-8")
    log = work / "mutmut.log"
    with log.open("w", encoding="utf-8") as out:
        # One worker a module (--jobs runs modules side by side); the caller nices the whole run.
        done = subprocess.run([*mutmut, "run", "--max-children", "1"], cwd=work, stdout=out,
                              stderr=subprocess.STDOUT, env=mutmut_env(os.environ))
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        result.error = f"mutmut run exited {done.returncode} (log: {log}):\n" + "\n".join(tail)
        return result
    return read_results(result, work)


def read_results(result: Result, work: Path) -> Result:
    """The verdicts mutmut recorded in a work directory."""
    meta = work / "mutants" / (result.module + ".meta")
    if not meta.exists():
        result.error = f"no results in {work}: run this module first"
        return result
    from mutmut.stats import status_by_exit_code

    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    result.statuses = {name: status_by_exit_code[code] for name, code in codes.items()}
    return result


def diff(module: str, mutant: str, mutmut: list[str]) -> str:
    """The mutant as a diff (mutmut's own rendering, in-process: a `mutmut show` each costs ~1 s)."""
    work = WORK / module.replace("/", "__")
    here = Path.cwd()
    try:
        from mutmut.configuration import reset_config
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        os.chdir(work)
        reset_config()
        return get_diff_for_mutant(mutant, path=module).strip()
    except Exception:  # noqa: BLE001 - another mutmut version: ask its CLI
        shown = subprocess.run([*mutmut, "show", mutant], cwd=work, capture_output=True, text=True)
        return (shown.stdout or shown.stderr).strip()
    finally:
        os.chdir(here)


def _row(name: str, r: Result) -> str:
    score = "n/a" if r.score is None else f"{r.score:.1f}%"
    wall = "" if r.seconds is None else f"{r.seconds:.0f} s"
    rate = "" if r.rate is None else f"{r.rate:.2f}"
    return (f"| {name} | {len(r.statuses)} | {r.killed} | {len(r.equivalent_survivors)} | {len(r.survivors)} "
            f"| {score} | {wall} | {rate} |")


def total(results: list[Result], seconds: float | None) -> Result:
    """All modules as one result: their mutants side by side, timed by the whole run's wall time."""
    whole = Result(module="total", tests=[], seconds=seconds)
    for r in results:
        whole.statuses.update({f"{r.module}:{n}": s for n, s in r.statuses.items()})
        whole.equivalent.update(f"{r.module}:{n}" for n in r.equivalent)
    return whole


def table(results: list[Result], seconds: float | None = None) -> str:
    """The results as a Markdown table; with the run's wall time `seconds`, a total line under it."""
    rows = ["| module | mutants | killed | equivalent | survived | score | wall | mutants/s |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.module} | error | | | | | | |" if r.error else _row(r.module, r))
    if seconds is not None:
        rows.append(_row("**total**", total(results, seconds)))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: all of them)")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests, run nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep earlier verdicts (resume a stopped run; stale once the tests change)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: print the table and survivors of the last run of each module")
    parser.add_argument("--min-score", type=float, default=90.0,
                        help="exit 1 when a module scores below this (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--jobs", type=int, default=1,
                        help="modules run at once, each on one mutmut worker (default: %(default)s)")
    args = parser.parse_args(argv)
    known = modules()
    unknown = [m for m in args.modules if m not in known]
    if unknown:
        parser.error(f"not a module under mutation test: {', '.join(unknown)}; --list shows them")
    chosen = args.modules or known
    if args.list:
        for module in chosen:
            print(f"{module}: {' '.join(focused_tests(module)) or '(no tests)'}")
        return 0
    mutmut_bin = Path(sys.executable).with_name("mutmut")
    if not mutmut_bin.exists():
        print(f"mutmut is not installed next to {sys.executable}: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    mutmut = [str(mutmut_bin)]
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} is not a number of modules to run at once; use 1 or more")
    equivalent = equivalent_mutants()

    def one(module: str) -> Result:
        tests = focused_tests(module)
        print(f"== {module} against {' '.join(tests) or '(no tests)'}", file=sys.stderr, flush=True)
        if not tests:
            return Result(module=module, tests=[], error="no test imports it")
        result = run_module(module, tests, reuse=args.reuse, mutmut=mutmut, report=args.report)
        result.equivalent = {n for n in equivalent if n in result.statuses}
        print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
        return result

    started = time.monotonic()
    # The largest modules first, so that the last one to finish is a small one.
    by_size = sorted(chosen, key=lambda m: -(ROOT / m).stat().st_size)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = dict(zip(by_size, pool.map(one, by_size), strict=True))
    results = [done[m] for m in chosen]
    print(table(results, seconds=None if args.report else time.monotonic() - started))
    for r in results:
        if r.error:
            print(f"\n## {r.module}: {r.error}")
        elif r.survivors:
            print(f"\n## {r.module}: {len(r.survivors)} surviving mutant(s)")
            for name in r.survivors:
                print(f"\n{name}\n{diff(r.module, name, mutmut)}")
    killed_listed = sorted(n for r in results for n in r.equivalent - r.equivalent_survivors)
    if killed_listed:
        print(f"\nlisted as equivalent but killed (take them off the list): {', '.join(killed_listed)}")
    stale = sorted(set(equivalent) - {n for r in results for n in r.statuses})
    if stale and not args.modules:
        print(f"\nequivalent mutants listed in the docs that no longer exist: {', '.join(stale)}")
    if args.json:
        args.json.write_text(json.dumps([
            {"module": r.module, "tests": r.tests, "mutants": len(r.statuses), "killed": r.killed,
             "equivalent": sorted(r.equivalent), "survivors": r.survivors, "score": r.score, "error": r.error,
             "seconds": r.seconds}
            for r in results], indent=2), encoding="utf-8")
    if any(r.error and r.tests for r in results):
        return 2
    return 0 if all(r.score is None or r.score >= args.min_score for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
