"""What ``replay batch --in-container`` runs inside the recorded image, once per chunk:
``python3 -m replay.engine.batch.contained '{"store": …, "run_ids": […], "mode": …,
"swap": {…}}'`` replays the chunk's runs in that one process and prints the chunk's results
file (``jobs.results_body``) on stdout, for the worker to write to the store.

One container for a chunk, not one per run: a container and an interpreter start once per
thousand runs. The store is opened read-only (it is mounted so). What the recorded steps
print goes to stderr, so stdout carries the results file alone. A run that cannot be
replayed is in the file's ``failed``; anything else is one line on stderr and the error's
exit code, as ``replay`` prints it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from replay.engine.batch.task import in_process
from replay.errors import ReplayError
from replay.store.store import Store


def main(argv: list[str]) -> int:
    asked = json.loads(argv[0])
    sys.stdout.flush()
    out = os.dup(1)
    os.dup2(2, 1)  # what the steps print, even to the descriptor itself, goes to stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            store = Store.open(asked["store"], create=False, readonly=True)
            body = in_process(store, asked["run_ids"], asked["mode"], asked["swap"])
    except ReplayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        return exc.exit_code
    finally:
        os.dup2(out, 1)
        os.close(out)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
