"""Study files: one short Python file per paper artefact (`studies/`), declaring its variants,
seeds, tuning space, trial budget and report (STYLE.md "For ikd" 6).

    # studies/table3_methods.py
    from ikd.study import Study, Variant, table_space

    STUDY = Study(
        artefact="Table 3",
        variants=tuple(
            Variant(m, {"train.method": m}, space=table_space(m))
            for m in ("baseline", "vanilla_kd", "cfkd", "mkd", "identitykd")
        ),
        trials=20,
        seeds=3,
    )

`load_study(path)` imports the file and checks it before anything runs: each variant's overrides
must be config keys with valid values (an unknown method or student names the nearest), and its
space must be a valid `ikd.space` space for that variant — each problem one line naming the
study file and the variant. Torch-free and Ray-free: it sits below tune/, which runs a study,
and report/, which renders it (tests/test_architecture.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikd.config import Config, apply_overrides, load_config
from ikd.errors import ConfigError, UserError
from ikd.space import Integer, LogUniform, Range, Uniform, check_space

LR = LogUniform(1e-5, 1e-3)

# What the tables tune (DESIGN.md §5): what the paper leaves open — the lr, the
# distillation weights and temperatures, β0, the KD start epoch, FAWA's threshold — plus τ; the
# same for every variant of a method, so no method wins by more tuning. (Table 4 adds each
# student's weight decay: studies/table4_students.py.)
TABLE_SPACES: dict[str, dict[str, Range]] = {
    "baseline": {"train.lr": LR},
    "vanilla_kd": {
        "train.lr": LR,
        "vanilla_kd.alpha": LogUniform(0.1, 10.0),
        "vanilla_kd.temperature": LogUniform(1.0, 10.0),
    },
    "cfkd": {"train.lr": LR, "cfkd.temperature": LogUniform(0.05, 1.0)},
    "mkd": {
        "train.lr": LR,
        "mkd.alpha": LogUniform(0.1, 10.0),
        "mkd.margin": Uniform(-0.5, 0.8),
    },
    "identitykd": {
        "train.lr": LR,
        "identitykd.tau": LogUniform(0.05, 5.0),
        "identitykd.delta1": LogUniform(0.1, 10.0),
        "identitykd.delta2": LogUniform(0.1, 10.0),
        "identitykd.beta0": LogUniform(0.1, 10.0),
        "identitykd.kd_start_epoch": Integer(0, 3),
        "identitykd.fawa_threshold": Uniform(0.0, 0.6),
    },
}
# Identity-wise vanilla KD (Fig. 4) tunes eq. 14's open values instead of α and Hinton's T.
TABLE_SPACES["vanilla_kd-identity_wise"] = {
    "train.lr": LR,
    "vanilla_kd.beta0": LogUniform(0.1, 10.0),
    "vanilla_kd.kd_start_epoch": Integer(0, 3),
}


def table_space(name: str) -> dict[str, Range]:
    """The tables' tuning space of a method (or "vanilla_kd-identity_wise"), a fresh copy."""
    if name not in TABLE_SPACES:
        raise ConfigError(f"no table space for {name!r}; choose from {list(TABLE_SPACES)}")
    return dict(TABLE_SPACES[name])


@dataclass(frozen=True)
class Variant:
    """One row (or curve point) of an artefact: a name, the dotted overrides that make it, and
    what is tuned for it (empty: nothing is tuned here)."""

    name: str
    overrides: Mapping[str, Any]
    space: Mapping[str, Range] = field(default_factory=dict)
    # (study, variant) whose tuned configuration this variant starts from, its own overrides on
    # top (Table 4's students, Fig. 4's λ values): read from that study's best_config.json. With
    # a space too, its search starts there: the first trial is that configuration's values of
    # the space (Table 4's per-student lr and weight decay, the joint search).
    tuned_in: tuple[str, str] | None = None
    final: bool = True  # False: tuned only, for other variants to start from (no final runs)


@dataclass(frozen=True)
class Table:
    """The report of a table artefact: a row per final variant with its test metrics over seeds.

    `paper` holds the paper's printed values (in %, keys "acc", "recall", "f1") of the rows it
    has, `compare` the pairs (a, b) whose paired difference a − b over seeds gets a significance
    line (either may be another study's final variant, "<study>/<variant>", with the same
    seeds), `per_identity` asks for the identities × variants plot and `importances` for Optuna's
    parameter importances of each tuned variant (a search study's report)."""

    labels: Mapping[str, str] = field(default_factory=dict)  # variant → row label
    paper: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str = ""  # where `paper` is printed, e.g. "Shan et al. 2024, Table 3"
    compare: tuple[tuple[str, str], ...] = ()
    per_identity: bool = False
    importances: bool = False
    # A row more than half of whose final runs end under this val ACC did not learn in the
    # budget: the table prints that, not its test numbers, compares it with nothing, and
    # `curves` shows its val curve; a row that learned names its runs that ended under it.
    learned: float = 0.0
    curves: bool = False  # val ACC per epoch of each row's final runs (val_curves.png/.csv)

    def variants(self) -> set[str]:
        """The study's own final variants the report names (not another study's)."""
        names = {*self.labels, *self.paper, *(name for pair in self.compare for name in pair)}
        return {name for name in names if "/" not in name}

    def elsewhere(self) -> set[str]:
        """Other studies' final variants that `compare` names ("<study>/<variant>")."""
        return {name for pair in self.compare for name in pair if "/" in name}


@dataclass(frozen=True)
class Figure:
    """The report of a sweep figure (Fig. 4): test accuracy (solid), worst-identity accuracy
    (dotted, the paper's) and the worst 10 % of identities' mean accuracy (dashed, stabler over
    seeds) of each series against the swept value, one panel per sweep.

    `points` maps each final variant to (panel, series, x)."""

    points: Mapping[str, tuple[str, str, float]]
    xlabel: str = "λ"
    source: str = ""

    def variants(self) -> set[str]:
        return set(self.points)


@dataclass(frozen=True)
class Study:
    """An artefact's study: its variants, the trial budget per tuned variant, the seeds of each
    final variant, and the smaller budget the tests run it with."""

    artefact: str
    variants: tuple[Variant, ...]
    trials: int = 20
    seeds: int = 3
    test_trials: int = 2
    test_seeds: int = 2
    test_variants: tuple[str, ...] = ()  # the variants a test run keeps (empty: all)
    test_epochs: int = 2  # a test run's epochs: ASHA can stop a trial at its rung (epoch 1)
    # After a variant's search, its best `reevaluate` complete trials train again on val with
    # `reevaluate_seeds` more seeds, and the best mean val ACC over the seeds picks its
    # configuration: trials differ by less than one seed's val noise (issue 23). A test run
    # re-evaluates its best 2 with 1 more seed.
    reevaluate: int = 3
    reevaluate_seeds: int = 2
    # ASHA stops trials early (False: every trial runs all its epochs, and which ones complete
    # does not hang on the order trials reach a rung in: a search too small to rank anything)
    asha: bool = True
    # Config overrides of every run of this study, over the command's (a second synthetic
    # population: {"synthetic.seed": 1}); a `tuned_in` configuration is read where its own study
    # ran, without them.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    report: Table | Figure = field(default_factory=Table)
    name: str = ""  # the file's stem, set by `load_study`

    def reevaluation(self, quick: bool = False) -> tuple[int, int]:
        """(how many of a tuned variant's best complete trials train again, on how many more
        seeds): `reevaluate` and `reevaluate_seeds`, at most (2, 1) in a test run (--quick)."""
        top, seeds = self.reevaluate, self.reevaluate_seeds
        return (min(top, 2), min(seeds, 1)) if quick else (top, seeds)

    @property
    def resamples_population(self) -> bool:
        """Whether its overrides draw another synthetic population (meaningless on captures)."""
        return any(key.startswith("synthetic.") for key in self.overrides)

    def check(self, base: Config, where: str) -> None:
        """Every variant resolves to a valid config and a valid space (one line per problem)."""
        if not self.variants:
            raise UserError(f"{where}: a study needs at least one variant")
        if min(self.trials, self.seeds, self.test_trials, self.test_seeds, self.test_epochs) < 1:
            raise UserError(f"{where}: trials, seeds and their test sizes must be ≥ 1")
        if min(self.reevaluate, self.reevaluate_seeds) < 0:
            raise UserError(f"{where}: reevaluate and reevaluate_seeds must be ≥ 0")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise UserError(f"{where}: variant names repeat: {names}")
        unknown = set(self.test_variants) - set(names)
        if unknown:
            raise UserError(f"{where}: test_variants names no variant: {sorted(unknown)}")
        finals = {variant.name for variant in self.variants if variant.final}
        unknown = self.report.variants() - finals
        if unknown:
            raise UserError(f"{where}: the report names no final variant: {sorted(unknown)}")
        try:
            base = apply_overrides(base, dict(self.overrides))
        except ConfigError as error:
            raise UserError(f"{where}, the study's overrides: {error}") from None
        for variant in self.variants:
            try:
                config = apply_overrides(base, dict(variant.overrides))
                check_space(variant.space, config)
            except ConfigError as error:
                raise UserError(f"{where}, variant {variant.name!r}: {error}") from None


def load_study(path: str | Path, preset: str = "smoke") -> Study:
    """Import a study file, take its `STUDY`, name it after the file and check it against the
    preset's config.

    Raises:
        UserError: no such file, no `STUDY` in it, or a variant or space the config refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such study file")
    spec = importlib.util.spec_from_file_location(f"ikd_study_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise UserError(f"{path}: defines no STUDY = Study(...)")
    study = dataclasses.replace(study, name=path.stem)
    study.check(load_config(preset, warn=False), str(path))
    return study
