"""Render a study's results folder from its run records (DESIGN.md §6, issue 11).

    <results>/<study>/
      table.md, table.csv        a Table study: a row per final variant, mean ± std over seeds,
                                 n, the paper's value and our difference; verdict lines
      significance.csv           each compared pair: paired difference, intervals, verdict
      figure.png, figure.csv     a Figure study (Fig. 4): the sweep's points
      figure.md                  its caption and points as a table
      per_identity.png/.csv      identities × variants test accuracy (Table 3)
      importances.csv            Optuna's parameter importances (the joint search)
      tuning.csv                 every tuning trial: status, epochs, val acc, parameters
      runs.csv                   one row per run folder of the study
      provenance.json            code, packages, hardware, commands, dataset, teacher, wall time

Nothing here trains or reads a checkpoint; every number comes from a run folder's records.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ikd.report.records import RunRecord
from ikd.report.stats import (
    VERDICTS,
    WORST_PERCENT,
    Difference,
    mean_std,
    paired_difference,
    pick_by_mean,
    worst_count,
)
from ikd.storage import write_json
from ikd.study import Figure, Study, Table
from ikd.train.runs import METRIC

log = logging.getLogger(__name__)

TABLE_METRICS = (("acc", "ACC"), ("recall", "Recall"), ("f1", "F1"))  # the paper's columns
RUNS_TABLE = "runs.csv"
PROVENANCE = "provenance.json"
TRIAL_COLUMNS = ["variant", "run", "status", "epochs", "train_seconds", METRIC, "seeds_val_acc",
                 "mean_val_acc", "picked"]  # fmt: skip
SIGNIFICANCE_COLUMNS = ["a", "b", "metric", "n", "mean_points", "low", "high", "low90", "high90",
                        "wins", "verdict", "a_label", "b_label"]  # fmt: skip
WORST = f"worst {WORST_PERCENT} % of identities"


@dataclass(frozen=True)
class Context:
    """What a caption says about how the runs were made."""

    study: Study
    preset: str
    seeds: int  # seeds asked per final variant
    trials: int  # trials per tuned variant
    epochs: int
    searcher: str  # e.g. "Optuna TPE (seed 0, its first 10 trials random)"
    scheduler: str  # e.g. "ASHA on val/acc (grace 1 epoch, reduction factor 2)"
    dataset: Mapping[str, Any]  # data_hash, synthetic, num_identities, seed, split_seed
    quick: bool = False
    spaces: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # tuned variants
    origins: Mapping[str, str] = field(default_factory=dict)  # variant → "<study>/<variant>"
    diverged: Mapping[str, int] = field(default_factory=dict)  # variant → final runs diverged
    # tuned variant → its re-evaluated tuning runs → val ACC per seed (the tuning run's first)
    reevaluated: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    reevaluations: Mapping[str, Sequence[RunRecord]] = field(default_factory=dict)  # their runs
    # other studies' final runs that `Table.compare` names ("<study>/<variant>" → runs)
    others: Mapping[str, Sequence[RunRecord]] = field(default_factory=dict)


def render(
    folder: Path,
    context: Context,
    finals: Mapping[str, Sequence[RunRecord]],
    tuning: Mapping[str, Sequence[RunRecord]],
    runs: Sequence[RunRecord],
    provenance: Mapping[str, Any],
) -> list[Path]:
    """Write a study's results folder; returns the files written.

    Args:
        finals: each final variant's finished final runs (test evaluated), one per seed.
        tuning: each tuned variant's tuning runs.
        runs: every run folder of the study (runs.csv).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    report = context.study.report
    summary = tuning_summary(tuning, context.spaces, context.reevaluated, context.reevaluations)
    if isinstance(report, Figure):
        written += render_figure(folder, context, finals, summary)
    else:
        importances = importance_rows(context, tuning) if report.importances else None
        if importances is not None:
            importances.to_csv(folder / "importances.csv", index=False, float_format="%.4f")
            written.append(folder / "importances.csv")
        written += render_table(folder, context, finals, summary, importances)
        if report.per_identity:
            written += render_per_identity(folder, context, finals)
    trials = pd.DataFrame(
        [
            trial_row(run, context.spaces.get(variant, {}), context.reevaluated.get(variant, {}))
            for variant, variant_runs in tuning.items()
            for run in variant_runs
        ],
        columns=None if any(tuning.values()) else TRIAL_COLUMNS,
    )
    trials.to_csv(folder / "tuning.csv", index=False)
    table = runs_table(runs)
    rendered = folder / RUNS_TABLE
    # the same records give the same provenance: kept as their first rendering wrote it (a
    # re-render elsewhere, `ikd report` on a clone, does not stamp its own machine on them)
    if not (rendered.exists() and rendered.read_text() == table and (folder / PROVENANCE).exists()):
        write_json(folder / PROVENANCE, dict(provenance))
    rendered.write_text(table)
    written += [folder / "tuning.csv", folder / RUNS_TABLE, folder / PROVENANCE]
    return written


def runs_table(runs: Sequence[RunRecord]) -> str:
    """runs.csv: a row per run folder of the study — also how a study knows its results are
    rendered from the records it has now."""
    return pd.DataFrame([run.row() for run in runs]).to_csv(index=False)


# -- tables ---------------------------------------------------------------------------------------


def table_rows(context: Context, finals: Mapping[str, Sequence[RunRecord]]) -> pd.DataFrame:
    """A row per final variant: mean and std (in %) of each metric over its runs (the worst
    10 % of identities too), n, the paper's values and our differences, walks and windows."""
    report = context.study.report
    rows = []
    for variant, runs in finals.items():
        row: dict[str, Any] = {
            "variant": variant,
            "label": report.labels.get(variant, variant) if isinstance(report, Table) else variant,
            "n": len(runs),
            "seeds": " ".join(str(run.seed) for run in runs),
        }
        for key, values in _test_values(runs, ("acc", "recall", "f1", "worst_acc")).items():
            mean, std, _ = mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = 100 * mean, 100 * std
        mean, std, _ = mean_std([run.walk[0] for run in runs])
        row["walk_acc_mean"], row["walk_acc_std"] = 100 * mean, 100 * std
        row["walks"] = runs[0].walk[1] if runs else 0
        row["windows"] = int(runs[0].value("test/samples")) if runs else 0
        paper = report.paper.get(variant, {}) if isinstance(report, Table) else {}
        for key, _ in TABLE_METRICS:
            row[f"paper_{key}"] = paper.get(key, math.nan)
            row[f"diff_{key}"] = row[f"{key}_mean"] - row[f"paper_{key}"]
        row["val_acc_mean"] = 100 * mean_std([run.value(METRIC) for run in runs])[0]
        row["runs_not_learned"] = not_learned(context, runs)
        row["learned"] = learned(context, runs)
        row["val_rise"] = val_rise(runs)
        engaged = [bool((run.test or {}).get("fawa/engaged")) for run in runs]
        fawa = bool(runs) and bool(runs[0].config.get(runs[0].record["method"], {}).get("fawa"))
        row["diverged"] = context.diverged.get(variant, 0)
        row["evaluated"] = ("FAWA average" if fawa else "last epoch") if runs else ""
        # another study's final runs where the row's configuration is that study's (one run hash)
        row["runs_of"] = runs[0].study if runs else ""
        row["fawa_engaged"] = f"{sum(engaged)}/{len(runs)}" if fawa else ""
        rows.append(row)
    return pd.DataFrame(rows)


def not_learned(context: Context, runs: Sequence[RunRecord]) -> int:
    """How many of a row's final runs ended under the table's `learned` val ACC (none without
    a threshold)."""
    report = context.study.report
    threshold = report.learned if isinstance(report, Table) else 0.0
    return sum(not run.value(METRIC) >= threshold for run in runs) if threshold > 0 else 0


# Val ACC points a row's final runs still gained in their last epoch (their mean) from which a
# table with val curves says the row had not levelled off: its numbers and comparisons measure the
# epoch budget as much as the architecture (issue 23: Table 4's students at 10 epochs). About one
# standard error of a val ACC near 80 % on the laptop's 561 val windows. One epoch, not more: the
# laptop's lr drops 10× two epochs before the end, and val ACC jumps with it.
RISING = 2.0


def val_rise(runs: Sequence[RunRecord]) -> float:
    """The val ACC points the runs gained in their last epoch, their mean (NaN where none has
    2 epochs)."""
    gains = [
        run.metrics[-1][METRIC] - run.metrics[-2][METRIC]
        for run in runs
        if len(run.metrics) >= 2
        and run.metrics[-1].get(METRIC) is not None
        and run.metrics[-2].get(METRIC) is not None
    ]
    return 100 * mean_std(gains)[0]


def learned(context: Context, runs: Sequence[RunRecord]) -> bool:
    """Whether a row learned in the budget: at most half of its final runs ended under the
    table's `learned` val ACC."""
    return 2 * not_learned(context, runs) <= len(runs)


def still_rising(row: Mapping[str, Any]) -> bool:
    """Whether a table row (`table_rows`, or its table.csv) learned but had not levelled off."""
    return bool(row.get("learned", True)) and row.get("val_rise", math.nan) >= RISING


def unlearned_pairs(
    context: Context, finals: Mapping[str, Sequence[RunRecord]]
) -> list[tuple[str, str, str]]:
    """The table's pairs not compared because a row of it did not learn: (a, b, why)."""
    report = context.study.report
    runs = {**context.others, **finals}
    skipped = []
    for a, b in report.compare if isinstance(report, Table) else ():
        failed = [v for v in (a, b) if runs.get(v) and not learned(context, runs[v])]
        if failed and runs.get(a) and runs.get(b):
            names = " and ".join(report.labels.get(v, v) for v in failed)
            skipped.append((a, b, f"not compared: {names} did not learn in this budget"))
    return skipped


def _test_values(runs: Sequence[RunRecord], keys: Sequence[str]) -> dict[str, list[float]]:
    """Each run's test value of each key (`acc`: test/acc), and `worst10_acc` after them."""
    values = {key: [run.value(f"test/{key}") for run in runs] for key in keys}
    return {**values, "worst10_acc": [run.worst10_acc for run in runs]}


def significance(
    context: Context, finals: Mapping[str, Sequence[RunRecord]], key: str = "test/acc"
) -> list[Difference]:
    """The table's comparisons of interest, as paired differences (in points) over seeds (a
    variant of another study, "<study>/<variant>", from `context.others`)."""
    report = context.study.report
    pairs = report.compare if isinstance(report, Table) else ()
    runs = {**context.others, **finals}

    def by_seed(variant: str) -> dict[int, float]:
        return {run.seed: 100 * run.value(key) for run in runs.get(variant, ())}

    return [  # a run with fewer variants (`--quick`) compares only the ones it has
        paired_difference(a, b, by_seed(a), by_seed(b))
        for a, b in pairs
        if runs.get(a) and runs.get(b) and learned(context, runs[a]) and learned(context, runs[b])
    ]


def render_table(
    folder: Path,
    context: Context,
    finals: Mapping[str, Sequence[RunRecord]],
    summary: pd.DataFrame,
    importances: pd.DataFrame | None = None,
) -> list[Path]:
    rows = table_rows(context, finals)
    report = context.study.report
    differences = significance(context, finals)
    skipped = unlearned_pairs(context, finals)
    rows.to_csv(folder / "table.csv", index=False, float_format="%.4f")
    pd.DataFrame(
        [
            {
                **dataclasses.asdict(d),
                "metric": "test/acc",
                "mean_points": d.mean,
                "verdict": d.verdict,
                "a_label": report.labels.get(d.a, d.a),
                "b_label": report.labels.get(d.b, d.b),
            }
            for d in differences
        ]
        + [
            {
                "a": a,
                "b": b,
                "metric": "test/acc",
                "n": 0,
                "verdict": why,
                "a_label": report.labels.get(a, a),
                "b_label": report.labels.get(b, b),
            }
            for a, b, why in skipped
        ],
        columns=SIGNIFICANCE_COLUMNS,
    ).to_csv(folder / "significance.csv", index=False, float_format="%.4f")
    has_paper = bool(report.paper)
    header = ["Row", "n"]
    for _, name in TABLE_METRICS:
        header += [f"{name} (%)", *(["paper", "Δ"] if has_paper else [])]
    header += ["worst-identity ACC (%)", f"worst {WORST_PERCENT} % ACC (%)", "walk ACC (%)"]
    lines = [
        f"# {context.study.artefact}: {_synthetic(context)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows.to_dict("records"):
        cells = [row["label"], str(row["n"])]
        if not row["learned"]:
            cells.append(
                f"did not learn in this budget: {row['runs_not_learned']} of {row['n']} runs "
                f"under {100 * report.learned:g} % val ACC (mean {_number(row['val_acc_mean'])} "
                + ("%; its val curve: val_curves.png)" if report.curves else "%)")
            )
            cells += [""] * (len(header) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        for key, _ in TABLE_METRICS:
            cells.append(_cell(row[f"{key}_mean"], row[f"{key}_std"], row["n"]))
            if has_paper:
                cells += [_number(row[f"paper_{key}"]), _number(row[f"diff_{key}"], sign=True)]
        cells.append(_cell(row["worst_acc_mean"], row["worst_acc_std"], row["n"]))
        cells.append(_cell(row["worst10_acc_mean"], row["worst10_acc_std"], row["n"]))
        cells.append(_cell(row["walk_acc_mean"], row["walk_acc_std"], row["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    partly = [r for r in rows.to_dict("records") if r["learned"] and r["runs_not_learned"]]
    if partly:
        lines.append("")
    for row in partly:
        lines.append(
            f"- {row['label']}: {row['runs_not_learned']} of {row['n']} runs ended under "
            f"{100 * report.learned:g} % val ACC; they count in its means and comparisons"
            + (" (val_curves.png)." if report.curves else ".")
        )
    rising = [r for r in rows.to_dict("records") if report.curves and still_rising(r)]
    lines += [""] if rising and not partly else []
    for row in rising:
        lines.append(
            f"- {row['label']}: val ACC still rising when training ended (+{row['val_rise']:.1f} "
            f"points in its last epoch, mean of its runs; val_curves.png): its numbers and "
            f"comparisons measure this {context.epochs}-epoch budget as much as the architecture."
        )
    lines += ["", caption(context, rows), ""]
    written = [folder / "table.md", folder / "table.csv", folder / "significance.csv"]
    if report.curves:
        written += render_curves(folder, context, finals)
        lines += ["![val ACC per epoch](val_curves.png)", ""]
        if report.learned:
            lines += [
                f"The dotted line: {100 * report.learned:g} % val ACC. A row with more than half "
                "its final runs ending under it did not learn in this budget, and the table says "
                "so instead of comparing it.",
                "",
            ]
    if differences or skipped:
        lines += ["## Significance", "", *(_significance_line(d, report) for d in differences)]
        lines += [
            f"- {report.labels.get(a, a)} − {report.labels.get(b, b)}: {why}."
            for a, b, why in skipped
        ]
        lines += ["", VERDICTS, ""]
    lines += tuning_section(summary, context)
    if importances is not None:
        lines += [
            "## Parameter importances",
            "",
            "Optuna's PED-ANOVA importances (its default evaluator: how much each parameter's "
            "distribution differs between the best trials and all) over each tuned variant's "
            "complete trials (importances.csv).",
            "",
            "| Variant | parameter | importance | complete trials |",
            "|---|---|---|---|",
            *(
                f"| {r['variant']} | {r['parameter']} | {r['importance']:.3f} | {r['trials']} |"
                for r in importances.to_dict("records")
            ),
            "",
        ]
    (folder / "table.md").write_text("\n".join(lines))
    return written


def render_curves(
    folder: Path, context: Context, finals: Mapping[str, Sequence[RunRecord]]
) -> list[Path]:
    """val_curves.csv/.png: each row's val ACC per epoch, mean and std over its final runs —
    whether a student trained in the budget, or was still climbing, or never left chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = context.study.report
    points = []
    for variant, runs in finals.items():
        for epoch in range(1, max((len(run.metrics) for run in runs), default=0) + 1):
            values = [
                run.metrics[epoch - 1].get(METRIC) for run in runs if len(run.metrics) >= epoch
            ]
            mean, std, n = mean_std(values)
            label = report.labels.get(variant, variant)
            points.append({"variant": variant, "label": label, "epoch": epoch,
                           "val_acc_mean": 100 * mean, "val_acc_std": 100 * std, "n": n})  # fmt: skip
    frame = pd.DataFrame(
        points, columns=["variant", "label", "epoch", "val_acc_mean", "val_acc_std", "n"]
    )
    frame.to_csv(folder / "val_curves.csv", index=False, float_format="%.4f")
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for (_, label), group in frame.groupby(["variant", "label"], sort=False):
        axis.errorbar(group["epoch"], group["val_acc_mean"], yerr=group["val_acc_std"].fillna(0),
                      marker="o", markersize=3, capsize=2, label=label)  # fmt: skip
    if report.learned:
        axis.axhline(100 * report.learned, color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="epoch", ylabel="val ACC (%), mean ± std over seeds", ylim=(0, 100),
             title=f"{context.study.artefact}: val ACC of the final runs")  # fmt: skip
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "val_curves.png", dpi=120)
    plt.close(figure)
    return [folder / "val_curves.csv", folder / "val_curves.png"]


def caption(context: Context, rows: pd.DataFrame) -> str:
    """The caption: data, split, aggregation rule, tuning budget, evaluated model, paper."""
    data = context.dataset
    report = context.study.report
    windows = int(rows["windows"].max()) if len(rows) else 0
    walks = int(rows["walks"].max()) if len(rows) else 0
    seeds = ", ".join(
        map(str, sorted({int(s) for seeds in rows.get("seeds", []) for s in seeds.split()}))
    )
    fawa, last = [], []  # the rows evaluated on the FAWA average, on the last epoch
    reused: dict[str, list[str]] = {}  # another study → the rows that are its final runs
    for _, r in rows[rows["n"] > 0].iterrows() if len(rows) else ():
        if r["fawa_engaged"]:
            fawa.append(f"{r['label']} ({r['fawa_engaged']} engaged)")
        else:
            last.append(r["label"])
        if r["runs_of"] != context.study.name:
            reused.setdefault(r["runs_of"], []).append(r["label"])
    parts = [
        f"*{context.study.artefact}, reproduced by ikd on {_synthetic(context)}:",
        f"one {'synthetic ' if data.get('synthetic') else ''}population of "
        f"{data.get('num_identities')} identities with one split by walk (dataset {data.get('data_hash')}, "
        f"generator seed {data.get('seed')}, split seed {data.get('split_seed')}).",
        f"Test split, read once per final run. Mean ± sample std over n runs, one per training seed "
        f"({seeds or 'none'}; {context.seeds} asked per row); a row with n < {context.seeds} is "
        "not finished.",
        f"ACC, macro recall and macro F1 (unweighted means over identities), worst-identity ACC "
        f"and the {WORST} ({_worst(context)}) "
        f"count {windows} test windows; walk ACC votes each walk's windows (majority, ties to the "
        f"larger summed log-probability) and counts {walks} walks.",
    ]
    if context.spaces:
        parts.append(
            f"Tuning on val only: {context.trials} trials per tuned variant, {context.searcher}, "
            f"{context.scheduler}, {context.epochs} epochs at most; every tuned row had this same "
            "budget."
        )
    origins = sorted(set(context.origins.values()))
    if origins:
        parts.append(
            f"Rows start from the tuned configuration of {', '.join(origins)} (tuned there "
            "with that study's budget), their own settings (and tuning, if any) on top."
        )
    for study, labels in reused.items():
        parts.append(
            f"{', '.join(labels)}: the final runs of {study} (the same configuration, so the same "
            "runs), read here."
        )
    diverged = {r["label"]: r["diverged"] for _, r in rows.iterrows() if r.get("diverged")}
    if diverged:
        parts.append(
            "Diverged final runs (left out of the means): "
            + ", ".join(f"{label} {count}" for label, count in diverged.items())
            + "."
        )
    if fawa:
        parts.append(
            "Evaluated model: the FAWA-averaged student for "
            + ", ".join(fawa)
            + " (a run whose average never engaged evaluates its last epoch)"
            + (f"; the last epoch's student for {', '.join(last)}." if last else ".")
        )
    elif last:
        parts.append("Evaluated model: each run's last-epoch student (no FAWA).")
    if isinstance(report, Table) and report.paper:
        parts.append(
            f"Paper: {report.source}, measured on real radar recordings with other settings; "
            "Δ = ours − paper is context, not a test."
        )
    if context.quick:
        parts.append("Test budget (--quick): not a result.")
    return " ".join(parts) + "*"


def _worst(context: Context) -> str:
    """How the worst 10 % is taken, with this dataset's count: "…its 4 of 36 lowest…"."""
    n = context.dataset.get("num_identities")
    count = f"{worst_count(n)} of {n}" if n else f"⌈{WORST_PERCENT} %⌉"
    return f"per run, the mean ACC of its {count} lowest-accuracy identities"


def _synthetic(context: Context) -> str:
    kind = "synthetic data" if context.dataset.get("synthetic") else "recorded data"
    return f"{kind}, {context.preset} preset"


def _significance_line(difference: Difference, report: Table) -> str:
    """One compared pair: its difference, 95 % interval, n and wins, then the verdict."""
    a, b = (report.labels.get(v, v) for v in (difference.a, difference.b))
    return f"- {a} − {b}: {describe(difference, a)}: {difference.verdict}."


def describe(difference: Difference, a: str) -> str:
    """What a verdict rests on, in words, for table.md and the overview: "test ACC +1.39 points,
    95 % CI [-3.90, +6.69] (90 %: [-2.35, +5.13]), n = 3 paired seeds, Ours ahead in 2 of 3" —
    the 90 % interval where the 95 % one holds 0: it decides equivalent or undecided."""
    d = difference
    mean = f"test ACC {_number(d.mean, sign=True)} points"
    if d.n < 2:
        return f"{mean}, n = {d.n} paired seed{'' if d.n == 1 else 's'}: too few for an interval"
    wins = round(2 * d.wins * d.n) / 2  # in halves: a tie counts half
    tost = (
        f" (90 %: [{_number(d.low90, sign=True)}, {_number(d.high90, sign=True)}])"
        if d.low <= 0 <= d.high and not math.isnan(d.low90)
        else ""
    )
    return (
        f"{mean}, 95 % CI [{_number(d.low, sign=True)}, {_number(d.high, sign=True)}]{tost}, "
        f"n = {d.n} paired seeds, {a} ahead in {wins:g} of {d.n}"
    )


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _number(value: float, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


# -- tuning ---------------------------------------------------------------------------------------


def trial_row(
    run: RunRecord, space: Mapping[str, Any], reevaluated: Mapping[str, Sequence[float]]
) -> dict[str, Any]:
    """A tuning run as a row of tuning.csv: how it ended, its last val acc, its parameters; for
    a re-evaluated one, the val acc of each seed, their mean and whether it was picked."""
    seeds = reevaluated.get(run.folder.name)
    return {
        "variant": run.variant,
        "run": run.folder.name,
        "status": run.status,
        "epochs": len(run.metrics),
        "train_seconds": round(run.train_seconds, 2),
        METRIC: run.value(METRIC),
        "seeds_val_acc": " ".join(f"{value:.4f}" for value in seeds) if seeds else "",
        "mean_val_acc": sum(seeds) / len(seeds) if seeds else math.nan,
        "picked": bool(reevaluated) and run.folder.name == pick_by_mean(reevaluated),
        **{key: run.param(key) for key in space},
    }


def tuning_summary(
    tuning: Mapping[str, Sequence[RunRecord]],
    spaces: Mapping[str, Mapping[str, Any]],
    reevaluated: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    reevaluations: Mapping[str, Sequence[RunRecord]] | None = None,
) -> pd.DataFrame:
    """Per tuned variant: trials by how they ended, compute used, the picked trial (the best
    mean val acc over its seeds among the re-evaluated ones, as best_config.json; the best
    last val acc where none is re-evaluated), its val acc and parameters, and the runs and
    training seconds its re-evaluation cost."""
    rows = []
    for variant, runs in tuning.items():
        statuses = [run.status for run in runs]
        complete = [run for run in runs if run.status == "complete" and run.metrics]
        best = max(complete, key=lambda r: (r.value(METRIC), r.folder.name), default=None)
        single, seeds = best, (reevaluated or {}).get(variant) or {}
        if best is not None and seeds:
            best = next(r for r in complete if r.folder.name == pick_by_mean(seeds))
        values = seeds.get(best.folder.name) if best else None
        rows.append(
            {
                "variant": variant,
                "trials": len(runs),
                "complete": statuses.count("complete"),
                "stopped": statuses.count("stopped"),
                "diverged": statuses.count("diverged"),
                "interrupted": statuses.count("interrupted"),
                "trial_epochs": sum(len(run.metrics) for run in runs),
                "train_seconds": sum(run.train_seconds for run in runs),
                "best_run": best.folder.name if best else "",
                "seeds": len(values) if values else int(best is not None),
                "mean_val_acc": (
                    sum(values) / len(values)
                    if values
                    else best.value(METRIC)
                    if best
                    else math.nan
                ),
                "single_seed_pick": single.folder.name if single else "",
                "reevaluations": len((reevaluations or {}).get(variant, ())),
                "reevaluation_seconds": sum(
                    run.train_seconds for run in (reevaluations or {}).get(variant, ())
                ),
                "best_params": (
                    ", ".join(f"{k}={_short(best.param(k))}" for k in spaces.get(variant, {}))
                    if best
                    else ""
                ),
            }
        )
    return pd.DataFrame(rows)


def tuning_section(summary: pd.DataFrame, context: Context) -> list[str]:
    if summary.empty:
        return []
    top, seeds = context.study.reevaluation(context.quick)
    lines = [
        "## Tuning",
        "",
        "| Variant | trials | complete | stopped by ASHA | diverged | trial-epochs | train time (s) | re-evaluations (runs, s) | picked: val ACC (%), mean of seeds | picked run | single-seed pick |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.to_dict("records"):
        single = row["single_seed_pick"] or "—"
        lines.append(
            f"| {row['variant']} | {row['trials']} | {row['complete']} | {row['stopped']} | "
            f"{row['diverged']} | {row['trial_epochs']} | {row['train_seconds']:.0f} | "
            f"{row['reevaluations']}, {row['reevaluation_seconds']:.0f} | "
            f"{_number(100 * row['mean_val_acc'])} ({row['seeds']}) | {row['best_run']} | "
            f"{'the same' if single == row['best_run'] else single} |"
        )
    lines += [
        "",
        f"A tuned variant's best {top} complete trials train again on val with {seeds} more "
        "seed(s), and so does the first trial of a variant that starts from another study's "
        "tuned configuration (that configuration), wherever it ranks: the pick is never below it "
        "on the same seeds. The best mean val ACC over the seeds picks the configuration "
        "(tuning.csv: each seed's val ACC).",
        "",
        "Best configurations (best_config.json once the study's tuning has ended; every trial in "
        "tuning.csv):",
        "",
    ]
    lines += [
        f"- {row['variant']}: {row['best_params'] or 'not picked yet (no complete trial)'}"
        for row in summary.to_dict("records")
    ]
    return [*lines, ""]


# -- figures --------------------------------------------------------------------------------------


def figure_points(context: Context, finals: Mapping[str, Sequence[RunRecord]]) -> pd.DataFrame:
    """A row per point of a Figure study: panel, series, x, test accuracy, worst-identity accuracy
    and the worst 10 % of identities' (in %, mean and std over its runs), n, and the share of
    training samples whose identity-wise margin hinge was active (in %, over its runs' epochs;
    NaN without one)."""
    report = context.study.report
    rows = []
    for variant, (panel, series, x) in report.points.items():
        if variant not in finals:
            continue
        runs = finals[variant]
        row = {"panel": panel, "series": series, "x": x, "variant": variant, "n": len(runs)}
        for key, values in _test_values(runs, ("acc", "worst_acc")).items():
            mean, std, _ = mean_std(values)
            row[f"{key}_mean"], row[f"{key}_std"] = 100 * mean, 100 * std
        # eq. 14's margin hinge max(0, KL − m_i): where it is active on every training sample,
        # m_i (what λ1 sets) only shifts the loss by a constant and cannot change training
        active = [line["train/hinge_active"] for run in runs for line in run.metrics
                  if "train/hinge_active" in line]  # fmt: skip
        row["hinge_active"] = 100 * sum(active) / len(active) if active else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def render_figure(
    folder: Path,
    context: Context,
    finals: Mapping[str, Sequence[RunRecord]],
    summary: pd.DataFrame,
) -> list[Path]:
    """Fig. 4: per panel, each series' mean test ACC (solid), the worst 10 % of identities'
    (dashed: the stabler companion) and the worst identity's (dotted, the paper's) against x,
    error bars one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = figure_points(context, finals)
    points.to_csv(folder / "figure.csv", index=False, float_format="%.4f")
    panels = list(dict.fromkeys(panel for panel, _, _ in context.study.report.points.values()))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.8), squeeze=False)
    spread = points["x"].max() - points["x"].min() if len(points) > 1 else 0.0
    for axis, panel in zip(axes[0], panels, strict=True):
        mine = points[points["panel"] == panel] if len(points) else points
        groups = list(mine.groupby("series", sort=False)) if len(mine) else []
        for index, (series, group) in enumerate(groups):
            group = group.sort_values("x")
            # each series a little aside, so that error bars of equal points do not hide each other
            x = group["x"] + spread * 0.01 * (index - (len(groups) - 1) / 2)
            for key, style, marker, name in (
                ("acc", "-", "o", "average"),
                ("worst10_acc", "--", "s", WORST),
                ("worst_acc", ":", "^", "worst identity"),
            ):
                axis.errorbar(
                    x,
                    group[f"{key}_mean"],
                    yerr=group[f"{key}_std"].fillna(0),
                    linestyle=style,
                    marker=marker,
                    color=f"C{index}",
                    capsize=3,
                    label=f"{series}, {name}",
                )
        axis.set_title(panel)
        axis.set_xlabel(context.study.report.xlabel)
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend below the panels, where it covers no point
        figure.legend(handles, labels, loc="lower center", ncol=len(labels) // 3 or 1, fontsize=8)
    figure.suptitle(f"{context.study.artefact}: {_synthetic(context)}")
    figure.tight_layout(rect=(0, 0.14 if handles else 0, 1, 1))
    figure.savefig(folder / "figure.png", dpi=120)
    plt.close(figure)
    lines = [
        f"# {context.study.artefact}: {_synthetic(context)}",
        "",
        "![figure](figure.png)",
        "",
        "| Panel | Series | x | n | ACC (%) | worst-identity ACC (%) "
        f"| worst {WORST_PERCENT} % ACC (%) | margin hinge active (%) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['panel']} | {r['series']} | {r['x']} | {r['n']} | "
            f"{_cell(r['acc_mean'], r['acc_std'], r['n'])} | "
            f"{_cell(r['worst_acc_mean'], r['worst_acc_std'], r['n'])} | "
            f"{_cell(r['worst10_acc_mean'], r['worst10_acc_std'], r['n'])} | "
            f"{_cell(r['hinge_active'], math.nan, r['n'])} |"
            for r in points.to_dict("records")
        ),
        "",
        f"The {WORST} (dashed; {_worst(context)}) averages several identities where the paper's "
        "worst identity (dotted) takes the minimum of one, whose few dozen test windows let it "
        "move by many points from seed to seed; compare the two columns' stds.",
        "",
        f"Each point is the mean of its final runs, {context.seeds} seed(s) asked per point (n "
        'above): studies/README.md ("Seeds") says why, and what a verdict within ±1 point would '
        "ask for. So no verdict is drawn between points; read a difference against the stds "
        "beside it.",
        "",
        "Margin hinge active: the share of training samples on which eq. 14's hinge "
        "max(0, KL − m_i) was above zero, over the runs' epochs. At 100 % the margin m_i — the "
        "only thing λ1 sets — shifts the loss by a constant and cannot change training.",
        "",
        caption(context, table_rows(context, finals)),
        "",
        *tuning_section(summary, context),
    ]
    (folder / "figure.md").write_text("\n".join(lines))
    return [folder / "figure.png", folder / "figure.csv", folder / "figure.md"]


def render_per_identity(
    folder: Path, context: Context, finals: Mapping[str, Sequence[RunRecord]]
) -> list[Path]:
    """Identities × variants: each identity's test accuracy (mean over seeds) per variant — the
    worst identities are where the paper's identity-wise claim lives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    report = context.study.report
    rows = []
    for variant, runs in finals.items():
        per_run = [run.test.get("test/per_identity") or [] for run in runs if run.test]
        for identity in range(max((len(p) for p in per_run), default=0)):
            values = [p[identity] for p in per_run if p[identity] is not None]
            mean, std, n = mean_std(values)
            rows.append(
                {
                    "variant": variant,
                    "identity": identity,
                    "acc_mean": 100 * mean,
                    "acc_std": 100 * std,
                    "n": n,
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(folder / "per_identity.csv", index=False, float_format="%.4f")
    paths = [folder / "per_identity.csv"]
    if frame.empty:
        return paths
    grid = frame.pivot(index="identity", columns="variant", values="acc_mean")
    grid = grid[[v for v in finals if v in grid.columns]]
    order = grid.min(axis=1).sort_values().index  # the hardest identities first
    grid = grid.loc[order]
    labels = [report.labels.get(v, v) for v in grid.columns]
    height = max(3.0, 0.25 * len(grid) + 1.5)
    figure, axis = plt.subplots(figsize=(1.4 * len(labels) + 2, height))
    image = axis.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=100)
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axis.set_yticks(range(len(grid)), [str(i) for i in grid.index])
    axis.set_ylabel("identity (hardest first)")
    if len(grid) <= 40:
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if not math.isnan(value):
                color = "black" if value > 60 else "white"  # readable on viridis
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, label="test accuracy (%), mean over seeds")
    axis.set_title(f"{context.study.artefact} per identity: {_synthetic(context)}")
    figure.tight_layout()
    figure.savefig(folder / "per_identity.png", dpi=120)
    plt.close(figure)
    return [*paths, folder / "per_identity.png"]


def importance_rows(context: Context, tuning: Mapping[str, Sequence[RunRecord]]) -> pd.DataFrame:
    """Optuna's PED-ANOVA parameter importances of each tuned variant, from its complete tuning
    runs (rebuilt into an in-memory Optuna study, so committed records suffice)."""
    import optuna

    from ikd.space import optuna_space

    rows = []
    for variant, runs in tuning.items():
        space = context.spaces.get(variant, {})
        study = optuna.create_study(direction="maximize")
        distributions = optuna_space(space)
        for run in runs:
            if run.status == "complete" and run.metrics:
                study.add_trial(
                    optuna.trial.create_trial(
                        params={key: run.param(key) for key in space},
                        distributions=distributions,
                        value=run.value(METRIC),
                    )
                )
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        except (ValueError, RuntimeError) as error:  # too few complete trials
            log.warning("%s: no parameter importances (%s)", variant, error)
            continue
        rows += [
            {"variant": variant, "parameter": key, "importance": value, "trials": len(study.trials)}
            for key, value in importances.items()
        ]
    return pd.DataFrame(rows, columns=["variant", "parameter", "importance", "trials"])
