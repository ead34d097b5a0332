"""A regeneration against another one of the same preset — a new machine's against the committed
`results/<preset>/` (`ikd run` ends with it when its teacher differs from the committed runs').

Per artefact row (a table's variant, a figure's point): test ACC mean ± std over seeds here and
there, the difference of the means with its 95 % Welch interval (the two share seed numbers but
not a teacher, so seeds do not pair), and a verdict: "reproduced within seed noise" when the
interval holds 0, "differs" when it does not. Then each study's compared pairs (its
significance.csv, paired within each tree): their verdicts there and here, and whether each holds
in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ikd.report.overview import verdicts_beside
from ikd.report.stats import Difference, unpaired_difference

COMPARISON = "comparison"  # <results>/comparison.md and .csv
COLUMNS = [
    "study",
    "variant",
    "acc_here",
    "std_here",
    "n_here",
    "acc_there",
    "std_there",
    "n_there",
    "difference",
    "low",
    "high",
    "verdict",
]


def compare_trees(ours: Path, reference: Path, studies: Sequence[str] = ()) -> pd.DataFrame:
    """Every rendered table's and figure's rows of `ours` beside `reference`'s (test ACC, %),
    the studies in the order given (others after them, by name)."""
    rows = []
    paths = [*ours.glob("*/table.csv"), *ours.glob("*/figure.csv")]
    order = {name: index for index, name in enumerate(studies)}
    for path in sorted(paths, key=lambda p: (order.get(p.parent.name, len(order)), p.parent.name)):
        there = reference / path.parent.name / path.name
        other = pd.read_csv(there).set_index("variant") if there.exists() else None
        for row in pd.read_csv(path).to_dict("records"):
            here = (row["acc_mean"], row["acc_std"], int(row["n"]))
            found = other is not None and row["variant"] in other.index
            if found:
                match = other.loc[row["variant"]]
                theirs = (match["acc_mean"], match["acc_std"], int(match["n"]))
            else:
                theirs = (math.nan, math.nan, 0)
            difference = unpaired_difference("here", "there", here, theirs)
            rows.append(
                {
                    "study": path.parent.name,
                    "variant": row["variant"],
                    "acc_here": here[0],
                    "std_here": here[1],
                    "n_here": here[2],
                    "acc_there": theirs[0],
                    "std_there": theirs[1],
                    "n_there": theirs[2],
                    "difference": difference.mean,
                    "low": difference.low,
                    "high": difference.high,
                    "verdict": _verdict(difference, found),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _verdict(difference: Difference, found: bool) -> str:
    if not found:
        return "not in the reference"
    if not math.isfinite(difference.low):
        return "too few seeds for an interval"
    return "reproduced within seed noise" if difference.low <= 0 <= difference.high else "differs"


def write_comparison(
    ours: Path,
    reference: Path,
    title: str,
    studies: Sequence[str] = (),
    names: tuple[str, str] | None = None,
) -> str:
    """Write `<ours>/comparison.md` and `.csv`; return the Markdown. `names`: the two trees'
    names (default: their folders')."""
    here, there = names or (ours.name, reference.name)
    frame = compare_trees(ours, reference, studies)
    frame.to_csv(ours / f"{COMPARISON}.csv", index=False, float_format="%.4f")
    counts = frame["verdict"].value_counts()
    lines = [
        f"# {title}",
        "",
        f"Test ACC (%) per artefact row: mean ± std over seeds here ({here}) and in "
        f"{there}; the difference of the means with its 95 % Welch interval (the two "
        "share seed numbers, not a teacher: seeds do not pair). Verdict: reproduced within seed "
        "noise when the interval holds 0 — which with few seeds is weak evidence of agreement, "
        'and over many rows about 1 in 20 says "differs" by chance alone. Synthetic data.',
        "",
        "| study | variant | here | there | difference [95 % interval] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in frame.to_dict("records"):
        lines.append(
            f"| {row['study']} | {row['variant']} | {_cell(row, 'here')} | {_cell(row, 'there')} "
            f"| {_interval(row)} | {row['verdict']} |"
        )
    lines += ["", ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + "."]
    studies_here = frame["study"].unique()  # in the table's order
    compared = {s: verdicts_beside(reference / s, ours / s, (there, here)) for s in studies_here}
    if any(compared.values()):
        lines += [
            "",
            "## The verdicts there and here",
            "",
            "Each compared pair's verdict (its significance.csv, paired over seeds within a "
            "tree) and mean difference (points) in both trees. A verdict that differs between "
            "them, with the intervals of each, says how far a table depends on its teacher's "
            "bits and its tuning path, which no interval within one tree includes.",
        ]
        for study, table in compared.items():
            lines += ["", f"### {study}", "", *table[:-1]] if table else []
    text = "\n".join(lines) + "\n"
    (ours / f"{COMPARISON}.md").write_text(text)
    return text


def _cell(row: dict, side: str) -> str:
    mean, std, n = row[f"acc_{side}"], row[f"std_{side}"], row[f"n_{side}"]
    if not n:
        return "—"
    spread = f" ± {std:.2f}" if math.isfinite(std) else ""
    return f"{mean:.2f}{spread} (n={n})"


def _interval(row: dict) -> str:
    if not math.isfinite(row["difference"]):
        return "—"
    if not math.isfinite(row["low"]):
        return f"{row['difference']:+.2f}"
    return f"{row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"
