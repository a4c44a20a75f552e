"""The package layering holds: each layer imports only the layers below it, and Airflow stays outside the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
LIBRARY = PROJECT / "crack_model"
# Bottom first: a package may import itself and the packages before it, never one after it.
LAYERS = ("core", "data", "registry", "serving", "evaluation", "training", "quality", "pipelines", "cli")
# Third-party modules too slow for DAG parsing or `--help`: only inside functions (one-line comment says why).
HEAVY = ("tensorflow", "keras", "pandas", "great_expectations", "sklearn", "scipy", "matplotlib", "boto3", "botocore")
MAX_LINES = 400


def imports_of(path: Path, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file, or only those at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: list[tuple[str, int]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "crack_model" and parts[1] in LAYERS else None


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PROJECT)))
def test_each_module_imports_only_its_own_layer_and_those_below(path: Path) -> None:
    """No upward import: core sees nothing above it, pipelines nothing from cli, and so on."""
    relative = path.relative_to(LIBRARY).parts
    own = relative[0] if len(relative) > 1 else None
    allowed = set(LAYERS[: LAYERS.index(own) + 1]) if own else set(LAYERS)
    upward = [(module, line) for module, line in imports_of(path) if layer_of(module) not in (None, *allowed)]
    assert not upward, f"{path.name} imports a higher layer: {upward}"


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PROJECT)))
def test_the_library_never_imports_airflow(path: Path) -> None:
    """crack_model is plain Python: Airflow code lives in dags/ and plugins/."""
    assert not [module for module, _ in imports_of(path) if module.split(".")[0] == "airflow"]


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PROJECT)))
def test_library_modules_are_short_and_import_heavy_libraries_lazily(path: Path) -> None:
    """At most 400 lines; TensorFlow, pandas, GX and friends only inside the functions that need them."""
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES
    heavy = [(module, line) for module, line in imports_of(path, top_level_only=True) if module.split(".")[0] in HEAVY]
    assert not heavy, f"{path.name} imports a heavy library at module level: {heavy}"


def test_library_imports_inside_functions_are_only_heavy_third_party() -> None:
    """Project imports sit at the top of a module: an import inside a function is for a heavy library only."""
    inner: list[str] = []
    for path in library_files():
        top = set(imports_of(path, top_level_only=True))
        for module, line in imports_of(path):
            if (module, line) not in top and module.split(".")[0] == "crack_model":
                inner.append(f"{path.relative_to(PROJECT)}:{line} {module}")
    assert not inner


@pytest.mark.parametrize(
    "path",
    sorted([*(PROJECT / "dags").glob("*.py"), *(PROJECT / "plugins").rglob("*.py")]),
    ids=lambda path: str(path.relative_to(PROJECT)),
)
def test_dags_and_plugin_use_only_the_pipelines_api(path: Path) -> None:
    """DAG files and crack_ops reach the library only through crack_model.pipelines."""
    reached = [module for module, _ in imports_of(path) if module.split(".")[0] == "crack_model"]
    assert all(
        module == "crack_model.pipelines" or module.startswith("crack_model.pipelines.") for module in reached
    ), reached


def test_no_import_cycles_between_library_modules() -> None:
    """Module-level project imports form no cycle (a cycle is what forced imports into functions before)."""
    graph: dict[str, set[str]] = {}
    for path in library_files():
        name = ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {
            module for module, _ in imports_of(path, top_level_only=True) if module.startswith("crack_model.")
        }
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in done or node not in graph:
            return
        assert node not in visiting, f"import cycle: {' -> '.join([*trail, node])}"
        visiting.add(node)
        for target in sorted(graph[node]):
            visit(target, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
