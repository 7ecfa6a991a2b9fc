"""How the commands' parameters are shown in help and read from the command line: values
named by what they are (``--since TIME``), and text taken as given.

Reaches into typer (0.29) where it has no public hook: ``display_type_rich`` and the lazily
built ``_runtime_param`` of each parameter.
"""

from __future__ import annotations

from typing import Any

import typer.core
from typer._coercion import RuntimeParam

# What an option's value is, in help (typer would print <str>, <path>, and <bool> on flags).
METAVARS = {
    "store": "PATH",
    "since": "TIME",
    "until": "TIME",
    "at": "TIME",
    "input": "FILE",
    "out": "FILE",
    "bundle": "FILE",
    "checkpoint": "FILE",
    "head": "FILE",
    "key": "PEM",
    "signer": "PEM",
    "record_key": "COLUMN",
    "record": "KEY",
    "pipeline": "NAME",
    "name": "NAME",
    "step": "STEP",
    "image": "REF",
    "kind": "production|whatif|all",
    "fmt": "table|tsv|json",
    "mode": "chained|isolated",
    "swap": "STEP=RUN|STEP[.MODEL]=sha256:…",
    "tolerance": "COLUMN=NUMBER",
    "memory": "SIZE",
    "cpus": "N",
    "pids": "N",
    "limit": "N",
    "offset": "N",
    "witnesses": "N",
    "redact": "COLUMNS",
    "extract": "DIR",
    "state": "DIR",
    "workdir": "DIR",
    "workspace": "DIR",
    "out_dir": "DIR",
    "format": "text|mermaid",
}


class _Plain(RuntimeParam):
    """A text parameter or a flag, read without pydantic. typer builds a pydantic TypeAdapter
    for each parameter it reads, and importing pydantic is ~50 ms of a ``replay find``
    process whose whole budget is 350 ms; a string from the command line needs no
    validating, nor does a flag, which is True, False or unset (None, kept by typer)."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        return self.annotation(value)


def _read_plainly(param: Any) -> None:
    """Give a text parameter or a flag (never set from the environment) the ``_Plain``
    reader; every other one keeps typer's."""
    described = param.type_descriptor
    if described.parameter_info.parser is not None:
        return
    flag = getattr(param, "is_flag", False) and param.envvar is None
    if described.annotation is str or (described.annotation is bool and flag):
        param._runtime_param = _Plain(described.parameter_info, described.annotation)


def shape_params(command: Any) -> None:
    """Help shows a flag bare and an option's value by what it is (``--since TIME``); text
    parameters and flags are read without pydantic (see ``_Plain``)."""
    for param in command.params:
        if isinstance(param, typer.core.TyperOption) and param.metavar is None:
            param.metavar = (
                ""
                if param.is_flag
                else METAVARS.get(param.name or "", (param.name or "value").upper())
            )
        elif isinstance(param, typer.core.TyperArgument):
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        _read_plainly(param)
    make_help = command.get_help_option

    def bare_help(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
            _read_plainly(option)
        return option

    command.get_help_option = bare_help
    for sub in getattr(command, "commands", {}).values():
        shape_params(sub)
