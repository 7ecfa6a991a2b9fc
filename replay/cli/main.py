"""The ``replay`` command: the app of ``replay.cli.app`` with every command family on it."""

from __future__ import annotations

import os
import sys

from replay.cli import batch, evidence, witness  # noqa: F401 - they register their commands
from replay.cli.app import app


def main() -> None:
    # Run from anywhere: the current folder holds the user's pipeline modules.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app()
