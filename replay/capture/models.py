"""Models by content: a file, a folder or an object, loaded from the very bytes that were hashed.

A model file is read once, stored as an object by its sha256, and the step receives what
those stored bytes load into: never the live file, which may change between the read and the
load. A folder is stored like DVC's directory objects: each file as an object, plus a *tree*
object (canonical JSON, ``{"format": "tree-1", "files": {relative posix path: digest}}``)
whose digest is the model's. The spec entry of a model (see ``capture``)::

    kind     "file" | "folder" | "object" (a Python object, pickled by components)
    path     where the file or folder was, resolved (for humans, and the copy's name)
    digest   sha256 of the file's bytes, of the tree object, or of the pickle
    format   how it is loaded: one of FORMATS, "loader", or "bytes" (the old name of "path")
    loader   with Model(loader=...): {code, qualname, modules, installed} of the loader,
             captured by value like step code
    objects  folder and loader only: every other object the entry names, sorted, so that
             whoever walks a spec (export, audit) finds them without reading the tree

Loading is the same on record and on replay (``load``), once per process per model through
``CACHE``. Copies a step or a loader opens itself live in one per-process folder removed at
exit, so nothing is written inside the workspace, the store or the installed package.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from replay.capture.code import capture_code
from replay.core.declared import missing_hint
from replay.core.digest import canonical_json, hex_of
from replay.core.model import FORMATS, LOADER, PATH, Model
from replay.core.unpickle import unpickle_trusted
from replay.errors import CaptureError, CorruptionError, ReplayError

_BYTES = "bytes"  # what specs recorded before models by content call PATH
TREE = "tree-1"
SUFFIXES = {
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
    ".skops": "skops",
    ".onnx": "onnx",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
}
# A folder in these formats is told by the files it holds.
MARKERS = {"sentence-transformers": ("modules.json", "config_sentence_transformers.json")}
# The pip package that provides a module a loader imports.
PACKAGES = {
    "onnxruntime": "onnxruntime",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "safetensors": "safetensors",
    "skops": "skops",
    "joblib": "joblib",
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "torch": "torch",
    "sentence_transformers": "sentence-transformers",
}

Fetch = Callable[[str], bytes]  # an object's bytes, already checked against its digest


class Sink(Protocol):
    def put_object(self, data: bytes) -> str: ...


def _onnx(data: bytes, digest: str) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def _xgboost(data: bytes, digest: str) -> Any:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(data))  # UBJSON or JSON: xgboost tells them apart
    return booster


def _lightgbm(data: bytes, digest: str) -> Any:
    import lightgbm

    return lightgbm.Booster(model_str=data.decode())


def _safetensors(data: bytes, digest: str) -> Any:
    import safetensors.numpy

    return safetensors.numpy.load(data)


def _unpickled(fmt: str) -> Callable[[bytes, str], Any]:
    return lambda data, digest: unpickle_trusted(data, digest, fmt=fmt)


def _sentence_transformers(path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    # A local folder and no hub: nothing but the verified copy is read.
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


# Built-in loaders from verified bytes, by format. Each imports its library only when a
# model of its format is loaded; a missing one is reported with its pip package by load().
LOADERS: dict[str, Callable[[bytes, str], Any]] = {
    "pickle": _unpickled("pickle"),
    "joblib": _unpickled("joblib"),
    "skops": _unpickled("skops"),
    "torch": _unpickled("torch"),
    "onnx": _onnx,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "safetensors": _safetensors,
}
# Built-in loaders of folders, from a verified read-only copy removed once they return.
FOLDER_LOADERS: dict[str, Callable[[Path], Any]] = {"sentence-transformers": _sentence_transformers}
# Model(format=...) is checked against core.model.FORMATS: these loaders are those formats.
assert frozenset({*LOADERS, *FOLDER_LOADERS, PATH}) == FORMATS


class ModelCache:
    """Loaded models of this process by (digest, format, loader digest or copy name), the
    least recently used dropped first. Used by record and replay alike."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple[str, str, str | None], Any] = OrderedDict()
        # Held while loading, so that threads binding one model load it once; reentrant,
        # for a user's loader that loads another model.
        self._lock = threading.RLock()

    def get(self, key: tuple[str, str, str | None], load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            value = self._loaded[key] = load()
            if len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return value


# 16: more than the models one pipeline version binds (the credit pipeline: 2), plus a
# swapped one, so replaying many runs of a version never reloads a model; a bulk replay
# across versions keeps the last few versions' models. Models can be gigabytes, so the
# bound is small; an evicted model stays alive while a binding still holds it.
CACHE = ModelCache(16)


class Copies:
    """The one per-process folder of verified read-only copies, removed at exit."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def root(self) -> Path:
        with self._lock:
            if self._root is None or self._pid != os.getpid():  # a forked child: its own
                self._root = Path(tempfile.mkdtemp(prefix="replay-models-"))
                self._pid = os.getpid()
                atexit.register(_remove_at_exit, self._root, self._pid)
            return self._root

    def make(self, name: str, contents: Mapping[str, bytes]) -> Path:
        """``contents`` (relative path -> bytes; "" for a single file) as ``name``."""
        top = Path(tempfile.mkdtemp(dir=self.root())) / name
        if "" not in contents:
            top.mkdir()
        for rel, data in contents.items():
            target = top / rel if rel else top
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _set_modes(top.parent, files=0o444, folders=0o555)
        return top

    @contextmanager
    def scratch(self, name: str, contents: Mapping[str, bytes]) -> Iterator[Path]:
        """A copy removed as soon as the block ends."""
        top = self.make(name, contents)
        try:
            yield top
        finally:
            _remove(top.parent)


COPIES = Copies()


def _set_modes(root: Path, *, files: int, folders: int) -> None:
    for folder, _, names in os.walk(root, topdown=False):
        for name in names:
            if not os.path.islink(path := os.path.join(folder, name)):  # never outside
                os.chmod(path, files)
        os.chmod(folder, folders)


def _remove(root: Path) -> None:
    _set_modes(root, files=0o644, folders=0o755)  # a read-only folder's entries cannot go
    shutil.rmtree(root, ignore_errors=True)


def _remove_at_exit(root: Path, pid: int) -> None:
    if os.getpid() == pid:  # a forked child inherits the hook, not the folder
        _remove(root)


def tree_paths(root: Path) -> list[Path]:
    """A folder and everything under it, links not followed: what its freshness watches."""
    found = [root]
    for folder, dirs, files in os.walk(root):
        found += [Path(folder, n) for n in (*dirs, *files)]
    return found


class _Kept:
    """Objects put while capturing one model, kept to load it from the very bytes hashed."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = self.sink.put_object(data)
        self.blobs[digest] = data
        return digest


def capture(model: Model, sink: Sink, what: str) -> tuple[dict[str, Any], Any]:
    """Store a model file or folder in ``sink``: its spec entry and the object the step gets.
    ``what`` names it in errors (e.g. "step 'pd': model 'pd'")."""
    kept = _Kept(sink)
    path = model.path.resolve()  # a link to a model is followed; links inside it are not
    if not path.exists():
        raise CaptureError(f"{what}: {model.path} does not exist", hint=missing_hint(model.folder))
    fmt = LOADER if model.loader is not None else model.format
    if path.is_dir():
        entry = _capture_folder(path, fmt, kept, what)
    elif fmt in FOLDER_LOADERS:
        raise CaptureError(
            f"{what}: {path} is a file, and format {fmt!r} loads a folder",
            hint="bind the model's folder",
        )
    else:
        entry = {
            "kind": "file",
            "path": str(path),
            "format": fmt or _by_suffix(path),
            "digest": kept.put(_read(path, what)),
        }
    if model.loader is not None:
        entry["loader"] = _capture_loader(model.loader, kept, what)
        entry["objects"] = sorted({*entry.get("objects", ()), *_loader_objects(entry)})
    return entry, load(entry, kept.blobs.__getitem__, what)


def _by_suffix(path: Path) -> str:
    return SUFFIXES.get(path.suffix.lower(), PATH)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaptureError(
            f"{what}: cannot read {path}: {exc.strerror}", hint="check the path bound to the step"
        ) from None


def _capture_folder(path: Path, fmt: str | None, kept: _Kept, what: str) -> dict[str, Any]:
    fmt = fmt or next(
        (f for f, marks in MARKERS.items() if any((path / m).is_file() for m in marks)), None
    )
    if fmt not in (None, PATH, LOADER, *FOLDER_LOADERS):
        raise CaptureError(
            f"{what}: {path} is a folder, and format {fmt!r} loads a file",
            hint="bind the model file itself, or give Model(path, loader=...)",
        )
    files = {rel: kept.put(_read(file, what)) for rel, file in _files(path, path, what)}
    if not files:
        raise CaptureError(f"{what}: folder {path} holds no files", hint="bind the model")
    tree = kept.put(canonical_json({"format": TREE, "files": files}))
    return {
        "kind": "folder",
        "path": str(path),
        "format": fmt or PATH,
        "digest": tree,
        "objects": sorted(set(files.values())),
    }


def _files(root: Path, folder: Path, what: str) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file under ``folder``; links and special
    files are refused: what they point to is not part of the folder's content."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise CaptureError(f"{what}: cannot list {folder}: {exc.strerror}") from None
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            raise CaptureError(
                f"{what}: {path} is a symbolic link",
                hint="replace it by the file or folder it points to",
            )
        if entry.is_dir(follow_symlinks=False):
            yield from _files(root, path, what)
        elif entry.is_file(follow_symlinks=False):
            yield path.relative_to(root).as_posix(), path
        else:
            raise CaptureError(
                f"{what}: {path} is not a regular file (a socket, pipe or device)",
                hint="keep only files and folders in a model folder",
            )


def _capture_loader(loader: Callable[[Path], Any], kept: _Kept, what: str) -> dict[str, Any]:
    code = capture_code(loader, f"{what}: loader")
    return {
        "code": kept.put(code.pickled),
        "qualname": code.qualname,
        "modules": {name: kept.put(text.encode()) for name, text in code.modules.items()},
        "installed": code.installed,
    }


def _loader_objects(entry: Mapping[str, Any]) -> list[str]:
    return [entry["loader"]["code"], *entry["loader"]["modules"].values()]


def load(entry: Mapping[str, Any], fetch: Fetch, what: str) -> Any:
    """The object a step receives for a model's spec entry, loaded once per process from
    the bytes ``fetch`` returns (checked against their digest by ``fetch``)."""
    loader = entry.get("loader")
    fmt = entry["format"]
    extra = loader["code"] if loader else _name(entry) if fmt in (PATH, _BYTES) else None
    return CACHE.get((entry["digest"], fmt, extra), lambda: _load(entry, fetch, what))


def _load(entry: Mapping[str, Any], fetch: Fetch, what: str) -> Any:
    fmt = entry["format"]
    try:
        if entry.get("loader"):
            return _load_with_loader(entry, fetch)
        if fmt in (PATH, _BYTES):
            return COPIES.make(_name(entry), _contents(entry, fetch))
        if fmt in FOLDER_LOADERS and entry["kind"] == "folder":
            with COPIES.scratch(_name(entry), _contents(entry, fetch)) as path:
                return FOLDER_LOADERS[fmt](path)
        if fmt not in LOADERS:
            raise CaptureError(
                f"{what}: format {fmt!r} is unknown to this pipeline-replay",
                hint="replay it with the version that recorded it",
            )
        return LOADERS[fmt](fetch(entry["digest"]), entry["digest"])
    except ReplayError:
        raise
    except ModuleNotFoundError as exc:
        package = PACKAGES.get((exc.name or "").partition(".")[0], exc.name)
        raise CaptureError(
            f"{what}: loading it ({fmt}) needs the package {package!r}, which is not installed",
            hint=f"pip install {package}",
        ) from None
    except Exception as exc:
        raise CaptureError(
            f"{what}: cannot load it as {fmt} ({type(exc).__name__}: {exc})",
            hint="check that the file is a model of that format",
        ) from None


def _load_with_loader(entry: Mapping[str, Any], fetch: Fetch) -> Any:
    code = entry["loader"]["code"]
    loader = unpickle_trusted(fetch(code), code)
    with COPIES.scratch(_name(entry), _contents(entry, fetch)) as path:
        return loader(path)


def _name(entry: Mapping[str, Any]) -> str:
    """The copy's name: the recorded file or folder name, so suffixes still tell formats."""
    name = Path(entry.get("path") or "model").name
    return name if name not in ("", ".", "..") else "model"


def _contents(entry: Mapping[str, Any], fetch: Fetch) -> dict[str, bytes]:
    """Relative path -> bytes of a model: "" for a file, every file of a folder's tree."""
    if entry["kind"] != "folder":
        return {"": fetch(entry["digest"])}
    return {
        rel: fetch(digest) for rel, digest in _tree(fetch(entry["digest"]), entry["digest"]).items()
    }


def _tree(data: bytes, digest: str) -> dict[str, str]:
    """A tree object's files, refused if it is not one or names a path outside the folder
    (a tree from a bundle is read before anything is written from it)."""
    try:
        tree = json.loads(data)
        files = tree["files"] if tree.get("format") == TREE else None
        if not isinstance(files, dict) or not files:
            raise ValueError("no files")
        for rel, file_digest in files.items():
            hex_of(file_digest)
            if (
                any(part in ("", ".", "..") for part in rel.split("/"))
                or "\\" in rel
                or "\x00" in rel
            ):
                raise ValueError(f"unsafe path {rel!r}")
    except (ValueError, TypeError, AttributeError) as exc:
        raise CorruptionError(digest, f"is not a model folder tree ({exc})") from None
    return files
