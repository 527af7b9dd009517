"""Data flows one way: runners measure and return records; they never reach up into the
store, the reports or the commands, and never call the CLI; training and the model side never
reach the runners."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "levit_bench"


def _imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_runners_import_neither_reports_nor_commands():
    modules = sorted((PACKAGE / "runners").rglob("*.py"))
    assert len(modules) > 10
    for module in modules:
        upward = {n for n in _imports(module) if n.startswith(("levit_bench.reports", "levit_bench.commands",
                                                               "levit_bench.cli"))}
        assert not upward, f"{module.name} imports {upward}"


def test_no_runner_spawns_the_cli():
    for module in (PACKAGE / "runners").rglob("*.py"):
        text = module.read_text()
        assert '"levit_bench", "--' not in text and "'-m', 'levit_bench'" not in text, module.name
        assert '"-m", "levit_bench"' not in text, module.name


def test_reports_import_no_runner():
    for module in sorted((PACKAGE / "reports").rglob("*.py")):
        assert not {n for n in _imports(module) if n.startswith("levit_bench.runners")}, module.name


def test_train_imports_no_runner():
    modules = sorted((PACKAGE / "train").rglob("*.py"))
    assert len(modules) > 5
    for module in modules:
        assert not {n for n in _imports(module) if n.startswith("levit_bench.runners")}, module.name


def test_lower_layers_import_nothing_above_them():
    """registry -> models -> exporters: the model side never reaches runners, reports, training or commands."""
    above = ("levit_bench.runners", "levit_bench.reports", "levit_bench.train", "levit_bench.commands",
             "levit_bench.cli", "levit_bench.devices")
    modules = [*(PACKAGE / "models").rglob("*.py"), *(PACKAGE / "exporters").rglob("*.py"),
               *(PACKAGE / name for name in ("registry.py", "runtimes.py", "platforms.py", "environment.py", "records.py"))]
    for module in modules:
        assert not {n for n in _imports(module) if n.startswith(above)}, module.name
