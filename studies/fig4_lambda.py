"""Fig. 4: average, worst-identity and worst-10 %-of-identities test accuracy against λ1
(λ2 = 0.4) and λ2 (λ1 = 0.5), for IdentityKD and identity-wise vanilla KD, other settings at each
method's tuned best.

IdentityKD starts from Table 3's tuned configuration; identity-wise vanilla KD is tuned here once
with the tables' budget (a tuning-only variant), then swept.
"""

from ikd.study import Figure, Study, Variant, table_space

LAMBDAS = (0.3, 0.4, 0.5, 0.6, 0.7)
IDENTITY_WISE = {"train.method": "vanilla_kd", "vanilla_kd.identity_wise": True}
SERIES = {"identitykd": "IdentityKD", "vanilla_kd": "identity-wise vanilla KD"}
PANELS = {"lambda1": "λ1 (λ2 = 0.4)", "lambda2": "λ2 (λ1 = 0.5)"}
STARTS = {
    "identitykd": ("table3_methods", "identitykd"),
    "vanilla_kd": ("fig4_lambda", "vanilla_kd-identity_wise"),
}


def sweep(method: str) -> tuple[Variant, ...]:
    """Two 1-D sweeps of one method: λ1 with λ2 = 0.4, and λ2 with λ1 = 0.5."""
    return tuple(
        Variant(
            f"{method}-{name}-{value}",
            {f"{method}.lambda1": l1, f"{method}.lambda2": l2},
            tuned_in=STARTS[method],
        )
        for name, points in (
            ("lambda1", [(v, 0.4) for v in LAMBDAS]),
            ("lambda2", [(0.5, v) for v in LAMBDAS]),
        )
        for value, (l1, l2) in zip(LAMBDAS, points, strict=True)
    )


STUDY = Study(
    artefact="Fig. 4",
    variants=(
        Variant(
            "vanilla_kd-identity_wise",
            IDENTITY_WISE,
            space=table_space("vanilla_kd-identity_wise"),
            final=False,
        ),
        *sweep("identitykd"),
        *sweep("vanilla_kd"),
    ),
    trials=20,
    seeds=3,
    report=Figure(
        points={
            f"{method}-{name}-{value}": (panel, series, value)
            for method, series in SERIES.items()
            for name, panel in PANELS.items()
            for value in LAMBDAS
        },
        source="Shan et al. 2024, Fig. 4 (printed as a plot only: no values to compare)",
    ),
    # a test run: the tuning variant and two λ values of one sweep per method
    test_variants=(
        "vanilla_kd-identity_wise",
        *(f"identitykd-lambda1-{value}" for value in (0.3, 0.7)),
        *(f"vanilla_kd-lambda2-{value}" for value in (0.3, 0.7)),
    ),
)
