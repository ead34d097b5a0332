"""Run identity and the run driver's dict, without a dataset: what a run's hash covers, and the
options beside the dotted overrides."""

import pytest

from ikd.config import load_config
from ikd.errors import ConfigError
from ikd.methods import METHODS
from ikd.methods.baseline import Baseline
from ikd.methods.identitykd import IdentityKD
from ikd.train.runs import RunOptions, run_folder, run_hash, split_spec


def _hash(*overrides: str) -> str:
    return run_hash(load_config("smoke", list(overrides), warn=False))


def test_another_methods_setting_neither_renames_nor_reruns_a_run():
    baseline = _hash("train.method=baseline")
    assert _hash("train.method=baseline", "identitykd.tau=0.1") == baseline
    assert _hash("train.method=baseline", "cfkd.temperature=0.5", "mkd.margin=0.3") == baseline
    assert _hash("train.method=mkd", "identitykd.lambda1=0.7") == _hash("train.method=mkd")


def test_the_methods_own_settings_the_student_training_and_data_rename_a_run():
    identitykd = _hash("train.method=identitykd")
    for override in (
        "identitykd.tau=0.1",
        "identitykd.lambda1=0.7",
        "train.student=mobilenet",
        "train.lr=0.001",
        "train.weight_decay=0.001",
        "train.epochs=2",
        "dsp.image_size=48",  # another dataset
        "teacher.epochs=2",  # another teacher, hence another dataset
    ):
        assert _hash("train.method=identitykd", override) != identitykd, override


def test_where_runs_live_the_seed_threads_and_checkpoints_do_not_rename_a_run():
    base = _hash("train.method=cfkd")
    for override in ("train.runs_root=/else", "data.root=/data", "train.seed=3", "train.threads=2",
                     "train.checkpoint_every_s=60"):  # fmt: skip
        assert _hash("train.method=cfkd", override) == base, override


def test_no_weight_decay_keeps_the_name_of_a_run_from_before_the_setting():
    """`train.weight_decay` at 0 (the paper's Adam) is left out of the hash: runs trained before
    the setting existed, all without decay, keep their names (and their results are reused)."""
    import dataclasses

    from ikd.config import digest

    config = load_config("smoke", ["train.method=baseline"], warn=False)
    train = dataclasses.asdict(config.train)
    assert train.pop("weight_decay") == 0.0
    for key in ("runs_root", "seed", "threads", "checkpoint_every_s"):
        del train[key]
    before = {  # run_hash as it was before the setting
        "method": {"name": "baseline", "version": Baseline.Params.version},
        "baseline": dataclasses.asdict(config.baseline),
        "train": train,
        "data_hash": config.data_hash(),
    }
    assert run_hash(config) == digest(before)
    with pytest.raises(ConfigError, match=r"train\.weight_decay must be ≥ 0"):
        load_config("smoke", ["train.weight_decay=-0.1"], warn=False)


@pytest.mark.parametrize("cls", [Baseline, IdentityKD])
def test_bumping_a_methods_version_renames_its_runs_only(cls, monkeypatch):
    name = next(key for key, value in METHODS.items() if value is cls)
    other = "mkd"
    before, other_before = _hash(f"train.method={name}"), _hash(f"train.method={other}")
    monkeypatch.setattr(cls.Params, "version", cls.Params.version + 1)
    assert _hash(f"train.method={name}") != before
    assert _hash(f"train.method={other}") == other_before


def test_a_run_folder_is_named_by_study_stage_variant_hash_and_seed(tmp_path):
    config = load_config(
        "smoke", ["train.method=identitykd", "train.seed=2", f"train.runs_root={tmp_path}"]
    )
    folder = run_folder(config, "table3", "tune", "identitykd-kl")
    assert folder.local == tmp_path / "table3" / "tune" / f"identitykd-kl-{run_hash(config)}-seed2"
    student = load_config("smoke", ["train.student=vgg16", f"train.runs_root={tmp_path}"])
    assert run_folder(student).name.startswith("identitykd-vgg16-")
    assert run_folder(student).parent.local == tmp_path / "train" / "final"


def test_a_remembered_resolution_follows_the_working_directory_and_the_values_types(
    tmp_path, monkeypatch
):
    """`resolve_run` remembers a dict's folder (a report asks thousands of times), but a
    relative root moves with the working directory, and values equal in Python but not as
    settings (True and 1) are not taken for one another."""
    from ikd.train.runs import resolve_run

    spec = {"preset": "smoke", "train.runs_root": "runs", "train.method": "baseline"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert resolve_run(spec)[2].local.parents[2] == tmp_path / "a" / "runs"
    monkeypatch.chdir(tmp_path / "b")
    assert resolve_run(spec)[2].local.parents[2] == tmp_path / "b" / "runs"
    assert resolve_run({**spec, "train.epochs": 1})[1].train.epochs == 1
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int, got True"):
        resolve_run({**spec, "train.epochs": True})


def test_the_drivers_dict_holds_dotted_overrides_beside_the_run_options():
    options, overrides = split_spec(
        {"preset": "smoke", "stage": "tune", "identitykd.tau": 0.1, "train.epochs": "3"}
    )
    assert options == RunOptions(preset="smoke", stage="tune")
    assert overrides == {"identitykd.tau": 0.1, "train.epochs": "3"}
    assert load_config(options.preset, overrides, warn=False).train.epochs == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"stgae": "tune"}, "did you mean 'stage'"),
        ({"stage": "search"}, "choose from"),
        ({"loop": "local"}, "choose from"),
        ({"stage": "tune", "test": True}, "never reads the test split"),
        ({"loop": "ray", "on_epoch": print}, "on_epoch is for loop=plain"),
        ({"loop": "plain", "fail_at_epochs": (1,)}, "a Ray Train test hook"),
    ],
)
def test_a_bad_run_option_is_a_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        split_spec(spec)
