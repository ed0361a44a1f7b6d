"""The package's shape: no import cycle, layers import downward only, the entry points stay thin,
and the worker never loads Flask. Read from the source with ``ast``, so it holds for every import
at module level (the ones that decide what a process loads)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proctor"
ENTRY_POINTS = {"server", "celery_config", "celery_tasks", "gunicorn_config"}

# Lower layers never import higher ones. Within a layer imports are allowed (acyclic).
LAYERS = [
    ("foundation", {"config", "errors", "clock", "filetypes", "blocking"}),
    ("infrastructure", {"db", "schema", "redis_client", "locks", "storage", "runs", "worker", "logs", "serving"}),
    ("domain", None),  # every other module of the package
    ("front doors", {"metrics", "app", "cli", "api", "web", "client"}),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions), as absolute names."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py")) + [ROOT / f"{e}.py" for e in ENTRY_POINTS]
    names = {module_name(f): f for f in files}
    return {name: {i for i in imports_of(path) if i in names and i != name} for name, path in names.items()}


def layer_of(module: str) -> int:
    if module in ENTRY_POINTS:
        return len(LAYERS)
    short = module.split(".")[1] if "." in module else ""
    for index, (_, members) in enumerate(LAYERS):
        if members is not None and short in members:
            return index
    return 2


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def without_parent_packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    # ``from . import x`` names the package too; a package importing its own children is no cycle.
    return {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in edges.items()}


def test_no_import_cycle():
    assert find_cycle(without_parent_packages(graph())) is None


def test_layers_import_downward_only():
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0] if layer_of(m) < len(LAYERS) else 'entry point'}) imports {i}"
        for m, deps in without_parent_packages(graph()).items()
        for i in deps
        if layer_of(i) > layer_of(m)
    ]
    assert upward == []


def test_the_package_never_imports_the_entry_points():
    offenders = {m: deps & ENTRY_POINTS for m, deps in graph().items() if m.startswith("proctor") and deps & ENTRY_POINTS}
    assert offenders == {}


def test_no_function_level_import_inside_the_package():
    """A lazy import would only hide a cycle or an upward import from the checks above."""
    lazy = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy += [
                    f"{module_name(path)}:{inner.lineno}"
                    for inner in ast.walk(node)
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and _is_own(inner)
                ]
    assert lazy == []


def _is_own(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] in {"proctor", *ENTRY_POINTS}
    return any(a.name.split(".")[0] in {"proctor", *ENTRY_POINTS} for a in node.names)


def test_the_worker_never_loads_flask():
    code = "import sys, celery_tasks; print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_modules_stay_small_or_say_why():
    long = [
        f"{module_name(p)}: {n} lines"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400 and "is long because" not in p.read_text()[:2000]
    ]
    assert long == []


def test_every_setting_is_read_in_one_place_and_documented():
    """Environment variables are read only by proctor/config.py (and the thin gunicorn_config.py,
    through its Env reader); each one it reads has a row in the README's configuration table and
    a line in systemd/proctor.env.example or a note there that the units set it."""
    import re

    read = re.compile(r"""(?:env|_env)\.\w+\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    names = set(read.findall((PACKAGE / "config.py").read_text()))
    assert len(names) > 20
    # PROMETHEUS_MULTIPROC_DIR is prometheus_client's own variable: the library reads it itself.
    reads_env = re.compile(r"os\.environ\b(?!\.get\(\"PROMETHEUS_MULTIPROC_DIR\")|os\.getenv\(")
    elsewhere = [
        f"{module_name(p)} reads the environment"
        for p in PACKAGE.rglob("*.py")
        if p.name != "config.py" and reads_env.search(p.read_text())
    ]
    assert elsewhere == []
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "systemd" / "proctor.env.example").read_text()
    rows = {name for line in readme.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0])}
    undocumented = sorted(names - rows)
    assert undocumented == [], "missing from the README's configuration table"
    absent = sorted(n for n in names if n not in example)
    assert absent == [], "missing from systemd/proctor.env.example"
