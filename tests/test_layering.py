"""The house rules of DESIGN.md that a reviewer would otherwise have to catch: no import
cycle; the domain, the mail layer and the CLI never import the web or the worker (but for
the one place where the CLI starts a worker); no SQL in the web; the worker and the
scheduler start without Flask; jobs queued under the names they had before the move still
run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import env_for, make_settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("newsletter", "worker")

# What may not import the web or the worker: everything of the package but the web itself
# and the app factory that registers its blueprints.
WEB = "newsletter.web"
WORKER = "worker"
MAY_IMPORT_WEB = ("newsletter.app",)
# The one place where the CLI starts a worker or the scheduler.
MAY_IMPORT_WORKER = {"newsletter.cli.processes": {"worker.runner"}}
# The web parses, calls the domain and renders; statements are the domain's. It may catch
# SQLAlchemy's errors.
WEB_MAY_IMPORT_FROM_SQLALCHEMY = ("sqlalchemy.exc",)
SQL_METHODS = {"execute", "scalar", "scalars", "exec_driver_sql"}


def _module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _is_guard(node: ast.If) -> bool:
    """`if TYPE_CHECKING:` (never runs) or `if __name__ == "__main__":` (runs only as the
    program, under the name __main__, so it cannot close a cycle of its own module)."""
    test = node.test
    if isinstance(test, ast.Name | ast.Attribute):
        return (test.id if isinstance(test, ast.Name) else test.attr) == "TYPE_CHECKING"
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that runs when the module is imported or its functions are called."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_guard(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _imports(name: str, path: Path) -> dict[str, set[str]]:
    """What the module imports, function-level imports included (a lazy import still
    depends), as {imported module: names taken from it}."""
    is_package = path.name == "__init__.py"
    found: dict[str, set[str]] = {}
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                # `from newsletter import queueing` imports the module newsletter.queueing.
                found.setdefault(submodule if submodule in MODULES else module, set()).add(alias.name)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}
GRAPH = {name: sorted(target for target in imports if target in MODULES) for name, imports in IMPORTS.items()}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycle() -> list[str] | None:
    """One import cycle of the package, as a path that ends where it starts; None without."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in GRAPH[module]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_walk_sees_the_package():
    # A walk that found nothing would pass every rule below.
    assert {"newsletter.queueing", "newsletter.web.public", "newsletter.cli.commands", "worker.runner"} <= set(GRAPH)
    assert "newsletter.queueing" in GRAPH["newsletter.web.extensions"]
    assert "worker.runner" in GRAPH["newsletter.cli.processes"]


def test_there_is_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_app_factory_imports_the_web():
    wrong = sorted(
        f"{module} imports {target}"
        for module, imports in IMPORTS.items() for target in imports
        if _within(target, WEB) and not _within(module, WEB) and module not in MAY_IMPORT_WEB
    )
    assert wrong == []


def test_nothing_of_the_package_imports_the_worker_but_where_the_cli_starts_one():
    wrong = sorted(
        f"{module} imports {target}"
        for module, imports in IMPORTS.items() if _within(module, "newsletter")
        for target in imports
        if _within(target, WORKER) and target not in MAY_IMPORT_WORKER.get(module, set())
    )
    assert wrong == []


def test_the_web_runs_no_sql():
    wrong = []
    for module, imports in IMPORTS.items():
        if not _within(module, WEB):
            continue
        wrong += [f"{module} imports {sorted(names) or target}" for target, names in imports.items()
                  if _within(target, "sqlalchemy") and target not in WEB_MAY_IMPORT_FROM_SQLALCHEMY]
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS:
                wrong.append(f"{module} line {node.lineno} calls .{node.func.attr}()")
    assert wrong == []


def test_jobs_queued_under_their_names_before_the_move_still_run():
    from rq.utils import import_attribute

    from newsletter import queueing

    assert import_attribute("worker.jobs.send_outbox") is queueing.send_outbox
    assert import_attribute("worker.jobs.send_chunk") is queueing.send_chunk


def test_the_worker_starts_and_works_without_flask(sqlite_template, redis_conn, tmp_path):
    """The worker holds what it imports for good, one per host or more: Flask, its
    extensions and the web's templates are no part of it (bench/digest.py)."""
    target = tmp_path / "newsletter.db"
    shutil.copy(sqlite_template, target)
    settings = make_settings(database_url=f"sqlite:///{target}", instance_path=str(tmp_path / "instance"))
    program = (
        "import sys\n"
        "from newsletter.cli.console import main\n"
        "main(['worker', '--burst'])\n"
        "print('imported:', sorted(m for m in sys.modules if m.split('.')[0].startswith('flask')))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], env=env_for(settings), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported: []" in result.stdout.splitlines(), result.stdout
    assert "Listening on" in result.stderr  # it did work its queues
