"""The README documents every environment variable each Lambda reads, with its default."""

from pathlib import Path

import pytest

from lambdas.shared import config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("function", sorted(config.ENV_BY_FUNCTION))
def test_the_readme_lists_every_environment_variable_with_its_default(function):
    section = README.split(f"\n**{function}**\n", 1)[1].split("\n\n**", 1)[0].split("\n## ", 1)[0]
    for var in config.ENV_BY_FUNCTION[function]:
        row = next((line for line in section.splitlines() if f"`{var.name}`" in line), None)
        assert row is not None, f"README's {function} table lacks {var.name}"
        assert (var.default or "required") in row, f"README gives the wrong default for {var.name}"
