"""`<results>/README.md`: every artefact of a regeneration beside the paper's, and what the
reproduction supports — each number and verdict read from the studies' rendered CSVs, none typed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ikd.storage import read_json

# (study folder, what it answers) in the order a reader wants them
QUESTIONS = {
    "table3_methods": "Does IdentityKD beat each baseline beyond seed noise?",
    "table4_students": "How do the students compare under IdentityKD?",
    "table5_contrast": "Does NCE beat KL, and how does the paper's τ = 5 behave?",
    "fig4_lambda": "Do λ1 and λ2 move the worst-identity accuracy?",
    "search_identitykd": "What does the joint search find?",
}


def write_overview(results: Path, studies: Sequence[str] = tuple(QUESTIONS)) -> Path:
    """Write `<results>/README.md` from the studies rendered under `results`."""
    results = Path(results)
    lines = [
        f"# Results: {results.name}",
        "",
        "Rendered by `ikd report` from the run records under `runs/` (no number here is typed by "
        "hand). The data is synthetic: one simulated population, one split by walk; the paper's "
        "numbers come from its own radar recordings, so a difference to them is context, not a "
        "test. What carries weight is each comparison's paired difference over seeds.",
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
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['label']} | {row['n']} | {_cell(row['acc_mean'], row['acc_std'])} | "
            f"{_cell(row['paper_acc'])} | {_cell(row['worst_acc_mean'], row['worst_acc_std'])} |"
        )
    return [*lines, ""]


def _verdicts(folder: Path) -> list[str]:
    """The table's comparisons as plain sentences."""
    if not (folder / "significance.csv").exists():
        return []
    table = pd.read_csv(folder / "table.csv").set_index("variant")
    labels = table["label"].to_dict()
    lines = []
    for row in pd.read_csv(folder / "significance.csv").to_dict("records"):
        a, b = labels.get(row["a"], row["a"]), labels.get(row["b"], row["b"])
        if row["n"] < 2:
            lines.append(f"- {a} − {b}: not enough paired seeds yet.")
            continue
        if row["verdict"] == "within seed noise":
            verdict = "within seed noise: this reproduction does not support a difference"
        else:  # "<a> better" or "<b> better", in variant names
            verdict = (
                f"{a if row['verdict'] == row['a'] + ' better' else b} is better beyond seed noise"
            )
        lines.append(
            f"- {a} − {b}: {row['mean_points']:+.2f} points of test ACC, 95 % CI "
            f"[{row['low']:+.2f}, {row['high']:+.2f}] over {row['n']} seeds — {verdict}."
        )
    return [*lines, ""] if lines else []


def _sweep(folder: Path) -> list[str]:
    """Fig. 4: how far each curve's worst-identity accuracy moves across λ, against seed noise."""
    if not (folder / "figure.csv").exists():
        return []
    points = pd.read_csv(folder / "figure.csv")
    lines = [
        "| panel | series | worst-identity ACC across λ (%) | its spread | mean seed std |",
        "|---|---|---|---|---|",
    ]
    for (panel, series), group in points.groupby(["panel", "series"], sort=False):
        values = group.sort_values("x")["worst_acc_mean"]
        spread = values.max() - values.min()
        noise = group["worst_acc_std"].mean()
        lines.append(
            f"| {panel} | {series} | {' → '.join(f'{v:.1f}' for v in values)} | "
            f"{spread:.1f} | {_cell(noise)} |"
        )
    return [
        *lines,
        "",
        "A spread no larger than the seeds' own std means λ does not move the worst identity here.",
        "",
    ]


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
