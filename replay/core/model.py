"""A model as a pipeline declares it: a file or folder, and how to load it.

Loading lives in ``replay.capture.models``; declaring one needs none of it, so that a
``Pipeline`` can be built (and checked) without the loaders' libraries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.core.declared import declaring_folder, resolve
from replay.errors import PipelineError

PATH = "path"  # handed to the step as a Path to a verified read-only copy
LOADER = "loader"
# What Model(format=...) may declare: the built-in loaders of replay.capture.models.
FORMATS = frozenset(
    {
        "pickle",
        "joblib",
        "skops",
        "torch",
        "onnx",
        "xgboost",
        "lightgbm",
        "safetensors",
        "sentence-transformers",
        PATH,
    }
)


@dataclass(frozen=True, init=False)
class Model:
    """A model file or folder bound to a step, with how to load it.

    ``format`` declares a built-in loader (see FORMATS) where the suffix does not say it,
    e.g. ``format="xgboost"`` for a ``.json`` booster or ``format="lightgbm"`` for a text
    model. ``loader(path) -> object`` loads it instead; it is captured by value like step
    code and called with a verified read-only copy of the file or folder, which is removed
    once it returns (so it must read what it needs, not keep the path).

    A relative ``path`` resolves against the folder of the file that declares the model,
    not the working directory (see ``replay.core.declared``); ``folder`` is that folder.
    """

    path: Path
    format: str | None
    loader: Callable[[Path], Any] | None
    folder: Path

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        loader: Callable[[Path], Any] | None = None,
    ) -> None:
        if format is not None and format not in FORMATS:
            raise PipelineError(
                f"model {path}: format {format!r} is not one of {', '.join(sorted(FORMATS))}",
                hint="or load it with Model(path, loader=...)",
            )
        if format is not None and loader is not None:
            raise PipelineError(f"model {path}: give a format or a loader, not both")
        if loader is not None and not callable(loader):
            raise PipelineError(f"model {path}: loader {loader!r} is not callable")
        folder = declaring_folder()
        object.__setattr__(self, "path", resolve(path, folder))
        object.__setattr__(self, "format", format)
        object.__setattr__(self, "loader", loader)
        object.__setattr__(self, "folder", folder)
