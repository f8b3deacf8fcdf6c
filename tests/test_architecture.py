"""The house's layers (docs/architecture.md): every import in utils/ runs down, never up or sideways.

The import graph is read from the source (every ``import`` and ``from ... import``, at module level or inside a
function), so a lazy import cannot hide a layer violation. A package may import its own modules and those of
lower layers; packages of the same layer do not import each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# lowest first; docs/architecture.md draws the same table
LAYERS: list[tuple[str, ...]] = [
    ("utils.errors", "utils.atomic"),
    ("utils.distributed", "utils.figures", "utils.gates", "utils.timing_report"),
    ("utils.mri",),
    ("utils.metrics",),
    ("utils.data", "utils.model"),
    ("utils.inference", "utils.evaluation"),
    ("utils.experts",),
    ("utils.training",),
    ("utils.tools", "utils.learning", "utils.common"),
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def _package(module: str) -> str:
    """The layer unit of a module: ``utils.<first part>`` (``utils.errors`` for a root helper)."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import of a ``utils`` module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module == "utils" or module.startswith("utils.")]


def _sources(root: Path) -> list[Path]:
    return sorted((root / "utils").rglob("*.py"))


def layer_violations(root: Path) -> list[str]:
    """Every import under ``root/utils`` that runs up or sideways, as ``file:line (package, layer) imports ...``."""
    violations = []
    for path in _sources(root):
        own = _package(_module_name(path, root))
        for line, imported in _imports(path):
            target = _package(imported)
            if target == own or own == "utils":
                continue
            if own not in LAYER_OF or target not in LAYER_OF or LAYER_OF[target] >= LAYER_OF[own]:
                violations.append(f"{path.relative_to(root)}:{line} ({own}, layer {LAYER_OF.get(own, '?')}) imports {imported} "
                                  f"(layer {LAYER_OF.get(target, '?')})")
    return violations


def test_every_package_of_utils_has_a_layer():
    packages = {_package(_module_name(path, REPO)) for path in _sources(REPO)} - {"utils"}
    assert packages <= set(LAYER_OF), f"packages without a layer in LAYERS: {sorted(packages - set(LAYER_OF))}"


def test_imports_run_down_the_layers():
    violations = layer_violations(REPO)
    assert not violations, "imports that run up or sideways:\n" + "\n".join(violations)


def test_the_layer_check_reports_upward_and_sideways_imports(tmp_path):
    for name, text in {"mri/bad.py": "def f():\n    from utils.training.trainer import train\n",  # lazy and upward
                       "data/side.py": "import utils.model.builder\n",  # sideways: data and model share a layer
                       "model/fine.py": "from utils.mri.fft import fft2c\n"}.items():
        (tmp_path / "utils" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "utils" / name).write_text(text)
    violations = layer_violations(tmp_path)
    assert len(violations) == 2
    assert violations[0].startswith("utils/data/side.py:1 (utils.data, layer 4) imports utils.model.builder (layer 4)")
    assert violations[1].startswith("utils/mri/bad.py:2 (utils.mri, layer 2) imports utils.training.trainer")


@pytest.mark.parametrize("rule", ["files", "functions"])
def test_files_and_functions_stay_readable(rule):
    long = []
    for path in _sources(REPO):
        text = path.read_text()
        if rule == "files" and len(text.splitlines()) > MAX_FILE_LINES:
            long.append(f"{path.relative_to(REPO)}: {len(text.splitlines())} lines")
        if rule == "functions":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    limit = MAX_FILE_LINES if rule == "files" else MAX_FUNCTION_LINES
    assert not long, f"over {limit} lines (split by concept):\n" + "\n".join(long)
