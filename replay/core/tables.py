"""Reading a table file: the one reader behind input files (``replay run --input``) and the
data files a step is bound to, from a path or from the recorded bytes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay.errors import InputError

FORMATS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".feather": "arrow"}
NAMES = {"parquet": "Parquet", "csv": "CSV", "arrow": "Arrow"}


def format_of(path: str | Path) -> str:
    """How a file is read, by its suffix: a table format, or ``bytes`` (given as they are)."""
    return FORMATS.get(Path(path).suffix.lower(), "bytes")


def read(fmt: str, source: bytes | Path | str) -> Any:
    """The file as a step receives it: a pyarrow Table, or the bytes for ``bytes``."""
    import pyarrow.csv
    import pyarrow.feather
    import pyarrow.parquet

    if fmt == "bytes":
        return source if isinstance(source, bytes) else Path(source).read_bytes()
    buf: Any = pa.BufferReader(source) if isinstance(source, bytes) else str(source)
    if fmt == "parquet":
        return pyarrow.parquet.read_table(buf)
    if fmt == "csv":
        return pyarrow.csv.read_csv(buf)
    return pyarrow.feather.read_table(buf)


def read_input(path: str) -> pa.Table:
    """Rows from a Parquet (or .csv / .arrow) file, with a clear error for anything else."""
    fmt = format_of(path)
    fmt = "parquet" if fmt == "bytes" else fmt  # an unknown suffix is tried as Parquet
    if os.path.isdir(path):  # pyarrow would read a folder as an (empty) dataset
        raise InputError(f"input {path} is a folder, not a file")
    try:
        table: pa.Table = read(fmt, path)
        return table
    except FileNotFoundError:
        raise InputError(f"input file {path} does not exist") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{path} is not a readable {NAMES[fmt]} file ({exc})".splitlines()[0],
            hint="write the input with pyarrow.parquet.write_table or DataFrame.to_parquet",
        ) from None
