"""Configuration: frozen dataclasses with the paper's defaults, three presets, strict loading.

One mechanism serves every entry point: a config is built from the `paper` defaults, then the
chosen preset's dotted overrides, then the user's (``radar.num_chirps=100`` on the command line,
and later Ray Tune's sampled values). Unknown keys raise and name the nearest valid key.

Sections: the data and training settings below, and one section per method holding only that
method's hyperparameters (`identitykd.tau`, `vanilla_kd.temperature`, …), defined once in
`ikd.method_params`. This module imports neither torch nor any method: a config is cheap to build
anywhere (a Tune driver, a CLI's `--help`).

    >>> cfg = load_config("smoke", ["radar.num_chirps=48"])
    >>> cfg.radar.num_chirps
    48
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import math
import numbers
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ikd.errors import ConfigError, require
from ikd.method_params import (
    PARAMS,
    BaselineParams,
    CFKDParams,
    IdentityKDParams,
    MKDParams,
    Section,
    VanillaKDParams,
)

log = logging.getLogger(__name__)

SPEED_OF_LIGHT = 299_792_458.0  # m/s


@dataclass(frozen=True)
class RadarConfig:
    """TI IWR1843 FMCW settings: the paper's Table 1 in its self-consistent reading (DESIGN.md §2).

    Table 1 says both 230 and 256 samples per chirp, a 900.9 MHz bandwidth, a 4 cm range
    resolution and 200 frames per second; only 256 samples at 5 Msps and 15 MHz/µs (768 MHz swept
    while sampling), 200 chirps per 33 ms frame, and the paper's 0.06 m/s velocity resolution agree
    with each other, so those are the defaults.
    """

    start_frequency_hz: float = 77e9
    slope_hz_per_s: float = 15e12  # 15 MHz/µs
    sample_rate_hz: float = 5e6  # complex (I/Q) samples per second
    num_samples: int = 256  # ADC samples per chirp; Table 1's "230" is ignored
    num_chirps: int = 200  # chirps per frame (one TX's chirps: one virtual channel per RX)
    chirp_period_s: float = 165e-6  # 33 ms / 200: continuous chirping at the paper's settings
    frame_period_s: float = 33e-3
    num_rx: int = 4
    mount_height_m: float = 1.5  # the paper's tripod height

    def __post_init__(self) -> None:
        for name in (
            "start_frequency_hz",
            "slope_hz_per_s",
            "sample_rate_hz",
            "chirp_period_s",
            "frame_period_s",
        ):
            require(getattr(self, name) > 0, f"radar.{name} must be > 0")
        require(self.num_samples >= 8, "radar.num_samples must be ≥ 8")
        require(self.num_chirps >= 8, "radar.num_chirps must be ≥ 8")
        require(self.num_rx >= 1, "radar.num_rx must be ≥ 1")
        require(
            self.num_samples / self.sample_rate_hz <= self.chirp_period_s,
            f"radar: {self.num_samples} samples at {self.sample_rate_hz:g} Hz do not fit in a "
            f"{self.chirp_period_s:g} s chirp",
        )
        require(
            self.num_chirps * self.chirp_period_s <= self.frame_period_s * (1 + 1e-9),
            f"radar: {self.num_chirps} chirps of {self.chirp_period_s:g} s do not fit in a "
            f"{self.frame_period_s:g} s frame",
        )

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT / self.start_frequency_hz

    @property
    def sampled_bandwidth_hz(self) -> float:
        return self.slope_hz_per_s * self.num_samples / self.sample_rate_hz

    @property
    def range_resolution_m(self) -> float:
        """Range-bin spacing c·fs / (2·slope·S), m (≈ 0.195 m at the defaults)."""
        return SPEED_OF_LIGHT / (2 * self.sampled_bandwidth_hz)

    @property
    def max_velocity_m_s(self) -> float:
        """Unambiguous radial velocity λ / (4·Tc), m/s (≈ 5.9 m/s at the defaults)."""
        return self.wavelength_m / (4 * self.chirp_period_s)

    @property
    def velocity_resolution_m_s(self) -> float:
        """λ / (2·C·Tc), m/s, for a Doppler FFT over one frame's C chirps (≈ 0.06 m/s)."""
        return self.wavelength_m / (2 * self.num_chirps * self.chirp_period_s)


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the synthetic walker dataset; the generator's distributions live in radar/scene.py."""

    num_identities: int = 36
    walks_per_identity: int = 100
    walk_duration_s: float = 4.0  # ≈ 121 frames at 33 ms
    seed: int = 0  # identities and walks are pure functions of (seed, identity, walk)
    adc_full_scale: float = 2048.0  # noise σ at int16 full scale in .bin: 16 counts per σ

    def __post_init__(self) -> None:
        require(self.num_identities >= 2, "synthetic.num_identities must be ≥ 2")
        require(
            1 <= self.walks_per_identity < 1000,
            "synthetic.walks_per_identity must lie in [1, 1000)",
        )
        # The synthetic room is ~9 m deep: longer walks would leave the range band (scene.py).
        require(0 < self.walk_duration_s <= 4.5, "synthetic.walk_duration_s must lie in (0, 4.5] s")
        require(self.adc_full_scale > 0, "synthetic.adc_full_scale must be > 0")


@dataclass(frozen=True)
class DSPConfig:
    """Micro-Doppler processing (radar/dsp.py) and gait windowing."""

    range_min_m: float = 0.8  # the walker's range band; bins outside it are never computed
    range_max_m: float = 9.5
    track_half_width_m: float = 0.8  # STFT only ±this around the walker's strongest bin (0: all)
    doppler_window: int = 0  # chirps per STFT window; 0 = all chirps of a frame (paper's v_res)
    dynamic_range_db: float = 40.0  # spectrogram clipped this far below its peak
    window_frames: int = 64  # one gait sample: 64 frames ≈ 2.1 s ≈ two gait cycles
    hop_frames: int = 1  # overlapping windows; the paper has ~5000 pairs per identity
    image_size: int = 256  # the paper's 256×256 spectrograms

    def __post_init__(self) -> None:
        require(0 <= self.range_min_m < self.range_max_m, "dsp: need 0 ≤ range_min_m < range_max_m")
        require(self.track_half_width_m >= 0, "dsp.track_half_width_m must be ≥ 0")
        require(self.doppler_window >= 0, "dsp.doppler_window must be ≥ 0")
        require(self.dynamic_range_db > 0, "dsp.dynamic_range_db must be > 0")
        require(self.window_frames >= 2, "dsp.window_frames must be ≥ 2")
        require(self.hop_frames >= 1, "dsp.hop_frames must be ≥ 1")
        require(self.image_size >= 8, "dsp.image_size must be ≥ 8")


@dataclass(frozen=True)
class FaceConfig:
    """Webcam faces paired with gait windows (face/)."""

    image_size: int = 160  # the paper's MTCNN crops; InceptionResnetV1 accepts down to 80
    frame_rate_hz: float = 30.0  # the webcam beside the radar (synthetic walks)
    views: int = 4  # K augmented views per face whose teacher outputs the dataset stores (≤ 1024)

    def __post_init__(self) -> None:
        require(
            self.image_size >= 80,
            "face.image_size must be ≥ 80 (InceptionResnetV1's smallest input)",
        )
        require(self.frame_rate_hz > 0, "face.frame_rate_hz must be > 0")
        require(1 <= self.views <= 1024, "face.views must lie in [1, 1024]")


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen FaceNet teacher (models/teacher.py; fitted by face/teacher.py) and its linear
    identity classifier."""

    source: str = "auto"  # auto | pretrained (VGGFace2 from the torch hub cache) | trained (ours)
    epochs: int = 30  # training the backbone on the training faces, when not pretrained
    batch_size: int = 64
    lr: float = 1e-3
    classifier_epochs: int = 500  # full-batch steps on frozen embeddings, early-stopped on val
    classifier_lr: float = 1e-2
    classifier_weight_decay: float = 1e-3  # keeps the teacher's logits soft for vanilla KD
    classifier_patience: int = 25
    seed: int = 0  # the teacher's initialisation and augmentation order

    def __post_init__(self) -> None:
        require(
            self.source in ("auto", "pretrained", "trained"),
            "teacher.source must be auto, pretrained or trained",
        )
        for name in ("epochs", "batch_size", "classifier_epochs", "classifier_patience"):
            require(getattr(self, name) >= 1, f"teacher.{name} must be ≥ 1")
        for name in ("lr", "classifier_lr"):
            require(getattr(self, name) > 0, f"teacher.{name} must be > 0")
        require(self.classifier_weight_decay >= 0, "teacher.classifier_weight_decay must be ≥ 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the dataset lives and how walks are split (DESIGN.md §4)."""

    root: str = "datasets"  # datasets live in <root>/<preset>-<data hash>; relative to the CWD
    captures: str = ""  # a real capture folder (README); empty: synthetic walkers in-stream
    split_seed: int = 0  # the split is a pure function of this and the walk list
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        require(
            self.val_fraction > 0
            and self.test_fraction > 0
            and self.val_fraction + self.test_fraction < 1,
            "data: need 0 < val_fraction, 0 < test_fraction and val_fraction + test_fraction < 1",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, the paper's §4.1 defaults: Adam, lr 1e-4, MultiStepLR, 200 epochs, batch 128."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = (100, 150)  # MultiStepLR; the paper gives no milestones
    lr_decay: float = 0.1
    # Adam's L2 weight decay (torch's `weight_decay`). The paper names none; Table 4 tunes it
    # per student (benchmarks/README.md, "Weight decay"). At 0 it is left out of the run hash
    # (`ikd.train.runs.run_hash`): runs from before the setting existed trained without it.
    weight_decay: float = 0.0
    seed: int = 0  # initialisation, data order and face-view choice; the dataset split is fixed
    method: str = "identitykd"  # baseline | vanilla_kd | cfkd | mkd | identitykd (PARAMS)
    # resnet18 | mobilenet | efficientnet | vgg16 (Table 4), or a backbone builder of one's own,
    # package.module:function (ikd.models.students.backbone)
    student: str = "resnet18"
    workers: int = 2  # Ray Train workers; batch_size is the global batch, split across them
    device: str = "auto"  # auto (GPUs when the cluster has them) | cpu | cuda
    threads: int = 0  # torch threads per worker; 0: the worker's share of the CPUs
    # Seconds between a run's resume checkpoints (0: every epoch). An interrupted run loses at
    # most this much training; a 134 MB write cost a laptop epoch ~8 % (benchmarks/README.md).
    # Not in the run hash: the run computes the same either way (ikd.train.loop).
    checkpoint_every_s: float = 0.0
    runs_root: str = "runs"  # runs live in <runs_root>/<study>/<stage>/<variant>-<hash>-seed<seed>

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "train.epochs must be ≥ 1")
        require(self.workers >= 1, "train.workers must be ≥ 1")
        require(
            self.batch_size % self.workers == 0 and self.batch_size // self.workers >= 2,
            f"train.batch_size={self.batch_size} must split into train.workers={self.workers} "
            "equal batches of ≥ 2 (it is the global batch)",
        )
        require(self.threads >= 0, "train.threads must be ≥ 0")
        require(self.weight_decay >= 0, "train.weight_decay must be ≥ 0")
        require(self.checkpoint_every_s >= 0, "train.checkpoint_every_s must be ≥ 0")
        require(
            self.device in DEVICES, f"train.device={self.device!r}; choose from {list(DEVICES)}"
        )
        # (not `require`: its message, difflib included, would be built for every config)
        if self.method not in PARAMS:
            raise ConfigError(
                f"unknown method {self.method!r}{suggest(self.method, PARAMS)} (choose from {list(PARAMS)})"
            )
        if self.student not in STUDENTS and not BUILDER.fullmatch(self.student):
            raise ConfigError(
                f"unknown student {self.student!r}{suggest(self.student, STUDENTS)} (choose from "
                f"{list(STUDENTS)}, or name a backbone builder of your own: package.module:function)"
            )
        require(
            self.batch_size >= 2, "train.batch_size must be ≥ 2 (contrastive losses need pairs)"
        )
        require(self.lr > 0, "train.lr must be > 0")
        require(
            list(self.lr_milestones) == sorted(self.lr_milestones),
            "train.lr_milestones must ascend",
        )


DATA_PATHS = ("auto", "object_store", "storage")


PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")  # Ray's placement strategies


@dataclass(frozen=True)
class ResourcesConfig:
    """What a study's trials and final runs take from the cluster. Never part of a run's hash:
    only `workers_per_trial` changes what a run computes, and it is the run's `train.workers`."""

    workers_per_trial: int = 1  # 1: the loop in the trial's own process; > 1: Ray Train (DDP)
    cpus_per_worker: float = 0.0  # 0: an equal share of the cluster's CPUs per concurrent trial
    gpus_per_worker: float = 1.0  # when training on GPUs; a fraction packs trials onto one GPU
    concurrent_trials: int = 1  # tuning trials at once
    # how trials get train and val: object_store (the study driver reads them once and shares
    # them), storage (each trial or Ray Train worker reads them from data.root on its node), or
    # auto (storage for datasets over 4 GiB: the paper preset)
    data: str = "auto"
    # how a Ray Train run's workers are placed on the nodes: PACK (as few nodes as fit them,
    # Ray's default), SPREAD (each on another node where possible), STRICT_PACK, STRICT_SPREAD
    placement: str = "PACK"

    def __post_init__(self) -> None:
        require(
            self.placement in PLACEMENTS,
            f"resources.placement={self.placement!r}; choose from {list(PLACEMENTS)}",
        )
        require(self.workers_per_trial >= 1, "resources.workers_per_trial must be ≥ 1")
        require(self.cpus_per_worker >= 0, "resources.cpus_per_worker must be ≥ 0")
        require(self.gpus_per_worker > 0, "resources.gpus_per_worker must be > 0")
        require(
            self.workers_per_trial == 1 or self.gpus_per_worker >= 1,
            "resources.gpus_per_worker < 1 with workers_per_trial > 1 would put two DDP ranks "
            "on one GPU (nccl refuses)",
        )
        require(self.concurrent_trials >= 1, "resources.concurrent_trials must be ≥ 1")
        require(
            self.data in DATA_PATHS,
            f"resources.data={self.data!r}; choose from {list(DATA_PATHS)}",
        )


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a job; written next to everything it produces."""

    preset: str = "paper"
    radar: RadarConfig = field(default_factory=RadarConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    dsp: DSPConfig = field(default_factory=DSPConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    # Each method's own section (ikd/method_params.py); a run depends only on its method's.
    baseline: BaselineParams = field(default_factory=BaselineParams)
    vanilla_kd: VanillaKDParams = field(default_factory=VanillaKDParams)
    cfkd: CFKDParams = field(default_factory=CFKDParams)
    mkd: MKDParams = field(default_factory=MKDParams)
    identitykd: IdentityKDParams = field(default_factory=IdentityKDParams)

    def __post_init__(self) -> None:
        require(
            self.preset in PRESETS, f"unknown preset {self.preset!r}; choose from {list(PRESETS)}"
        )
        doppler = self.dsp.doppler_window or self.radar.num_chirps
        require(
            doppler <= self.radar.num_chirps,
            f"dsp.doppler_window={doppler} exceeds radar.num_chirps={self.radar.num_chirps}",
        )
        require(
            self.dsp.window_frames <= self.num_frames,
            f"dsp.window_frames={self.dsp.window_frames} exceeds the {self.num_frames} frames of a "
            f"{self.synthetic.walk_duration_s:g} s walk",
        )
        require(
            all(0 < m < self.train.epochs for m in self.train.lr_milestones),
            f"train.lr_milestones {self.train.lr_milestones} must lie inside (0, train.epochs={self.train.epochs})",
        )

    @property
    def num_frames(self) -> int:
        """Radar frames in one synthetic walk."""
        return round(self.synthetic.walk_duration_s / self.radar.frame_period_s)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Rebuild a resolved config from nested mappings (e.g. a run's config.json).

        Unknown keys raise naming the nearest valid one; missing keys take the paper's defaults.
        `preset` is only a label here: to apply a preset's sizes use `load_config`.
        """
        return build(cls, data)

    def hash(self) -> str:
        """A short stable hash of the resolved config (12 hex digits)."""
        return digest(self.to_dict())

    def method_params(self) -> Section:
        """The chosen method's (`train.method`) section: its `Params`."""
        return getattr(self, self.train.method)

    def data_hash(self) -> str:
        """Hash of what the dataset depends on (not training): names and keys the dataset."""
        sections = {
            name: dataclasses.asdict(getattr(self, name))
            for name in DATA_SECTIONS
            if name != "preset"
        }
        del sections["data"]["root"]  # moving keeps the name
        return digest({"format": DATA_FORMAT, "preset": self.preset, **sections})


DEVICES = ("auto", "cpu", "cuda")
# a run's stage: tuning runs and the re-evaluations of the best ones (more seeds) read val
# only; final runs may read test
STAGES = ("tune", "reeval", "final")
LOOPS = ("ray", "plain")  # Ray Train workers, or the plain loop in the calling process
CONFIG = "config.json"  # the resolved config, written next to everything it produces
# The students of Table 4 (ikd.models.students.STUDENTS builds them; a test checks the names).
STUDENTS = ("resnet18", "mobilenet", "efficientnet", "vgg16")
BUILDER = re.compile(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*"
)  # a student of one's own: module:function
DATA_SECTIONS = ("preset", "radar", "synthetic", "dsp", "face", "teacher", "data")
# Bump when the code changes what a dataset holds (generator, DSP, schema): old datasets rebuild.
DATA_FORMAT = 1


def saved_value(config: Mapping[str, Any], key: str) -> Any:
    """A dotted key's value ("train.weight_decay") in a saved, nested config (a run's
    config.json, `Config.to_dict`); a key the config predates reads as the paper's default,
    what that run ran with (None for no such key)."""
    section, name = key.split(".", 1)
    values = config.get(section, {})
    if name in values:
        return values[name]
    return getattr(getattr(_DEFAULTS, section, None), name, None)


def digest(data: Any) -> str:
    """A short stable hash (12 hex digits) of JSON-able data, key order ignored."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Presets change sizes only; methods and code paths are identical (DESIGN.md §1). Radar
# reductions are listed by `reductions()` and logged whenever a config is loaded.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "laptop": {
        "radar.num_chirps": 64,  # v_res 0.19 m/s, same ±5.9 m/s span (chirp period kept)
        # 24 walks per identity: 14 train, 2 val, 8 test. 8 test walks (not 4) halve the test
        # split's share of a seed's paired difference, so Tables 3 and 5 reach a ±1-point 95 %
        # interval in 14 seeds instead of 16 (benchmarks/README.md, "Seeds for a verdict").
        "synthetic.walks_per_identity": 24,
        "data.test_fraction": 0.34,
        "dsp.hop_frames": 8,  # 8 windows per 4 s walk → 6912 windows in all
        "dsp.image_size": 32,
        "face.image_size": 80,
        "teacher.epochs": 6,
        # One study trial is one 10-epoch run (~45 s with 2 threads on a fast day: 4.5 s per
        # epoch). One lr drop, at epoch 8: measured against (6, 8) and a constant lr on val
        # (benchmarks/laptop_schedule.py), it ends best for baseline and identitykd alike.
        "train.epochs": 10,
        "train.lr_milestones": (8,),
        # a resume checkpoint a minute (one near a 10-epoch run's end), not every ~7 s epoch:
        # resnet18 with Adam's state, 134 MB, took ~0.95 s a write (bench_train.py checkpoints)
        "train.checkpoint_every_s": 60.0,
        "identitykd.warmup_epochs": 2,
        "vanilla_kd.warmup_epochs": 2,
        # FAWA's decay is per kept epoch: CFA's 0.88 averages ~8 of its 200 epochs (all at the
        # final lr); 10 epochs cannot keep that fraction (0.4 epoch), so the horizon becomes
        # 1/(1 − 0.5) = 2 epochs, the length of the last lr stage (milestone 8).
        **{f"{method}.fawa_decay": 0.5 for method in PARAMS},
    },
    "smoke": {
        "radar.num_samples": 128,
        "radar.num_chirps": 32,
        "synthetic.num_identities": 4,
        "synthetic.walks_per_identity": 6,
        "synthetic.walk_duration_s": 2.0,
        "dsp.window_frames": 32,
        "dsp.hop_frames": 16,
        "dsp.image_size": 32,
        "face.image_size": 80,
        "face.views": 2,
        "teacher.epochs": 1,
        "teacher.classifier_epochs": 50,
        "train.epochs": 1,
        "train.batch_size": 16,
        "train.lr_milestones": (),
        "identitykd.warmup_epochs": 0,
        "vanilla_kd.warmup_epochs": 0,
    },
}


def load_config(
    preset: str = "laptop",
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    warn: bool = True,
) -> Config:
    """Resolve a preset plus dotted overrides into a validated `Config`.

    Args:
        preset: one of `PRESETS`.
        overrides: ``"section.key=value"`` strings (values parsed by the field's type) or a
            mapping of dotted keys to typed values (what Ray Tune hands over).
        warn: log where the result samples the scene more coarsely than the paper.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}{suggest(preset, PRESETS)}")
    config = apply_overrides(_preset(preset), overrides)
    notes = reductions(config) if warn else []  # (it builds the paper's config to compare)
    if notes:
        log.warning(
            "%s preset samples more coarsely than the paper: %s", config.preset, "; ".join(notes)
        )
    return config


@functools.cache
def _preset(name: str) -> Config:
    """A preset's config, built once (frozen: shared safely; `PRESETS` is never changed at run time)."""
    return apply_overrides(Config(preset=name), PRESETS[name])


def apply_overrides(config: Config, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
    """Return a copy of `config` with dotted overrides applied (strict: unknown keys raise)."""
    items = overrides.items() if isinstance(overrides, Mapping) else map(split_override, overrides)
    changes: dict[str, Any] = {}  # nested like the config, only the sections touched
    for key, value in items:
        section, field_type = _resolve(key)
        target = changes
        for part in section:
            target = target.setdefault(part, {})
        target[key.rsplit(".", 1)[-1]] = _parse(value, field_type, key)
    return _replace(config, changes, prefix="")


def _replace(section: Any, changes: Mapping[str, Any], prefix: str) -> Any:
    """`section` with `changes` type-checked and put in, each touched dataclass rebuilt (so its
    checks run) and the rest shared: a copy through `to_dict`/`from_dict` cost ~0.6 ms a call,
    which rendering a study's records paid thousands of times."""
    if not changes:
        return section
    hints = _field_types(type(section))
    values = {
        name: _replace(getattr(section, name), value, f"{prefix}{name}.")
        if dataclasses.is_dataclass(hints[name])
        else _check_type(value, hints[name], prefix + name)
        for name, value in changes.items()
    }
    return dataclasses.replace(section, **values)


def reductions(config: Config) -> list[str]:
    """Human-readable list of where `config` samples the scene more coarsely than the paper."""
    paper = Config()
    notes = []
    for name in ("num_samples", "num_chirps", "chirp_period_s", "frame_period_s", "num_rx"):
        ours, theirs = getattr(config.radar, name), getattr(paper.radar, name)
        if ours != theirs:
            notes.append(f"radar.{name} {theirs:g} → {ours:g}")
    if config.radar.range_resolution_m > paper.radar.range_resolution_m * 1.001:
        notes.append(
            f"range resolution {paper.radar.range_resolution_m:.3f} → {config.radar.range_resolution_m:.3f} m"
        )
    if config.radar.velocity_resolution_m_s > paper.radar.velocity_resolution_m_s * 1.001:
        notes.append(
            f"velocity resolution {paper.radar.velocity_resolution_m_s:.3f} → "
            f"{config.radar.velocity_resolution_m_s:.3f} m/s"
        )
    if config.num_frames < paper.num_frames:
        notes.append(f"frames per walk {paper.num_frames} → {config.num_frames}")
    return notes


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A config dataclass's field types, resolved once: `typing.get_type_hints` evaluates the
    string annotations anew on every call, which made resolving a results tree's run folders
    (thousands of configs) take minutes."""
    return typing.get_type_hints(cls)


def dotted_keys(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every overridable dotted key of `cls` mapped to its field type."""
    keys: dict[str, Any] = {}
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            keys.update(dotted_keys(kind, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = kind
    return keys


def suggest(name: str, valid: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the valid name nearest to `name`, or "" when none is near."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def split_override(item: str) -> tuple[str, str]:
    """ "section.key=value" → ("section.key", "value")."""
    if "=" not in item:
        raise ConfigError(
            f"override {item!r} is not of the form key=value (e.g. radar.num_chirps=100)"
        )
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


@functools.cache
def _config_keys() -> dict[str, Any]:
    return dotted_keys()


def _resolve(key: str) -> tuple[list[str], Any]:
    keys = _config_keys()
    if key == "preset":
        raise ConfigError(
            "the preset is chosen with --preset (or load_config's preset), not an override"
        )
    if key not in keys:
        raise ConfigError(f"unknown config key {key!r}{suggest(key, keys)}")
    return key.split(".")[:-1], keys[key]


def _parse(value: Any, kind: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes"}
        if kind in (int, float, str):
            return kind(value)
        return json.loads(value)  # tuples: radar-style lists such as [100, 150]
    except ValueError:
        raise ConfigError(f"{key}={value!r}: expected {getattr(kind, '__name__', kind)}") from None


def build(cls: type, data: Mapping[str, Any]) -> Any:
    """Strictly build any config dataclass (a section such as `RadarConfig`, or `Config`)."""
    return _build(cls, data, prefix="")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix + key!r}{suggest(key, names)}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, kind, prefix + name)
    return cls(**kwargs)


def _check_type(value: Any, kind: Any, key: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    if kind is int and isinstance(value, numbers.Integral):
        return int(value)  # numpy integers from Tune / Optuna included
    if kind is float and isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, kind):
        return value
    raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")


_DEFAULTS = Config()  # `saved_value`
