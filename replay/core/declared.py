"""Where a pipeline is declared: relative model and data paths resolve against that folder.

``replay.Model("models/pd.onnx")`` and ``Step(data={"bureau": "data/bureau.parquet"})`` name
files beside the pipeline file, whatever the working directory of whoever records it (a
scheduler, a notebook, ``replay record`` run from another folder). The declaring file is
the module (its ``__file__``) of the first caller outside pipeline-replay, at the moment
``Model(...)`` or ``Step(...)`` is constructed: the file the path is written in, or the
file of the function that built the step from it. Code without a file (a REPL,
``python -c``, a notebook cell) declares in the working directory of that moment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import FrameType

HINT = "relative paths resolve against the folder of the file that declared them"


def declaring_folder() -> Path:
    """The folder of the file that called into pipeline-replay (see the module docstring)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        globals_ = frame.f_globals
        name = globals_.get("__name__") or ""
        if name != "replay" and not name.startswith("replay."):
            file = globals_.get("__file__")
            if isinstance(file, str) and file:
                return Path(os.path.dirname(os.path.abspath(file)))
            break
        frame = frame.f_back
    return Path.cwd()


def resolve(path: str | os.PathLike[str], folder: Path) -> Path:
    """``path`` as given when absolute, else under ``folder``; links are not followed."""
    given = Path(path)
    return given if given.is_absolute() else folder / given


def missing_hint(folder: Path) -> str:
    """The hint of an error about a bound file that cannot be read."""
    return f"check the path bound to the step; {HINT} ({folder})"
