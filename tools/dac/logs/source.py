"""Input lines of a log file, whatever its container: plain, gzip, UTF-8 (with or without BOM),
UTF-16 (with a BOM, or without one when every other byte is NUL), standard input (`-`).

Lines are decoded as UTF-8; an invalid byte becomes U+FFFD and the line is kept. Dropping it
would let an attacker hide an event behind one bad byte in a command line. A line longer than
MAX_LINE_BYTES, a binary file or a broken gzip stream is reported (LogProblem) and the rest of
the input goes on."""
from __future__ import annotations

import codecs
import gzip
import io
import stat
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from .model import LogProblem

MAX_LINE_BYTES = 4 * 1024 * 1024       # far above any sensor's event (auditd splits long argv; Sysmon caps fields)
SNIFF_BYTES = 64 * 1024


class InputError(Exception):
    """The input as a whole cannot be read (missing, a directory, binary): one message, no lines."""


def _open_binary(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory (give the files in it, or the directory to `dac test --events`, which expands it)")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (FIFOs and devices are not read)")
    try:
        return p.open("rb")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None


class _Peekable(io.RawIOBase):
    """A binary stream whose first bytes were already read (to sniff the container)."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _utf16_without_bom(head: bytes) -> str | None:
    sample = head[: 4096 - (len(head[:4096]) % 2)]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def nonblank(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """The lines that hold something: blank lines are neither events nor problems in any format."""
    return ((number, line) for number, line in lines if line.strip())


def describe(path: str) -> str:
    return "standard input" if path == "-" else path


def open_lines(path: str, shown: str | None = None) -> tuple[Iterator[tuple[int, str]], list[LogProblem], str]:
    """(line iterator, problems list that the iterator appends to while it runs, container name).
    The iterator yields (1-based line number, text without the line end)."""
    shown = shown or describe(path)
    raw = _open_binary(path)
    head = raw.read(SNIFF_BYTES)
    container = "text"
    stream: BinaryIO = io.BufferedReader(_Peekable(head, raw), 1 << 20)
    if head[:2] == b"\x1f\x8b":
        container = "gzip"
        stream = io.BufferedReader(gzip.GzipFile(fileobj=stream), 1 << 20)   # type: ignore[arg-type]
        try:
            head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{shown}: not a readable gzip file: {e}") from None
    encoding = "utf-8"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif head[:3] == b"\xef\xbb\xbf":
        encoding = "utf-8-sig"
    elif b"\x00" in head[:4096]:
        encoding = _utf16_without_bom(head) or ""
        if not encoding:
            raw.close()
            raise InputError(f"{shown}: binary data, not a text log (NUL bytes in the first 4 KiB)")
    if encoding != "utf-8":
        container += f", {encoding.replace('-sig', ' with BOM')}"
    problems: list[LogProblem] = []
    return _lines(stream, raw, encoding, shown, problems), problems, container


def _lines(stream: BinaryIO, raw: BinaryIO, encoding: str, shown: str, problems: list[LogProblem]) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        if encoding.startswith("utf-16"):
            # UTF-16 has NUL bytes in every line end: decode the stream, then split lines
            reader = codecs.getreader(encoding)(stream, errors="replace")
            for number, text in enumerate(reader, 1):
                text = text.rstrip("\r\n")
                if len(text) * 2 > MAX_LINE_BYTES:
                    problems.append(LogProblem(shown, number, f"line of {len(text) * 2:,} bytes is over the {MAX_LINE_BYTES:,}-byte limit"))
                    continue
                yield number, text
            return
        decoder = "utf-8-sig" if encoding == "utf-8-sig" else "utf-8"
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                size = len(line)
                while line and not line.endswith(b"\n"):      # skip the rest without holding it
                    line = stream.readline(MAX_LINE_BYTES)
                    size += len(line)
                problems.append(LogProblem(shown, number, f"line of {size:,} bytes is over the {MAX_LINE_BYTES:,}-byte limit"))
                continue
            text = line.decode(decoder if number == 1 else "utf-8", errors="replace")
            yield number, text.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as e:
        problems.append(LogProblem(shown, number + 1, f"input ends early ({type(e).__name__}: {e}); the lines before were read"))
    finally:
        raw.close()
