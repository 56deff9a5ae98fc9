"""The package's floors (docs/architecture.md): no module imports from a higher floor than its own."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "careless_online"

#: Floor of each top-level module or sub-package, lowest first (docs/architecture.md's table).
FLOORS = {
    "__init__": 0, "errors": 0, "checks": 0, "progress": 0,
    "io": 1,
    "ambiguity": 2, "distributions": 2, "layers": 2,
    "stats": 3, "tools": 3,
    "model": 4,
    "training": 5, "report": 5,
    "cli": 6, "simulate": 6,
}


def _part(path):
    """The top-level module or sub-package a file belongs to."""
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _imported_parts(tree):
    """Top-level parts of careless_online that a module imports (at any depth of its code)."""
    for node in ast.walk(tree):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            if name.startswith("careless_online."):
                yield name.split(".")[1]


def test_every_part_has_a_floor():
    parts = {_part(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(FLOORS), f"give these a floor in FLOORS and docs/architecture.md: {parts - set(FLOORS)}"


def test_no_import_runs_up_a_floor():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = FLOORS[_part(path)]
        for target in _imported_parts(ast.parse(path.read_text())):
            if FLOORS.get(target, 0) > here:
                upward.append(f"{path.relative_to(PACKAGE)} imports careless_online.{target}")
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import():
    """The checker itself: an io module importing training is caught."""
    tree = ast.parse("from careless_online.training.loop import Trainer\n")
    assert [FLOORS[t] > FLOORS["io"] for t in _imported_parts(tree)] == [True]
