"""`python -m replay` is the `replay` command."""

from replay.cli.main import main

main()
