"""The shape of each signed JSON document ``verify`` reads, and where a value departs from it.

A signature proves who wrote a document, not that it is well formed: an attacker signs with
their own key. So before verify indexes into MANIFEST.json or a ledger entry, the parsed
value is held against its shape here, and a mismatch names the path (``$.files``) instead of
surfacing as a KeyError deep inside a check.

A shape is written like the value it describes: ``str``, ``int``, ``None`` or a
:class:`Check`; ``Items(S)`` (or ``[S]``) a list of S; a dict with str keys an object with
those keys (``"key?"`` when it may be absent; other keys pass, they are hashed, not read);
``{str: S}`` an object whose every value is S; a tuple offers alternatives. Only what verify
reads is described.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    what: str
    ok: Callable[[Any], bool]


@dataclass(frozen=True)
class Items:
    of: Any
    at_least: int = 0


def _matching(pattern: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None


def _is_base64(value: Any) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return True


DIGEST = Check("a sha256:<64 hex> digest", _matching(r"sha256:[0-9a-f]{64}"))
HEX = Check("hex", _matching(r"(?:[0-9a-f]{2})*"))
BASE64 = Check("base64", _is_base64)
SEQ = Check("a positive integer", lambda v: type(v) is int and v > 0)
PARTS = {"personal": {str: DIGEST}, "columns?": DIGEST}
RUN_MANIFEST = {
    "run_id": str,
    "version": DIGEST,
    "env": DIGEST,
    "tape?": DIGEST,
    "input": {"digest": DIGEST, "parts?": (PARTS, None)},
    "steps": Items(
        {"name": str, "output": (DIGEST, None), "output_parts?": (PARTS, None)}, at_least=1
    ),
}
ENTRY = {"seq": SEQ, "run_id": str, "hash": str, "manifest_sha256": str, "manifest": RUN_MANIFEST}
MANIFEST = {
    "key_id": str,
    "runs": [str],
    "files": {str: DIGEST},
    "redacted?": ([str], None),
    "images?": ({str: {"id?": (str, None)}}, None),
}
CHECKPOINT = {
    "tree_size": int,
    "root": DIGEST,
    "timestamp": str,
    "key_id": str,
    "signature": BASE64,
}
PROOFS = {str: {"index?": int, "proof?": [HEX]}}
STATEMENT = {"_type?": str, "subject?": [{"digest": {"sha256": str}}]}
SPEC = {
    "steps": [
        {
            "code": DIGEST,
            "source": DIGEST,
            "params": DIGEST,
            "modules?": {str: DIGEST},
            "models": {str: {"digest": DIGEST, "objects?": [DIGEST]}},
            "data": {str: {"object?": (DIGEST, None)}},
        }
    ]
}
ENVIRONMENT = {"image?": {"id?": (str, None)}}


def mismatch(value: Any, shape: Any, where: str = "$") -> str | None:
    """Where ``value`` departs from ``shape`` and how, or None when it fits."""
    if isinstance(shape, tuple):
        found = [mismatch(value, s, where) for s in shape]
        return None if None in found else found[0]
    if isinstance(shape, list):
        shape = Items(shape[0])
    if isinstance(shape, Items):
        return _items(value, shape, where)
    if isinstance(shape, dict):
        return _object(value, shape, where)
    if isinstance(shape, Check):
        ok, what = shape.ok(value), shape.what
    elif shape is None:
        ok, what = value is None, "null"
    else:  # bool is an int to Python, never to a signed document
        ok, what = type(value) is shape, _KINDS[shape]
    return None if ok else f"{where} is {_kind(value)}, not {what}"


def _items(value: Any, shape: Items, where: str) -> str | None:
    if not isinstance(value, list):
        return f"{where} is {_kind(value)}, not a list"
    if len(value) < shape.at_least:
        return f"{where} holds {len(value)} items, not at least {shape.at_least}"
    return next(
        (p for i, item in enumerate(value) if (p := mismatch(item, shape.of, f"{where}[{i}]"))),
        None,
    )


def _object(value: Any, shape: dict[Any, Any], where: str) -> str | None:
    if not isinstance(value, dict):
        return f"{where} is {_kind(value)}, not an object"
    if str in shape:
        return next(
            (p for k, v in value.items() if (p := mismatch(v, shape[str], f"{where}.{k}"))), None
        )
    for key, sub in shape.items():
        name = key.removesuffix("?")
        if name not in value:
            if key.endswith("?"):
                continue
            return f"{where} has no {name!r}"
        if problem := mismatch(value[name], sub, f"{where}.{name}"):
            return problem
    return None


_KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def _kind(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)
