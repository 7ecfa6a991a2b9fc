"""The environment a run executed in: interpreter, platform, CPU, BLAS, packages, image, and
the settings that choose numeric kernels.

Computed once per *generation* — the set of watched ML libraries imported so far — because
importing one loads its thread pools and kernels into the process; between imports it cannot
change, so a million runs share one content-addressed environment record.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from replay.core.digest import json_digest
from replay.errors import CaptureError

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENBLAS_CORETYPE",
)
NOT_IN_CONTAINER = "not in a container"
UNDECLARED = (
    "in a container, image not declared (set REPLAY_IMAGE_DIGEST or mount the Docker socket)"
)
REPO_DIGEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*@sha256:[0-9a-f]{64}")
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
# Importing one of these loads BLAS/OpenMP pools or kernel settings into the process.
WATCHED = (
    "numpy",
    "scipy",
    "sklearn",
    "torch",
    "onnxruntime",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "jax",
    "sentence_transformers",
    "transformers",
)
# Variables that pick a kernel or the order of a parallel reduction, hence the low bits of a
# result (thread counts are THREAD_VARS). Affinity (OMP_PROC_BIND, KMP_AFFINITY) changes speed,
# not results, and is left out so it cannot show up as drift.
KERNEL_VARS = (
    # the instruction set a kernel library dispatches to
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    # how work is split between threads
    "OMP_DYNAMIC",
    "OMP_SCHEDULE",
    "OMP_THREAD_LIMIT",
    "OMP_MAX_ACTIVE_LEVELS",
    "MKL_DYNAMIC",
    "MKL_THREADING_LAYER",
    "KMP_DETERMINISTIC_REDUCTION",
    # framework switches between kernels or precisions
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "JAX_ENABLE_X64",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "XLA_FLAGS",
    # GPU: which device, and cuBLAS/TF32 determinism
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "PYTHONHASHSEED",  # set order, hence the order of anything built by iterating a set
)
# auditwheel/delocate/delvewheel tag vendored libraries with a build hash; the rest of the
# name (and its folder, e.g. numpy.libs) says which library it is on any machine.
VENDOR_HASH = re.compile(r"-[0-9a-f]{8,32}(?=\.(so|dylib|dll))")


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), list[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = sorted(value.split())
    except OSError:
        pass
    return {"model": model, "flags": flags, "count": os.cpu_count()}


def _blas() -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        import numpy as np

        config: Any = np.show_config(mode="dicts")
        deps: dict[str, Any] = (
            config.get("Build Dependencies", {}) if isinstance(config, dict) else {}
        )
        info["numpy"] = np.__version__
        info["build"] = {
            k: {f: v.get(f) for f in ("name", "version")}
            for k, v in deps.items()
            if k in ("blas", "lapack")
        }
    except Exception:  # a broken numpy is itself recorded, not fatal
        info["numpy"] = None
    return info


def _threadpools() -> list[dict[str, Any]]:
    """Each loaded BLAS/OpenMP pool, named by its library file rather than its path (which
    differs between machines), sorted by that name (load order is noise)."""
    try:
        from threadpoolctl import threadpool_info

        found = threadpool_info()
    except Exception:  # no threadpoolctl, or a library it cannot query: no pools to record
        return []
    pools = [
        {
            "library": _library(p.get("filepath") or ""),
            **{
                k: p.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "version",
                    "num_threads",
                    "threading_layer",
                    "architecture",
                )
            },
        }
        for p in found
    ]
    return sorted(pools, key=lambda p: (p["library"], p["internal_api"] or ""))


def _library(filepath: str) -> str:
    folder, name = os.path.split(filepath)
    return f"{os.path.basename(folder)}/{VENDOR_HASH.sub('', name)}"


def _read(fields: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each field on its own: one an older or newer release lacks is None, not a lost record."""
    out: dict[str, Any] = {}
    for name, get in fields.items():
        try:
            out[name] = get()
        except Exception:
            out[name] = None
    return out


def _torch(t: Any) -> dict[str, Any]:
    # Plain getters: none starts a thread pool, so the program can still set its thread counts.
    b = t.backends
    return _read(
        {
            "version": lambda: str(t.__version__),
            "threads": lambda: t.get_num_threads(),
            "interop threads": lambda: t.get_num_interop_threads(),
            "cpu capability": lambda: b.cpu.get_cpu_capability(),
            "mkldnn": lambda: bool(b.mkldnn.enabled and b.mkldnn.is_available()),
            "deterministic algorithms": lambda: t.are_deterministic_algorithms_enabled(),
            "float32 matmul precision": lambda: t.get_float32_matmul_precision(),
            "cudnn deterministic": lambda: bool(b.cudnn.deterministic),
            "cudnn benchmark": lambda: bool(b.cudnn.benchmark),
            "tf32 matmul": lambda: bool(b.cuda.matmul.allow_tf32),
        }
    )


def _onnxruntime(ort: Any) -> dict[str, Any]:
    return _read(
        {
            "version": lambda: ort.__version__,
            "providers": lambda: list(ort.get_available_providers()),
            "device": lambda: ort.get_device(),
        }
    )


def _xgboost(xgb: Any) -> dict[str, Any]:
    return _read(
        {"version": lambda: xgb.__version__, "nthread": lambda: xgb.get_config().get("nthread")}
    )


def _sklearn(sk: Any) -> dict[str, Any]:
    return _read(
        {
            "version": lambda: sk.__version__,
            "array api dispatch": lambda: sk.get_config().get("array_api_dispatch"),
        }
    )


def _version(mod: Any) -> dict[str, Any]:
    return _read({"version": lambda: str(mod.__version__)})


# numpy is recorded under "blas"; every other watched library at least by its version.
READERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "torch": _torch,
    "onnxruntime": _onnxruntime,
    "xgboost": _xgboost,
    "sklearn": _sklearn,
    **{
        name: _version
        for name in WATCHED
        if name not in ("numpy", "torch", "onnxruntime", "xgboost", "sklearn")
    },
}


def _imported() -> tuple[str, ...]:
    """The watched libraries fully imported: one still running its ``__init__`` (another
    thread importing it) is left for the next fingerprint rather than read half-built."""
    return tuple(
        name
        for name in WATCHED
        if name in sys.modules
        and not getattr(getattr(sys.modules[name], "__spec__", None), "_initializing", False)
    )


def _kernels(imported: tuple[str, ...]) -> dict[str, Any]:
    """Kernel settings: the variables, and what each library already imported reports.
    A library is never imported here (torch alone takes seconds)."""
    return {
        "env": {k: os.environ.get(k) for k in KERNEL_VARS},
        "libraries": {
            name: READERS[name](sys.modules[name]) for name in imported if name in READERS
        },
    }


def packages() -> list[str]:
    """The installed distributions as a sorted ``name==version`` lock."""
    found = set()
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if name:
            found.add(f"{name.lower()}=={version}")
    return sorted(found)


def _name_and_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """``dist.metadata["Name"]`` and ``dist.version``, read from the metadata's header lines
    rather than through the email parser (which takes about 1 ms a distribution: most of a
    new process's first fingerprint); anything unusual is left to the parser."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if not text:
        return dist.metadata["Name"], dist.version
    fields: dict[str, str] = {}
    key = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            break  # the headers end; the description follows
        if line[0] in " \t":  # a folded line continues the header before it
            if key in ("Name", "Version"):
                return dist.metadata["Name"], dist.version
            continue
        key, sep, value = line.partition(":")
        if not sep:
            return dist.metadata["Name"], dist.version
        if key in ("Name", "Version"):
            fields.setdefault(key, value.lstrip(" \t"))
    return fields.get("Name"), fields.get("Version")


def in_container() -> bool:
    """Docker and Podman mark every container's root with one of these files."""
    return any(os.path.exists(p) for p in ("/.dockerenv", "/run/.containerenv"))


def declared_image() -> dict[str, str] | None:
    """The image the deployment declares (``REPLAY_IMAGE_DIGEST=registry/name@sha256:…``,
    optionally ``REPLAY_IMAGE_ID``); a malformed declaration is refused. Cheap: capture asks
    it before writing anything, so a bad deployment leaves the store untouched."""
    declared = os.environ.get("REPLAY_IMAGE_DIGEST", "").strip()
    image_id = os.environ.get("REPLAY_IMAGE_ID", "").strip()
    if image_id and not IMAGE_ID.fullmatch(image_id):
        raise CaptureError(
            f"REPLAY_IMAGE_ID={image_id!r} is not an image ID (sha256:<64 hex>)",
            hint="set it from `docker inspect --format '{{.Id}}' IMAGE`",
        )
    if declared:
        if not REPO_DIGEST.fullmatch(declared):
            raise CaptureError(
                f"REPLAY_IMAGE_DIGEST={declared!r} is not a repo digest (name@sha256:<64 hex>); "
                "a tag is not evidence of what ran",
                hint="set it from `docker inspect --format '{{index .RepoDigests 0}}' IMAGE`",
            )
        return {"digest": declared, "id": image_id, "source": "REPLAY_IMAGE_DIGEST"}
    if image_id:
        return {"digest": image_id, "id": image_id, "source": "REPLAY_IMAGE_ID"}
    return None


def image() -> dict[str, str]:
    """The container image this process runs in, by content digest; never a tag: the one
    the deployment declares, or, with the Docker socket mounted, the one the engine says
    the current container was started from. ``digest`` is the repo digest when the image was
    pushed, else its image ID (also a content digest, but only for that engine).
    """
    declared = declared_image()
    if declared is not None:
        return declared
    if not in_container():
        return {"digest": NOT_IN_CONTAINER}
    from replay.docker.client import own_image  # the docker SDK, only when it can answer

    return own_image() or {"digest": UNDECLARED}


@functools.cache
def lock() -> tuple[str, ...]:
    """The package lock as this process first saw it (what its fingerprint names)."""
    return tuple(packages())


def generation() -> tuple[str, ...]:
    """Which watched libraries are imported: the fingerprint is current while this is
    unchanged. Costs well under a microsecond, so it can be checked on every run."""
    return tuple([name for name in WATCHED if name in sys.modules])


class Fingerprint:
    """The environment for the current generation; holds only the latest (generations only
    grow in a real process, so older ones are never asked for again)."""

    def __init__(self) -> None:
        self._latest: tuple[tuple[str, ...], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        latest = self._latest
        if latest is not None and latest[0] == generation():
            return latest[1]
        self._latest = _compute()
        return self._latest[1]

    def cache_clear(self) -> None:
        """Forget it, e.g. after changing the variables it records."""
        self._latest = None


def _compute() -> tuple[tuple[str, ...], dict[str, Any]]:
    """The environment, and the libraries it was read with (its generation)."""
    lock_ = list(lock())
    blas = _blas()
    # After _blas (it may import numpy), before the pools: a library imported meanwhile then
    # makes this generation stale, never the record wrong.
    imported = _imported()
    blas["threadpools"] = _threadpools()
    return imported, {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": list(platform.python_build()),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "libc": list(platform.libc_ver()),
        },
        "cpu": _cpu(),
        "blas": blas,
        "threads": {k: os.environ.get(k) for k in THREAD_VARS},
        "kernels": _kernels(imported),
        "packages": {"count": len(lock_), "lock_sha256": json_digest(lock_)},
        "image": image(),
    }


fingerprint = Fingerprint()
reset = fingerprint.cache_clear
