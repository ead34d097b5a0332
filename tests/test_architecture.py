"""House rules that a test can enforce (STYLE.md, DESIGN.md §7)."""

import ast
from pathlib import Path

import ikd

PACKAGE = Path(ikd.__file__).parent
RAY_LAYER = {
    "cluster.py",
    "data/pipeline.py",
    "train/ray_train.py",
    "cli.py",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def _imports(tree: ast.AST) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
    return found


def _imports_of(prefix: str) -> dict[str, set[str]]:
    return {name: _imports(tree) for name, tree in _modules() if name.startswith(prefix)}


def test_ray_is_imported_only_in_the_ray_layer():
    for name, tree in _modules():
        if name in RAY_LAYER or name.startswith("tune/"):
            continue
        assert not any(m == "ray" or m.startswith("ray.") for m in _imports(tree)), (
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


def test_the_config_imports_no_method_model_or_torch():
    for name in ("config.py", "method_params.py", "errors.py", "storage.py"):
        imported = _imports_of(name)[name]
        assert not any(
            m.split(".")[0] == "torch" or m.startswith(("ikd.methods", "ikd.models", "ikd.train"))
            for m in imported
        ), (name, imported)


def test_radar_and_face_do_not_import_each_other():
    for name, imported in _imports_of("radar/").items():
        assert not any(m.startswith("ikd.face") for m in imported), name
    for name, imported in _imports_of("face/").items():
        assert not any(m.startswith("ikd.radar") for m in imported), name


def test_models_do_not_import_the_dataset_schema_or_training():
    for name, imported in _imports_of("models/").items():
        assert not any(m.startswith(("ikd.data", "ikd.train")) for m in imported), name


def test_the_ground_floor_imports_nothing_of_ikd():
    for name in ("errors.py", "storage.py"):
        assert not any(m.startswith("ikd") for m in _imports_of(name)[name]), name


def test_the_dataset_schema_and_the_storage_layer_import_no_torch():
    """Ray Data's tasks import the schema; torch's import would add seconds to each worker."""
    for name in ("data/schema.py", "models/__init__.py", "storage.py"):
        assert "torch" not in {m.split(".")[0] for m in _imports_of(name)[name]}, name


def test_the_data_pipeline_stands_on_the_teacher_never_on_training():
    """The teacher (face/teacher.py: its training and loading) sits below the data pipeline that
    runs it; nothing in data/ or face/ reaches up into train/."""
    for prefix in ("data/", "face/"):
        for name, imported in _imports_of(prefix).items():
            assert not any(m.startswith(("ikd.train", "ikd.tune")) for m in imported), name
    for name, imported in _imports_of("face/").items():
        assert not any(m.startswith("ikd.data") for m in imported), name


def test_the_study_definitions_sit_below_tuning_and_the_report():
    """What a study file declares (ikd/study.py: Study, Variant, Table, Figure, the table
    spaces; ikd/space.py: the ranges) is read by tune/, which runs it, and by report/, which
    renders it: it reaches up into neither, nor into training, and the report never imports
    tune/ (which imports the report)."""
    for name in ("study.py", "space.py"):
        imported = _imports_of(name)[name]
        assert not any(
            m.startswith(("ikd.tune", "ikd.report", "ikd.train", "ikd.methods"))
            or m.split(".")[0] in ("torch", "ray")
            for m in imported
        ), (name, imported)
    for name, imported in _imports_of("report/").items():
        assert not any(m.startswith("ikd.tune") for m in imported), name
