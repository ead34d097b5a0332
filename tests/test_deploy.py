"""`ikd export` / `ikd identify`: a smoke run's student exported, captures of known and never-seen
walkers identified, bad input named. The run trains a tiny stand-in backbone (what is checked
does not depend on the network)."""

import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from ikd import deploy
from ikd.cli import main
from ikd.config import apply_overrides
from ikd.data.dataset import open_dataset
from ikd.data.export import simulate_captures
from ikd.deploy import FORMAT, META, STRANGER_WALKS, GaitModel, export
from ikd.errors import UserError
from ikd.openset import EMBEDDING_SCORES, SCORES
from ikd.radar.dsp import spread
from ikd.train.data import Samples, to_device
from ikd.train.driver import load_run, train_driver
from ikd.train.runs import run_dataset


@pytest.fixture(scope="module")
def exported(smoke_dataset, tmp_path_factory):
    """(run folder, model file, metadata) of a finished 2-epoch final smoke run."""
    config, _, _ = smoke_dataset
    root = tmp_path_factory.mktemp("deploy")
    run_dir = train_driver(
        {
            "preset": "smoke",
            "loop": "plain",
            "progress": False,
            "test": True,
            "data.root": config.data.root,
            "teacher.source": "trained",
            "train.runs_root": str(root / "runs"),
            "train.epochs": 2,
            "train.batch_size": 8,
            "train.student": "stand_ins:tiny_backbone",
        }
    )
    meta = export(run_dir, root / "model.pt", unknown_identities=2)
    return run_dir, root / "model.pt", meta


@pytest.fixture(scope="module")
def capture_folders(smoke_dataset, tmp_path_factory):
    """.bin captures (one walk each) of the 4 known smoke walkers and of 2 never-seen ones."""
    config, _, _ = smoke_dataset
    root = tmp_path_factory.mktemp("captures")
    one_walk = apply_overrides(config, {"synthetic.walks_per_identity": 1})
    simulate_captures(one_walk, root / "known", webcam=False, progress=False)
    simulate_captures(one_walk, root / "new", webcam=False, progress=False, identities=range(4, 6))
    return root / "known", root / "new"


def test_the_exported_model_gives_the_training_time_logits(exported, smoke_dataset):
    run_dir, path, _ = exported
    config, method, record, _ = load_run(run_dir)
    val = Samples.from_dataset(open_dataset(run_dataset(record, config), config), "val")
    gait = val.gait[:6]
    with torch.no_grad():
        expected = torch.log_softmax(
            method.predict(to_device({"spectrogram": gait}, None)["spectrogram"]), dim=1
        )
    model = GaitModel.load(path)
    torch.testing.assert_close(model.log_probs(gait.numpy()), expected, rtol=1e-5, atol=1e-5)
    onnx_model = onnx.load(path.with_suffix(".onnx"))
    onnx.checker.check_model(onnx_model)
    logits, embeddings = ReferenceEvaluator(onnx_model).run(None, {"gait": gait.numpy()})
    from_onnx = torch.log_softmax(torch.from_numpy(logits), dim=1)
    np.testing.assert_allclose(from_onnx, expected.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(embeddings, model.outputs(gait.numpy())[1], rtol=1e-4, atol=1e-4)


def test_the_model_file_carries_what_identifying_needs(exported, smoke_dataset):
    run_dir, path, meta = exported
    config, _, _ = smoke_dataset
    model = GaitModel.load(path)
    assert model.meta == meta and meta["format"] == FORMAT
    assert model.names == ["id000", "id001", "id002", "id003"]
    assert model.radar == config.radar and model.dsp == config.dsp
    assert meta["run"]["folder"] == run_dir.name and meta["run"]["method"] == "identitykd"
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    calibration = meta["calibration"]
    assert calibration["val"]["accepted"] >= 0.95
    assert set(calibration) == {"accept_target", "score", "chosen_on", "strangers", "scores", "val",
                                "test", "unknown"}  # fmt: skip
    # the 2 never-seen walkers split by person: one chooses the score, the other is reported
    assert calibration["strangers"] == {"val": [4], "test": [5]}
    reports = calibration["scores"]
    assert set(reports) == set(SCORES) and meta["score"] == calibration["score"] in SCORES
    for score, report in reports.items():
        for split in ("val", "test"):
            assert report[split]["strangers"] > 0 and 0 <= report[split]["auroc"] <= 1, score
        assert report["val"]["accepted"] >= 0.95
        windows = report["val"]["windows"]  # each window alone, at a window threshold of its own
        assert windows["accepted"] >= 0.95 and windows["captures"] > report["val"]["captures"]
        assert 0 <= report["test"]["windows"]["auroc"] <= 1
    chosen = reports[meta["score"]]["val"]["rejected"]
    assert chosen == max(report["val"]["rejected"] for report in reports.values())
    assert GaitModel.load(path).gallery.names == tuple(meta["identities"])
    unknown = calibration["unknown"]  # the test group, each on STRANGER_WALKS walks
    assert unknown["identities"] == 1 and unknown["captures"] == STRANGER_WALKS
    assert 0 <= calibration["unknown"]["rejected"] <= 1
    assert 0 <= calibration["test"]["accuracy_at_threshold"] <= calibration["test"]["accepted"]


def test_windows_are_spread_over_the_walk():
    assert spread(58, 8).tolist() == [0, 8, 16, 24, 33, 41, 49, 57]
    assert spread(5, 8).tolist() == [0, 1, 2, 3, 4] and spread(5, 0).tolist() == [0, 1, 2, 3, 4]


def test_identify_decides_each_capture_of_known_and_never_seen_walkers(
    exported, capture_folders, capsys
):
    _, path, meta = exported
    known, new = capture_folders
    status = main(["identify", str(path), str(known), str(new / "id004_walk000.bin"), "--json"])
    decisions = json.loads(capsys.readouterr().out)
    assert status == 0 and [d["error"] for d in decisions] == [""] * 5
    assert [d["source"].rsplit("/", 1)[1] for d in decisions] == [
        "id000_walk000.bin",
        "id001_walk000.bin",
        "id002_walk000.bin",
        "id003_walk000.bin",
        "id004_walk000.bin",
    ]
    for decision in decisions:
        assert decision["best"] in meta["identities"] and math.isfinite(decision["confidence"])
        accepted = decision["confidence"] >= meta["threshold"]
        assert decision["identity"] == (decision["best"] if accepted else "unknown")
        assert decision["windows"] == 2  # a smoke walk holds 2 windows
    main(["identify", str(path), str(new / "id005_walk000.bin"), "--windows"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(new / "id005_walk000.bin"))
    assert [line.split("\t")[0] for line in lines[1:]] == ["  window 0", "  window 1"]


def test_bad_captures_are_named_and_the_rest_go_on(exported, capture_folders, tmp_path, capsys):
    _, path, _ = exported
    known, _ = capture_folders
    metadata = json.loads((known / "metadata.json").read_text())
    entries = metadata["captures"]
    source = known / entries[0]["file"]
    (tmp_path / "good.bin").write_bytes(source.read_bytes())
    (tmp_path / "short.bin").write_bytes(source.read_bytes()[:4096])
    (tmp_path / "silent.bin").write_bytes(bytes(source.stat().st_size))
    (tmp_path / "nan.bin").write_bytes(source.read_bytes())
    listed = [
        {**entries[0], "file": name} for name in ("short.bin", "good.bin", "silent.bin", "nan.bin")
    ]
    (tmp_path / "metadata.json").write_text(json.dumps({**metadata, "captures": listed}))
    read_bin = deploy.read_bin

    def nan_for_nan_bin(file, *shape):  # int16 cannot hold NaN: a broken reader's output
        cube = read_bin(file, *shape)
        return np.full_like(cube, np.nan) if str(file).endswith("nan.bin") else cube

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deploy, "read_bin", nan_for_nan_bin)
        status = main(["identify", str(path), str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    decisions = {d["source"].rsplit("/", 1)[1]: d for d in json.loads(out)}
    assert status == 1 and decisions["good.bin"]["error"] == ""
    assert "truncated" in decisions["short.bin"]["error"] and "short.bin" in err
    assert "no signal" in decisions["silent.bin"]["error"]
    assert "NaN" in decisions["nan.bin"]["error"] and "nan.bin" in err
    assert math.isnan(decisions["nan.bin"]["confidence"])


def test_captures_of_other_radar_settings_are_refused_naming_the_fields(
    exported, capture_folders, tmp_path, capsys
):
    _, path, _ = exported
    known, _ = capture_folders
    metadata = json.loads((known / "metadata.json").read_text())
    metadata["radar"] |= {"num_chirps": 64, "frame_period_s": 0.05}
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    assert main(["identify", str(path), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "other radar settings" in err and "num_chirps=64 (model: 32)" in err
    assert "frame_period_s=0.05 (model: 0.033)" in err
    assert main(["identify", str(path), str(tmp_path / "missing.bin")]) == 1
    assert "missing.bin: no such file" in capsys.readouterr().err


def test_a_model_of_another_format_or_no_model_is_refused(exported, tmp_path, capsys):
    _, path, meta = exported
    module = torch.jit.load(str(path))
    old = tmp_path / "old.pt"
    torch.jit.save(module, str(old), _extra_files={META: json.dumps({**meta, "format": "x/0"})})
    with pytest.raises(UserError, match=r"model format 'x/0'; this ikd reads 'ikd-gait-model/2'"):
        GaitModel.load(old)
    before = old.read_bytes()
    for command in (["gallery", str(old)], ["enroll", str(old), "--remove", "id000"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "model format 'x/0'" in err and err.count("\n") == 1, err
    assert old.read_bytes() == before
    assert main(["identify", str(path.with_suffix(".json")), str(tmp_path)]) == 2
    assert "not a TorchScript model file" in capsys.readouterr().err


def test_a_model_file_is_written_whole_or_not_at_all(exported, tmp_path, monkeypatch):
    """A failure midway through writing leaves the file that was there, and no partial file."""
    _, path, _ = exported
    model = GaitModel.load(path)
    copy = model.save(tmp_path / "model.pt")
    before = copy.read_bytes()
    save = torch.jit.save

    def fail_midway(module, file, **kwargs):
        save(module, file, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(torch.jit, "save", fail_midway)
    model.meta = {**model.meta, "threshold": -1.0}
    with pytest.raises(OSError, match="disk full"):
        model.save(copy)
    assert copy.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [copy.with_suffix(".json"), copy]  # no partial file


def test_a_never_seen_walker_is_enrolled_named_listed_and_removed(
    exported, capture_folders, tmp_path, capsys
):
    """`ikd enroll` adds a person from a capture without retraining (the file switches to an
    embedding score if it decided by the classifier's), `ikd identify` names them, `ikd gallery`
    lists them; bad enrolments are one line each and write nothing."""
    import shutil

    _, path, meta = exported
    _, new = capture_folders
    model_file = shutil.copy(path, tmp_path / "model.pt")
    capture = str(new / "id004_walk000.bin")
    assert main(["enroll", str(model_file), capture, "--name", "dee"]) == 0
    model = GaitModel.load(model_file)
    assert model.gallery.names == (*meta["identities"], "dee")
    assert model.score in EMBEDDING_SCORES and model.threshold == meta["thresholds"][model.score]
    capsys.readouterr()
    assert main(["identify", str(model_file), capture, "--json"]) == 0
    (decision,) = json.loads(capsys.readouterr().out)
    assert decision["best"] == "dee" == decision["identity"]  # the very capture enrolled
    assert main(["gallery", str(model_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "name\tsource\twindows" and lines[1].startswith("id000\ttrained\t")
    assert lines[-1] == "dee\tenrolled\t2"  # a smoke walk's 2 windows
    enrolled = model_file.read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    metadata = json.loads((new / "metadata.json").read_text())
    metadata["radar"] |= {"num_chirps": 64}
    (other / "metadata.json").write_text(json.dumps(metadata))
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    empty.mkdir()
    shutil.copytree(new, broken)
    (broken / "id004_walk000.bin").write_bytes(b"\0" * 1000)
    for args, why in (
        ([str(empty), "--name", "eve"], "a capture folder needs a metadata.json"),
        ([str(broken), "--name", "eve"], "truncated"),
        ([capture, "--name", "dee"], "'dee' is enrolled already"),
        ([str(other), "--name", "eve"], "other radar settings"),
        ([str(tmp_path / "nothing"), "--name", "eve"], "no such file or folder"),
        (["--name", "eve"], "no captures to enrol 'eve'"),
        (["--remove", "eve"], "'eve' is not enrolled"),
    ):
        assert main(["enroll", str(model_file), *args]) == 2, args
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
        assert model_file.read_bytes() == enrolled
    assert main(["enroll", str(model_file), "--remove", "dee"]) == 0
    assert GaitModel.load(model_file).gallery.names == tuple(meta["identities"])
    # a trained person taken out and enrolled again under the same name is listed as enrolled
    assert main(["enroll", str(model_file), "--remove", "id000"]) == 0
    assert main(["enroll", str(model_file), capture, "--name", "id000"]) == 0
    capsys.readouterr()
    assert main(["gallery", str(model_file)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "id000\tenrolled\t2"
