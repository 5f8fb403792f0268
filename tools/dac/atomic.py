"""Atomic file writes: a temp file in the target's folder, then a rename, so a reader (or a
crash) never sees half a file and a failed write leaves the old file in place."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes_atomic(target: Path, data: bytes, mode: int | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(target: Path, content: str) -> None:
    """UTF-8, newlines written as they are (no platform translation)."""
    write_bytes_atomic(target, content.encode("utf-8"))
