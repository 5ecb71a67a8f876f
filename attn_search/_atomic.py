"""Atomic writes: a reader, or a run killed mid-write, sees the old file or the new one."""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yields a temporary path beside `path`; renames it over `path` when the block succeeds.

    The temporary file is removed when the block fails. `suffix` is appended to its name for
    writers that need a particular ending (e.g. ".keras" for `model.save`).
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: os.PathLike | str, text: str) -> None:
    """Writes `text` (UTF-8) to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
