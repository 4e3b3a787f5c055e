"""The CLI is thin and wired explicitly: the root group lives in a module the commands import,
ops.cli imports every command module by name (a broken one fails loudly), nothing imports back."""

import ast
from pathlib import Path

OPS = Path(__file__).resolve().parents[2] / "ops"
COMMANDS = sorted(p.stem for p in (OPS / "commands").glob("*.py") if p.stem not in ("__init__", "root"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_ops_cli_imports_every_command_module_by_name():
    imports = imported_modules(OPS / "cli.py")
    missing = [name for name in COMMANDS if f"ops.commands.{name}" not in imports]
    assert not missing, f"ops/cli.py does not import ops.commands.{missing}: their commands would not exist"


def test_no_import_error_is_swallowed_while_wiring_the_cli():
    source = (OPS / "cli.py").read_text(encoding="utf-8")
    assert "ModuleNotFoundError" not in source and "ImportError" not in source and "__import__" not in source


def test_command_modules_never_import_ops_cli():
    for name in COMMANDS + ["root"]:
        imports = imported_modules(OPS / "commands" / f"{name}.py")
        assert not any(m == "ops.cli" or m.startswith("ops.cli.") for m in imports), f"ops/commands/{name}.py imports ops.cli"


def test_library_modules_never_import_click():
    for path in OPS.glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "click" not in {m.split(".")[0] for m in imported_modules(path)}, f"{path.name} imports click"


def test_every_command_is_attached_to_the_root_group():
    from ops.cli import cli

    assert {"demo", "local", "gen-events", "ls", "replay", "dlq", "status", "ledger", "provision"} <= set(cli.commands)


def test_every_pool_is_the_bounded_executor():
    """One concurrency pattern (ops/executor.py); the embedded AWS (ops/local) runs its own threads."""
    for path in OPS.glob("*.py"):
        if path.name == "executor.py":
            continue
        source = path.read_text(encoding="utf-8")
        assert "ThreadPoolExecutor" not in source and "threading.Thread(" not in source, (
            f"{path.name} starts its own threads: use ops.executor.BoundedExecutor")


def test_shell_completion_as_the_docs_show_it():
    from click.testing import CliRunner

    from ops.cli import cli

    script = CliRunner().invoke(cli, [], prog_name="eltops", env={"_ELTOPS_COMPLETE": "bash_source"})
    assert "_eltops_completion" in script.output
    words = CliRunner().invoke(cli, [], prog_name="eltops", env={
        "_ELTOPS_COMPLETE": "bash_complete", "COMP_WORDS": "eltops repl", "COMP_CWORD": "1"})
    assert "replay" in words.output
    docs = (OPS.parent / "docs" / "eltops.md").read_text(encoding="utf-8")
    assert "_ELTOPS_COMPLETE=bash_source eltops" in docs
