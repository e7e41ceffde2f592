"""The repository stands alone and its package has a one-way import graph.

- every reference to the method, ``docs/method.md §N``, names a section that exists there;
- nothing refers to a file outside the repository;
- the modules of ``stalegrpo`` import each other without a cycle (lazy imports inside functions
  count too: a cycle through them still means two modules that cannot be read apart).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "code" / "stalegrpo"


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / name for name in names.split()]
    return [p for p in paths if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".smk", ".tex", ".rst", ".toml", ""}]


def method_sections() -> set[str]:
    """Section numbers of docs/method.md: '2', '3.2', ..."""
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (ROOT / "docs/method.md").read_text(), flags=re.MULTILINE)
    return set(headings)


def test_every_method_reference_names_an_existing_section():
    sections = method_sections()
    assert {"1", "2", "3", "3.2", "4", "5", "6", "7", "8", "9", "10"} <= sections, sorted(sections)
    missing = []
    for path in tracked_text_files():
        text = path.read_text(errors="ignore")
        for match in re.finditer(r"method\.md,? (§[\d.§\-–, and]+)", text):
            for number in re.findall(r"§(\d+(?:\.\d+)?)", match.group(1)):
                if number.rstrip(".") not in sections:
                    missing.append(f"{path.relative_to(ROOT)}: §{number}")
    assert not missing, missing


def test_nothing_refers_outside_the_repository():
    pattern = re.compile(r"SCIENCE\.md|\.\./shared|/tmp/\w+\.md")
    offending = [
        str(p.relative_to(ROOT)) for p in tracked_text_files() if p.name != "test_layout.py" and pattern.search(p.read_text(errors="ignore"))
    ]
    assert not offending, offending


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the stalegrpo modules it imports (anywhere in the file). The actor factory
    imports its backends by name (:data:`stalegrpo.actors.registry.BACKENDS`); those count too."""
    from stalegrpo.actors.registry import BACKENDS

    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            edges |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
        graph[name] = edges
    graph["stalegrpo.actors"] |= {backend.module for backend in BACKENDS.values()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_has_no_import_cycle():
    graph = import_graph()
    assert "stalegrpo.rollout" in graph["stalegrpo.actors.vllm"]  # the graph sees real imports
    assert "stalegrpo.actors.vllm" in graph["stalegrpo.actors"]  # and the factory's, by name
    assert find_cycle(graph) is None, find_cycle(graph)


def test_the_package_docstring_names_every_module():
    """stalegrpo/__init__.py is the package's table of contents: a new module must be listed there."""
    import stalegrpo

    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}  # fits, tasks, actors
    named = set(re.findall(r"``(\w+)``", stalegrpo.__doc__))
    assert modules <= named, sorted(modules - named)


def test_no_module_outside_a_backend_branches_on_its_name():
    """Code outside ``stalegrpo/actors/`` never compares anything with an actor backend's name
    (``cfg.actor == "vllm"``): what differs between backends is asked of the backend module or of
    its line in ``actors/registry.py``."""
    from stalegrpo.actors.registry import BACKENDS

    found = []
    for path in PACKAGE.rglob("*.py"):
        if "actors" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                for operand in operands:
                    names = [operand] if isinstance(operand, ast.Constant) else getattr(operand, "elts", [])
                    if any(isinstance(c, ast.Constant) and c.value in BACKENDS for c in names):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found
