"""The environment a run executed in: interpreter, platform, CPU, BLAS, packages, image.

Computed once per process (it cannot change under a running interpreter) and stored as one
content-addressed object, so a million runs in one process share one environment record.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import sys
from importlib import metadata
from typing import Any

from replay.digest import json_digest
from replay.errors import CaptureError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
               "OPENBLAS_CORETYPE")
NOT_IN_CONTAINER = "not in a container"
UNDECLARED = ("in a container, image not declared "
              "(set REPLAY_IMAGE_DIGEST or mount the Docker socket)")
REPO_DIGEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*@sha256:[0-9a-f]{64}")
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


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
        deps: dict[str, Any] = config.get("Build Dependencies", {}) \
            if isinstance(config, dict) else {}
        info["numpy"] = np.__version__
        info["build"] = {k: {f: v.get(f) for f in ("name", "version")}
                         for k, v in deps.items() if k in ("blas", "lapack")}
    except Exception:  # a broken numpy is itself recorded, not fatal
        info["numpy"] = None
    try:
        from threadpoolctl import threadpool_info

        pools = {json.dumps({k: p.get(k) for k in ("user_api", "internal_api", "version",
                                                   "num_threads", "architecture")},
                            sort_keys=True) for p in threadpool_info()}
        info["threadpools"] = [json.loads(p) for p in sorted(pools)]  # load order is noise
    except Exception:
        info["threadpools"] = []
    return info


def packages() -> list[str]:
    """The installed distributions as a sorted ``name==version`` lock."""
    found = {f"{(d.metadata['Name'] or '').lower()}=={d.version}"
             for d in metadata.distributions() if d.metadata["Name"]}
    return sorted(found)


def in_container() -> bool:
    """Docker and Podman mark every container's root with one of these files."""
    return any(os.path.exists(p) for p in ("/.dockerenv", "/run/.containerenv"))


def image() -> dict[str, str]:
    """The container image this process runs in, by content digest; never a tag.

    The deployment declares it (``REPLAY_IMAGE_DIGEST=registry/name@sha256:…``, optionally
    ``REPLAY_IMAGE_ID``), or, with the Docker socket mounted, the engine is asked which image
    the current container was started from. ``digest`` is the repo digest when the image was
    pushed, else its image ID (also a content digest, but only for that engine).
    """
    declared = os.environ.get("REPLAY_IMAGE_DIGEST", "").strip()
    image_id = os.environ.get("REPLAY_IMAGE_ID", "").strip()
    if image_id and not IMAGE_ID.fullmatch(image_id):
        raise CaptureError(f"REPLAY_IMAGE_ID={image_id!r} is not an image ID (sha256:<64 hex>)",
                           hint="set it from `docker inspect --format '{{.Id}}' IMAGE`")
    if declared:
        if not REPO_DIGEST.fullmatch(declared):
            raise CaptureError(
                f"REPLAY_IMAGE_DIGEST={declared!r} is not a repo digest (name@sha256:<64 hex>); "
                "a tag is not evidence of what ran",
                hint="set it from `docker inspect --format '{{index .RepoDigests 0}}' IMAGE`")
        return {"digest": declared, "id": image_id, "source": "REPLAY_IMAGE_DIGEST"}
    if image_id:
        return {"digest": image_id, "id": image_id, "source": "REPLAY_IMAGE_ID"}
    if not in_container():
        return {"digest": NOT_IN_CONTAINER}
    from replay.container import own_image  # the docker SDK, only when it can answer

    return own_image() or {"digest": UNDECLARED}


@functools.cache
def lock() -> tuple[str, ...]:
    """The package lock as this process first saw it (what its fingerprint names)."""
    return tuple(packages())


@functools.cache
def fingerprint() -> dict[str, Any]:
    lock_ = list(lock())
    return {
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "build": list(platform.python_build()), "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "libc": list(platform.libc_ver())},
        "cpu": _cpu(),
        "blas": _blas(),
        "threads": {k: os.environ.get(k) for k in THREAD_VARS},
        "packages": {"count": len(lock_), "lock_sha256": json_digest(lock_)},
        "image": image(),
    }
