"""The demo is a plug-in: no module of the core imports it; the core names it only by import
strings (icegrt_cli.plugins, configs). Read with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "icegrt_cli"
DEMO = "icegrt_cli.demo"
ALLOWED: set[str] = set()
"""Core modules allowed to import the demo: none. Every entry point (files, judges, tokenizer
corpus, generator) is reached through an import string in icegrt_cli/plugins.py or a config."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module an `import` or `from ... import` in `source` names, relative ones resolved
    (`from icegrt_cli import demo` counts as importing icegrt_cli.demo)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def imports_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return imported(text, module_name(path), path.name == "__init__.py")


def is_demo(name: str) -> bool:
    return name == DEMO or name.startswith(DEMO + ".")


def core_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not is_demo(module_name(p))]


def test_no_core_module_imports_the_demo() -> None:
    modules = core_modules()
    assert len(modules) > 50 and PACKAGE / "cli.py" in modules  # the walk sees the core
    offenders = {
        module_name(path): name
        for path in modules
        for name in imports_of(path)
        if is_demo(name) and module_name(path) not in ALLOWED
    }
    assert not offenders, f"the core imports the demo (name it by import string): {offenders}"


def test_every_spelling_of_a_demo_import_is_seen() -> None:
    spellings = [
        "import icegrt_cli.demo.gold",
        "from icegrt_cli.demo import gold_score",
        "from icegrt_cli import demo",
        "from ..demo import plugin",  # relative, from icegrt_cli.eval.tasks
        "def f():\n    from icegrt_cli.demo.plugin import ad_judge",
    ]
    for line in spellings:
        assert any(map(is_demo, imported(line, "icegrt_cli.eval.tasks"))), line
    assert not any(map(is_demo, imported("import icegrt_cli.demonstration", "icegrt_cli.x")))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    modules = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph = {
        name: {other for other in imports_of(path) if other in modules and other != name}
        for name, path in modules.items()
    }
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not import_cycles(graph), "modules that import each other (a late import hides it)"
