"""The joint search users run on their own data: λ1, λ2, γ, τ, δ1, δ2 and the student together,
for IdentityKD (`ikd study studies/search_identitykd.py data.captures=…`)."""

from ikd.space import Choice, LogUniform, Uniform
from ikd.study import Study, Table, Variant

STUDY = Study(
    artefact="Joint search",
    variants=(
        Variant(
            "identitykd",
            {"train.method": "identitykd"},
            space={
                "identitykd.lambda1": Uniform(0.0, 1.0),
                "identitykd.lambda2": Uniform(0.0, 1.0),
                "identitykd.gamma": Uniform(0.0, 1.0),
                "identitykd.tau": LogUniform(0.05, 5.0),
                "identitykd.delta1": LogUniform(0.1, 10.0),
                "identitykd.delta2": LogUniform(0.1, 10.0),
                "train.student": Choice(("resnet18", "mobilenet", "efficientnet", "vgg16")),
            },
        ),
    ),
    trials=40,
    seeds=3,
    report=Table(labels={"identitykd": "IdentityKD, best of the joint search"}, importances=True),
)
