"""Where things live in the repository. Every path the tools read or write is derived from here."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def find_root(start: Path | None = None) -> Path:
    """The repository root: $DAC_ROOT, else the nearest parent holding sigma/targets.yml."""
    if env := os.environ.get("DAC_ROOT"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "sigma" / "targets.yml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no sigma/targets.yml in {here} or its parents: run dac inside the repository or set DAC_ROOT"
    )


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def sigma(self) -> Path:
        return self.root / "sigma"

    @property
    def rules(self) -> Path:
        return self.sigma / "rules"

    @property
    def targets_file(self) -> Path:
        return self.sigma / "targets.yml"

    @property
    def conversions(self) -> Path:
        return self.root / "conversions"

    @property
    def schemas(self) -> Path:
        return self.root / "sentinel" / "schemas"

    @property
    def kusto_analyzer(self) -> Path:
        return self.root / "tools" / "kusto-analyzer"

    def rel(self, path: Path) -> str:
        """Repository-relative POSIX path, for messages and manifests."""
        # the path as found first: a symlinked rule is named by its link, and resolving a link
        # loop raises RuntimeError
        try:
            return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(self.root))).as_posix()
        except ValueError:
            pass
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except (ValueError, RuntimeError, OSError):
            return str(path)
