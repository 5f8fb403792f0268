"""Finding the rule files under sigma/rules/ without trusting the file system.

A rule folder is a checkout, and a checkout can hold anything git can: symlinks (also loops and
links to /etc), and, once on disk, FIFOs or devices. `Path.rglob` skips symlinked folders without
a word and `read_text` on a FIFO waits forever, so the walk is done here: a symlink that stays in
the repository is followed (file or folder), everything else that is not a regular file or a
folder is a clear error naming the file, and nothing but regular files is ever opened.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from dac.core.problems import Problem
from dac.core.repo import Layout


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def find_rule_files(layout: Layout) -> tuple[list[Path], list[Problem]]:
    """Every *.yml under sigma/rules/ (symlinks inside the repository followed), and the problems."""
    root = layout.root.resolve()
    files: list[Path] = []
    problems: list[Problem] = []
    if not layout.rules.is_dir():
        return files, problems
    seen_dirs = {layout.rules.resolve()}

    def walk(folder: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problems.append(Problem(layout.rel(folder), None, f"cannot list folder: {e.strerror}"))
            return
        for entry in entries:
            path = folder / entry.name
            rel = layout.rel(path)
            is_yml = entry.name.endswith(".yml")
            if entry.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except RuntimeError:
                    problems.append(Problem(rel, None, "symlink loop: the link never reaches a file"))
                    continue
                except OSError as e:
                    if is_yml or e.errno != 2:
                        problems.append(Problem(rel, None, f"broken symlink: {os.readlink(path)!r} ({e.strerror})"))
                    continue
                if not real.is_relative_to(root):
                    problems.append(Problem(rel, None, f"symlink leaves the repository (to {real}): refused"))
                    continue
            try:
                mode = path.stat().st_mode          # follows an (in-repository) link
            except OSError as e:
                problems.append(Problem(rel, None, f"cannot read: {e.strerror}"))
                continue
            if stat.S_ISDIR(mode):
                real = path.resolve()
                if real in seen_dirs:
                    problems.append(Problem(rel, None, f"folder loop: {layout.rel(real)} is already part of the rules"))
                    continue
                seen_dirs.add(real)
                walk(path)
            elif is_yml:
                if stat.S_ISREG(mode):
                    files.append(path)
                else:
                    problems.append(Problem(rel, None, f"is {_kind(mode)}, not a rule file: refused (never opened)"))

    walk(layout.rules)
    return files, problems


def check_input_file(layout: Layout, path: Path) -> Problem | None:
    """An input file under sigma/ (targets, pipelines) before it is opened: a regular file inside
    the repository, reached through in-repository links only."""
    rel = layout.rel(path)
    try:
        real = path.resolve(strict=True)
    except RuntimeError:
        return Problem(rel, None, "symlink loop: the link never reaches a file")
    except OSError:
        return None                      # missing: the reader reports it as it always did
    if not real.is_relative_to(layout.root.resolve()):
        return Problem(rel, None, f"symlink leaves the repository (to {real}): refused")
    mode = real.stat().st_mode
    if not stat.S_ISREG(mode):
        return Problem(rel, None, f"is {_kind(mode) if not stat.S_ISDIR(mode) else 'a folder'}, not a file: refused")
    return None
