"""One lint finding: where, how bad, which check, what; and the listed exception it falls under."""
from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int | None
    severity: str          # error | warning | info
    validator: str         # pySigma validator identifier, sigmahq_test_*, yamllint, or dac_<check>
    message: str
    rule_id: str | None = None
    excepted: str | None = None     # the reason from sigma/lint_exceptions.yml, when listed there

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{self.severity}: {where}: [{self.validator}] {self.message}"
        return f"{text} (listed exception: {self.excepted})" if self.excepted else text

    def sort_key(self):
        return (self.path, self.line or 0, SEVERITIES.index(self.severity), self.validator, self.message)
