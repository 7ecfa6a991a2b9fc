"""Step code by value: the callable, and every module of the user's it reaches.

A module is the user's when its file lies outside the standard library, site-packages and
pipeline-replay itself: the pipeline's folder, helper modules beside it, local and
editable-installed packages. Those travel inside the pickle (so a replay never imports
today's edited file) and their source texts are kept for humans. Installed distributions
are referenced by module and recorded by name and version.

Module-level state is not code: a model, a session or a lock reached through a step's
globals or closure is refused with the fix (bind it with ``Step(models=...)``), never
pickled into the code where it would change the pipeline version on every process.
"""

from __future__ import annotations

import functools
import inspect
import io
import site
import sys
import sysconfig
import types
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cloudpickle

from replay.errors import CaptureError

# Objects of these libraries are models or sessions: state, to be bound, not code.
MODEL_LIBRARIES = frozenset(
    {
        "sklearn",
        "xgboost",
        "lightgbm",
        "catboost",
        "onnxruntime",
        "torch",
        "tensorflow",
        "keras",
        "jax",
        "transformers",
        "sentence_transformers",
        "safetensors",
        "statsmodels",
    }
)
_MECHANISM = frozenset({"replay", "cloudpickle"})  # the tool's own, not the step's
_HINT = (
    "bind models with Step(models={...}): they are captured by content and handed to "
    "the step loaded, once per process per model; keep caches, sessions and locks out "
    "of module globals and closures"
)


@dataclass(frozen=True)
class CapturedCode:
    pickled: bytes
    modules: dict[str, str]  # the user's modules the code reaches -> their source text
    installed: dict[str, str]  # installed top-level modules it references -> "dist==version"
    qualname: str


def _roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    found.update(site.getsitepackages())
    found.add(site.getusersitepackages())
    found.add(str(Path(__file__).parents[1]))  # the tool itself is not the user's code
    return tuple(Path(p).resolve() for p in found if p)


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    return _roots()


@functools.lru_cache(maxsize=16384)  # one entry per module file: resolving costs ~80 µs
def _is_users_file(file: str) -> bool:
    path = Path(file).resolve()
    if path.suffix not in (".py", ".pyc"):
        return False  # a compiled extension cannot travel by value
    return not any(path.is_relative_to(root) for root in _installed_roots())


def users_modules() -> dict[str, types.ModuleType]:
    """The imported modules that are the user's (see the module docstring)."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (
            name == "__main__"
            or not isinstance(module, types.ModuleType)
            or name.partition(".")[0] in _MECHANISM
        ):  # wherever they are installed
            continue
        if file is not None and _is_users_file(file):
            found[name] = module
        elif file is None and any(
            _is_users_file(str(Path(p) / "__init__.py")) for p in getattr(module, "__path__", ())
        ):
            found[name] = module  # a namespace package: a plain folder of modules
    return found


def _own_package(fn: Any) -> dict[str, types.ModuleType]:
    """The modules of the step's own top-level package, even when it is installed: it is
    the pipeline, and a pipeline upgraded in place must not change what a replay runs."""
    top = (getattr(fn, "__module__", None) or "").partition(".")[0]
    if not top or top in _MECHANISM or top in sys.stdlib_module_names or top == "__main__":
        return {}
    return {
        name: module
        for name, module in list(sys.modules.items())
        if (name == top or name.startswith(top + "."))
        and isinstance(module, types.ModuleType)
        and getattr(module, "__file__", None)
    }


def _installed_as(top: str) -> str | None:
    """``dist==version`` for a top-level module; mapping every module to its distribution
    costs 0.7 s a process, so the module's own name and ``__version__`` are asked first."""
    try:
        return f"{top}=={metadata.version(top)}"
    except metadata.PackageNotFoundError:
        version = getattr(sys.modules.get(top), "__version__", None)
        return f"{top}=={version}" if isinstance(version, str) else None


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle that notes which modules the code reaches and refuses models as code."""

    def __init__(self, file: io.BytesIO, users: dict[str, types.ModuleType]) -> None:
        super().__init__(file, protocol=5)
        self.users = users
        self.reached: set[str] = set()
        self.referenced: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            self._note(obj.__name__)
        elif isinstance(obj, (types.FunctionType, type)):
            self._note(getattr(obj, "__module__", None) or "")
        elif type(obj).__module__.partition(".")[0] in MODEL_LIBRARIES:
            raise _StateError(obj)
        return super().reducer_override(obj)

    def _note(self, module: str) -> None:
        if module in self.users:
            self.reached.add(module)
        elif module and module not in sys.stdlib_module_names:
            self.referenced.add(module.partition(".")[0])


class _StateError(Exception):
    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        self.obj = obj


def capture_code(fn: Any, what: str) -> CapturedCode:
    """Pickle ``fn`` by value with every module of the user's it reaches; ``what`` names it
    in errors (e.g. "step 'pd'")."""
    users = users_modules() | _own_package(fn)
    tops = {name.partition(".")[0] for name in users} - set(
        cloudpickle.list_registry_pickle_by_value()
    )
    for top in tops:
        if top in sys.modules:
            cloudpickle.register_pickle_by_value(sys.modules[top])
    buf = io.BytesIO()
    pickler = _Pickler(buf, users)
    try:
        pickler.dump(fn)
    except _StateError as exc:
        where = _holder(exc.obj, pickler.reached, users)
        raise CaptureError(
            f"{what}: {where}holds a {type(exc.obj).__qualname__}, which is state, not code",
            hint=_HINT,
        ) from None
    except Exception as exc:
        where = _unpicklable(pickler.reached, users)
        raise CaptureError(
            f"{what}: its code cannot be pickled: {where}{exc}", hint=_HINT
        ) from None
    finally:
        for top in tops:
            if top in sys.modules:
                cloudpickle.unregister_pickle_by_value(sys.modules[top])
    modules = {name: _source(users[name]) for name in sorted(pickler.reached)}
    installed = {
        top: dist
        for top in sorted(pickler.referenced)
        if top not in _MECHANISM and (dist := _installed_as(top)) is not None
    }
    return CapturedCode(
        buf.getvalue(), modules, installed, getattr(fn, "__qualname__", type(fn).__qualname__)
    )


def _source(module: types.ModuleType) -> str:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return f"# source of module {module.__name__} is not available\n"


def _globals(reached: set[str], users: dict[str, types.ModuleType]) -> Any:
    for name in sorted(reached):
        for var, value in vars(users[name]).items():
            if not var.startswith("__") and not isinstance(
                value, (types.ModuleType, types.FunctionType, type)
            ):
                yield f"{name}.{var}", value


def _holder(obj: Any, reached: set[str], users: dict[str, types.ModuleType]) -> str:
    """Which module global holds ``obj`` (itself or as an item of a container), if any."""
    for where, value in _globals(reached, users):
        items = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, (list, tuple, set))
            else ()
        )
        if value is obj or any(item is obj for item in items):
            return f"{where} "
    return ""


def _unpicklable(reached: set[str], users: dict[str, types.ModuleType]) -> str:
    for where, value in _globals(reached, users):
        try:
            cloudpickle.dumps(value)
        except Exception:
            return f"{where} is state, not code ({type(value).__qualname__}); "
    return ""
