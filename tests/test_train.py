"""The run driver and the plain training loop on the smoke dataset: run folders, determinism,
resume, divergence, the test split once.

What these tests check does not depend on the network, so the loop trains a tiny stand-in under
the resnet18 name (the `STUDENTS` dict is the seam; Ray Train's workers, in other processes, train
the real one in tests/test_ray_train.py).
"""

import json

import pyarrow.parquet as pq
import pytest
import torch
from stand_ins import tiny_backbone

from ikd.cli import main
from ikd.config import Config, apply_overrides
from ikd.data.dataset import BuiltDataset, open_dataset
from ikd.errors import ConfigError, UserError, raise_if_stopped
from ikd.methods import METHODS
from ikd.methods.baseline import Baseline
from ikd.models.students import STUDENTS
from ikd.train import driver, loop
from ikd.train.data import Samples
from ikd.train.driver import evaluate_run, train_driver
from ikd.train.metrics import confusion, summarize
from ikd.train.runs import DivergedError, LocalCheckpoints, run_folder, run_hash, split_spec

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def tiny_resnet18(monkeypatch):
    monkeypatch.setitem(STUDENTS, "resnet18", tiny_backbone)


def _spec(smoke_dataset, tmp_path, **overrides):
    """The driver's dict for a plain-loop smoke run (2 epochs, batch 8) into tmp_path."""
    config, _, _ = smoke_dataset
    return {
        "preset": "smoke",
        "loop": "plain",
        "progress": False,
        "data.root": config.data.root,
        "teacher.source": "trained",  # as the fixture's dataset was built
        "train.runs_root": str(tmp_path),
        "train.epochs": 2,
        "train.batch_size": 8,
        **overrides,
    }


def _fit(smoke_dataset, tmp_path, **overrides):
    return train_driver(_spec(smoke_dataset, tmp_path, **overrides))


def _metric_lines(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_the_same_seed_and_config_give_the_same_metrics(smoke_dataset, tmp_path):
    first = _fit(smoke_dataset, tmp_path, study="a", **{"train.method": "identitykd"})
    second = _fit(smoke_dataset, tmp_path, study="b", **{"train.method": "identitykd"})
    assert first != second and _metric_lines(first) == _metric_lines(second)
    other_seed = _fit(smoke_dataset, tmp_path, **{"train.method": "identitykd", "train.seed": 1})
    assert _metric_lines(other_seed) != _metric_lines(first)


def test_a_run_folder_holds_its_config_provenance_metrics_and_two_checkpoints(
    smoke_dataset, tmp_path
):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "vanilla_kd", "train.epochs": 3})
    reported = []
    run_dir = train_driver({**spec, "on_epoch": reported.append})
    assert run_dir.parent.local == tmp_path / "train" / "final"
    overrides = split_spec(spec)[1]
    one_worker = apply_overrides(smoke_dataset[0], {**overrides, "train.workers": 1})  # no Ray
    assert run_dir.name == f"vanilla_kd-{run_hash(one_worker)}-seed0"
    assert Config.from_dict(json.loads((run_dir / "config.json").read_text())) == one_worker
    record = json.loads((run_dir / "run.json").read_text())
    manifest = json.loads((smoke_dataset[1] / "manifest.json").read_text())
    assert record["status"] == "complete" and record["teacher"] == manifest["teacher"]
    assert record["synthetic"] is True and record["data_hash"] == one_worker.data_hash()
    assert (record["stage"], record["loop"]) == ("final", "plain")
    assert record["method_version"] == METHODS["vanilla_kd"].Params.version == 2
    lines = _metric_lines(run_dir)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    assert [{k: v for k, v in m.items() if k != "seconds"} for m in reported] == lines
    for name in ("val/acc", "val/recall", "val/f1", "val/worst_acc", "train/loss/kl"):
        assert 0 <= lines[-1][name] < 100
    assert len(lines[-1]["val/per_identity"]) == 4
    assert lines[-1]["val/samples"] == len(
        Samples.from_dataset(open_dataset(smoke_dataset[1]), "val")
    )
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch-0001",
        "epoch-0002",
    ]
    assert not (run_dir / "test.json").exists()  # test only when asked


def test_checkpoints_come_at_their_interval_and_a_discarded_runs_last_epoch_has_none(
    smoke_dataset, tmp_path
):
    """`train.checkpoint_every_s` an hour: a final run writes its last epoch's checkpoint only.
    A re-evaluation (its checkpoints go when it ends, as a tuning trial's) writes none at its
    last epoch: with the default (every epoch) it keeps the two before. What each trains is the
    same."""
    three = {"train.method": "baseline", "train.epochs": 3}
    spaced = _fit(smoke_dataset, tmp_path, study="a", **three, **{"train.checkpoint_every_s": 3600})
    reeval = _fit(smoke_dataset, tmp_path, study="b", stage="reeval", **three)
    every = _fit(smoke_dataset, tmp_path, study="c", **three)

    def kept(run_dir):
        return sorted(p.name for p in (run_dir / "checkpoints").iterdir())

    assert kept(spaced) == ["epoch-0002"]
    assert kept(reeval) == ["epoch-0000", "epoch-0001"]
    assert kept(every) == ["epoch-0001", "epoch-0002"]
    assert _metric_lines(spaced) == _metric_lines(reeval) == _metric_lines(every)


def test_a_finished_run_is_not_trained_again(smoke_dataset, tmp_path, monkeypatch):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "baseline", "train.epochs": 1})
    run_dir = train_driver(spec)
    monkeypatch.setattr(driver, "train_loop", pytest.fail)
    assert train_driver(spec) == run_dir


def test_test_json_is_written_once_and_only_when_asked(smoke_dataset, tmp_path, monkeypatch):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "mkd", "train.epochs": 1})
    splits_read = []
    read = BuiltDataset.read

    def spy(self, split, *args, **kwargs):
        splits_read.append(split)
        return read(self, split, *args, **kwargs)

    monkeypatch.setattr(BuiltDataset, "read", spy)
    tune_run = train_driver({**spec, "stage": "tune"})
    assert sorted(set(splits_read)) == ["train", "val"]
    assert tune_run.parent.name == "tune" and not (tune_run / "test.json").exists()
    with pytest.raises(UserError, match="tuning run never reads the test split"):
        evaluate_run(tune_run, "test")
    with pytest.raises(ConfigError, match="tuning run never reads the test split"):
        train_driver({**spec, "stage": "tune", "test": True})
    run_dir = train_driver({**spec, "test": True})
    test = json.loads((run_dir / "test.json").read_text())
    assert test["split"] == "test" and 0 <= test["test/acc"] <= 1
    predictions = pq.read_table(run_dir / "test_predictions.parquet").to_pydict()
    assert len(predictions["key"]) == test["test/samples"]
    hits = [
        max(range(4), key=row.__getitem__) == identity
        for row, identity in zip(predictions["logits"], predictions["identity"], strict=True)
    ]
    assert sum(hits) / len(hits) == pytest.approx(test["test/acc"])
    for key, walk, window in zip(
        predictions["key"], predictions["walk"], predictions["window"], strict=True
    ):
        assert key % 1_000_000 == walk * 1_000 + window
    stamp = (run_dir.local / "test.json").stat().st_mtime_ns
    assert evaluate_run(run_dir, "test") == test
    assert (run_dir.local / "test.json").stat().st_mtime_ns == stamp
    val = evaluate_run(run_dir, "val")
    assert val["val/acc"] == _metric_lines(run_dir)[-1]["val/acc"]


def test_every_record_shows_the_weight_average_and_the_live_student(smoke_dataset, tmp_path):
    """FAWA on (threshold 0: every epoch enters): val/* is the average's, val/live_* the live
    student's, in every epoch's line and in test.json; the composer's accuracy and the hinge's
    activity are logged."""
    overrides = {"train.method": "identitykd", "train.epochs": 2, "identitykd.fawa_threshold": 0}
    run_dir = train_driver({**_spec(smoke_dataset, tmp_path, **overrides), "test": True})
    lines = _metric_lines(run_dir)
    assert [(m["fawa/engaged"], m["fawa/epochs"]) for m in lines] == [(True, 1), (True, 2)]
    for name in ("train/fused_acc", "train/hinge_active", "val/live_acc", "val/live_worst_acc"):
        assert 0 <= lines[-1][name] <= 1, name
    assert lines[-1]["train/loss/composer_ce"] > 0
    _, method, _, _ = driver.load_run(run_dir)
    assert method.evaluated_student() is method.average.student
    test = json.loads((run_dir / "test.json").read_text())
    assert test["fawa/epochs"] == 2 and {"test/acc", "test/live_acc"} <= test.keys()
    val = evaluate_run(run_dir, "val")
    for name in ("val/acc", "val/live_acc", "val/worst_acc", "val/live_worst_acc"):
        assert val[name] == lines[-1][name], name
    baseline = train_driver(_spec(smoke_dataset, tmp_path, **{"train.method": "baseline"}))
    last = _metric_lines(baseline)[-1]
    assert (last["fawa/engaged"], last["fawa/epochs"]) == (False, 0)
    assert last["val/acc"] == last["val/live_acc"]


def test_an_interrupted_run_resumes_and_ends_like_an_unbroken_one(
    smoke_dataset, tmp_path, monkeypatch
):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "identitykd"})
    unbroken = train_driver({**spec, "study": "unbroken"})
    report = LocalCheckpoints.report

    def interrupted(self, metrics, state):
        report(self, metrics, state)
        if metrics["epoch"] == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(LocalCheckpoints, "report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_driver({**spec, "study": "broken"})
    broken = tmp_path / "broken" / "final" / unbroken.name
    assert json.loads((broken / "run.json").read_text())["status"] == "running"
    monkeypatch.setattr(LocalCheckpoints, "report", report)
    reported = []  # a Tune trial sees every epoch once, in order, the trained ones replayed
    resumed = train_driver({**spec, "study": "broken", "on_epoch": reported.append})
    assert resumed.local == broken
    assert [m["epoch"] for m in reported] == [0, 1]
    finished = []
    train_driver({**spec, "study": "broken", "on_epoch": finished.append})
    assert [m["epoch"] for m in finished] == [0, 1]
    assert _metric_lines(resumed) == _metric_lines(unbroken)
    starts = json.loads((broken / "run.json").read_text())["trained_on"]
    assert [start["from_epoch"] for start in starts] == [0, 1]
    # with checkpoints at an interval, epoch 0's metric line has no checkpoint: epoch 0 again
    monkeypatch.setattr(LocalCheckpoints, "report", interrupted)
    spaced = {**spec, "study": "spaced", "train.checkpoint_every_s": 3600}
    with pytest.raises(KeyboardInterrupt):
        train_driver(spaced)
    monkeypatch.setattr(LocalCheckpoints, "report", report)
    starts = json.loads((train_driver(spaced) / "run.json").read_text())["trained_on"]
    assert [start["from_epoch"] for start in starts] == [0, 0]


def test_ctrl_c_stops_a_run_training_in_a_thread_of_its_own(smoke_dataset, tmp_path, monkeypatch):
    """From a process's main thread a run trains in a thread of its own (`loop.run_flushed`);
    Ctrl+C reaches the main thread, which waits for it: the run stops at its next step (a
    second Ctrl+C meanwhile changes nothing), the interrupt comes out of the driver, and no stop
    is left for the next run to trip on."""
    import os
    import signal
    import threading
    import time

    report = LocalCheckpoints.report

    def ctrl_c(self, metrics, state):
        report(self, metrics, state)
        if metrics["epoch"] == 0:
            for _ in range(2):  # Python's own handler, as in a library's caller
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)

    monkeypatch.setattr(LocalCheckpoints, "report", ctrl_c)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(KeyboardInterrupt):
            _fit(smoke_dataset, tmp_path, **{"train.method": "baseline", "train.epochs": 3,
                                             "train.threads": 1})  # fmt: skip
        assert torch.get_num_threads() == 1  # here too: the test split's evaluation runs here
    finally:
        torch.set_num_threads(threads)
    for thread in threading.enumerate():  # it has ended, or is ending, its last step done
        if thread.name == "ikd-train":
            thread.join(10)
            assert not thread.is_alive()
    (run,) = (tmp_path / "train" / "final").iterdir()
    assert [line["epoch"] for line in _metric_lines(run)] == [0]
    raise_if_stopped()  # forgotten


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    smoke_dataset, tmp_path, monkeypatch
):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "baseline"})
    losses = Baseline.losses

    def diverging(self, out, batch):
        terms = losses(self, out, batch)
        if loop_state["epoch"] >= 1:
            terms["loss"] = terms["loss"] * torch.nan
        return terms

    loop_state = {"epoch": 0}
    reseed = loop.reseed

    def track(seed, epoch, rank):
        loop_state["epoch"] = epoch
        reseed(seed, epoch, rank)

    monkeypatch.setattr(Baseline, "losses", diverging)
    monkeypatch.setattr(loop, "reseed", track)
    with pytest.raises(DivergedError, match="epoch 2, step 1"):
        train_driver(spec)
    config = apply_overrides(smoke_dataset[0], split_spec(spec)[1])
    run_dir = run_folder(apply_overrides(config, ["train.workers=1"]))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "diverged" and record["diverged"]["epoch"] == 1
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["epoch-0000"]
    assert len(_metric_lines(run_dir)) == 1
    with pytest.raises(DivergedError):  # a diverged run is not retried by running it again
        train_driver(spec)


def test_a_dataset_built_with_other_settings_is_refused_naming_the_difference(
    smoke_dataset, tmp_path
):
    spec = _spec(smoke_dataset, tmp_path, **{"dsp.image_size": 48})
    with pytest.raises(UserError, match=r"dsp\.image_size=32 \(run: 48\)"):
        train_driver({**spec, "dataset": str(smoke_dataset[1])})
    with pytest.raises(UserError, match="no finished dataset"):
        train_driver(spec)


def test_a_run_trained_against_another_teacher_is_not_resumed(smoke_dataset, tmp_path):
    spec = _spec(smoke_dataset, tmp_path, **{"train.method": "baseline", "train.epochs": 1})
    run_dir = train_driver(spec)
    record = json.loads((run_dir / "run.json").read_text())
    record["teacher"]["backbone_sha256"] = "0" * 64
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="another teacher"):
        train_driver(spec)


def test_the_cli_trains_without_ray_and_evaluates(smoke_dataset, tmp_path, capsys):
    config, _, _ = smoke_dataset
    args = [
        f"data.root={config.data.root}",
        "teacher.source=trained",
        f"train.runs_root={tmp_path}",
        "train.epochs=1",
    ]
    assert main(["train", "--preset", "smoke", "--method", "cfkd", "--no-ray", *args]) == 0
    (run_dir,) = (tmp_path / "train" / "final").iterdir()
    assert run_dir.name.startswith("cfkd-")
    assert main(["eval", str(run_dir), "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"
    assert main(["train", "--preset", "smoke", "--method", "cfdk", *args]) == 2
    assert "did you mean 'cfkd'" in capsys.readouterr().err


def test_metrics_come_from_the_whole_confusion_matrix():
    predicted = torch.tensor([0, 0, 1, 1, 1, 2])
    labels = torch.tensor([0, 1, 1, 1, 2, 2])
    matrix = confusion(predicted, labels, 4)  # identity 3 has no sample
    metrics = summarize(matrix, "val/")
    assert metrics["val/acc"] == pytest.approx(4 / 6)
    # recall: 1, 2/3, 1/2; precision: 1/2, 2/3, 1 (identity 3 absent: left out of the macro means)
    assert metrics["val/recall"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    f1 = [2 * p * r / (p + r) for p, r in ((1 / 2, 1), (2 / 3, 2 / 3), (1, 1 / 2))]
    assert metrics["val/f1"] == pytest.approx(sum(f1) / 3)
    assert metrics["val/worst_acc"] == pytest.approx(1 / 2)
    assert metrics["val/per_identity"][3] is None


def test_epoch_batches_are_seeded_disjoint_across_ranks_and_cover_evaluation(smoke_dataset):
    samples = Samples.from_dataset(open_dataset(smoke_dataset[1]), "train")
    n = len(samples)

    def keys(**kw):
        return torch.cat([b["key"] for b in samples.batches(4, seed=0, **kw)]).tolist()

    assert keys(epoch=0, train=True) == keys(epoch=0, train=True)
    assert keys(epoch=0, train=True) != keys(epoch=1, train=True)
    ranks = [keys(epoch=0, train=True, rank=r, world=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not set(ranks[0]) & set(ranks[1])
    evaluation = keys(epoch=0, train=False, rank=0, world=2) + keys(
        epoch=0, train=False, rank=1, world=2
    )
    assert sorted(evaluation) == samples.key.tolist() and len(evaluation) == n
    batch = next(samples.batches(4, seed=0, epoch=0, train=True))
    assert batch["spectrogram"].shape == (4, 3, 32, 32) and batch["spectrogram"].max() <= 1
    assert batch["teacher_embedding"].shape == (4, 512) and batch["teacher_logits"].shape == (4, 4)


def test_subnormal_floats_compute_as_zero_while_a_student_trains():
    """`subnormals_flushed` (around every student's training): a float32 under the normal range
    reads as 0, in torch's pool threads too (an op over a million elements spreads over them),
    where a CPU would otherwise compute it in slow microcode; outside it (before, and after in
    this thread) subnormals are kept. In a process of its own: the pool keeps the setting. A
    driver's main thread whose pool started unflushed (`ikd run`'s estimate) trains through
    `run_flushed`, in a thread whose pool flushes, and keeps its own setting."""
    import subprocess
    import sys

    script = (
        "import threading, torch\n"
        "from ikd.train.loop import run_flushed, subnormals_flushed\n"
        "torch.set_num_threads(2)\n"
        "small = torch.full((8,), 1e-39)\n"  # subnormal; 8 elements: no thread but this one
        "count = lambda x: int((x * 3).ne(0).sum())\n"
        "before = count(small)\n"
        "def trial():\n"  # a Tune trial's thread
        "    with subnormals_flushed():\n"
        "        out.append(count(torch.full((1 << 20,), 1e-39)))\n"  # its pool starts here
        "    out.append(count(small))\n"
        "out = []\n"
        "thread = threading.Thread(target=trial)\n"
        "thread.start(); thread.join()\n"
        "big = torch.full((1 << 20,), 1e-39)\n"
        "started = count(big)\n"  # the main thread's pool starts unflushed
        "inside = run_flushed(lambda: count(big))\n"
        "print(before, *out, started, inside, count(big), count(small))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [int(n) for n in done.stdout.split()] == [8, 0, 8, 1 << 20, 0, 1 << 20, 8]
