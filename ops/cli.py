"""`eltops`: thin click commands over the `ops` library. Each command parses options, calls one
library function and renders its result (text, or JSON with --json).

The root group lives in `ops.commands.root`, which the command modules import; this module imports
every command module by name, so a broken one fails loudly instead of disappearing. A new command
module is added to the import below.
"""

from __future__ import annotations

from ops.commands import batch, core, dlq, listing, observe, provision  # noqa: F401  (each attaches its commands to `cli`)
from ops.commands.root import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="eltops")
