"""Table 3: IdentityKD against Baseline, vanilla KD, CFKD and MKD (ACC, macro recall, macro F1).

Every method is tuned on val with the same budget and scheduler over what the paper leaves open
(`ikd.study.TABLE_SPACES`), then trained with its best configuration over the seeds.
"""

from ikd.study import Study, Table, Variant, table_space

METHODS = ("baseline", "vanilla_kd", "cfkd", "mkd", "identitykd")
LABELS = ("Baseline", "vanilla KD", "CFKD", "MKD", "IdentityKD")
# The paper's Table 3 (%): ACC, macro recall, macro F1 on its own radar recordings.
PAPER = {
    "baseline": {"acc": 92.17, "recall": 92.77, "f1": 93.13},
    "vanilla_kd": {"acc": 94.91, "recall": 94.25, "f1": 93.90},
    "cfkd": {"acc": 96.12, "recall": 95.97, "f1": 96.45},
    "mkd": {"acc": 96.38, "recall": 96.16, "f1": 96.18},
    "identitykd": {"acc": 98.58, "recall": 99.01, "f1": 98.43},
}

STUDY = Study(
    artefact="Table 3",
    variants=tuple(Variant(m, {"train.method": m}, space=table_space(m)) for m in METHODS),
    trials=20,
    seeds=14,  # for a ±1-point verdict: studies/README.md, "Seeds"
    report=Table(
        labels=dict(zip(METHODS, LABELS, strict=True)),
        paper=PAPER,
        source="Shan et al. 2024, Table 3",
        compare=tuple(("identitykd", m) for m in METHODS[:-1]),
        per_identity=True,
    ),
)
