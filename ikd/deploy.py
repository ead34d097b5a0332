"""Deployment: a trained run's gait-only student as one model file, and identification of captures.

    export(run_dir, out) → out (TorchScript), with out.with_suffix(".onnx") where torch can write it
    GaitModel.load(out).identify(paths) → a Decision per capture

The model file is the student alone — no face model, no teacher — traced with TorchScript, taking
uint8 gait images (B, H, H) as the dataset stores them and returning identity logits and gait
embeddings (p_s). Inside the file (TorchScript's extra files) travel what identifying needs and
what says where it came from: `ikd.json` (the format version, the identity names, the radar and
DSP settings the captures must match, the window budget, the open-set score, its threshold and
calibration, the run) and `gallery.npz` (the enrolled people's mean embeddings and the shared
covariance: `ikd.openset.Gallery`).

A capture's decision: its gait windows (at most `max_windows`, evenly spread over the walk)
scored by the model's open-set score (`ikd.openset`: the classifier's probability, energy, or
the cosine or Mahalanobis nearness of the mean embedding to an enrolled person); the identity it
points at when the score reaches the threshold, else "unknown". Export chooses the score and
its threshold on val alone: the threshold accepts `ACCEPT` (95 %) of the known walkers' val
captures, and the score is the one that rejects most never-seen walkers of a val group (new
synthetic identities of the same generator, split by person from the test group); it reports
every score on test, with the test group of strangers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ikd.config import Config, DSPConfig, RadarConfig, build
from ikd.data import schema
from ikd.data.dataset import open_dataset
from ikd.errors import CaptureError, UserError
from ikd.openset import EMBEDDING_SCORES, SCORES, Gallery, auroc, capture_scores, threshold_at
from ikd.radar.captures import METADATA, read_metadata, walk_windows_batch
from ikd.radar.dca1000 import read_bin
from ikd.radar.dsp import range_band, range_fft, spectrogram_windows, spread, walk_spectrogram
from ikd.storage import Location, location, write_json
from ikd.train.data import Samples
from ikd.train.driver import load_run
from ikd.train.runs import run_dataset

log = logging.getLogger(__name__)

FORMAT = "ikd-gait-model/2"  # 2: logits and gait embeddings out, a gallery and a chosen score in
META = "ikd.json"
GALLERY = "gallery.npz"  # `ikd.openset.Gallery`, beside META in the file
ACCEPT = 0.95  # the share of known walkers' val captures the threshold accepts
# Walks simulated per never-seen walker (new people: their walk numbers are any, and more walks
# than a split's 2 val walks steady the rejection the score is chosen by)
STRANGER_WALKS = 4
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decision:
    """One capture's outcome: `identity` is a name or "unknown"; `error` says why there is none."""

    source: str
    identity: str = ""
    confidence: float = math.nan  # the model's open-set score of the capture (`GaitModel.score`)
    best: str = ""  # the best identity, also when the decision is "unknown"
    windows: int = 0  # windows the decision used
    window_identities: tuple[str, ...] = ()  # each window's own best identity (--windows)
    window_confidences: tuple[float, ...] = ()
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Identifier(nn.Module):
    """uint8 gait images (B, H, H) → (identity logits (B, N), gait embeddings p_s (B, 512)): the
    student and the same conversion training applies (`ikd.train.data.to_device`)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, gait: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = (gait.float() / 255.0)[:, None].expand(-1, 3, -1, -1)
        images = images.contiguous(memory_format=torch.channels_last)
        embedding, logits = self.student(images)
        return logits, embedding


def to_gait(images: np.ndarray) -> np.ndarray:
    """(W, 3, H, H) float images in [0, 1] → (W, H, H) uint8, exactly as the dataset stores them."""
    return np.clip(np.rint(images[:, 0] * 255), 0, 255).astype(np.uint8)


class GaitModel:
    """An exported model, loaded: `identify` captures, `decide` on a capture's windows."""

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        meta: dict[str, Any],
        path: Path,
        gallery: Gallery | None = None,
    ) -> None:
        self.module, self.meta, self.path, self.gallery = module.eval(), meta, path, gallery
        self.names: list[str] = meta["identities"]  # the classifier's, in label order
        self.score: str = meta["score"]
        self.radar = build(RadarConfig, meta["radar"])
        self.dsp = build(DSPConfig, meta["dsp"])
        self.threshold: float = meta["threshold"]
        self.max_windows: int = meta["max_windows"]

    @classmethod
    def trace(
        cls, student: nn.Module, config: Config, names: Sequence[str], max_windows: int, path: Path
    ) -> GaitModel:
        """A model of `student` for `config`'s radar and DSP; its threshold 0 until calibrated."""
        size = config.dsp.image_size
        with _quiet_torchscript():
            module = torch.jit.trace(
                _Identifier(student).eval(), torch.zeros(2, size, size, dtype=torch.uint8)
            )
        meta = {
            "format": FORMAT,
            "identities": list(names),
            "radar": dataclasses.asdict(config.radar),
            "dsp": dataclasses.asdict(config.dsp),
            "score": "max_probability",
            "threshold": 0.0,
            "max_windows": max_windows,
        }
        return cls(module, meta, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaitModel:
        """Raises UserError for a file that is not an ikd model, or of another format version."""
        path = Path(path)
        extra = {META: "", GALLERY: ""}
        try:
            with _quiet_torchscript():
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as error:
            reason = str(error).strip().split(". ")[0].split("\n")[0] or type(error).__name__
            raise UserError(f"{path}: not a TorchScript model file ({reason})") from None
        try:
            meta = json.loads(extra[META] or "null")
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict):
            raise UserError(f"{path}: a TorchScript file without ikd's {META}: not an ikd model")
        if meta.get("format") != FORMAT:
            raise UserError(
                f"{path}: model format {meta.get('format')!r}; this ikd reads {FORMAT!r} "
                "(export the run again with this version)"
            )
        return cls(
            module, meta, path, Gallery.from_bytes(extra[GALLERY]) if extra[GALLERY] else None
        )

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the model file whole (a temporary file beside it, then renamed over it: a
        failure midway leaves the old file as it was), then its metadata beside it as
        `<file>.json`; returns its path."""
        path = Path(path) if path is not None else self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {META: json.dumps(self.meta, indent=2)}
        if self.gallery is not None:
            extra[GALLERY] = self.gallery.to_bytes()
        partial = path.with_name(f".{path.name}.partial")
        try:
            with _quiet_torchscript():
                torch.jit.save(self.module, str(partial), _extra_files=extra)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        write_json(path.with_suffix(".json"), self.meta)
        return path

    @torch.no_grad()
    def outputs(self, gait: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, H, H) uint8 gait images → (logits (W, N), embeddings (W, D))."""
        logits, embeddings = self.module(torch.from_numpy(np.ascontiguousarray(gait)))
        return logits.numpy(), embeddings.numpy()

    def log_probs(self, gait: np.ndarray) -> torch.Tensor:
        """(W, H, H) uint8 gait images → (W, N) log-probabilities."""
        return torch.log_softmax(torch.from_numpy(self.outputs(gait)[0]), dim=1)

    def decide(self, source: str, gait: np.ndarray, windows: bool = False) -> Decision:
        """A capture's decision from its gait images (all of them; `max_windows` are used)."""
        chosen = gait[spread(len(gait), self.max_windows)]
        if len(chosen) == 0:
            return Decision(source, error=f"{source}: no gait window (the capture is too short)")
        if chosen.min() == chosen.max():
            return Decision(source, error=f"{source}: no signal (every spectrogram pixel equal)")
        logits, embeddings = self.outputs(chosen)
        index, confidence = capture_scores(logits, embeddings, self.gallery)[self.score]
        best = (self.gallery.names if self.score in EMBEDDING_SCORES else self.names)[index]
        per_window = torch.softmax(torch.from_numpy(logits), dim=1).max(dim=1)
        return Decision(
            source,
            identity=best if confidence >= self.threshold else UNKNOWN,
            confidence=confidence,
            best=best,
            windows=len(chosen),
            window_identities=tuple(self.names[i] for i in per_window.indices.tolist())
            if windows
            else (),
            window_confidences=tuple(per_window.values.tolist()) if windows else (),
        )

    def identify(
        self, inputs: Sequence[str | os.PathLike], windows: bool = False
    ) -> Iterator[Decision]:
        """A decision per capture of each input (a `.bin` with its folder's metadata.json, or a
        capture folder). A bad capture or a folder recorded with other radar settings gives an
        error decision naming it, and the rest go on."""
        for source, gait in self.captures(inputs):
            if isinstance(gait, CaptureError):
                yield Decision(source, error=str(gait))
            else:
                yield self.decide(source, gait, windows)

    def captures(
        self, inputs: Sequence[str | os.PathLike]
    ) -> Iterator[tuple[str, np.ndarray | CaptureError]]:
        """(source, its gait images — or the error that names why there are none) per capture of
        each input."""
        bins = range_band(self.radar, self.dsp)
        for path in map(Path, inputs):
            try:
                folder, captures = _captures(path)
                radar, _ = read_metadata(folder)
                self.check_radar(radar, folder)
            except CaptureError as error:
                yield str(path), error
                continue
            for entry in captures:
                source = str(folder / entry["file"])
                try:
                    yield source, self.gait(folder / entry["file"], entry["num_frames"], bins)
                except CaptureError as error:
                    named = str(error) if source in str(error) else f"{source}: {error}"
                    yield source, CaptureError(named)

    def enroll(self, name: str, inputs: Sequence[str | os.PathLike]) -> int:
        """Add `name` to the gallery from their captures' windows (the windows a decision uses);
        returns how many captures. Only the embedding scores name enrolled people: a model that
        decides by a classifier score switches to the embedding score that rejected most val
        strangers, at its val threshold. Nothing is written here (`save`).

        Raises:
            UserError: the name is enrolled already, or a capture cannot be read (naming it:
                an enrolment is from good captures only), or there are none."""
        gaits = []
        for source, gait in self.captures(inputs):
            if isinstance(gait, CaptureError):
                raise UserError(f"{gait} (nothing enrolled)")
            if len(gait) == 0 or gait.min() == gait.max():
                raise UserError(f"{source}: no usable gait window (nothing enrolled)")
            gaits.append(gait)
        if not gaits:
            raise UserError(f"no captures to enrol {name!r} from")
        self.gallery = self._gallery().enroll(
            name, np.concatenate([self.outputs(g)[1] for g in gaits])
        )
        self._decide_by_embedding()
        return len(gaits)

    def remove(self, name: str) -> None:
        """Take `name` out of the gallery (the embedding scores then never name them; the
        classifier still knows a trained identity, so the model switches to an embedding score
        as `enroll` does). Nothing is written here (`save`)."""
        self.gallery = self._gallery().remove(name)
        self._decide_by_embedding()

    def _gallery(self) -> Gallery:
        if self.gallery is None:
            raise UserError(f"{self.path}: a model without a gallery (export the run again)")
        return self.gallery

    def _decide_by_embedding(self) -> None:
        if self.score in EMBEDDING_SCORES:
            return
        reports = self.meta["calibration"]["scores"]
        best = max(EMBEDDING_SCORES, key=lambda s: reports[s]["val"].get("rejected", 0))
        log.warning("the model decided by %s, which knows the trained identities only; it now "
                    "decides by %s (val threshold %.3f)", self.score, best,
                    self.meta["thresholds"][best])  # fmt: skip
        self.score, self.threshold = best, self.meta["thresholds"][best]
        self.meta = {**self.meta, "score": best, "threshold": self.threshold}

    def gait(self, path: Path, frames: int, bins: slice) -> np.ndarray:
        """A capture → the uint8 gait images of the windows a decision uses (only those are
        imaged). Raises CaptureError for a missing, truncated or non-finite capture."""
        radar = self.radar
        cube = read_bin(path, frames, radar.num_chirps, radar.num_rx, radar.num_samples)
        spectrogram = walk_spectrogram(range_fft(cube, bins), radar, self.dsp)
        images, _ = spectrogram_windows(spectrogram, radar, self.dsp, most=self.max_windows)
        return to_gait(images)

    def check_radar(self, radar: RadarConfig, folder: Path) -> None:
        """Raises CaptureError naming each radar field that differs from the model's."""
        ours, theirs = dataclasses.asdict(self.radar), dataclasses.asdict(radar)
        differ = [f"{k}={theirs[k]!r} (model: {ours[k]!r})" for k in ours if ours[k] != theirs[k]]
        if differ:
            raise CaptureError(
                f"{folder / METADATA}: recorded with other radar settings than the model's: "
                + ", ".join(differ)
            )


def _captures(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """An input → (its capture folder, the metadata entries to identify)."""
    if path.is_dir():
        _, captures = read_metadata(path)
        if not captures:
            raise CaptureError(f"{path / METADATA} lists no captures")
        return path, captures
    if not path.exists():
        raise CaptureError(f"{path}: no such file or folder")
    _, captures = read_metadata(path.parent)
    entry = [c for c in captures if c["file"] == path.name]
    if not entry:
        raise CaptureError(f"{path}: not listed in {path.parent / METADATA}")
    return path.parent, entry


# -- export ---------------------------------------------------------------------------------------


MODEL_FILE = "gait_model.pt"


def default_model_file(run_dir: Location) -> Path:
    """`<run_dir>/gait_model.pt` for a run on a file system; `./<run>.gait_model.pt` for one in
    an object store (a deployed model is a local file)."""
    return run_dir.local / MODEL_FILE if run_dir.is_local else Path(f"{run_dir.name}.{MODEL_FILE}")


def export(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    names: Sequence[str] | None = None,
    max_windows: int = 8,
    unknown_identities: int = 24,
    onnx: bool = True,
) -> dict[str, Any]:
    """Export a run's evaluated student (FAWA's average once engaged) with its calibration.

    Args:
        out: the model file, local (default `default_model_file(run_dir)`).
        names: identity names in label order (default id000, id001, …).
        max_windows: gait windows per capture decision (0: all).
        unknown_identities: never-seen synthetic walkers for choosing the open-set score and
            reporting it, halved into a val and a test group, each walker simulated on
            `STRANGER_WALKS` walks (synthetic datasets only).

    Returns:
        The model's metadata (also inside the file, and beside it as `<out>.json`).
    """
    run_dir = location(run_dir)
    out = Path(out) if out is not None else default_model_file(run_dir)
    config, method, record, epoch = load_run(run_dir)
    n = record["num_identities"]
    names = list(names) if names is not None else [f"id{i:03d}" for i in range(n)]
    if len(names) != n:
        raise UserError(f"{len(names)} identity names for a model of {n} identities")
    model = GaitModel.trace(method.evaluated_student(), config, names, max_windows, out)
    dataset = open_dataset(run_dataset(record, config), config)
    model.gallery = _gallery(model, Samples.from_dataset(dataset, "train"), names)
    val = Samples.from_dataset(dataset, "val")
    final = record.get("stage") == "final" and record.get("status") == "complete"
    test = Samples.from_dataset(dataset, "test", final_run=record) if final else None
    # Never-seen walkers of the same generator (synthetic data only), split by person: the first
    # half chooses the score and is never reported as its result, the second is reported only.
    first, half = config.synthetic.num_identities, unknown_identities // 2
    groups = {
        "val": range(first, first + half),
        "test": range(first + half, first + unknown_identities),
    }
    synthetic = not config.data.captures and half > 0
    walks = range(STRANGER_WALKS)
    scored = {
        split: (_walk_scores(model, _split_gait(samples)),
                synthetic and _walk_scores(model, _stranger_gait(config, walks, groups[split])))
        for split, samples in (("val", val), ("test", test)) if samples is not None
    }  # fmt: skip
    # each score's thresholds, capture by capture (what decides) and window by window (reported)
    thresholds, window_thresholds = (
        {score: threshold_at([s[score][1] for _, s in _level(scored["val"][0], level)], ACCEPT)
         for score in SCORES}
        for level in ("capture", "window")
    )  # fmt: skip
    reports = {
        score: {
            split: _score_report(_level(known, "capture"), _level(strangers or [], "capture"),
                                 score, thresholds[score])
            | {"windows": _score_report(_level(known, "window"), _level(strangers or [], "window"),
                                        score, window_thresholds[score])
               | {"threshold": window_thresholds[score]}}
            for split, (known, strangers) in scored.items()
        }
        for score in SCORES
    }  # fmt: skip
    # the score that rejects most val strangers at 95 % val acceptance (AUROC breaks ties);
    # with no strangers to choose on, today's: the classifier's probability
    chosen = max(SCORES, key=lambda s: (reports[s]["val"].get("rejected", 0),
                                        reports[s]["val"].get("auroc", 0), s == SCORES[0]))  # fmt: skip
    model.score, model.threshold = chosen, thresholds[chosen]
    model.meta |= {"score": chosen, "threshold": thresholds[chosen], "thresholds": thresholds}
    calibration: dict[str, Any] = {
        "accept_target": ACCEPT,
        "score": chosen,
        "chosen_on": "val strangers" if synthetic else "none (no never-seen walkers): the default",
        "strangers": {split: list(group) for split, group in groups.items()} if synthetic else {},
        "scores": reports,
        **{split: reports[chosen][split] for split in scored},  # the chosen score's, in short
    }
    if test is not None and synthetic:
        calibration["unknown"] = {
            "identities": len(groups["test"]),
            "captures": reports[chosen]["test"]["strangers"],
            "rejected": reports[chosen]["test"]["rejected"],
        }
    meta = model.meta | {
        "calibration": calibration,
        "run": {
            "folder": run_dir.name,
            "method": config.train.method,
            "student": config.train.student,
            "epoch": epoch,
            "config_hash": config.hash(),
            "git": record.get("git"),
            "synthetic": not config.data.captures,
        },
    }
    model.meta = meta
    model.save(out)
    if onnx:
        _onnx(model.module, config.dsp.image_size, out.with_suffix(".onnx"))
    return meta


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """torch 2.14 marks TorchScript deprecated (a FutureWarning on every call); it is still the
    format that loads in libtorch (C++) and mobile runtimes without Python, so the file is one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def _onnx(identifier: nn.Module, size: int, path: Path) -> None:
    """ONNX beside the TorchScript file, where torch's exporter works (it needs `onnx`)."""
    example = (torch.zeros(2, size, size, dtype=torch.uint8),)
    axes = {"gait": {0: "windows"}, "logits": {0: "windows"}, "embedding": {0: "windows"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter
            torch.onnx.export(
                identifier,
                example,
                str(path),
                input_names=["gait"],
                output_names=["logits", "embedding"],
                dynamic_axes=axes,
                dynamo=False,
            )
    except Exception as error:  # the exporter's failures have no common type
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "onnx" in reason.lower() and "not installed" in reason.lower():
            reason = "the onnx package is not installed (pip install 'ikd[onnx]')"
        log.warning("ONNX export skipped: %s", reason)
        path.unlink(missing_ok=True)


def _split_gait(samples: Samples) -> Iterator[tuple[str, int, np.ndarray]]:
    """(source, true label, its windows' gait images in order) per walk of a split."""
    identity, walk, window = schema.key_parts(samples.key.numpy())
    gait = samples.gait.numpy()
    for label, number in sorted(set(zip(identity.tolist(), walk.tolist(), strict=True))):
        rows = np.flatnonzero((identity == label) & (walk == number))
        yield f"identity {label} walk {number}", label, gait[rows[np.argsort(window[rows])]]


def _stranger_gait(
    config: Config, walks: Sequence[int], identities: Iterable[int]
) -> Iterator[tuple[str, int, np.ndarray]]:
    """The same for walkers the generator never showed in training (`identities`, from
    num_identities on), on the given walk numbers, simulated as the dataset's walks are (the
    fast path); their label is their identity number."""
    identities = list(identities)
    rows = {"identity": np.repeat(identities, len(walks)), "walk": np.tile(walks, len(identities))}
    batch = walk_windows_batch(rows, config=config)
    for label, number in zip(rows["identity"].tolist(), rows["walk"].tolist(), strict=True):
        mask = (batch[schema.IDENTITY] == label) & (batch[schema.WALK] == number)
        mask &= batch[schema.ERROR] == ""
        yield (f"new identity {label} walk {number}", label,
               to_gait(batch[schema.SPECTROGRAM][mask]))  # fmt: skip


def _gallery(model: GaitModel, train: Samples, names: Sequence[str]) -> Gallery:
    """The trained identities' gallery, from every training window's embedding."""
    identity, _, _ = schema.key_parts(train.key.numpy())
    gait = train.gait.numpy()
    embeddings = np.concatenate(
        [model.outputs(gait[start : start + 256])[1] for start in range(0, len(gait), 256)]
    )
    return Gallery.fit(embeddings, identity, names)


Scores = dict[str, tuple[int, float]]  # every open-set score of a capture or a window


def _walk_scores(
    model: GaitModel, walks: Iterable[tuple[str, int, np.ndarray]]
) -> list[tuple[int, Scores, list[Scores]]]:
    """(true label, the capture's scores, each window's alone) per walk with a usable window,
    on the windows a decision uses."""
    scored = []
    for _, label, gait in walks:
        chosen = gait[spread(len(gait), model.max_windows)]
        if len(chosen) and chosen.min() != chosen.max():
            logits, embeddings = model.outputs(chosen)
            windows = [capture_scores(logits[i : i + 1], embeddings[i : i + 1], model.gallery)
                       for i in range(len(chosen))]  # fmt: skip
            scored.append((label, capture_scores(logits, embeddings, model.gallery), windows))
    return scored


def _level(scored: list[tuple[int, Scores, list[Scores]]], level: str) -> list[tuple[int, Scores]]:
    """(true label, scores) per capture, or per window ("window")."""
    if level == "capture":
        return [(label, capture) for label, capture, _ in scored]
    return [(label, window) for label, _, windows in scored for window in windows]


def _score_report(
    known: list[tuple[int, Scores]],
    strangers: list[tuple[int, Scores]],
    score: str,
    threshold: float,
) -> dict[str, Any]:
    """One score on one split at its val threshold: the known captures' acceptance and accuracy,
    and, where there are strangers, the share rejected and the AUROC of telling them apart."""
    values = np.array([s[score][1] for _, s in known])
    right = np.array([s[score][0] == label for label, s in known])
    accepted = values >= threshold
    report = {
        "captures": len(known),
        "accepted": float(accepted.mean()) if len(known) else 0.0,
        "closed_set_accuracy": float(right.mean()) if len(known) else 0.0,
        "accuracy_of_accepted": float(right[accepted].mean()) if accepted.any() else 0.0,
        # right and accepted over all known captures: what a deployment gets right
        "accuracy_at_threshold": float((right & accepted).mean()) if len(known) else 0.0,
    }
    if strangers and len(known):
        theirs = [s[score][1] for _, s in strangers]
        report |= {
            "strangers": len(theirs),
            "rejected": float(np.mean(np.asarray(theirs) < threshold)),
            "auroc": auroc(values, theirs),
        }
    return report
