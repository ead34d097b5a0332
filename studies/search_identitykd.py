"""The joint search users run on their own data: the lr, weight decay, λ1, λ2, γ, τ, δ1, δ2 and
the student together, for IdentityKD (`ikd study studies/search_identitykd.py data.captures=…`).

It starts from Table 3's tuned IdentityKD: its first trial is that configuration (Optuna's
enqueued trial), and the settings outside the space (β0, the KD start epoch, FAWA's threshold)
are Table 3's, so its best val is never below Table 3's on the same val seeds. Its final rows are
compared with Table 3's IdentityKD, seed by seed. On data of one's own (`data.captures`), Table 3's
IdentityKD is therefore tuned first where it is not yet (its search and re-evaluations, not Table
3's other variants), as for every study that starts from Table 3.

Its lr range reaches a decade above Table 3's (1e-5–1e-2) and it searches the weight decay: it
chooses the student too, and Table 4 found MobileNet's and EfficientNet's val ACC still rising at
the top of Table 3's range (MobileNet's tuning seed: 20 % at 6.1e-4, 62 % at 3.7e-3) and
EfficientNet's better with decay (studies/table4_students.py). Over Table 3's range alone the
choice would lean to ResNet18 by the range, not the data.
"""

from ikd.space import Choice, LogUniform, Uniform
from ikd.study import Study, Table, Variant

STUDY = Study(
    artefact="Joint search",
    variants=(
        Variant(
            "identitykd",
            {"train.method": "identitykd"},
            space={
                # without the lr every trial trained at 1e-4; Table 3's range and Table 4's
                "train.lr": LogUniform(1e-5, 1e-2),
                "train.weight_decay": Choice((0.0, 1e-4, 1e-3, 1e-2)),  # Table 4's
                "identitykd.lambda1": Uniform(0.0, 1.0),
                "identitykd.lambda2": Uniform(0.0, 1.0),
                "identitykd.gamma": Uniform(0.0, 1.0),
                "identitykd.tau": LogUniform(0.05, 5.0),
                "identitykd.delta1": LogUniform(0.1, 10.0),
                "identitykd.delta2": LogUniform(0.1, 10.0),
                "train.student": Choice(("resnet18", "mobilenet", "efficientnet", "vgg16")),
            },
            tuned_in=("table3_methods", "identitykd"),
        ),
    ),
    trials=40,
    seeds=14,  # Table 3's: paired with its IdentityKD seed by seed
    report=Table(
        labels={
            "identitykd": "IdentityKD, best of the joint search",
            "table3_methods/identitykd": "IdentityKD, Table 3",
        },
        importances=True,
        compare=(("identitykd", "table3_methods/identitykd"),),
    ),
)
