"""Table 4: IdentityKD with four student architectures.

As the paper does, only the student changes: each row is Table 3's tuned identitykd
configuration (read from table3_methods' best_config.json, tuned first if absent) with its
student swapped in.
"""

from ikd.tune.study import Study, Variant

STUDENTS = ("resnet18", "mobilenet", "efficientnet", "vgg16")

STUDY = Study(
    artefact="Table 4",
    variants=tuple(
        Variant(f"identitykd-{s}", {"train.student": s}, tuned_in=("table3_methods", "identitykd"))
        for s in STUDENTS
    ),
    seeds=3,
)
