"""The shape of tools/dac/ (docs/architecture.md): data flows one way through the stages, no
module imports one from a later stage, no import cycles, and no module grows past 400 lines.

Imports are read from the source with ast (also those inside functions: a lazy import is still a
dependency), so the check needs nothing importable and sees what a reader sees."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "dac"

# The stages in the order data flows; a module may import its own stage and earlier ones only.
STAGES = ["core", "rules", "compile", "artifacts", "logs", "engines", "checks", "replay",
          "deploy", "backtest", "review", "cli"]

# Engines are independent of one another: a new engine is a package beside the others.
ENGINES = {"sigma", "kql", "spl"}

MAX_LINES = 400
# Modules allowed over MAX_LINES, each with the reason it cannot be split along a real seam.
OVERSIZE_ALLOWED: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = ("dac",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The dac modules `name` imports, resolved to modules (a package import means its __init__)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "dac")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "dac":
                source = node.module
            else:
                continue
            for alias in node.names:
                # `from dac.core import retry` imports the module dac.core.retry
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
    return {m for m in found if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_stage():
    unplaced = [m for m in MODULES if m != "dac" and _stage(m) not in STAGES]
    assert not unplaced, f"modules outside the stages of docs/architecture.md: {unplaced}"


def test_every_import_resolves_to_a_module():
    unknown = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps if d not in MODULES)
    assert not unknown, unknown


def test_no_stage_imports_a_later_one():
    back = []
    for module, deps in GRAPH.items():
        if module == "dac":
            continue
        rank = STAGES.index(_stage(module))
        for dep in deps:
            if dep != "dac" and STAGES.index(_stage(dep)) > rank:
                back.append(f"{module} ({_stage(module)}) imports {dep} ({_stage(dep)})")
    assert not back, "imports against the flow:\n" + "\n".join(sorted(back))


def test_engines_do_not_import_each_other():
    crossed = []
    for module, deps in GRAPH.items():
        parts = module.split(".")
        if parts[1:2] != ["engines"] or len(parts) < 3 or parts[2] not in ENGINES:
            continue
        for dep in deps:
            dparts = dep.split(".")
            if dparts[1:2] == ["engines"] and len(dparts) > 2 and dparts[2] in ENGINES and dparts[2] != parts[2]:
                crossed.append(f"{module} imports {dep}")
    assert not crossed, crossed


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_no_import_cycles():
    # a package's __init__ importing its own modules is not a cycle a reader has to follow
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    assert not _cycles(graph), _cycles(graph)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    if module in OVERSIZE_ALLOWED:
        assert lines > MAX_LINES, f"{module} is {lines} lines now: drop it from OVERSIZE_ALLOWED"
        return
    assert lines <= MAX_LINES, f"{module} has {lines} lines (max {MAX_LINES}): split it along a seam"


def test_every_subpackage_says_what_it_owns_and_may_not_touch():
    missing = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if "may" not in doc.lower() or not ("never" in doc.lower() or "only" in doc.lower()):
            missing.append(_module_name(init))
    assert not missing, f"subpackages whose docstring does not say what they may import: {missing}"


def test_docs_name_every_subpackage():
    """docs/architecture.md is where a newcomer looks for a stage: every subpackage is in it."""
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(init.parent.relative_to(PACKAGE)) for init in sorted(PACKAGE.rglob("__init__.py"))
               if init.parent != PACKAGE and f"`{init.parent.name}/`" not in doc]
    assert not missing, f"subpackages docs/architecture.md does not describe: {missing}"
