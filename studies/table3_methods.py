"""Table 3: IdentityKD against Baseline, vanilla KD, CFKD and MKD (ACC, macro recall, macro F1).

Every method is tuned on val with the same budget and scheduler over what the paper leaves open
(`ikd.tune.study.TABLE_SPACES`), then trained with its best configuration over the seeds.
"""

from ikd.tune.study import Study, Variant, table_space

METHODS = ("baseline", "vanilla_kd", "cfkd", "mkd", "identitykd")

STUDY = Study(
    artefact="Table 3",
    variants=tuple(Variant(m, {"train.method": m}, space=table_space(m)) for m in METHODS),
    trials=20,
    seeds=3,
)
