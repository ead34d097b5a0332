"""The main job (`ikd run`): every paper artefact's study in order — Table 3, Table 4, Table 5,
Fig. 4, the joint search, then Table 3 on a second population — each resumable, with an estimate of the time left up front.

    regenerate(preset="laptop", overrides={}, results_root=location("results/laptop"))

Runs live under `<results_root>/runs/` (their records, never their checkpoints, are what a
results tree commits; a continued regeneration reuses every finished trial and final run found
there), the rendered artefacts in `<results_root>/<study>/`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ikd.config import Config, apply_overrides, load_config
from ikd.data.dataset import BuiltDataset, dataset_folder, finished_manifest
from ikd.provenance import hardware
from ikd.report.overview import BUSY, ESTIMATES, write_overview
from ikd.storage import Location, StorageError, read_json, staged, write_json
from ikd.study import load_study
from ikd.train.runs import same_teacher
from ikd.tune.stages import RUNS, STAGES, STUDY_RECORD, StudyRun
from ikd.tune.trials import asha_share

log = logging.getLogger(__name__)

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STAGE_KINDS = ("tune", "reeval", "final")  # StudyRun.work_left's stages
# Seconds a run costs besides its epochs: a trial's start, hand-off and records in Tune
# (benchmarks/bench_tune.py: 1.8 s), a final run's test pass and checkpoint.
RUN_OVERHEAD = 2.0
ORDER = ("table3_methods", "table4_students", "table5_contrast", "fig4_lambda", "search_identitykd",
         "table3_population2")  # fmt: skip


def tree_dataset(results: Location) -> dict[str, Any] | None:
    """The dataset a results tree's runs were trained on — its data hash and teacher, from the
    first run record under `<results>/runs` — or None for a tree without runs."""
    for study in (results / RUNS).folders():
        for stage in (study / name for name in sorted(STAGE_KINDS)):  # the run folders' stages
            for run in stage.folders():
                record = read_json(run / "run.json") or {}
                if record.get("teacher"):
                    return {"data_hash": record.get("data_hash"), "teacher": record["teacher"]}
    return None


def made_elsewhere(results: Location) -> str | None:
    """The CPU a results tree's studies were made on (their provenance), where this machine's
    is another; else None. A build here then usually trains a teacher of other bits (README,
    "What is reproducible"), and the regeneration cannot continue that tree. Names that differ
    only in a clock suffix ("@ 2.80GHz", which some virtual machines leave out) are one CPU:
    such a pair of Xeons trained the same teacher bits."""
    cpu = _made_on(results)
    return cpu if cpu and _model(cpu) != _model(hardware()["cpu"]) else None


def made_here_beside(results: Location) -> list[Location]:
    """The trees beside `results` that its regenerations on other machines started
    (`<results>@<data hash>-<teacher>`, `results_tree`) and that this machine's CPU model made:
    where this build trains such a tree's teacher, the regeneration continues it. (A project
    whose sessions alternate between two CPUs commits one tree per CPU.) Only said before a
    build: a folder beside it that cannot be listed (a bucket's root) gives none."""
    here = _model(hardware()["cpu"])
    try:  # not a bucket's root, where listing beside it would list the buckets
        beside = [] if results.parent.path in ("", "/") else results.parent.folders()
    except StorageError:
        return []
    return [
        tree
        for tree in beside
        if tree.name.startswith(f"{results.name}@")
        and (made := _made_on(tree))
        and _model(made) == here
    ]


def _made_on(results: Location) -> str | None:
    for study in results.folders():
        cpu = ((read_json(study / "provenance.json") or {}).get("hardware") or {}).get("cpu")
        if cpu:
            return cpu
    return None


def _model(cpu: str) -> str:
    """A CPU's model name without its clock ("Intel(R) Xeon(R) Processor @ 2.80GHz" → "Intel(R)
    Xeon(R) Processor")."""
    return re.sub(r"\s*@\s*[\d.]+\s*[GM]Hz\s*$", "", cpu).strip()


def results_tree(results: Location, dataset: BuiltDataset) -> tuple[Location, Location | None]:
    """Where this dataset's regeneration goes, and the tree it is compared with at the end.

    `results` itself when it is new or its runs were trained on this dataset (same data hash,
    same teacher weights): the regeneration continues there. Otherwise — a committed tree made
    on another machine, whose teacher training gave other bits (README, "What is
    reproducible") — a tree of its own beside it, `<results>@<data hash>-<teacher>`, which
    `.gitignore` keeps out of git (except the one our EPYC sessions commit); the committed tree
    is never written, and becomes the reference this one is compared with."""
    made = tree_dataset(results)
    if made is None or (
        made["data_hash"] == dataset.data_hash and same_teacher(made["teacher"], dataset.teacher)
    ):
        return results, None
    teacher = dataset.teacher["backbone_sha256"][:12]
    own = results.parent / f"{results.name}@{dataset.data_hash}-{teacher}"
    log.warning(
        "%s was trained against teacher %s (data %s); this dataset's teacher is %s (data %s): "
        "regenerating into %s, compared with %s at the end",
        results,
        made["teacher"].get("backbone_sha256", "?")[:12],
        made["data_hash"],
        teacher,
        dataset.data_hash,
        own,
        results,
    )
    return own, results


def study_runs(
    preset: str, overrides: Mapping[str, Any], results_root: Location, quick: bool
) -> list[StudyRun]:
    """The regeneration's studies, in order, with their runs under `<results_root>/runs` (unless
    the overrides set `train.runs_root`); on captures (`data.captures`), without the studies
    that draw another synthetic population."""
    captures = bool(apply_overrides(load_config(preset, warn=False), overrides).data.captures)
    runs = []
    for name in ORDER:
        if captures and load_study(STUDIES / f"{name}.py", preset).resamples_population:
            log.info("%s: left out (another synthetic population; data.captures is set)", name)
            continue
        runs.append(StudyRun(STUDIES / f"{name}.py", preset=preset, overrides=overrides,
                             results_root=results_root, quick=quick))  # fmt: skip
    return runs


def remaining(runs: list[StudyRun]) -> tuple[int, int, int]:
    """(tuning trials, re-evaluations of the best ones, final runs) not finished yet across the
    studies."""
    left = [entry for run in runs for entry in run.work_left()]
    return tuple(sum(n for stage, _, n, _ in left if stage == kind) for kind in STAGE_KINDS)


def remaining_epochs(runs: list[StudyRun]) -> dict[str, float]:
    """Epochs expected left across the studies, by student: tuning trials run ASHA's expected
    share of their epochs (`asha_share`), re-evaluations and final runs all of them; a run
    whose student is searched (and not found yet) counts evenly for each choice, as TPE's random
    start draws them."""
    epochs: dict[str, float] = {}
    for run in runs:
        for student, value in study_epochs(run.work_left(), run.study.asha).items():
            epochs[student] = epochs.get(student, 0.0) + value
    return epochs


def study_epochs(
    left: list[tuple[str, tuple[str, ...], int, int]], asha: bool = True
) -> dict[str, float]:
    """`remaining_epochs` of one study's `StudyRun.work_left` (`asha`: its searches stop trials
    early)."""
    epochs: dict[str, float] = {}
    for stage, students, count, per_run in left:
        share = asha_share(per_run, count) if stage == "tune" and asha else 1.0
        for student in students:
            epochs[student] = epochs.get(student, 0.0) + count * per_run * share / len(students)
    return epochs


def builds_left(runs: list[StudyRun], pending: set[str]) -> dict[str, float]:
    """The pending studies (those with runs left) that will build a dataset (the first to read
    each missing one) → the seconds that takes: the recorded build time (manifest timings) of a
    finished dataset any study reads, the one the regeneration starts from."""
    manifests = {
        folder: finished_manifest(folder) for folder in {dataset_folder(r.config) for r in runs}
    }
    seconds = [sum(m["seconds"].values()) for m in manifests.values() if m and m.get("seconds")]
    readers = {
        dataset_folder(run.config): run.study.name
        for run in reversed(runs)
        if run.study.name in pending
    }
    return {
        study: max(seconds, default=0.0)
        for folder, study in readers.items()
        if manifests[folder] is None
    }


def estimate(
    runs: list[StudyRun], train_windows: int
) -> tuple[dict[str, float], str, float | None]:
    """(seconds per study, a line saying how they come, the least CPU share of the timings,
    None where nothing was timed):
    the runs left (`work_left`), their expected epochs at this machine's present speed per
    student (`epoch_seconds`), RUN_OVERHEAD per run, and the datasets still to build
    (`builds_left`) by a study with runs left (one with none is up to date and reads no
    dataset). Timed with a CPU share under BUSY, the line says another process may have kept
    the cores busy (`busy_note`)."""
    left = [run.work_left() for run in runs]
    counts = [sum(n for entries in left for kind, _, n, _ in entries if kind == k) for k in STAGE_KINDS]  # fmt: skip
    epochs = [
        study_epochs(entries, run.study.asha) for entries, run in zip(left, runs, strict=True)
    ]
    students = {s: sum(e.get(s, 0.0) for e in epochs) for s in {s for e in epochs for s in e}}
    config = runs[0].config
    timed = {
        student: epoch_seconds(apply_overrides(config, {"train.student": student}), train_windows)
        for student in sorted(students, key=lambda name: -students[name])
    }
    seconds = {student: value for student, (value, _) in timed.items()}
    share = min((value for _, value in timed.values()), default=None)
    pending = {run.study.name for run, entries in zip(runs, left, strict=True) if entries}
    builds = builds_left(runs, pending)
    per_study = {
        run.study.name: sum(value * seconds[s] for s, value in study.items())
        + RUN_OVERHEAD * sum(n for _, _, n, _ in entries)
        + builds.get(run.study.name, 0.0)
        for run, entries, study in zip(runs, left, epochs, strict=True)
    }
    total = sum(per_study.values())
    line = (
        "{} tuning trials, {} re-evaluations and {} final runs left".format(*counts)
        + f", {config.train.epochs} epochs each (a tuning trial fewer: ASHA's expected early "
        "stops); per epoch here now "
        + (", ".join(f"{s} ~{v:.0f} s" for s, v in seconds.items()) or "—")
        + busy_note(share)
        + (f"; {len(builds)} dataset(s) to build, ~{_duration(sum(builds.values()))}" if builds else "")
        + f" — about {_duration(total)} ("
        + ", ".join(f"{name} {_duration(value)}" for name, value in per_study.items() if value)
        + "; this machine's speed varies from day to day)"
    )  # fmt: skip
    return per_study, line, share


def busy_note(share: float | None) -> str:
    """What the estimate line adds where its timings had under BUSY of their CPU (measured on 2
    cores: 100 % alone, 86 % with OMP_WAIT_POLICY=PASSIVE, 43–50 % beside one other torch
    process; benchmarks/README.md, "The estimate on a busy machine")."""
    if share is None or share >= BUSY:
        return ""
    return (
        f" (timed while this process had {share:.0%} of its threads' CPU: another process may "
        "be busy on these cores, and then the estimate runs high)"
    )


def record_estimate(
    results_root: Location,
    runs: list[StudyRun],
    left: Mapping[str, float],
    share: float | None = None,
) -> None:
    """Add to the results root's estimates.json (`ESTIMATES`) the seconds `ikd run` expects each
    study still to take (`left`: none once the regeneration has ended) and the stage seconds each
    had spent then (study.json's), so each estimate can be set against what the regeneration then
    took, wherever it was interrupted and resumed (`ikd.report.overview.estimate_lines`), and
    the CPU share its timings had where it timed any (`epoch_seconds`)."""
    path = results_root / ESTIMATES
    spent = {
        run.study.name: round(
            sum((read_json(run.results / STUDY_RECORD) or {}).get("stage_seconds", {}).values()), 1
        )
        for run in runs
    }
    entry = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": hardware()["cpu"],
        "left_s": {name: round(seconds, 1) for name, seconds in left.items() if seconds},
        "spent_s": spent,
        **({} if share is None else {"cpu_share": round(share, 2)}),
    }
    write_json(path, [*(read_json(path) or []), entry])


def epoch_seconds(config: Config, train_windows: int, steps: int = 3) -> tuple[float, float]:
    """Seconds per training epoch of the configured student here and now: a few timed Adam
    steps on a batch of random spectrograms, scaled to the epoch (+15 % for evaluating val);
    and the share of its threads' CPU this process had meanwhile, its threads counted up to the
    CPUs it may use (near 1 alone: torch's threads spin between operations; about 1/2 beside one
    other torch process on the same cores, which slows both many times: benchmarks/README.md,
    "A machine busy with other torch work"). The process's other threads (Ray's, in a driver)
    count too, which errs towards a quiet reading; a container's CPU quota is not read."""
    import torch

    from ikd.models.students import backbone
    from ikd.train.loop import adam

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    net = backbone(config.train.student)[0].to(memory_format=torch.channels_last)
    optimizer = adam(net.parameters(), config.train.lr)  # as training steps
    size = config.dsp.image_size
    batch = torch.randn(config.train.batch_size, 3, size, size)
    batch = batch.contiguous(memory_format=torch.channels_last)  # as training holds them
    times, cpu = [], []
    for _ in range(steps + 1):  # the first step warms up
        start, start_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        net(batch).float().mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    step = sorted(times[1:])[len(times[1:]) // 2]
    threads = min(torch.get_num_threads(), hardware()["cpus"] or 1)
    share = sum(cpu[1:]) / (sum(times[1:]) * threads)
    return 1.15 * step * math.ceil(train_windows / config.train.batch_size), share


def regenerate(
    *,
    preset: str,
    overrides: Mapping[str, Any],
    results_root: Location,
    quick: bool = False,
    train_windows: int,
    only_estimate: bool = False,
) -> list[StudyRun]:
    """Run every study's stages in ORDER (each resumable), saying first how long it will take
    (`only_estimate`: only that)."""
    runs = study_runs(preset, overrides, results_root, quick)
    expected, line, share = estimate(runs, train_windows)
    (log.warning if busy_note(share) else log.info)("%s preset: %s", preset, line)
    if only_estimate:
        return runs
    work = any(expected.values())  # a finished tree is read, not written: not one byte
    if work:
        record_estimate(results_root, runs, expected, share)
    start = time.perf_counter()
    for index, run in enumerate(runs, 1):
        log.info("study %d/%d: %s (%s)", index, len(runs), run.study.name, run.study.artefact)
        run.run(STAGES)
        left = remaining(runs[index:])
        log.info(
            "study %d/%d done after %s; %d tuning trials, %d re-evaluations and %d final runs left",
            index,
            len(runs),
            _duration(time.perf_counter() - start),
            *left,
        )
    if work:
        record_estimate(results_root, runs, {})
    with staged(results_root, skip=(RUNS,)) as folder:
        write_overview(folder, [run.study.name for run in runs], results_root.name)
    return runs


def _duration(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
