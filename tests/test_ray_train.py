"""Ray Train on the smoke dataset: DDP over gloo with 2 workers, a worker death, the CLI."""

import json
import logging

import pytest

from ikd.cli import main
from ikd.errors import UserError
from ikd.train.driver import evaluate_run, train_driver

pytestmark = pytest.mark.slow


def _metric_lines(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_a_worker_that_dies_mid_training_resumes_to_the_same_final_metrics(smoke_dataset, tmp_path):
    config, _, _ = smoke_dataset
    spec = {
        "preset": "smoke",
        "loop": "ray",
        "progress": False,
        "data.root": config.data.root,
        "teacher.source": "trained",
        "train.method": "identitykd",
        "train.workers": 2,
        "train.epochs": 3,
        "train.batch_size": 8,
        "train.student": "mobilenet",  # the smallest student: the subject is the fault, not it
        "train.runs_root": str(tmp_path),
        # each worker reads its data from the dataset's storage (the paper preset's way): ~5 s
        # less per launch at this size than the object store's; the test below takes that path
        "resources.data": "storage",
    }
    unbroken = train_driver({**spec, "study": "unbroken"})
    assert not list(unbroken.glob(".fault-injected*"))

    # The last rank dies after epoch 0 with no restart allowed: the run stops with a clear error.
    broken = {**spec, "study": "broken"}
    # (which rank the one-line error names depends on which failure Ray saw first)
    with pytest.raises(UserError, match=r"0 restart\(s\) allowed \(rank \d: .*Run the same"):
        train_driver({**broken, "fail_at_epochs": (0,), "max_failures": 0})
    broken_dir = tmp_path / "broken" / "final" / unbroken.name
    assert (broken_dir / ".fault-injected-epoch-0").exists()  # the last rank did die
    assert json.loads((broken_dir / "run.json").read_text())["status"] == "running"
    assert [m["epoch"] for m in _metric_lines(broken_dir)] == [0]
    # The same command resumes it at epoch 1; the last rank dies after it again, Ray Train
    # restarts the workers, and the run goes on to the end within this one call.
    assert train_driver({**broken, "fail_at_epochs": (1,), "max_failures": 1}).local == broken_dir
    assert (broken_dir / ".fault-injected-epoch-1").exists()
    assert _metric_lines(broken_dir) == _metric_lines(unbroken)
    assert len(_metric_lines(broken_dir)) == 3
    assert json.loads((broken_dir / "run.json").read_text())["status"] == "complete"
    assert len([p for p in (broken_dir / "ray").glob("checkpoint_*") if p.is_dir()]) == 2
    # Every rank evaluated rank 0's model: the checkpoint reproduces the logged val metrics.
    assert (
        evaluate_run(broken_dir, "val")["val/per_identity"]
        == _metric_lines(broken_dir)[-1]["val/per_identity"]
    )


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
        "train.student=mobilenet",
        f"train.runs_root={tmp_path}",
    ]
    args = ["--preset", "smoke", "--method", "identitykd", f"data.root={config.data.root}"]
    args.append("teacher.source=trained")  # as the fixture's dataset was built
    assert main(["train", *args, *overrides, "--no-ray", "--study", "plain"]) == 0
    (plain,) = (tmp_path / "plain" / "final").iterdir()
    # The worker gets its data through Ray Data and the object store (the fault test above
    # reads it from the dataset's storage): the same samples either way.
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
