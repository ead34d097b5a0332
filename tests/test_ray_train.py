"""Ray Train on the smoke dataset: one worker against the plain loop, the CLI (a worker death
and a lost node: tests/test_cluster.py)."""

import json
import logging

import pytest

from ikd.cli import main

pytestmark = pytest.mark.slow


def _metric_lines(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_one_ray_worker_matches_the_plain_loop_and_the_cli_evaluates_test(
    smoke_dataset, tmp_path, capsys, caplog
):
    caplog.set_level(logging.INFO, logger="ikd")
    config, _, _ = smoke_dataset
    overrides = [
        "train.workers=1",
        "train.threads=1",
        "train.epochs=2",
        "train.batch_size=8",
        "train.student=tests.stand_ins:tiny_backbone",
        f"train.runs_root={tmp_path}",
    ]
    args = ["--preset", "smoke", "--method", "identitykd", f"data.root={config.data.root}"]
    args.append("teacher.source=trained")  # as the fixture's dataset was built
    assert main(["train", *args, *overrides, "--no-ray", "--study", "plain"]) == 0
    (plain,) = (tmp_path / "plain" / "final").iterdir()
    # The worker gets its data through Ray Data and the object store (the cluster test's run,
    # tests/test_cluster.py, reads it from the dataset's storage): the same samples either way.
    assert main(["train", *args, *overrides, "resources.data=object_store", "--test"]) == 0
    assert "data via the object store" in caplog.text
    (run_dir,) = (tmp_path / "train" / "final").iterdir()
    ray_lines, plain_lines = _metric_lines(run_dir), _metric_lines(plain)
    for ours, theirs in zip(ray_lines, plain_lines, strict=True):
        assert ours["val/per_identity"] == theirs["val/per_identity"]
        assert ours["train/loss"] == pytest.approx(theirs["train/loss"], rel=1e-5)
    assert json.loads((run_dir / "test.json").read_text())["split"] == "test"
    # An interrupted Ray run is resumed the way it started (its checkpoints live under ray/).
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "running"}))
    assert main(["train", *args, *overrides, "--no-ray"]) == 2
    assert "started with Ray; resume it the same way (loop=ray: drop --no-ray)" in (
        capsys.readouterr().err
    )
