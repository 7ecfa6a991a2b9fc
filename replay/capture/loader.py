"""Finding a user's pipeline from ``MODULE:NAME`` or ``path/to/file.py:NAME``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from replay.core.pipeline import Pipeline
from replay.errors import PipelineError, UsageError


def _dotted_name(path: Path) -> tuple[Path, str] | None:
    """The sys.path entry and dotted name for a file inside packages, if it is in one."""
    parts = [path.stem]
    parent = path.parent
    while (parent / "__init__.py").exists():
        parts.insert(0, parent.name)
        parent = parent.parent
    return (parent, ".".join(parts)) if len(parts) > 1 else None


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise PipelineError(
            f"pipeline file {path} does not exist", hint="give MODULE:NAME or path/to/file.py:NAME"
        )
    dotted = _dotted_name(path.resolve())
    if dotted is not None:
        # Import it as part of its package, so its own imports resolve and it is pickled
        # by value with the rest of that package.
        root, name = dotted
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module(name)
    _refuse_clash(path)
    # As `python pipe.py` would: modules beside the file import by their plain names.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"{path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _refuse_clash(path: Path) -> None:
    """A top-level file is imported under its stem: one named like a module of the standard
    library (json.py, random.py) would replace that module for every import, ours included,
    so it is refused rather than imported under a made-up name that pickling could not find
    again."""
    if path.stem in sys.stdlib_module_names:
        raise PipelineError(
            f"pipeline file {path} has the name of the standard-library module {path.stem!r}",
            hint=f"rename it, e.g. {path.stem}_pipeline.py",
        )


def load_pipeline(target: str) -> Pipeline:
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise UsageError(
            f"{target!r} does not name a pipeline",
            hint="write MODULE:NAME, e.g. pipelines/credit/pipeline.py:pipeline",
        )
    try:
        if module_part.endswith(".py") or "/" in module_part:
            module = _import_file(Path(module_part))
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(module_part)
    except PipelineError:
        raise
    except ModuleNotFoundError as exc:
        raise PipelineError(
            f"cannot import {module_part}: {exc}",
            hint="check the module path and that its dependencies are installed",
        ) from None
    except Exception as exc:
        raise PipelineError(
            f"importing {module_part} raised {type(exc).__name__}: {exc}",
            hint="fix the module so that it imports cleanly",
        ) from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PipelineError(
            f"{module_part} defines no {attr!r}",
            hint="name the module-level replay.Pipeline object",
        ) from None
    if not isinstance(obj, Pipeline):
        raise PipelineError(
            f"{module_part}:{attr} is a {type(obj).__name__}, not a replay.Pipeline"
        )
    return obj
