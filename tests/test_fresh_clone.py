"""What a fresh clone on another machine meets (issue 22): committed records without this
machine's paths, and the committed results tree rendered again with no dataset and no Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest

from ikd.storage import local, portable

REPOSITORY = Path(__file__).resolve().parents[1]
COMMITTED = REPOSITORY / "results" / "laptop"
# results/laptop and the trees one per other CPU beside it (`<tree>@<data hash>-<teacher>`,
# README "What is reproducible") that are committed; an ignored one here is not a clone's
LISTED = subprocess.run(
    ["git", "-C", str(REPOSITORY), "ls-files", "-z", "results"],
    capture_output=True,
    text=True,
    check=True,
).stdout.split("\0")
TREES = sorted(
    {REPOSITORY / "/".join(Path(name).parts[:2]) for name in LISTED if name.count("/") > 1}
)


def test_paths_inside_a_root_are_stored_relative_to_it_and_resolved_elsewhere():
    roots = {"<results>": "/home/a/ikd/results/laptop", "<repo>": "/home/a/ikd"}
    command = "/home/a/ikd/ikd/__main__.py run --results /home/a/ikd/results/laptop data.root=/home/a/ikd/datasets"
    stored = portable(command, roots)
    assert stored == "<repo>/ikd/__main__.py run --results <results> data.root=<repo>/datasets"
    assert portable("/home/a/ikd/results/laptop/runs", roots) == "<results>/runs"  # deepest root
    for outside in ("/mnt/shared/datasets", "s3://bucket/runs", "datasets", 3, None):
        assert portable(outside, roots) == outside
    there = {"<results>": "/srv/b/results/laptop", "<repo>": "/srv/b"}
    assert local(stored, there) == (
        "/srv/b/ikd/__main__.py run --results /srv/b/results/laptop data.root=/srv/b/datasets"
    )
    assert local("/old/machine/datasets", there) == "/old/machine/datasets"  # an old record


def test_no_committed_record_names_a_machine_path():
    """study.json, provenance.json, run.json and config.json of every committed tree."""
    committed = [REPOSITORY / name for name in LISTED if name.endswith(".json")]
    assert len(committed) >= 3 and COMMITTED in TREES  # a tree committed as it goes
    for path in committed:
        text = path.read_text()
        for value in _strings(json.loads(text)):
            for token in value.replace("=", " ").split():
                assert not token.startswith(("/home/", "/work/", "/root/", "/tmp/")), (path, token)


def test_an_old_record_with_another_machines_paths_still_loads(tmp_path):
    from ikd.tune.stages import StudyRun

    tree = tmp_path / "laptop"
    shutil.copytree(COMMITTED / "table3_methods", tree / "table3_methods")  # the first study
    record = json.loads((tree / "table3_methods" / "study.json").read_text())
    record["study_file"] = "/gone/regen/studies/table3_methods.py"
    record["overrides"]["data.root"] = "/gone/main/datasets"
    (tree / "table3_methods" / "study.json").write_text(json.dumps(record))
    run = StudyRun.from_record(tree / "table3_methods", studies=REPOSITORY / "studies")
    assert run.path == REPOSITORY / "studies" / "table3_methods.py"
    assert run.config.data.root == str(Path("datasets").resolve())  # the default


@pytest.mark.parametrize("tree", TREES, ids=lambda tree: tree.name)
def test_the_committed_tree_renders_the_same_with_no_dataset_and_no_ray(tree, tmp_path):
    """`ikd report --results results/laptop` (and each committed tree beside it) on a fresh
    clone: tables, figures, the overview and the provenance byte for byte the committed ones
    (the same records: nothing to change). It reads records only: neither Ray nor torch is
    imported (torch cost a report ~1.4 s a call)."""
    clone = tmp_path / tree.name
    shutil.copytree(tree, clone)
    script = (
        "import sys; from ikd.cli import main; "
        f"code = main(['report', '--results', {str(clone)!r}]); "
        "assert not {'ray', 'torch'} & set(sys.modules), 'ikd report imported ray or torch'; "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    compared = 0
    for path in tree.rglob("*"):
        relative = path.relative_to(tree)
        if path.is_file() and relative.parts[0] != "runs":
            assert (clone / relative).read_bytes() == path.read_bytes(), relative
            compared += 1
    # the tree is committed as its regeneration goes (results/README.md): every study of `ikd
    # run` rendered from its records, or not reached yet and said so in the overview
    from ikd.tune.regenerate import ORDER

    overview = (tree / "README.md").read_text()
    reached = [name for name in ORDER if (tree / name / "study.json").exists()]
    assert reached[:1] == ["table3_methods"] and compared >= 5 * len(reached)
    for name in ORDER:
        if name in reached:
            assert {"table.md", "figure.md"} & {p.name for p in (tree / name).iterdir()}
            table = tree / name / "table.md"
            assert not table.exists() or " of None identities" not in table.read_text(), name
        else:
            assert f"## {name}\n\nNot run yet." in overview, name
    # once the regeneration has ended (its last estimate has nothing left), every study is there
    estimates = tree / "estimates.json"
    if estimates.exists() and not json.loads(estimates.read_text())[-1]["left_s"]:
        assert reached == list(ORDER) and "Not run yet." not in overview
        assert (tree / "fig4_lambda" / "figure.png").exists()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_a_tree_made_on_another_cpu_is_named_before_the_build(tmp_path):
    """`ikd run` says, before a build of minutes decides it, that a results tree made on another
    CPU (its studies' provenance) will likely not be continued here (README, "What is
    reproducible")."""
    from ikd.provenance import hardware
    from ikd.storage import location, write_json
    from ikd.tune.regenerate import made_elsewhere, made_here_beside

    tree = location(tmp_path / "results")
    assert made_elsewhere(tree) is None  # no tree yet
    record = tree / "table3_methods" / "provenance.json"
    write_json(record, {"hardware": {"cpu": hardware()["cpu"]}})
    assert made_elsewhere(tree) is None
    write_json(record, {"hardware": {"cpu": "Another CPU"}})
    assert made_elsewhere(tree) == "Another CPU"
    # a clock suffix is no other CPU: such a pair of Xeons trained the same teacher bits
    write_json(record, {"hardware": {"cpu": "Intel(R) Xeon(R) Processor"}})
    with patch(
        "ikd.tune.regenerate.hardware", return_value={"cpu": "Intel(R) Xeon(R) Processor @ 2.80GHz"}
    ):
        assert made_elsewhere(tree) is None
    # a tree of its own beside it, made on this CPU, is the one a build here can continue
    write_json(record, {"hardware": {"cpu": "Another CPU"}})
    made = (("results@a-here", hardware()["cpu"]), ("results@b-there", "Another CPU"),
            ("elsewhere@x-here", hardware()["cpu"]))  # fmt: skip
    for name, cpu in made:
        write_json(tree.parent / name / "table3_methods" / "provenance.json", {"hardware": {"cpu": cpu}})  # fmt: skip
    (tmp_path / "results@c-empty").mkdir()  # no study yet: made nowhere
    assert [t.name for t in made_here_beside(tree)] == ["results@a-here"]
