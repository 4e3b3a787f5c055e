"""The docs say what the code does: every Lambda environment variable with its default
(docs/architecture.md), and the eltops reference is the CLI's own --help (docs/eltops.md)."""

import importlib.util
from pathlib import Path

import pytest

from lambdas.shared import config

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _reference_script():
    spec = importlib.util.spec_from_file_location("eltops_reference", ROOT / "scripts" / "eltops_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("function", sorted(config.ENV_BY_FUNCTION))
def test_the_architecture_doc_lists_every_environment_variable_with_its_default(function):
    section = ARCHITECTURE.split(f"\n**{function}**\n", 1)[1].split("\n\n**", 1)[0].split("\n## ", 1)[0]
    for var in config.ENV_BY_FUNCTION[function]:
        row = next((line for line in section.splitlines() if f"`{var.name}`" in line), None)
        assert row is not None, f"docs/architecture.md's {function} table lacks {var.name}"
        assert (var.default or "required") in row, f"docs/architecture.md gives the wrong default for {var.name}"


def test_the_eltops_reference_is_the_clis_own_help():
    script = _reference_script()
    doc = script.DOC.read_text(encoding="utf-8")
    assert script.updated(doc) == doc, "docs/eltops.md is not the CLI's --help: run python scripts/eltops_reference.py"


def test_the_eltops_reference_covers_every_command():
    from ops.cli import cli

    script = _reference_script()
    doc = script.DOC.read_text(encoding="utf-8")
    for path, _ in script.leaf_commands(cli):
        assert f"### eltops {' '.join(path)}\n" in doc


def test_the_readme_stays_a_newcomers_page_with_the_command_table_in_one_piece():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    table = readme.split("| command | job |", 1)[1].split("\n\n", 1)[0]
    assert "`eltops provision ensure-dlq" in table  # the table's last row: no blank line cuts it in two
    for doc in ("architecture", "eltops", "infrastructure", "transform", "testing"):
        assert f"(docs/{doc}.md)" in readme
