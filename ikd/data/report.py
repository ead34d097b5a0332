"""`ikd data report`: what a built dataset holds, what was dropped, and paired samples to look at."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ikd.data import schema
from ikd.data.dataset import PAIRS, REPORT, SAMPLES, BuiltDataset
from ikd.storage import Location


def write_report(
    dataset: BuiltDataset, max_identities: int | None = None, samples: int = 4
) -> tuple[Location, Location]:
    """Write `report.md` and `samples.png` into the dataset folder; return their paths."""
    markdown = dataset.folder / REPORT
    markdown.write_text(render_markdown(dataset.manifest))
    png = dataset.folder / SAMPLES
    _samples_png(dataset, png, max_identities, samples)
    return markdown, png


def render_markdown(manifest: dict) -> str:
    """The manifest as a Markdown report."""
    counts, teacher = manifest["counts"], manifest["teacher"]
    label = "synthetic" if manifest["synthetic"] else "real captures"
    lines = [
        f"# Dataset {manifest['preset']}-{manifest['data_hash']} ({label}, {manifest['preset']} preset)",
        "",
        "| split | pairs | walks |",
        "|---|---|---|",
        *(
            f"| {s} | {counts['per_split'][s]} | {counts['walks_per_split'][s]} |"
            for s in schema.SPLITS
        ),
        f"| all | {counts['total']} | {sum(counts['walks_per_split'].values())} |",
        "",
    ]
    per_identity = counts["per_identity"]
    for split in schema.SPLITS:
        values = [c[split] for c in per_identity.values()]
        lines.append(
            f"- {split}: {min(values)}–{max(values)} pairs per identity over {len(values)} identities"
        )
    lines += [
        "",
        f"Teacher: {teacher['source']}; face accuracy {teacher['face_accuracy_val']:.3f} on val "
        f"({teacher['face_accuracy_train']:.3f} train); backbone {teacher['backbone_sha256']}.",
        "",
        "Wall time per stage: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in manifest["seconds"].items())
        + ".",
        f"Size on disk: {manifest['bytes_on_disk'] / 2**20:.1f} MiB.",
        "",
        f"## Dropped records: {len(manifest['dropped'])}",
        "",
    ]
    reasons = Counter(_reason(d["error"]) for d in manifest["dropped"])
    lines += [f"- {count} × {reason}" for reason, count in reasons.most_common()]
    lines += [
        "",
        *(
            f"- identity {d['identity']} walk {d['walk']} window {d['window']}: {d['error']}"
            for d in manifest["dropped"][:50]
        ),
    ]
    if len(manifest["dropped"]) > 50:
        lines.append(f"- … {len(manifest['dropped']) - 50} more in manifest.json")
    return "\n".join(lines) + "\n"


def _reason(error: str) -> str:
    """The kind of failure, without the file or walk that had it."""
    text = error.split(": ", 1)[-1]
    return "".join(c for c in text if not c.isdigit()).strip()


def _samples_png(
    dataset: BuiltDataset, path: Location, max_identities: int | None, samples: int
) -> None:
    shapes, manifest = dataset.shapes, dataset.manifest
    columns = [schema.KEY, schema.IDENTITY, schema.SPECTROGRAM, schema.FACE]
    table = dataset.read("train", columns, stage=PAIRS)
    identities = sorted(set(table[schema.IDENTITY].tolist()))[:max_identities]
    figure = Figure(figsize=(2.0 * samples * 2, 1.9 * len(identities) + 0.5))
    axes = figure.subplots(len(identities), 2 * samples, squeeze=False)
    for r, identity in enumerate(identities):
        rows = np.flatnonzero(table[schema.IDENTITY] == identity)
        chosen = rows[np.linspace(0, len(rows) - 1, samples).astype(int)] if len(rows) else []
        for c, row in enumerate(chosen):
            face = shapes.decode_face([table[schema.FACE][row]])[0].transpose(1, 2, 0)
            spectrogram = shapes.decode_spectrogram([table[schema.SPECTROGRAM][row]])[0, 0]
            axes[r, 2 * c].imshow(face)
            axes[r, 2 * c + 1].imshow(spectrogram, origin="lower", cmap="jet", vmin=0, vmax=1)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"id {identity}")
    label = "synthetic" if manifest["synthetic"] else "real"
    figure.suptitle(
        f"{label} dataset {manifest['preset']}-{manifest['data_hash']}: training pairs (face | micro-Doppler)"
    )
    figure.tight_layout()
    png = io.BytesIO()
    FigureCanvasAgg(figure).print_png(png)
    path.write_bytes(png.getbuffer())
