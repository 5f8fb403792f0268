"""Atomic file writes: a temp file in the target's folder, then a rename, so a reader (or a
crash) never sees half a file and a failed write leaves the old file in place.

mkstemp creates its file 0600; a rewritten file keeps the mode it had, and a new one gets what
`open()` would have given it (0666 minus the umask, 0644 with the usual 022), so a Splunk app
folder or a shared checkout stays readable by the others who read it."""
from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    # the only portable way to read the umask is to set it; the lock keeps two writers from racing
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def write_bytes_atomic(target: Path, data: bytes, mode: int | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(target) if mode is None else mode
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(target: Path, content: str) -> None:
    """UTF-8, newlines written as they are (no platform translation)."""
    write_bytes_atomic(target, content.encode("utf-8"))
