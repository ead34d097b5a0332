"""Tuning (`ikd.tune`): spaces checked before a trial runs, and Ray Tune + Optuna + ASHA over one
variant on the smoke preset, each trial an ordinary tuning-stage run folder."""

from __future__ import annotations

import json
import re

import pytest

from ikd.config import load_config
from ikd.errors import ConfigError
from ikd.space import Choice, Integer, LogUniform, Uniform, check_space, optuna_space


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"identitykd.taus": LogUniform(0.05, 5)}, r"did you mean 'identitykd\.tau'"),
        ({"train.lr": LogUniform(1e-3, 1e-4)}, r"train\.lr: empty or inverted range"),
        ({"train.lr": Uniform(0.1, 0.1)}, r"train\.lr: empty or inverted range"),
        ({"identitykd.tau": LogUniform(0, 5)}, r"identitykd\.tau: a log-uniform range needs low"),
        ({"identitykd.kd_start_epoch": Integer(3, 1)}, r"kd_start_epoch: inverted range"),
        ({"identitykd.gamma": Uniform(0.5, 2)}, r"identitykd\.gamma must lie in \[0, 1\]"),
        ({"identitykd.contrast": Choice(())}, r"identitykd\.contrast: a choice needs"),
        ({"identitykd.contrast": Choice(("nce", "dot"))}, r"identitykd\.contrast='dot'"),
        ({"train.lr": (1e-4, 1e-3)}, r"train\.lr: .* is not a range"),
    ],
)
def test_a_bad_tuning_space_is_one_clear_line(space, message):
    with pytest.raises(ConfigError, match=message):
        check_space(space, load_config("smoke", warn=False))


def test_a_good_space_becomes_optuna_distributions():
    space = {
        "train.lr": LogUniform(1e-5, 1e-3),
        "identitykd.gamma": Uniform(0.0, 1.0),
        "identitykd.kd_start_epoch": Integer(0, 3),
        "identitykd.contrast": Choice(("nce", "kl")),
    }
    check_space(space, load_config("smoke", warn=False))
    converted = optuna_space(space)
    assert converted["train.lr"].log and not converted["identitykd.gamma"].log
    assert (
        converted["identitykd.kd_start_epoch"].low,
        converted["identitykd.kd_start_epoch"].high,
    ) == (0, 3)
    assert converted["identitykd.contrast"].choices == ("nce", "kl")


GOOD_STUDY = """
from ikd.study import Study, Table, Variant, table_space

STUDY = Study(
    artefact="Table 3",
    variants=(
        Variant("baseline", {"train.method": "baseline"}, space=table_space("baseline")),
        Variant("identitykd", {"train.method": "identitykd"}, space=table_space("identitykd")),
    ),
    trials=4,
)
"""


def write_study(tmp_path, text: str, name: str = "table3_methods.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_study_file_loads_named_after_its_file(tmp_path):
    from ikd.study import load_study

    study = load_study(write_study(tmp_path, GOOD_STUDY))
    assert study.name == "table3_methods" and study.trials == 4 and study.seeds == 3
    assert [v.name for v in study.variants] == ["baseline", "identitykd"]


def test_a_searchs_start_point_is_reevaluated_wherever_it_ranks(tmp_path, monkeypatch, caplog):
    """Issue 23: the configuration a search starts from (Table 4's per-student lr and weight
    decay, the joint search) is re-evaluated beside the best 3 complete trials even when it ranks below them, so
    the pick by mean val over seeds is never below it on the same seeds; without a start point,
    only the best 3 are."""
    from pathlib import Path
    from types import SimpleNamespace

    from ikd.tune import stages
    from ikd.tune.stages import StudyRun

    run = StudyRun(write_study(tmp_path, GOOD_STUDY), preset="smoke", overrides={},
                   results_root=tmp_path / "results")  # fmt: skip
    (variant,) = [v for v in run.variants if v.name == "baseline"]
    ranked = [SimpleNamespace(folder=Path(f"baseline-{i}"), params={"train.lr": i / 1e4},
                              values=[1 - i / 10]) for i in range(5)]  # fmt: skip
    starts = iter([{"train.lr": 4e-4}, {"train.lr": 1e-4}, None])  # the worst, the second, none
    monkeypatch.setattr(
        stages, "tuning_folder", lambda spec: Path(f"baseline-{spec['train.lr'] * 1e4:.0f}")
    )
    monkeypatch.setattr(StudyRun, "start_point", lambda self, variant, tune=True: next(starts))
    chosen = run._reevaluation_specs(variant, ranked)
    assert [trial.folder.name for trial, _ in chosen] == [f"baseline-{i}" for i in (0, 1, 2, 4)]
    assert all(len(specs) == 2 and {s["stage"] for s in specs} == {"reeval"} for _, specs in chosen)
    names = [[t.folder.name for t, _ in run._reevaluation_specs(variant, ranked)] for _ in "ab"]
    assert names == [[f"baseline-{i}" for i in range(3)]] * 2  # among the best: not twice; none

    # a start point that did not complete (ASHA stopped it, as it may with concurrent trials)
    # is not among the ranked: the pick is then not held to it, and the log says so
    monkeypatch.setattr(StudyRun, "_ranked", lambda self, variant: ranked)
    monkeypatch.setattr(StudyRun, "reevaluated", lambda self, variant, ranked: {"baseline-0": [1]})
    for lr, warned in ((4e-4, False), (9e-4, True)):
        monkeypatch.setattr(
            StudyRun, "start_point", lambda self, variant, tune=True, lr=lr: {"train.lr": lr}
        )
        with caplog.at_level("WARNING", logger="ikd.tune.stages"):
            caplog.clear()
            assert run._best(variant)["run"] == "baseline-0"
        assert ("first trial, the configuration its search starts from" in caplog.text) == warned


def test_table4s_rows_start_from_table3s_tuned_configuration_of_their_own_method(
    tmp_path, monkeypatch
):
    """Issue 23 item 4: each student's IdentityKD and Baseline rows are Table 3's tuned
    configuration of that method with the student swapped; a student other than ResNet18 searches
    its lr and weight decay from Table 3's lr of the same method and no decay, ResNet18's rows tune nothing (Table 3's own
    runs); each student's pair is compared. (The studies' test run trains only two of its rows.)"""
    from pathlib import Path

    from ikd.tune import stages
    from ikd.tune.stages import StudyRun

    tuned = {"identitykd": {"train.method": "identitykd", "train.lr": 6e-4, "identitykd.tau": 0.2},
             "baseline": {"train.method": "baseline", "train.lr": 4e-4}}  # fmt: skip
    read = []

    def table3(path, variant, **_):
        read.append((Path(path).name, variant))
        return tuned[variant]

    monkeypatch.setattr(stages, "tuned_configuration", table3)
    studies = Path(__file__).resolve().parents[1] / "studies"
    run = StudyRun(studies / "table4_students.py", preset="smoke", overrides={},
                   results_root=tmp_path)  # fmt: skip
    students = ("resnet18", "mobilenet", "efficientnet", "vgg16")
    assert sorted(v.name for v in run.variants) == sorted(
        f"{m}-{s}" for m in tuned for s in students
    )
    for variant in run.variants:
        method, student = variant.name.split("-")
        assert run.base_overrides(variant) == {**tuned[method], "train.student": student}
        lr = {"train.lr": tuned[method]["train.lr"], "train.weight_decay": 0.0}
        assert run.start_point(variant) == ({} if student == "resnet18" else lr), variant.name
        assert bool(variant.space) == (student != "resnet18")
    assert {name for _, name in read} == set(tuned) and {p for p, _ in read} == {
        "table3_methods.py"
    }
    assert {(f"identitykd-{s}", f"baseline-{s}") for s in students} <= set(run.study.report.compare)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("STUDY =", "OTHER ="), r"defines no STUDY"),
        (('"train.method": "baseline"}', '"train.method": "baselin"}'), r"did you mean 'baseline'"),
        (('"train.method": "baseline"}', '"train.student": "resnet"}'), r"did you mean 'resnet18'"),
        (('space=table_space("baseline")', 'space={"train.lr": 1}'), r"'baseline': train\.lr"),
        (("trials=4", "trials=0"), r"trials, seeds and their test sizes must be ≥ 1"),
        (('Variant("identitykd"', 'Variant("baseline"'), r"variant names repeat"),
        (
            ("trials=4,", 'trials=4, report=Table(compare=(("baseline", "base"),)),'),
            r"the report names no final variant: \['base'\]",
        ),
    ],
)
def test_a_bad_study_file_is_one_clear_line_naming_the_file(tmp_path, change, message):
    from ikd.errors import UserError
    from ikd.study import load_study

    path = write_study(tmp_path, GOOD_STUDY.replace(*change))
    with pytest.raises(UserError, match=message) as error:
        load_study(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_every_table_space_is_valid_for_its_method():
    from ikd.study import TABLE_SPACES, table_space

    for name in TABLE_SPACES:
        method = name.split("-")[0]
        extra = ["vanilla_kd.identity_wise=true"] if "identity_wise" in name else []
        config = load_config("smoke", [f"train.method={method}", *extra], warn=False)
        check_space(table_space(name), config)


def test_every_study_trains_the_seeds_its_readme_argues_for_never_over_the_cap():
    """studies/README.md's "Seeds" table gives each study's final seeds and why (issue 23's power
    computation, capped at 15): a study file that drifts from it, or a study with no row, fails."""
    from pathlib import Path

    from ikd.study import load_study

    folder = Path(__file__).resolve().parents[1] / "studies"
    text = (folder / "README.md").read_text()
    argued = {
        name: int(seeds) for name, seeds in re.findall(r"^\| `(\w+)` \| (\d+) \|", text, re.M)
    }
    studies = {path.stem: load_study(path, "laptop").seeds for path in folder.glob("*.py")}
    assert studies == argued
    assert max(studies.values()) <= 15


def test_a_saved_config_that_predates_a_setting_reads_as_its_default(tmp_path):
    """Runs recorded before `train.weight_decay` existed (their config.json lacks it; all trained
    without decay) are points of a space with it at 0, and the report reads 0 for them."""
    from ikd.report.records import read_run
    from ikd.space import Choice, LogUniform, values_of
    from ikd.train.runs import METRICS, RUN
    from ikd.tune.trials import trial_history, unchanging

    config = load_config("smoke", warn=False).to_dict()
    del config["train"]["weight_decay"]
    folder = tmp_path / "identitykd-mobilenet-0123456789ab-seed0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / RUN).write_text(json.dumps({"status": "complete", "seed": 0}))
    (folder / METRICS).write_text(json.dumps({"epoch": 1, "val/acc": 0.5}) + "\n")
    space = {"train.lr": LogUniform(1e-5, 1e-2), "train.weight_decay": Choice((0.0, 1e-3))}
    assert values_of(space, config) == {
        "train.lr": config["train"]["lr"],
        "train.weight_decay": 0.0,
    }
    (trial,) = trial_history(tmp_path, "identitykd-mobilenet", space)
    assert trial.params["train.weight_decay"] == 0.0 and trial.values == [0.5]
    assert read_run(folder).param("train.weight_decay") == 0.0
    assert read_run(folder).param("train.no_such_key") is None
    # a space whose decay excludes 0 does not count it
    assert (
        trial_history(tmp_path, "identitykd-mobilenet", {"train.weight_decay": Choice((1e-3,))})
        == []
    )
    # while a report renders (`unchanging`), a history is read once; after it, anew
    with unchanging():
        assert trial_history(tmp_path, "identitykd-mobilenet", space) == [trial]
        (folder / METRICS).write_text(json.dumps({"epoch": 1, "val/acc": 0.7}) + "\n")
        assert trial_history(tmp_path, "identitykd-mobilenet", space) == [trial]
    assert trial_history(tmp_path, "identitykd-mobilenet", space)[0].values == [0.7]


def test_a_resumed_search_stops_at_asha_s_rung_what_an_uninterrupted_one_would(tmp_path):
    """ASHA's rung (after epoch 2 of 4) holds the finished trials' epoch-2 values, so the first
    trial after a resume is ranked against them: below the top third it stops, as it would have
    in one uninterrupted search; with no history it would go on unranked."""
    from types import SimpleNamespace

    from ikd.tune.search import asha_scheduler
    from ikd.tune.trials import Trial

    def decide(finished, value):
        scheduler = asha_scheduler(4, finished)
        scheduler.set_search_properties("val/acc", "max")
        trial = SimpleNamespace(trial_id="new")
        scheduler.on_trial_add(None, trial)
        return scheduler.on_trial_result(None, trial, {"training_iteration": 2, "val/acc": value})

    finished = [  # complete, stopped at the rung, and one that diverged before it (not ranked)
        Trial(tmp_path / "a", {}, "complete", [0.2, 0.5, 0.6, 0.7]),
        Trial(tmp_path / "b", {}, "stopped", [0.1, 0.3]),
        Trial(tmp_path / "c", {}, "complete", [0.3, 0.6, 0.7, 0.8]),
        Trial(tmp_path / "d", {}, "diverged", [0.05]),
    ]
    assert decide(finished, 0.4) == "STOP"  # the rung's top third starts at ~0.53
    assert decide(finished, 0.55) == "CONTINUE"
    assert decide([], 0.4) == "CONTINUE"


def test_the_optuna_mirror_of_a_search_whose_space_changed_is_drawn_anew(tmp_path):
    """A variant's search space changed (Table 4's weight decay gained a value): Optuna refuses a
    trial whose choices differ from its study's, so the mirror of the old space is dropped and
    holds the new space's trials only (a search mirrors its in-space history on each start)."""
    import optuna

    from ikd.train.runs import METRICS, RUN
    from ikd.tune.search import TrialRecords

    def ended(space: dict, run: str, params: dict) -> None:
        (tmp_path / run).mkdir()
        (tmp_path / run / RUN).write_text(json.dumps({"status": "complete"}))
        (tmp_path / run / METRICS).write_text(json.dumps({"epoch": 1, "val/acc": 0.5}) + "\n")
        TrialRecords(tmp_path, space, storage, "s/v").ended(params, run)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = {"train.lr": LogUniform(1e-5, 1e-3), "train.weight_decay": Choice((0.0, 1e-4))}
    # a first search: its study's folder, where the mirror goes, does not exist yet
    TrialRecords(tmp_path, old, f"sqlite:///{tmp_path / 'study' / 'optuna.db'}", "s/v")
    new = {**old, "train.weight_decay": Choice((0.0, 1e-4, 1e-3))}
    ended(old, "a", {"train.lr": 1e-4, "train.weight_decay": 0.0})
    ended(old, "b", {"train.lr": 2e-4, "train.weight_decay": 1e-4})
    assert len(optuna.load_study(study_name="s/v", storage=storage).trials) == 2  # kept
    ended(new, "c", {"train.lr": 3e-4, "train.weight_decay": 1e-3})
    mirror = optuna.load_study(study_name="s/v", storage=storage)
    assert [t.user_attrs["run"] for t in mirror.trials] == ["c"]
    assert mirror.trials[0].distributions == optuna_space(new)


def test_a_dataset_is_built_once_by_its_first_pending_reader_timed_by_any_finished_one(
    monkeypatch,
):
    """`ikd run`'s estimate counts a missing dataset's build for the first study with runs left
    that reads it, and times it by the build a finished dataset recorded, whichever study reads
    that one (an up-to-date study reads none, but its dataset's timings still count)."""
    from types import SimpleNamespace

    from ikd.tune import regenerate

    finished = {"first": {"seconds": {"pairs": 100.0, "teacher": 400.0, "views": 150.0}}}
    monkeypatch.setattr(regenerate, "dataset_folder", lambda config: config)
    monkeypatch.setattr(regenerate, "finished_manifest", finished.get)
    runs = [
        SimpleNamespace(config=folder, study=SimpleNamespace(name=name))
        for name, folder in (("a", "first"), ("b", "first"), ("c", "second"), ("d", "second"))
    ]
    # only the second population's studies are left: its build is timed by the first's
    assert regenerate.builds_left(runs, {"c", "d"}) == {"c": 650.0}
    assert regenerate.builds_left(runs, {"d"}) == {"d": 650.0}
    assert regenerate.builds_left(runs, {"a", "b"}) == {}  # its dataset is there
    assert regenerate.builds_left(runs, set()) == {}
    finished.clear()  # nothing built yet: no timings to go by
    assert regenerate.builds_left(runs, {"a", "c"}) == {"a": 0.0, "c": 0.0}


def test_the_estimate_says_when_its_timings_had_less_than_their_cpu():
    """Timed with under 75 % of its threads' CPU (43–50 % beside another torch process on 2
    cores, 86–100 % alone: benchmarks/README.md), `ikd run`'s estimate line says the machine may
    be busy; timed quietly, or not at all (nothing left), it says nothing of it."""
    from ikd.tune.regenerate import busy_note

    assert busy_note(None) == busy_note(0.98) == busy_note(0.75) == ""
    assert busy_note(0.49).startswith(" (timed while this process had 49% of its threads' CPU")


def test_studies_compared_with_another_pair_every_seed_of_it():
    """A study compared with another's rows (a "<study>/<variant>" pair, or a second population
    of it) runs the same seeds, full and test budget: no comparison loses seeds to a mismatch."""
    from pathlib import Path

    from ikd.report.overview import REPLICATES
    from ikd.study import load_study

    folder = Path(__file__).resolve().parents[1] / "studies"
    studies = {path.stem: load_study(path) for path in folder.glob("*.py")}
    pairs = 0
    for name, study in studies.items():
        others = {n.split("/")[0] for n in getattr(study.report, "elsewhere", set)()}
        for other in others | ({REPLICATES[name]} if name in REPLICATES else set()):
            assert (study.seeds, study.test_seeds) == (
                studies[other].seeds,
                studies[other].test_seeds,
            ), (name, other)
            pairs += 1
    assert pairs >= 1


KILLED = """
from ikd.space import LogUniform
from ikd.study import Study, Variant

STUDY = Study(
    artefact="a table",
    variants=(
        Variant(
            "baseline",
            {"train.method": "baseline", "train.student": "tests.stand_ins:slow_backbone"},
            space={"train.lr": LogUniform(1e-5, 1e-2)},
        ),
    ),
    test_trials=4,
)
"""

# A stand-in val accuracy for the study below, a function of the trial's learning rate alone, so
# that ASHA's decisions follow from TPE's seeded draws (numpy's generator: the same on any CPU),
# not from what a few epochs of training on a tiny val split give on one machine. Ray calls
# `runtime_env` in the study driver's ray.init (RAY_RUNTIME_ENV_HOOK); every Ray worker of the
# job then runs `install` as it starts (the runtime env's `worker_process_setup_hook`, with
# this file's folder on its PYTHONPATH: the workers belong to the session's Ray).
VAL_ACC = """
import math


def val_acc(lr):
    return (-2 - math.log10(lr)) / 3  # LogUniform(1e-5, 1e-2) → (1, 0): falls as lr rises


def install():  # every run this process trains: the run driver calls driver.train_loop
    from ikd.train import driver, loop

    train_loop, summarize = loop.train_loop, loop.summarize

    def controlled(config, *args, **kwargs):
        def summary(matrix, prefix):
            values = summarize(matrix, prefix)
            return {**values, "val/acc": val_acc(config.train.lr)} if prefix == "val/" else values

        loop.summarize = summary
        try:
            return train_loop(config, *args, **kwargs)
        finally:
            loop.summarize = summarize

    driver.train_loop = controlled


def runtime_env(env):
    import os

    install()
    here = {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__)),  # for the cluster's workers
            "IKD_TEST_FORWARD_WAIT_S": "0.2"}  # the stand-in student's epochs last a while
    env = env or {}
    return {**env, "env_vars": {**env.get("env_vars", {}), **here},
            "worker_process_setup_hook": f"{__name__}.install"}  # fmt: skip
"""


@pytest.mark.slow
def test_an_interrupted_study_resumes_with_its_exact_budget_and_asha_decisions(
    smoke_dataset, tmp_path, ray_session
):
    """Ctrl+C (SIGINT) to the study driver once ASHA has stopped a trial and another is training
    stops the whole command at once (not just Tune's search) and keeps the time it spent; the
    same command then runs exactly the budget: the interrupted trial continues with its own
    parameters, the stopped one stays stopped, and the searcher and the Optuna mirror know every
    finished trial."""
    import os
    import runpy
    import signal
    import subprocess
    import sys

    import optuna

    from ikd.cluster import poll
    from ikd.space import LogUniform
    from ikd.train.runs import STOPPED
    from ikd.tune.search import trial_history

    path = write_study(tmp_path, KILLED, "killed.py")
    runs = tmp_path / "runs" / "killed" / "tune"
    # 4 epochs: ASHA's rung at epoch 2 (half the epochs). TPE's first seeded draws are lr 4.4e-4,
    # 1.4e-3, 6.4e-4, …, so the second trial's stand-in val acc at the rung (0.28) is below the
    # first's (0.45) and ASHA stops it there; the third is then mid-training for at least an
    # epoch. What the trials learn does not matter: the stand-in student (~7 k parameters), whose
    # forward passes wait 0.2 s in the session's Ray workers (the runtime env below sets it), so
    # an epoch lasts a second or two without using the CPU (resnet18's cost 14 s of the test).
    stand_in = tmp_path / "stand_in" / "val_acc_stand_in.py"
    stand_in.parent.mkdir()
    stand_in.write_text(VAL_ACC)
    val_acc = runpy.run_path(str(stand_in))["val_acc"]
    command = [
        sys.executable, "-m", "ikd", "study", str(path), "--preset", "smoke", "--stage", "tune",
        "--quick", "--results", str(tmp_path / "results"),
        f"data.root={smoke_dataset[0].data.root}", "teacher.source=trained",
        f"train.runs_root={tmp_path / 'runs'}", "train.epochs=4",
    ]  # fmt: skip
    env = {
        **os.environ,
        # the session's Ray, joined as a cluster's driver joins it (no Ray start of its own)
        "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(stand_in.parent), os.getenv("PYTHONPATH")])
        ),
        "RAY_RUNTIME_ENV_HOOK": "val_acc_stand_in.runtime_env",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",  # under `uv run`, Ray would skip the hook
    }
    space = {"train.lr": LogUniform(1e-5, 1e-2)}

    def state() -> dict[str, list]:
        kinds: dict[str, list] = {}
        for trial in trial_history(runs, "baseline", space) if runs.exists() else []:
            kinds.setdefault(trial.status, []).append(trial)
        return kinds

    driver = subprocess.Popen(command, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip

    def caught() -> bool:  # a trial stopped by ASHA and one mid-training
        now = state()
        return bool(now.get("stopped")) and any(t.values for t in now.get("interrupted", []))

    try:
        if not poll(caught, 240, every=0.2, stop=lambda: driver.poll() is not None):
            pytest.fail(f"no ASHA stop with a trial mid-training before the end: {state()}")
        os.kill(driver.pid, signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
        assert driver.returncode == 130 and b"ikd: interrupted" in stderr, stderr[-2000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    before = state()
    for trial in (t for kind in before.values() for t in kind):  # every epoch, the stand-in's
        expected = val_acc(trial.params["train.lr"])
        assert trial.values == pytest.approx([expected] * len(trial.values))
    record = json.loads((tmp_path / "results" / "killed" / "study.json").read_text())
    assert record["stage_seconds"]["tune"] > 5  # the interrupted session's time is kept
    stopped = {t.folder.name: t.values for t in before["stopped"]}
    interrupted = {t.folder.name: (t.params, len(t.values)) for t in before["interrupted"]}

    # The same command again, here on the session's Ray (no stand-in now: what the resumed
    # trials learn does not matter below).
    from ikd.cli import main

    assert main(command[3:]) == 0
    after = {t.folder.name: t for t in trial_history(runs, "baseline", space)}
    assert len(after) == 4  # exactly the budget
    assert all(t.status in ("complete", "stopped", "diverged") for t in after.values())
    for name, values in stopped.items():  # still stopped, not one epoch more
        assert after[name].status == "stopped" and after[name].values == values
        assert (runs / name / STOPPED).exists()
    for name, (params, epochs) in interrupted.items():  # continued with its own parameters
        assert after[name].params == params and len(after[name].values) > epochs
    mirror = optuna.load_study(
        study_name="killed/baseline", storage=f"sqlite:///{runs.parent / 'optuna.db'}"
    )
    assert {t.user_attrs["run"] for t in mirror.trials} == set(after)


@pytest.mark.slow
def test_a_diverging_trial_reports_zero_is_recorded_as_failed_and_the_search_goes_on(
    smoke_dataset, tmp_path, monkeypatch
):
    """What Tune's trial runs (`trial_in_process`) when the loss turns NaN: the run records why,
    the trial reports val/acc = 0 (so ASHA and TPE learn from it) instead of raising, the Optuna
    mirror marks it failed, and the report counts it as diverged."""
    import optuna
    import torch

    from ikd.methods.baseline import Baseline
    from ikd.report.records import read_run
    from ikd.report.render import tuning_summary
    from ikd.tune.search import TrialRecords, trial_history, trial_in_process

    def diverging(self, out, batch):
        return {"loss": out["student_logits"].sum() * torch.nan}

    monkeypatch.setattr(Baseline, "losses", diverging)
    config = smoke_dataset[0]
    spec = {
        "preset": "smoke", "study": "broken", "variant": "baseline",
        "data.root": config.data.root, "teacher.source": "trained",
        "train.runs_root": str(tmp_path / "runs"), "train.method": "baseline",
        "train.student": "mobilenet",
    }  # fmt: skip
    space = {"train.lr": LogUniform(1e-4, 1e-2)}
    reported = []
    trial_in_process({"train.lr": 1e-3}, spec=spec, splits=None, report=reported.append)
    assert reported == [{"val/acc": 0.0, "diverged": True}]
    runs = tmp_path / "runs" / "broken" / "tune"
    (trial,) = trial_history(runs, "baseline", space, spec)
    assert trial.status == "diverged" and trial.params == {"train.lr": 1e-3}
    # a search over another range does not count it (nor tell Optuna a value outside its space)
    assert trial_history(runs, "baseline", {"train.lr": LogUniform(1e-4, 5e-4)}, spec) == []
    assert "non-finite" in json.loads((trial.folder / "run.json").read_text())["diverged"]["reason"]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    TrialRecords(runs, space, storage, "broken/baseline").ended(trial.params, trial.folder.name)
    (mirrored,) = optuna.load_study(study_name="broken/baseline", storage=storage).trials
    assert mirrored.state == optuna.trial.TrialState.FAIL
    summary = tuning_summary({"baseline": [read_run(trial.folder)]}, {"baseline": space})
    assert summary.loc[0, ["trials", "diverged", "complete"]].tolist() == [1, 1, 0]


def test_trials_and_ray_train_workers_take_their_resources_from_config(ray_session):
    """On the session's 2-CPU Ray without GPUs: a one-worker trial takes the cluster's CPUs
    shared by the concurrent trials, a Ray Train trial only its own process, and Ray Train's
    workers what `resources` says (a CUDA run on a cluster without GPUs is one clear line)."""
    from ikd.cluster import TRIAL_DRIVER_CPUS, trial_shape
    from ikd.errors import UserError
    from ikd.train.ray_train import scaling

    def config(*overrides):
        return load_config("smoke", ["train.threads=0", *overrides], warn=False)

    assert trial_shape(config()) == ({"cpu": 2}, 2)
    assert trial_shape(config("resources.concurrent_trials=2")) == ({"cpu": 1}, 1)
    assert trial_shape(config("resources.cpus_per_worker=0.5")) == ({"cpu": 0.5}, 1)
    assert trial_shape(config("resources.workers_per_trial=2")) == ({"cpu": TRIAL_DRIVER_CPUS}, 0)
    shape, threads = scaling(config("train.workers=2", "resources.cpus_per_worker=0.25"))
    assert (shape.num_workers, shape.use_gpu, threads) == (2, False, 1)
    assert shape.resources_per_worker == {"CPU": 0.25}
    assert scaling(config("train.workers=2"))[0].resources_per_worker == {"CPU": 0.75}
    with pytest.raises(
        UserError, match=r"train\.device=cuda asks for 0\.5 GPUs; the cluster has 0"
    ):
        trial_shape(config("train.device=cuda", "resources.gpus_per_worker=0.5"))
    with pytest.raises(ConfigError, match=r"resources\.data='disk'; choose from"):
        config("resources.data=disk")


def test_final_runs_train_in_the_driver_only_where_one_fits_at_a_time_on_its_node(ray_session):
    """On the session's one 2-CPU node: a run taking both CPUs trains in this process (no
    worker to start for it); runs that fit two at a time, or that take a GPU this process has
    not, are Ray tasks (tests/test_cluster.py's study: two nodes, tasks)."""
    import torch

    from ikd.cluster import one_at_a_time

    assert one_at_a_time({"cpu": 2})
    assert one_at_a_time({"cpu": 1.5})
    assert not one_at_a_time({"cpu": 1})
    assert one_at_a_time({"cpu": 2, "gpu": 1}) == torch.cuda.is_available()


# A driver joining the session's Ray, as `ikd run` joins a cluster, then waiting to be stopped.
JOINED = """
import time
import ray
from ikd.cluster import init_ray
from ikd.errors import Terminated
init_ray()
waiting = ray.remote(num_cpus=0)(lambda: time.sleep(60)).remote()
try:  # the signal may come as soon as "ready" is written, before print returns
    print("ready", flush=True)
    ray.get(waiting)  # blocked in Ray, as Tune's controller waits on its trials
except KeyboardInterrupt as interrupt:
    print("terminated" if Terminated.caused(interrupt) else "interrupted", flush=True)
"""


RAY_FORWARDED = re.compile(r"(\x1b\[\d+m)?\([^)]*pid=\d+[^)]*\)")  # "(Worker pid=7) …"


def test_sigterm_once_ray_runs_stops_ikd_as_ctrl_c_does(ray_session, monkeypatch, capsys):
    """`ray job stop` or `kill` sends SIGTERM. Ray's own handler (ray.init sets it) has the
    driver's C++ core print a stack dump, then exits; ikd's, set after it, raises Terminated, a
    KeyboardInterrupt, so a stage unwinds and keeps its time as on Ctrl+C, and the CLI says so
    in one line with exit 143 — also when the signal came during a blocking Ray call (as Tune's
    controller waits on trials), out of which Ray raises a plain KeyboardInterrupt instead."""
    import argparse
    import os
    import select
    import signal
    import subprocess
    import sys

    from ikd import cli
    from ikd.errors import Terminated

    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-c", JOINED],
        env={**os.environ, "RAY_ADDRESS": address},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert select.select([driver.stdout], [], [], 60)[0], "the driver did not join Ray"
        assert driver.stdout.readline() == b"ready\n"
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert out == b"terminated\n", err[-2000:]
    assert b"SIGTERM received" not in err  # Ray's C++ stack dump

    # the CLI: Terminated, or the plain KeyboardInterrupt a Ray call makes of it, is SIGTERM's
    # line and exit status; Ctrl+C's stays its own
    raised: list[KeyboardInterrupt] = []

    def stop(args):
        raise raised[0]

    parser = argparse.ArgumentParser(prog="ikd")
    parser.set_defaults(handler=stop, verbose=False)
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    for interrupt, received, code, line in (
        (Terminated("SIGTERM"), True, 143, "ikd: terminated (SIGTERM)\n"),
        (KeyboardInterrupt(), True, 143, "ikd: terminated (SIGTERM)\n"),
        (KeyboardInterrupt(), False, 130, "ikd: interrupted\n"),
    ):
        raised[:] = [interrupt]
        monkeypatch.setattr(Terminated, "received", received)
        assert cli.main([]) == code
        # ikd's own line; Ray's log monitor may forward a line of some worker's here meanwhile
        # (once, the C++ stack dump of a worker of the driver above, killed as its job ended)
        err = capsys.readouterr().err.splitlines(keepends=True)
        assert [out for out in err if not RAY_FORWARDED.match(out)] == [line]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one
@pytest.mark.parametrize(
    ("name", "code", "line"),
    [("SIGINT", 130, "ikd: interrupted\n"), ("SIGTERM", 143, "ikd: terminated (SIGTERM)\n")],
)
def test_a_stop_the_garbage_collector_swallows_still_stops_ikd(
    name, code, line, monkeypatch, capsys
):
    """Python drops an exception raised inside a weakref callback or a `__del__` ("Exception
    ignored in …"): a Ctrl+C (or SIGTERM, `ray job stop`) handled while the garbage collector ran
    one went nowhere, and a study ran on to its end (the interrupted-study test above, 2 runs in
    6 on a busy machine). ikd's handler remembers the signal, and Tune's next controller step (as
    the next training step) raises it again: the CLI stops with the signal's line and status,
    then forgets it."""
    import argparse
    import os
    import signal
    import weakref

    from ikd import cli
    from ikd.errors import stop
    from ikd.tune.search import TrialRecords

    number = getattr(signal, name)
    before = signal.getsignal(signal.SIGINT)
    if number == signal.SIGTERM:  # ikd.cluster.init_ray's handler
        previous = signal.signal(signal.SIGTERM, stop)

    def lose_the_stop(_):
        os.kill(os.getpid(), number)  # handled in here: its exception is dropped

    went_on = []

    def study(args):
        payload = type("Payload", (), {})()
        collected = weakref.ref(payload, lose_the_stop)
        del payload  # the callback runs now
        went_on.append(collected() is None)
        TrialRecords.on_step_end(None, iteration=1, trials=[])
        return 0

    parser = argparse.ArgumentParser(prog="ikd")
    parser.set_defaults(handler=study, verbose=False)
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    try:
        assert cli.main([]) == code
    finally:
        if number == signal.SIGTERM:
            signal.signal(signal.SIGTERM, previous)
    assert went_on == [True]  # the exception raised in the callback did not get out
    assert capsys.readouterr().err.endswith(line)
    assert signal.getsignal(signal.SIGINT) is before  # pytest's, restored
    monkeypatch.setattr(parser, "_defaults", {**parser._defaults, "handler": lambda _: 0})
    assert cli.main([]) == 0  # the stop was handled: the next command runs


def test_an_unreachable_cluster_address_is_one_line_within_seconds(monkeypatch):
    import time

    import ray

    from ikd.cluster import init_ray
    from ikd.errors import UserError

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    start = time.perf_counter()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # discard: nothing listens
    with pytest.raises(UserError, match=r"RAY_ADDRESS=127\.0\.0\.1:9: no Ray cluster answers"):
        init_ray()
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(UserError, match=r"is a dashboard \(jobs API\) address"):
        init_ray()
    assert time.perf_counter() - start < 10


def test_a_dead_head_left_on_record_is_one_line_and_a_local_ray_within_seconds(
    monkeypatch, caplog, tmp_path
):
    """A `ray start --head` killed without `ray stop` leaves its GCS address in Ray's record
    (`<RAY_TMPDIR>/ray/ray_current_cluster`), which a bare `ray.init()` joins and then retries
    for minutes. `init_ray` says so in one line and asks Ray for a local instance instead, one
    that Ray's own address resolution starts without reading the record; RAY_ADDRESS=auto, which
    asks for that cluster, is a one-line error. (Ray's start itself, ~10 s here, is left out.)"""
    import logging
    import signal
    import socket
    import time

    import ray
    from ray._private.services import canonicalize_bootstrap_address

    from ikd.cluster import init_ray
    from ikd.errors import UserError

    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    asked = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    monkeypatch.setattr(ray, "init", lambda **kwargs: asked.append(kwargs))  # not a second Ray
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    caplog.set_level(logging.WARNING, logger="ikd.cluster")
    sigterm = signal.getsignal(signal.SIGTERM)  # init_ray sets ikd's handler
    with socket.socket() as dead:  # bound, never listening: a connection to it is refused
        dead.bind(("127.0.0.1", 0))
        stale = f"127.0.0.1:{dead.getsockname()[1]}"
        record.write_text(stale)
        # the record Ray reads: without an address it would join the dead head (at this
        # machine's own IP, for 127.0.0.1)
        assert canonicalize_bootstrap_address(None).endswith(f":{dead.getsockname()[1]}")
        start = time.perf_counter()
        try:
            init_ray(num_cpus=1)
        finally:
            signal.signal(signal.SIGTERM, sigterm)
        assert time.perf_counter() - start < 5
        (kwargs,) = asked
        assert kwargs["address"] == "local" and kwargs["num_cpus"] == 1
        assert canonicalize_bootstrap_address(kwargs["address"]) is None  # Ray starts its own
        said = [r.getMessage() for r in caplog.records if r.name == "ikd.cluster"]
        assert len(said) == 1 and stale in said[0] and str(record) in said[0], said
        assert "starting a local Ray" in said[0]

        monkeypatch.setenv("RAY_ADDRESS", "auto")
        with pytest.raises(UserError, match=f"RAY_ADDRESS=auto: no Ray cluster answers at {stale}"):
            init_ray()
    assert len(asked) == 1


def test_a_local_node_that_fails_to_start_is_started_again_then_named(monkeypatch, caplog):
    """`LocalCluster` starts a node again when its `ray start` ends before the node is up (a
    raylet that does not register within Ray's fixed 30 s on a loaded machine), on new ports,
    its failed start's disk removed; after `tries` such ends it stops with one line. Stand-in
    processes for `ray start`: one that fails at once, one that stays up."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ikd.cluster import LocalCluster
    from ikd.errors import UserError

    starts: list[tuple[list[str], str]] = []
    failing = [1]  # how many starts fail

    def start(self, name, cpus, resources, role):
        temp = tempfile.mkdtemp(prefix=f"ikdray-{name}-")
        Path(temp, "start.err").write_text(f"start {len(starts) + 1} failed\n")
        code = (
            "import sys; sys.exit(1)" if len(starts) < failing[0] else "import time; time.sleep(60)"
        )
        starts.append((role, temp))
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        self.nodes[name] = (process, temp, name)

    monkeypatch.setattr(LocalCluster, "_start", start)
    cluster = LocalCluster.__new__(LocalCluster)  # no head: only the starts are under test
    cluster.nodes, cluster.disks = {}, []
    roles = iter(range(10))
    up = lambda: len(starts) > failing[0]  # noqa: E731 — up once a start outlived the failures
    cluster._up("b", 1, None, lambda: [f"--port={next(roles)}"], up)
    assert [role for role, _ in starts] == [["--port=0"], ["--port=1"]]  # new ports each time
    assert not Path(starts[0][1]).exists() and "b" in cluster.nodes  # the failed one's disk gone
    assert "a local Ray node (b) did not start (start 1 failed); starting it again" in caplog.text
    cluster.stop()
    starts.clear()
    failing[0] = 3
    with pytest.raises(UserError, match=r"local Ray node \(b\) did not start in 3 tries: start 3"):
        cluster._up("b", 1, None, lambda: [], up)
    assert len(starts) == 3 and not cluster.nodes
