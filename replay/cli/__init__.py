"""The command line: the typer app with its one error boundary and the run, query and demo
commands (``app``), one module per further command family (``evidence``, ``witness``), the
entry point that gathers them (``main``), how parameters show and parse (``params``),
terminal rendering (``render``) and the demo.

Imports everything below; nothing imports it.
"""

# Importing any part of the CLI gives the whole command set (tests invoke replay.cli.app.app).
from replay.cli import main as _main  # noqa: F401
