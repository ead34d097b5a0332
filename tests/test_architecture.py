"""House rules that a test can enforce (STYLE.md, DESIGN.md §7)."""

import ast
from pathlib import Path

import ikd

PACKAGE = Path(ikd.__file__).parent
RAY_LAYER = {"data/pipeline.py", "train/ray_train.py", "cli.py", "study.py", "jobs.py"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def test_ray_is_imported_only_in_the_ray_layer():
    for name, tree in _modules():
        if name in RAY_LAYER or name.startswith("tune/"):
            continue
        for node in ast.walk(tree):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(m == "ray" or m.startswith("ray.") for m in modules), (
                f"ikd/{name} imports ray"
            )


def test_library_code_logs_instead_of_printing():
    for name, tree in _modules():
        if name == "cli.py":
            continue
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
        ]
        assert not calls, f"ikd/{name} calls print()"
