"""`<results>/README.md`: every artefact of a regeneration beside the paper's, and what the
reproduction supports — each number and verdict read from the studies' rendered CSVs, none typed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ikd.report.render import describe, still_rising
from ikd.report.stats import VERDICTS, Difference
from ikd.storage import read_json

# (study folder, what it answers) in the order a reader wants them
QUESTIONS = {
    "table3_methods": "Does IdentityKD beat each baseline beyond seed noise?",
    "table4_students": "How do the students compare, each at its own tuned lr (MobileNet, EfficientNet and VGG16 also their weight decay; ResNet18 keeps Table 3's tuning), and what does IdentityKD add to each?",
    "table5_contrast": "Does NCE beat KL, and how does the paper's τ = 5 behave?",
    "fig4_lambda": "Do λ1 and λ2 move the worst-identity accuracy?",
    "search_identitykd": "What does the joint search find?",
    "table3_population2": "Do Table 3's verdicts hold on a second synthetic population?",
}
# a study that repeats another on a second population → the study it repeats
REPLICATES = {"table3_population2": "table3_methods"}
ESTIMATES = "estimates.json"  # in a results root: `ikd run`'s estimates (ikd.tune.regenerate)
# the CPU share of an estimate's timings under which another process kept the machine busy
BUSY = 0.75


def write_overview(
    results: Path, studies: Sequence[str] = tuple(QUESTIONS), name: str | None = None
) -> Path:
    """Write `<results>/README.md` from the studies rendered under `results` (`name`: the
    results root's, when `results` is a local copy of it)."""
    results = Path(results)
    lines = [
        f"# Results: {name or results.name}",
        "",
        "Rendered by `ikd report` from the run records under `runs/` (no number here is typed by "
        "hand). The data is synthetic: a simulated population (a second one where a study "
        "says so), one split by walk; the paper's "
        "numbers come from its own radar recordings, so a difference to them is context, not a "
        "test. What carries weight is each comparison's paired difference over seeds.",
        "",
        VERDICTS,
        "",
    ]
    for name in studies:
        folder = results / name
        record = read_json(folder / "study.json")
        if record is None:
            lines += [f"## {name}", "", "Not run yet.", ""]
            continue
        page = "figure.md" if (folder / "figure.md").exists() else "table.md"
        lines += [f"## {QUESTIONS.get(name, name)}", "", f"[{name}/{page}]({name}/{page})", ""]
        lines += _rows(folder) + _verdicts(folder) + _sweep(folder) + _best(folder)
        if name in REPLICATES:
            lines += verdicts_beside(
                results / REPLICATES[name],
                folder,
                (f"population 1 ({REPLICATES[name]})", "population 2"),
            )
    lines += _cost(results, studies)
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path


def _rows(folder: Path) -> list[str]:
    """A table's rows: ours (mean ± std, n) beside the paper's ACC."""
    if not (folder / "table.csv").exists():
        return []
    table = pd.read_csv(folder / "table.csv")
    lines = [
        "| row | n | ACC (%) | paper ACC (%) | worst-identity ACC (%) |",
        "|---|---|---|---|---|",
    ]
    curve = ""
    if (folder / "val_curves.png").exists():
        curve = f", [val curve]({folder.name}/val_curves.png)"
    for row in table.to_dict("records"):
        if not row.get("learned", True):
            lines.append(
                f"| {row['label']} | {row['n']} | did not learn (val ACC "
                f"{_cell(row['val_acc_mean'])} %{curve}) "
                f"| {_cell(row['paper_acc'])} | — |"
            )
            continue
        rising = (
            f" (val ACC still rising in the last epoch: +{row['val_rise']:.1f} points{curve})"
            if curve and still_rising(row)
            else ""
        )
        lines.append(
            f"| {row['label']} | {row['n']} | {_cell(row['acc_mean'], row['acc_std'])}{rising} | "
            f"{_cell(row['paper_acc'])} | {_cell(row['worst_acc_mean'], row['worst_acc_std'])} |"
        )
    return [*lines, ""]


def verdicts_beside(first: Path, second: Path, names: tuple[str, str]) -> list[str]:
    """A Markdown table: each comparison of the study `second` (its significance.csv) and of
    `first` (the same study elsewhere: another population, another machine's regeneration), its
    verdict in each ("not run" where one lacks it) and whether it holds in both; `names` head
    their columns. No table where neither compares a pair."""
    paths = [first / "significance.csv", second / "significance.csv"]
    if not all(path.exists() for path in paths):
        return []
    one, two = (
        pd.read_csv(path).drop_duplicates(["a", "b"], keep="last").set_index(["a", "b"])
        for path in paths
    )
    pairs = [*two.index, *(pair for pair in one.index if pair not in two.index)]
    if not pairs:
        return []
    lines = [
        f"| comparison | {names[0]} | {names[1]} | holds in both |",
        "|---|---|---|---|",
    ]
    for pair in pairs:
        rows = [frame.loc[pair] if pair in frame.index else None for frame in (one, two)]
        verdicts = [row["verdict"] for row in rows if row is not None]
        holds = (
            "—"
            if len(verdicts) < 2 or "not compared" in " ".join(verdicts)
            else "no"
            if verdicts[0] != verdicts[1]
            else "undecided in both"
            if verdicts[0] == "undecided"
            else "yes"
        )
        label = next(row for row in reversed(rows) if row is not None)
        cells = " | ".join("not run" if row is None else _said(row) for row in rows)
        lines.append(f"| {label['a_label']} − {label['b_label']} | {cells} | {holds} |")
    return [*lines, ""]


def _said(row: pd.Series) -> str:
    """A comparison's verdict with its mean difference (points), where it was compared."""
    return f"{row['verdict']} ({row['mean_points']:+.2f})" if row["n"] else row["verdict"]


def _verdicts(folder: Path) -> list[str]:
    """The table's comparisons in words: each pair's difference, interval, n and wins, then its
    verdict (significance.csv's, never decided again here)."""
    if not (folder / "significance.csv").exists():
        return []
    lines = []
    for row in pd.read_csv(folder / "significance.csv").to_dict("records"):
        a, b = row["a_label"], row["b_label"]
        if row["n"] == 0:  # not compared: the verdict says why
            lines.append(f"- {a} − {b}: {row['verdict']}.")
            continue
        numbers = [row[k] for k in ("mean_points", "low", "high", "n", "low90", "high90", "wins")]
        difference = Difference(a, b, *numbers)
        lines.append(f"- {a} − {b}: {describe(difference, a)}: {row['verdict']}.")
    return [*lines, ""] if lines else []


def _sweep(folder: Path) -> list[str]:
    """Fig. 4: how far each curve's worst-identity accuracy, and the stabler worst 10 % of
    identities', moves across λ, against seed noise."""
    if not (folder / "figure.csv").exists():
        return []
    points = pd.read_csv(folder / "figure.csv")
    lines = [
        "| panel | series | worst-identity ACC across λ (%) | its spread | mean seed std "
        "| worst 10 % ACC across λ (%) | its spread | mean seed std | margin hinge active (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (panel, series), group in points.groupby(["panel", "series"], sort=False):
        group = group.sort_values("x")
        active = group["hinge_active"].mean() if "hinge_active" in group else math.nan
        lines.append(
            f"| {panel} | {series} | {_across(group, 'worst_acc')} | "
            f"{_across(group, 'worst10_acc')} | {_cell(active)} |"
        )
    return [
        *lines,
        "",
        "A spread no larger than the seeds' own std means λ does not move the worst identities "
        "here; the worst 10 % (per run, the mean ACC of its lowest tenth of identities) averages "
        "several identities and is usually the stabler of the two. Where eq. 14's margin hinge "
        "max(0, KL − m_i) is active on every training sample (100 %), the margin that λ1 sets "
        "only shifts the loss by a constant: that λ1 curve is flat by construction, not by chance.",
        "",
    ]


def _across(group: pd.DataFrame, key: str) -> str:
    """A curve's means across x, their spread and its mean seed std, as three table cells."""
    values = group[f"{key}_mean"]
    spread = values.max() - values.min()
    return (
        f"{' → '.join(f'{v:.1f}' for v in values)} | {spread:.1f} | "
        f"{_cell(group[f'{key}_std'].mean())}"
    )


def _best(folder: Path) -> list[str]:
    importances = folder / "importances.csv"
    if not importances.exists():
        return []
    frame = pd.read_csv(importances)
    if frame.empty:
        return ["Too few complete trials for parameter importances.", ""]
    top = frame.sort_values("importance", ascending=False).head(3)
    names = ", ".join(f"{r['parameter']} ({r['importance']:.2f})" for r in top.to_dict("records"))
    return [f"Most important parameters (Optuna PED-ANOVA): {names}.", ""]


def _cell(mean: float, std: float = math.nan) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def costs(results: Path, studies: Sequence[str] = tuple(QUESTIONS)) -> pd.DataFrame:
    """What each study cost, from its study.json and runs.csv: its stages' wall time (summed over
    the sessions that ran them), its own trials, re-evaluations and final runs (not the rows it
    shows from another study, e.g. Table 4's ResNet18 rows from Table 3), and a trial's wall time
    split into training (its epochs' recorded seconds: steps and val evaluation) and the rest of
    the tune stage, less the re-evaluations' training, spread evenly over the trials (Tune, the
    searcher, set-up, records)."""
    rows = []
    for name in studies:
        record = read_json(Path(results) / name / "study.json")
        path = Path(results) / name / "runs.csv"
        if record is None or not path.exists():
            continue
        seconds = {"tune": 0.0, "final": 0.0, "report": 0.0, **record.get("stage_seconds", {})}
        try:
            runs = pd.read_csv(path)
        except pd.errors.EmptyDataError:  # a study without runs writes no header
            continue
        runs = runs[runs["study"] == name]  # another study's rows it shows cost it nothing
        tune, final = runs[runs["stage"] == "tune"], runs[runs["stage"] == "final"]
        reeval = runs[runs["stage"] == "reeval"]  # trained in the tune stage, after the search
        trained = tune["train_seconds"].sum() + reeval["train_seconds"].sum()
        overhead = (seconds["tune"] - trained) / max(len(tune), 1)
        final_overhead = (seconds["final"] - final["train_seconds"].sum()) / max(len(final), 1)
        resnet18 = runs[(runs["student"] == "resnet18") & (runs["epochs"] > 0)]
        provenance = read_json(Path(results) / name / "provenance.json") or {}
        dataset = provenance.get("dataset", {})
        rows.append(
            {
                "study": name,
                "cpus": provenance.get("hardware", {}).get("cpus", math.nan),
                "data_hash": dataset.get("data_hash"),
                "build_s": dataset.get("build_seconds") or math.nan,
                "tune_s": seconds["tune"],
                "final_s": seconds["final"],
                "report_s": seconds["report"],
                "trials": len(tune),
                "complete_trials": int((tune["status"] == "complete").sum()),
                "trial_epochs": int(tune["epochs"].sum()),
                "trial_median_s": (tune["train_seconds"] + overhead).median(),
                "complete_trial_median_s": (
                    tune.loc[tune["status"] == "complete", "train_seconds"] + overhead
                ).median(),
                "trial_overhead_s": overhead if len(tune) else math.nan,
                "reevaluations": len(reeval),
                "reeval_s": reeval["train_seconds"].sum(),
                "final_runs": len(final),
                "final_median_s": (final["train_seconds"] + final_overhead).median(),
                "resnet18_epoch_s": (resnet18["train_seconds"] / resnet18["epochs"]).median(),
            }
        )
    return pd.DataFrame(rows)


def cost_table(frame: pd.DataFrame) -> list[str]:
    """`costs` as Markdown, with the regeneration's total."""
    lines = [
        "| study | tune / final / report (s) | wall | core-hours | trials (complete) "
        "| trial-epochs | trial median (s) | complete trial median (s) | rest per trial (s) "
        "| re-evaluations (training s) | final runs | final run median (s) | resnet18 s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.to_dict("records"):
        total = row["tune_s"] + row["final_s"] + row["report_s"]
        lines.append(
            f"| {row['study']} | {row['tune_s']:.0f} / {row['final_s']:.0f} / "
            f"{row['report_s']:.0f} | {total / 60:.0f} min | {_cell(total * row['cpus'] / 3600)} "
            f"| {row['trials']} "
            f"({row['complete_trials']}) | {row['trial_epochs']} | {_cell(row['trial_median_s'])} "
            f"| {_cell(row['complete_trial_median_s'])} | {_cell(row['trial_overhead_s'])} "
            f"| {row['reevaluations']} ({row['reeval_s']:.0f}) "
            f"| {row['final_runs']} | {_cell(row['final_median_s'])} "
            f"| {_cell(row['resnet18_epoch_s'])} |"
        )
    walls = frame["tune_s"] + frame["final_s"] + frame["report_s"]
    total = walls.sum()
    lines.append(
        f"| **all** | | **{total / 3600:.2f} h** | **{_cell((walls * frame['cpus']).sum(min_count=1) / 3600)}**"
        f" | {frame['trials'].sum()} | {frame['trial_epochs'].sum()} | | | "
        f"| {frame['reevaluations'].sum()} ({frame['reeval_s'].sum():.0f}) "
        f"| {frame['final_runs'].sum()} | | |"
    )
    builds = frame.dropna(subset=["build_s"]).drop_duplicates("data_hash")
    if len(builds):
        lines += [
            "",
            "Dataset builds: "
            + ", ".join(
                f"{row['data_hash']} {row['build_s']:.0f} s (first read by {row['study']})"
                for row in builds.to_dict("records")
            )
            + ". The first is built before the studies; a dataset a study builds itself (a "
            "second population) is part of that study's stage time above.",
        ]
    return lines


def estimate_lines(results: Path) -> list[str]:
    """Each estimate of the time left that `ikd run` made (estimates.json) against the stage
    time the regeneration then took to its end; once it has ended."""
    entries = read_json(Path(results) / ESTIMATES) or []
    starts = [entry for entry in entries if entry["left_s"]]
    if not starts:
        return []
    if entries[-1]["left_s"]:
        return [
            f"`ikd run` estimated the time left {len(starts)} time(s) (estimates.json); the "
            "regeneration has not ended, so none is set against what it took yet.",
            "",
        ]
    end = sum(entries[-1]["spent_s"].values())
    lines = [
        "Each `ikd run`'s estimate of the time left against the stage time the regeneration "
        "then took to its end (estimates.json), wherever it was interrupted and resumed — on "
        "the machines of the starts after it, whose CPUs are listed too. The CPU share is "
        "what the estimate's timings had of their threads' CPU: under "
        f"{BUSY:.0%} another process kept the machine busy, and the estimate runs high:",
        "",
        "| `ikd run` at | CPU | CPU share while timing | estimated left | took from there "
        "| took / estimated |",
        "|---|---|---|---|---|---|",
    ]
    for entry in starts:
        estimated = sum(entry["left_s"].values())
        took = end - sum(entry["spent_s"].values())
        share = entry.get("cpu_share")  # not recorded before 2026-12-07
        timed = "—" if share is None else f"{share:.0%}" + (" (busy)" if share < BUSY else "")
        lines.append(
            f"| {entry['at']} | {entry['cpu']} | {timed} | {estimated / 3600:.2f} h "
            f"| {took / 3600:.2f} h | {took / estimated:.2f} |"
        )
    return [*lines, ""]


def _cost(results: Path, studies: Sequence[str]) -> list[str]:
    frame = costs(results, studies)
    if frame.empty:
        return []
    return [
        "## What it cost",
        "",
        "Wall time per study as its study.json records it (every session that ran a stage in that "
        "folder, an interrupted one included, also for runs of an older configuration that "
        "runs.csv no longer lists; `benchmarks/regeneration.py` prints this table). Times are only "
        "as clean as the machine was quiet, and its speed varies ~2× from day to day: the "
        "resnet18 epoch beside each study says how fast it was (— where the study trained no "
        "resnet18 of its own). The tune stage holds the search "
        "and then the re-evaluations of its best trials (their training time beside them). A "
        "negative rest per trial means stage time went unrecorded: a session killed before ikd "
        "counted interrupted ones.",
        "",
        *cost_table(frame),
        "",
        *estimate_lines(results),
    ]
