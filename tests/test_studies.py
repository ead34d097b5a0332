"""Every study file end to end on the smoke preset, with its test budget (`--quick`: 2 trials per
tuned variant, 2 seeds, 2 epochs, fewer λ values): tune → final → report, run by the main job
(`ikd run --preset smoke`, tests/main_job.py) once per session, feeding the assertions below."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from main_job import FIRST_SHA, SHA, STUDIES

from ikd.space import values_of
from ikd.study import Figure, load_study
from ikd.tune.regenerate import ORDER

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def studies(main_job):
    """The main job's results, once it has ended (conftest.py's `main_job` submitted it as the
    session began): (results, runs, its logs)."""
    from ray.job_submission import JobStatus

    from ikd.cluster import wait_for_job

    client, job, results = main_job
    status, logs = wait_for_job(client, job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    return results, results / "runs", logs


def test_the_main_job_previews_builds_reports_and_prints_table3(studies, smoke_dataset):
    results, _, printed = studies
    assert (results.parent / "preview" / "grid.png").exists()  # <--out>/preview
    _, folder, _ = smoke_dataset
    data_root = results.parent / "datasets"  # the job's copy of it: reused, not built again
    built = sorted(p.name for p in data_root.iterdir())  # and the second population's
    assert folder.name in built and len(built) == 2
    assert "# Dataset smoke-" in printed and "# Table 3: synthetic data, smoke preset" in printed
    # the estimate up front times each student left: the search draws all four
    estimate = next(line for line in printed.splitlines() if "per epoch here now" in line)
    assert all(f"{name} ~" in estimate for name in ("mobilenet", "efficientnet", "vgg16"))
    assert {p.name for p in results.iterdir()} >= {*ORDER, "runs", "README.md"}
    overview = (results / "README.md").read_text()
    assert "Does IdentityKD beat each baseline beyond seed noise?" in overview
    assert overview.count("- IdentityKD − ") == 4 + 1  # Table 3's, its second population's
    assert "n = 2 paired seeds" in overview
    assert "| λ1 (λ2 = 0.4) | IdentityKD |" in overview
    # the estimate and the end, each beside the stage time every study had spent then, set
    # against each other in the overview
    entries = json.loads((results / "estimates.json").read_text())
    assert len(entries) == 2 and entries[0]["left_s"] and entries[1]["left_s"] == {}
    assert entries[0]["cpu_share"] > 0 and "cpu_share" not in entries[1]  # the end times nothing
    assert set(entries[0]["left_s"]) <= set(ORDER) == set(entries[1]["spent_s"])
    assert all(entries[1]["spent_s"][s] >= entries[0]["spent_s"][s] > -1 for s in ORDER)
    assert (
        "| `ikd run` at | CPU | CPU share while timing | estimated left | took from there "
        "| took / estimated |" in overview
    )


def test_every_study_renders_its_artefact_from_its_own_runs(studies):
    results, runs, _ = studies
    for name in ORDER:
        study = load_study(STUDIES / f"{name}.py")
        folder = results / name
        finals = [v.name for v in study.variants if v.final]
        finals = [v for v in finals if not study.test_variants or v in study.test_variants]
        if isinstance(study.report, Figure):
            points = pd.read_csv(folder / "figure.csv")
            assert sorted(points["variant"]) == sorted(finals)
            assert (points["n"] == study.test_seeds).all()
            assert points["hinge_active"].between(0, 100).all()  # both methods log eq. 14's hinge
            # the worst 10 % averages the lowest identities: never below the lowest (per_identity
            # is stored to 6 decimals)
            assert (points["worst10_acc_mean"] >= points["worst_acc_mean"] - 1e-3).all()
            assert (folder / "figure.png").stat().st_size > 10_000
            assert "![figure](figure.png)" in (folder / "figure.md").read_text()
        else:
            table = pd.read_csv(folder / "table.csv")
            assert table["variant"].tolist() == finals, name
            assert (table["n"] == study.test_seeds).all(), name
            assert table["acc_mean"].between(0, 100).all() and table["walks"].gt(0).all()
            text = (folder / "table.md").read_text()
            assert "synthetic data, smoke preset" in text and "Test budget (--quick)" in text
        # every run of the study is in runs.csv; tuning runs never saw the test split
        rows = pd.read_csv(folder / "runs.csv")
        on_disk = list((runs / name).glob("*/*-seed*"))
        assert (rows["study"] == name).sum() == len(on_disk)  # and others' runs it reads
        assert rows.loc[rows["stage"] == "tune", "test_acc"].isna().all()
        assert rows.loc[rows["stage"] == "final", "test_acc"].notna().all()
        tuned = [v.name for v in study.variants if v.space]
        tuned = [v for v in tuned if not study.test_variants or v in study.test_variants]
        trials = pd.read_csv(folder / "tuning.csv") if tuned else None
        for variant in tuned:
            assert (trials["variant"] == variant).sum() == study.test_trials
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["preset"] == "smoke" and provenance["quick"] is True
        assert {"tune", "final"} <= set(provenance["stage_seconds"])
        assert provenance["dataset"]["manifest_sha256"] and provenance["teacher"]
        # passed with the job (cluster/runtime_env.yaml drops .git); Table 4, finished by the
        # job's first command, was up to date in `ikd run` and not rendered again
        assert provenance["git"] == (FIRST_SHA if folder.name == "table4_students" else SHA)


def test_table3_compares_identitykd_with_every_baseline_and_plots_identities(studies):
    results, _, _ = studies
    significance = pd.read_csv(results / "table3_methods" / "significance.csv")
    assert significance[["a", "b"]].values.tolist() == [
        ["identitykd", m] for m in ("baseline", "vanilla_kd", "cfkd", "mkd")
    ]
    assert (significance["n"] == 2).all() and significance["verdict"].isin(
        ("better", "worse", "equivalent within ±1 point", "undecided")
    ).all()
    per_identity = pd.read_csv(results / "table3_methods" / "per_identity.csv")
    assert len(per_identity) == 5 * 4  # variants × the smoke preset's identities
    paper = pd.read_csv(results / "table3_methods" / "table.csv").set_index("variant")
    assert paper.loc["identitykd", "paper_acc"] == 98.58


def test_table4_and_table5_reuse_table3s_tuned_identitykd(studies):
    results, runs, _ = studies
    best = json.loads((results / "table3_methods" / "best_config.json").read_text())["identitykd"]
    for study, variant in (("table4_students", "identitykd-resnet18"), ("table5_contrast", "identitykd-nce-tau5")):  # fmt: skip
        config = json.loads(
            next((runs / study / "final").glob(f"{variant}-*/config.json")).read_text()
        )
        for key, value in best["overrides"].items():
            section, name = key.split(".", 1)
            expected = 5.0 if (study, key) == ("table5_contrast", "identitykd.tau") else value
            assert config[section][name] == expected, (study, key)
    # table3's identitykd was tuned once: table4 and table5 read it, never tuned it again
    # (Table 4 tunes only the lr and weight decay of its students other than ResNet18)
    assert len(list((runs / "table3_methods" / "tune").glob("identitykd-*"))) == 2
    tuned = {p.name.rsplit("-", 2)[0] for p in (runs / "table4_students" / "tune").iterdir()}
    assert tuned == {"identitykd-mobilenet"}
    # Table 3's identitykd was tuned inside Table 4's tune stage (the job ran Table 4 first: its
    # MobileNet lr search starts at Table 3's lr); that time counts in Table 3's record only,
    # beside its other four variants' (tuned by `ikd run`): 2 trials × 5 variants there, 2 trials
    # of one variant here
    seconds = {
        study: json.loads((results / study / "study.json").read_text())["stage_seconds"]
        for study in ("table3_methods", "table4_students")
    }
    assert seconds["table4_students"]["tune"] < seconds["table3_methods"]["tune"]
    assert seconds["table4_students"]["final"] < seconds["table3_methods"]["tune"]


def test_a_final_run_another_study_made_is_read_not_trained_again(studies):
    """Table 5's NCE row is Table 3's tuned IdentityKD, the same configuration and seeds (and,
    with the job's student, so is Table 4's MobileNet row where its lr search picks Table 3's
    lr; the job ran Table 4 first): one set of final runs serves these rows, listed in each
    runs.csv under the study that made it."""
    results, runs, _ = studies
    own = [p for p in (runs / "table5_contrast" / "final").iterdir()
           if p.name.rsplit("-", 2)[0] == "identitykd-nce"]  # fmt: skip
    assert not own
    finals = {}
    for study in ("table3_methods", "table5_contrast"):
        frame = pd.read_csv(results / study / "runs.csv")
        chosen = frame["variant"].isin(("identitykd", "identitykd-mobilenet"))
        finals[study] = frame[chosen & (frame["stage"] == "final")]
    assert len(finals["table5_contrast"]) == 2  # whichever study made them first
    assert set(finals["table5_contrast"]["study"]) < {"table3_methods", "table4_students"}
    assert (
        finals["table5_contrast"]["folder"].tolist() == finals["table3_methods"]["folder"].tolist()
    )
    tables = {study: pd.read_csv(results / study / "table.csv").set_index("variant")
              for study in ("table3_methods", "table5_contrast")}  # fmt: skip
    assert (
        tables["table5_contrast"].loc["identitykd-nce", "acc_mean"]
        == tables["table3_methods"].loc["identitykd", "acc_mean"]
    )


def test_the_second_population_trains_table3s_configurations_on_its_own_data(studies):
    """Issue 23 item 6: Table 3's tuned configurations, unchanged, on another synthetic seed —
    its own dataset and teacher — with the same seeds; the overview sets its verdicts beside
    Table 3's."""
    results, runs, _ = studies
    best = json.loads((results / "table3_methods" / "best_config.json").read_text())
    teachers = set()
    for study in ("table3_methods", "table3_population2"):
        frame = pd.read_csv(results / study / "runs.csv")
        chosen = frame["variant"].str.startswith("identitykd") & (frame["stage"] == "final")
        (name,) = frame.loc[chosen & (frame["seed"] == 1), "folder"]
        folder = runs / name
        config = json.loads((folder / "config.json").read_text())
        assert config["synthetic"]["seed"] == (1 if study == "table3_population2" else 0)
        for key, value in best["identitykd"]["overrides"].items():
            section, name = key.split(".", 1)
            assert config[section][name] == value, (study, key)
        record = json.loads((folder / "run.json").read_text())
        teachers.add(record["teacher"]["backbone_sha256"])
    assert len(teachers) == 2  # each population's own teacher
    assert not (runs / "table3_population2" / "tune").exists()
    table = pd.read_csv(results / "table3_population2" / "table.csv")
    assert table["seeds"].tolist() == ["0 1"] * 2  # its test variants: baseline, identitykd
    overview = (results / "README.md").read_text()
    assert (
        "| comparison | population 1 (table3_methods) | population 2 | holds in both |" in overview
    )
    assert overview.count("| IdentityKD − Baseline | ") == 1


def test_each_tuned_variant_is_picked_by_its_best_trials_mean_val_over_seeds(studies):
    """Issue 23: a variant's best complete trials (2 in a test run) train again on val with more
    seeds (1 here, from seed 1000: none a final run uses); the best mean val acc picks its
    configuration. best_config.json keeps every seed's val acc and the single-seed pick, and
    runs.csv lists the re-evaluations (val only: no test, no checkpoints left)."""
    results, runs, _ = studies
    best = json.loads((results / "table3_methods" / "best_config.json").read_text())
    assert set(best) == {"baseline", "vanilla_kd", "cfkd", "mkd", "identitykd"}
    for variant, entry in best.items():
        scores = entry["reevaluated"]
        assert 1 <= len(scores) <= 2 and entry["single_seed_pick"] in scores
        means = {run: sum(values) / len(values) for run, values in scores.items()}
        assert entry["run"] == max(means, key=lambda run: (means[run], run))
        assert entry["val/acc"] == pytest.approx(means[entry["run"]]) and entry["seeds"] == 2
        for run, values in scores.items():
            assert len(values) == 2
            folder = runs / "table3_methods" / "reeval" / run.replace("-seed0", "-seed1000")
            record = json.loads((folder / "run.json").read_text())
            assert record["stage"] == "reeval" and record["status"] == "complete", variant
            assert not (folder / "test.json").exists() and not (folder / "checkpoints").exists()
    rows = pd.read_csv(results / "table3_methods" / "runs.csv")
    assert (rows["stage"] == "reeval").sum() == sum(len(e["reevaluated"]) for e in best.values())


def test_a_search_from_another_studys_configuration_tries_it_first(studies):
    """Issue 23 items 4 and 5: Table 4's per-student lr search and the joint search start at
    Table 3's tuned IdentityKD — one trial is that configuration's values of the space (Table 3's
    lr and no weight decay for the student; for the joint search every key of its space, the student and λ1, λ2, γ
    included) — and that trial is re-evaluated (tests/test_tune.py: wherever it ranks). The joint
    search's finals are compared with Table 3's IdentityKD seed by seed."""
    results, runs, _ = studies
    frame = pd.read_csv(results / "table3_methods" / "runs.csv")  # its identitykd finals, which
    # Table 4's MobileNet row made where its search picked Table 3's lr (the job ran it first)
    chosen = frame["variant"].isin(("identitykd", "identitykd-mobilenet"))
    (folder,) = frame.loc[chosen & (frame["stage"] == "final") & (frame["seed"] == 0), "folder"]
    table3 = json.loads((runs / folder / "config.json").read_text())

    def values(config, keys):
        return values_of(dict.fromkeys(keys), config)

    search = load_study(STUDIES / "search_identitykd.py").variants[0].space
    table4 = next(  # lr and weight decay: Table 3's, no decay
        v.space for v in load_study(STUDIES / "table4_students.py").variants
        if v.name == "identitykd-mobilenet"
    )  # fmt: skip
    for study, variant, keys in (
        ("table4_students", "identitykd-mobilenet", set(table4)),
        ("search_identitykd", "identitykd", set(search)),
    ):
        start = values(table3, keys)
        firsts = [
            folder.name
            for folder in (runs / study / "tune").glob(f"{variant}-*")
            if values(json.loads((folder / "config.json").read_text()), keys) == start
        ]
        assert len(firsts) == 1, (study, firsts)
        best = json.loads((results / study / "best_config.json").read_text())[variant]
        assert firsts[0] in best["reevaluated"], (study, best["reevaluated"])
    significance = pd.read_csv(results / "search_identitykd" / "significance.csv")
    assert significance[["a", "b"]].values.tolist() == [["identitykd", "table3_methods/identitykd"]]
    assert significance["n"].tolist() == [2]


def test_the_search_reports_its_best_configuration_and_importances(studies):
    results, _, _ = studies
    importances = pd.read_csv(results / "search_identitykd" / "importances.csv")
    study = load_study(STUDIES / "search_identitykd.py")
    assert set(importances["parameter"]) == set(study.variants[0].space)
    text = (results / "search_identitykd" / "table.md").read_text()
    assert "## Parameter importances" in text and "train.student=" in text


def test_tuning_runs_end_without_checkpoints_marked_and_mirrored_into_optuna(studies):
    import optuna

    from ikd.train.runs import STOPPED

    _, runs, _ = studies
    tuning = sorted((runs / "table3_methods" / "tune").iterdir())
    assert len(tuning) == 5 * 2
    assert not any((run / "checkpoints").exists() for run in tuning)
    statuses = {run.name: json.loads((run / "run.json").read_text())["status"] for run in tuning}
    for run in tuning:  # a trial ASHA stopped says so; every other one finished
        assert (statuses[run.name] == "running") == (run / STOPPED).exists(), run.name
    storage = f"sqlite:///{runs / 'table3_methods' / 'optuna.db'}"
    for variant in ("baseline", "identitykd"):
        mirror = optuna.load_study(study_name=f"table3_methods/{variant}", storage=storage)
        mirrored = {t.user_attrs["run"]: t for t in mirror.trials}
        assert set(mirrored) == {name for name in statuses if name.startswith(f"{variant}-")}
        for run, trial in mirrored.items():
            complete = statuses[run] == "complete"
            assert (trial.state == optuna.trial.TrialState.COMPLETE) == complete, run
            assert len(trial.intermediate_values) >= 1
    # final runs keep one model-only checkpoint (for `ikd eval` and export), not a resume state
    for run in (runs / "table3_methods" / "final").iterdir():
        (checkpoint,) = (run / "checkpoints").iterdir()
        assert json.loads((checkpoint / "epoch.json").read_text())["model_only"] is True


def test_a_finished_study_run_again_trains_nothing(studies, caplog):
    from ikd.tune.regenerate import remaining_epochs, study_runs
    from ikd.tune.stages import STAGES, StudyRun

    results, runs, _ = studies
    finals = sorted((runs / "table3_methods" / "final").glob("*/test.json"))
    stamps = [path.stat().st_mtime_ns for path in finals]
    record = json.loads((results / "table3_methods" / "study.json").read_text())
    assert record["overrides"]["train.runs_root"] == "<results>/runs"  # portable
    StudyRun.from_record(results / "table3_methods").run(STAGES)
    assert [path.stat().st_mtime_ns for path in finals] == stamps
    # and `ikd run`'s estimate finds nothing left to time
    overrides = {k: v for k, v in record["overrides"].items() if k != "train.runs_root"}
    assert remaining_epochs(study_runs("smoke", overrides, results, quick=True)) == {}
    assert len(list((runs / "table3_methods" / "tune").iterdir())) == 5 * 2
    # `ikd run --estimate` says so too, and stops there
    from ikd.cli import main

    with caplog.at_level(logging.INFO, logger="ikd"):
        assert main(["run", "--preset", "smoke", "--estimate", "--results", str(results),
                     *(f"{k}={v}" for k, v in overrides.items())]) == 0  # fmt: skip
    assert "0 tuning trials, 0 re-evaluations and 0 final runs left" in caplog.text
    assert "about 0 min" in caplog.text and "study 1/" not in caplog.text


def test_an_interrupted_stage_still_counts_its_time(studies, monkeypatch):
    """Killed mid-stage (Ctrl-C, or SIGTERM, which ikd turns into Terminated, a
    KeyboardInterrupt), a session's wall time is added to study.json: the runs it finished are
    kept, so the time was spent."""
    import time

    from ikd.tune.stages import StudyRun

    results, _, _ = studies
    path = results / "table3_methods" / "study.json"
    before = json.loads(path.read_text())["stage_seconds"]["report"]

    def killed(self):
        time.sleep(0.3)
        raise KeyboardInterrupt

    monkeypatch.setattr(StudyRun, "report", killed)
    with pytest.raises(KeyboardInterrupt):
        StudyRun.from_record(results / "table3_methods").run(["report"], command=["test"])
    assert json.loads(path.read_text())["stage_seconds"]["report"] >= before + 0.2


def test_ikd_report_rerenders_the_same_tables_from_the_records(studies, capsys):
    from ikd.cli import main

    results, _, _ = studies
    before = {p: p.read_text() for p in results.glob("*/table.csv")}
    assert main(["report", "table3_methods", "--results", str(results)]) == 0
    assert {p: p.read_text() for p in results.glob("*/table.csv")} == before
    assert main(["report", "no_such_study", "--results", str(results)]) == 2
    assert "no_such_study" in capsys.readouterr().err


def test_a_clone_of_the_records_continues_without_rerunning_anything_finished(studies, tmp_path):
    """What a fresh clone of a committed results tree holds — run records, no checkpoints, no
    Tune state, no Optuna mirror — continues a study: only what is missing is trained."""
    from ikd.tune.stages import run_study

    results, _, _ = studies
    clone = tmp_path / "clone"
    ignore = shutil.ignore_patterns("checkpoints", "tune-experiments", "optuna.db")
    shutil.copytree(results, clone, ignore=ignore)  # copy2: modification times kept
    finals = sorted((clone / "runs" / "table3_methods" / "final").iterdir())
    missing = finals.pop()  # a final run the committed tree did not have yet
    shutil.rmtree(missing)
    stamps = {run.name: (run / "metrics.jsonl").stat().st_mtime_ns for run in finals}
    tuning = {run.name for run in (clone / "runs" / "table3_methods" / "tune").iterdir()}
    record = json.loads((results / "table3_methods" / "study.json").read_text())
    overrides = {k: v for k, v in record["overrides"].items() if k != "train.runs_root"}
    run_study(
        STUDIES / "table3_methods.py",
        preset="smoke",
        overrides=overrides,
        results_root=clone,
        quick=True,
        storage=str(clone / "runs"),
    )
    after = sorted((clone / "runs" / "table3_methods" / "final").iterdir())
    assert [run.name for run in after] == sorted([*stamps, missing.name])
    for run in finals:  # nothing finished was trained again
        assert (run / "metrics.jsonl").stat().st_mtime_ns == stamps[run.name]
    assert (missing / "test.json").exists()
    assert {run.name for run in (clone / "runs" / "table3_methods" / "tune").iterdir()} == tuning
    table = pd.read_csv(clone / "table3_methods" / "table.csv")
    assert (table["n"] == 2).all()


def _committed_clone(results: Path, clone: Path, teacher: str | None = None) -> Path:
    """A git checkout holding `results` as a committed tree, `results/<its name>`, with the
    repository's .gitignore: what a fresh clone of main holds (records, no checkpoints) — with
    `teacher`, made against a teacher of that backbone hash (every run record names it)."""
    tree = clone / "results" / results.name
    ignore = shutil.ignore_patterns("checkpoints", "tune-experiments", "optuna.db")
    shutil.copytree(results, tree, ignore=ignore)
    for path in tree.glob("runs/*/*/*/run.json") if teacher else ():
        record = json.loads(path.read_text())
        record["teacher"]["backbone_sha256"] = teacher
        path.write_text(json.dumps(record))
    shutil.copy(STUDIES.parent / ".gitignore", clone / ".gitignore")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "r"]):
        _git(clone, *command)
    assert f"results/{results.name}/table3_methods/table.md" in _git(clone, "ls-files", "results")
    return tree


def _git(clone: Path, *command: str) -> str:
    settings = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    done = subprocess.run(
        ["git", "-C", str(clone), *settings, *command], capture_output=True, text=True, check=True
    )
    return done.stdout


def _status(clone: Path) -> str:
    """`git status`: every change to a tracked file, every file git does not ignore."""
    return _git(clone, "status", "--porcelain", "--untracked-files=all")


def _run_main(tree: Path, out: Path, data_root: str, *more: str) -> int:
    from ikd.cli import main

    overrides = [f"data.root={data_root}", "teacher.source=trained", "train.student=mobilenet"]
    command = ["run", "--preset", "smoke", "--results", str(tree), "--out", str(out)]
    return main([*command, *overrides, *more])


def test_ikd_run_on_the_committed_trees_dataset_continues_it_and_git_stays_clean(
    studies, smoke_dataset, tmp_path, caplog
):
    """The same dataset (data hash and teacher) as the committed runs': `ikd run` continues
    the committed tree — here finished, so it trains nothing and writes not one byte."""
    caplog.set_level(logging.INFO, logger="ikd")
    results, _, _ = studies
    tree = _committed_clone(results, tmp_path / "clone")
    assert _run_main(tree, tmp_path / "out", smoke_dataset[0].data.root) == 0
    assert _status(tmp_path / "clone") == ""
    assert "regenerating into" not in caplog.text
    assert caplog.text.count("up to date (every run finished") == len(ORDER)


def test_ikd_run_on_another_teacher_regenerates_beside_the_committed_tree_and_compares(
    studies, smoke_dataset, tmp_path, monkeypatch, capsys, caplog
):
    """The newcomer's case: the committed runs were trained against another teacher than the
    one this machine's build trained (README, "What is reproducible"; here the committed-looking
    tree's records name another backbone). `ikd run` says so in one line, regenerates into a
    tree of its own beside the committed one, ends with the comparison, and leaves git clean."""
    import ikd.tune.regenerate
    from ikd.data.dataset import open_dataset

    results, _, _ = studies
    config, folder, _ = smoke_dataset
    mine = open_dataset(folder)
    theirs = "f" * 64  # the committed runs' teacher: not this dataset's
    assert mine.teacher["backbone_sha256"] != theirs
    monkeypatch.setattr(ikd.tune.regenerate, "ORDER", ("search_identitykd",))  # one study suffices
    tree = _committed_clone(results, tmp_path / "clone", teacher=theirs)
    assert _run_main(tree, tmp_path / "out", config.data.root, "train.epochs=1") == 0

    assert _status(tmp_path / "clone") == ""  # the committed tree byte for byte; the new ignored
    own = tree.with_name(f"{tree.name}@{mine.data_hash}-{mine.teacher['backbone_sha256'][:12]}")
    said = [r.message for r in caplog.records if "regenerating into" in r.message]
    assert len(said) == 1 and str(own) in said[0]
    assert f"teacher {theirs[:12]}" in said[0]  # both teachers named
    assert (own / "search_identitykd" / "table.csv").exists()
    # the search starts from Table 3's IdentityKD: that variant alone was tuned for it
    tuned = {p.name.rsplit("-", 2)[0] for p in (own / "runs" / "table3_methods" / "tune").iterdir()}
    assert tuned == {"identitykd"}
    best = json.loads((own / "table3_methods" / "best_config.json").read_text())
    assert set(best) == {"identitykd"}
    printed = capsys.readouterr().out
    comparison = (own / "comparison.md").read_text()
    assert comparison in printed and "| search_identitykd | identitykd |" in comparison
    # its compared pair's verdict in both trees (here without Table 3's final runs: not run)
    assert "| IdentityKD, best of the joint search − IdentityKD, Table 3 | " in comparison
    verdict = pd.read_csv(own / "comparison.csv")["verdict"].iloc[0]
    assert verdict in ("reproduced within seed noise", "differs")
