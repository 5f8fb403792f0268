"""Problems found in user input, reported as `file:line: message` and collected, not raised one by one."""
from __future__ import annotations

from dataclasses import dataclass


MESSAGE_LIMIT = 400


@dataclass(frozen=True, order=True)
class Problem:
    path: str            # repository-relative path of the file at fault
    line: int | None     # 1-based line, when known
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        message = self.message
        if len(message) > MESSAGE_LIMIT:     # a 5 MB rule must not make a 6.6 MB error line
            message = f"{message[:MESSAGE_LIMIT]}… ({len(message)} characters)"
        return f"{where}: {message}"


class DacError(Exception):
    """One or more problems that stop a command; nothing has been written when it is raised."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))
