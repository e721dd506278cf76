"""Atomic file writes: write a temporary sibling, then rename it into place.

A reader (or a run killed mid-write) never sees half a file: it sees the old one or the new one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[str], Any], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``.

    Args:
        path: final location.
        write: writes the whole file at the temporary path it is given.
        suffix: suffix of the temporary name, for writers that pick a format by extension (".mp4").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?")
"""The name :func:`atomic_write` gives a temporary: ``.<final name>.<8 random characters><suffix>``."""


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries that writes killed mid-way (SIGKILL) left in ``directory``; returns them.

    Call it only where no other process is writing, e.g. when a run is resumed.
    """
    removed = []
    for path in Path(directory).glob(".*"):
        if path.is_file() and _TEMPORARY.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write JSON (numpy scalars and paths are converted)."""
    return write_text(path, json.dumps(data, indent=2, default=jsonable) + "\n")


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
