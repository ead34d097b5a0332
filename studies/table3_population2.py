"""Table 3 on a second synthetic population: every method at its configuration tuned in Table 3
(unchanged: nothing is tuned here), trained on another population of walkers — another
`synthetic.seed`, so other identities, walks, faces and their own FaceNet teacher — with the same
seeds, compared as Table 3 compares them. The overview says whether each verdict holds in both.
"""

from ikd.study import Study, Table, Variant

METHODS = ("baseline", "vanilla_kd", "cfkd", "mkd", "identitykd")
LABELS = ("Baseline", "vanilla KD", "CFKD", "MKD", "IdentityKD")

STUDY = Study(
    artefact="Table 3, second population",
    variants=tuple(Variant(m, {}, tuned_in=("table3_methods", m)) for m in METHODS),
    seeds=14,  # Table 3's
    overrides={"synthetic.seed": 1},
    test_variants=("baseline", "identitykd"),  # a test run: its own build, one compared pair
    report=Table(
        labels=dict(zip(METHODS, LABELS, strict=True)),
        compare=tuple(("identitykd", m) for m in METHODS[:-1]),
    ),
)
