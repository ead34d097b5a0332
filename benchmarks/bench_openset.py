"""Open-set deployment (issue 25): each score's stranger rejection against known acceptance, and
enrolling never-seen walkers without retraining.

    python benchmarks/bench_openset.py RUN [RUN …] [--unknown 24] [--enrol 12] [--out DIR]

Each RUN is a finished final run of a synthetic dataset (e.g. Table 3's Baseline and IdentityKD,
seed 0). It is exported as `ikd export RUN --unknown N` does (`ikd.deploy.export`: the score and
each score's threshold chosen on val, with the val group of strangers), then, on the test split:

1. **Curves.** Each score's share of the test group of strangers rejected against the share of
   the known walkers' test captures accepted, as the threshold sweeps (capture level), with the
   95 % acceptance the model is calibrated to marked: `openset_curves.png` (the scores behind
   it: `curves` in `openset.json`).
2. **Enrolment.** `--enrol` more never-seen walkers (the identities after the stranger groups),
   each enrolled into the model's gallery from 1, 2 and 4 captures (the windows a decision uses:
   what `ikd enroll` does), then identified on 8 other walks: rank-1 among everyone in the
   gallery, and named right at the model's val threshold. Beside it, the known walkers' test captures (closed-set
   rank-1, named right at the threshold) and the test strangers' rejection, before and after.
   Both embedding scores (the logit scores cannot name an enrolled person): `openset.json`.

The model's windows are computed once per walk; every gallery is scored on the same outputs.
"""

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

ENROL_CAPTURES = (1, 2, 4)  # enrolled from walks 0, 0–1, 0–3 of each newcomer
PROBE_WALKS = 8  # then identified on walks 4–11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="final run folders")
    parser.add_argument("--unknown", type=int, default=24, help="strangers: val and test groups")
    parser.add_argument("--enrol", type=int, default=12, help="never-seen walkers to enrol")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/openset"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for run in args.runs:
        start = time.perf_counter()
        results[run] = _run(Path(run), args)
        results[run]["seconds"] = round(time.perf_counter() - start, 1)
        _print(run, results[run])
    summary = _summary_by_method(results)
    (args.out / "openset.json").write_text(
        json.dumps({"summary": summary, "runs": results}, indent=2) + "\n"
    )
    _curves(results, args.out)
    print(f"\nwritten: {args.out}/openset.json, openset_curves.png")


def _run(run: Path, args: argparse.Namespace) -> dict:
    from ikd.data.dataset import open_dataset
    from ikd.deploy import STRANGER_WALKS, GaitModel, _split_gait, _stranger_gait, export
    from ikd.openset import EMBEDDING_SCORES, SCORES, capture_scores
    from ikd.radar.dsp import spread
    from ikd.train.data import Samples
    from ikd.train.driver import load_run
    from ikd.train.runs import run_dataset

    with tempfile.TemporaryDirectory(prefix="openset-") as folder:
        meta = export(run, Path(folder) / "model.pt", unknown_identities=args.unknown, onnx=False)
        model = GaitModel.load(Path(folder) / "model.pt")
    config, _, record, _ = load_run(run)
    dataset = open_dataset(run_dataset(record, config), config)
    test = Samples.from_dataset(dataset, "test", final_run=record)
    strangers = meta["calibration"]["strangers"]["test"]
    first = max(strangers) + 1
    newcomers = list(range(first, first + args.enrol))

    def outputs(walks) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(label, logits, embeddings) per walk, on the windows a decision uses."""
        out = []
        for _, label, gait in walks:
            chosen = gait[spread(len(gait), model.max_windows)]
            if len(chosen) and chosen.min() != chosen.max():
                out.append((label, *model.outputs(chosen)))
        return out

    known = outputs(_split_gait(test))
    stranger = outputs(_stranger_gait(config, range(STRANGER_WALKS), strangers))  # export's
    enrolment = outputs(_stranger_gait(config, range(max(ENROL_CAPTURES)), newcomers))
    probe_walks = range(max(ENROL_CAPTURES), max(ENROL_CAPTURES) + PROBE_WALKS)
    probes = outputs(_stranger_gait(config, probe_walks, newcomers))

    def scores(walks, gallery) -> list[tuple[int, dict]]:
        return [(label, capture_scores(logits, embeddings, gallery))
                for label, logits, embeddings in walks]  # fmt: skip

    thresholds = meta["thresholds"]
    known0, stranger0 = scores(known, model.gallery), scores(stranger, model.gallery)
    curves = {
        score: {"known": [round(s[score][1], 6) for _, s in known0],
                "strangers": [round(s[score][1], 6) for _, s in stranger0]}
        for score in SCORES
    }  # fmt: skip
    result = {
        "run": run.name,
        "method": meta["run"]["method"],
        "score": meta["score"],
        "threshold": meta["threshold"],
        "test_known_captures": len(known),
        "test_strangers": {"identities": len(strangers), "captures": len(stranger)},
        "val_strangers": len(meta["calibration"]["strangers"]["val"]),
        "calibration": {score: _summary(meta["calibration"]["scores"][score]) for score in SCORES},
        "curves": curves,
        "enrolment": {"identities": len(newcomers), "probes": len(probes),
                      "scores": {}},
    }  # fmt: skip
    for score in EMBEDDING_SCORES:
        threshold = thresholds[score]
        rows = [_enrolled(model.gallery, known0, stranger0, None, score, threshold, 0)]
        for count in ENROL_CAPTURES:
            gallery = model.gallery
            for person in newcomers:
                windows = [e for label, _, e in enrolment if label == person][:count]
                gallery = gallery.enroll(f"new{person}", np.concatenate(windows))
            rows.append(
                _enrolled(gallery, scores(known, gallery), scores(stranger, gallery),
                          scores(probes, gallery), score, threshold, count)
            )  # fmt: skip
        result["enrolment"]["scores"][score] = rows
    return result


def _summary(report: dict) -> dict:
    """A score's export report, in short: val (what chose it) and test (what it gives)."""
    test = report["test"]
    keys = ("accepted", "rejected", "auroc", "closed_set_accuracy", "accuracy_of_accepted",
            "accuracy_at_threshold")  # fmt: skip
    return {key: test.get(key) for key in keys} | {
        "window_rejected": test["windows"].get("rejected"),
        "window_auroc": test["windows"].get("auroc"),
        "val_rejected": report["val"].get("rejected"),
        "val_auroc": report["val"].get("auroc"),
    }


def _enrolled(gallery, known, strangers, probes, score, threshold, count) -> dict:
    """One gallery's results under one embedding score at the model's val threshold."""

    def rates(scored, name_of) -> tuple[float, float]:
        right = np.array([gallery.names[s[score][0]] == name_of(label) for label, s in scored])
        accepted = np.array([s[score][1] >= threshold for _, s in scored])
        return float(right.mean()), float((right & accepted).mean())

    known_rank1, known_named = rates(known, lambda label: gallery.names[label])
    row = {
        "captures_per_person": count,
        "gallery": len(gallery.names),
        "known_rank1": known_rank1,
        "known_named_at_threshold": known_named,
        "known_accepted": float(np.mean([s[score][1] >= threshold for _, s in known])),
        "strangers_rejected": float(np.mean([s[score][1] < threshold for _, s in strangers])),
    }
    if probes is not None:
        rank1, named = rates(probes, lambda label: f"new{label}")
        row |= {"enrolled_rank1": rank1, "enrolled_named_at_threshold": named}
    return row


def _summary_by_method(results: dict) -> dict:
    """Per method, over its runs (seeds): each score's test rejection and AUROC, how often val
    chose it, and enrolling from 4 captures by Mahalanobis — mean, min and max."""

    def spread(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}

    methods: dict[str, list[dict]] = {}
    for result in results.values():
        methods.setdefault(result["method"], []).append(result)
    summary = {}
    print("\n## Over the runs of each method (mean [min, max])\n")
    print("| method | runs | score | chosen on val | test strangers rejected | test AUROC |")
    print("|---|---|---|---|---|---|")
    for method, runs in methods.items():
        summary[method] = {"runs": len(runs), "scores": {}}
        for score in runs[0]["calibration"]:
            rejected = spread([r["calibration"][score]["rejected"] for r in runs])
            area = spread([r["calibration"][score]["auroc"] for r in runs])
            chosen = sum(r["score"] == score for r in runs)
            summary[method]["scores"][score] = {"rejected": rejected, "auroc": area,
                                                "chosen": chosen}  # fmt: skip
            print(f"| {method} | {len(runs)} | {score} | {chosen} | {_range(rejected, '.1%')} | "
                  f"{_range(area, '.3f')} |")  # fmt: skip
        four = [r["enrolment"]["scores"]["mahalanobis"][-1] for r in runs]
        none = [r["enrolment"]["scores"]["mahalanobis"][0] for r in runs]
        summary[method]["enrolled_from_4"] = {
            key: spread([row[key] for row in four])
            for key in ("enrolled_rank1", "enrolled_named_at_threshold", "known_rank1",
                        "strangers_rejected")
        } | {"known_rank1_before": spread([row["known_rank1"] for row in none]),
             "strangers_rejected_before": spread([row["strangers_rejected"] for row in none])}  # fmt: skip
    return summary


def _range(values: dict, form: str) -> str:
    return f"{values['mean']:{form}} [{values['min']:{form}}, {values['max']:{form}}]"


def _print(run: str, result: dict) -> None:
    print(f"\n## {result['method']} ({run}), chosen score {result['score']}, "
          f"{result['seconds']} s\n")  # fmt: skip
    print(f"Test: {result['test_known_captures']} known captures, "
          f"{result['test_strangers']['captures']} of {result['test_strangers']['identities']} "
          "strangers.\n")  # fmt: skip
    print(f"Val ({result['val_strangers']} strangers) chose the score; test reports it.\n")
    print("| score | val: rejected | val: AUROC | accepted | strangers rejected | AUROC | "
          "closed-set acc | acc of accepted | window rejected | window AUROC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for score, c in result["calibration"].items():
        print(f"| {score} | {c['val_rejected']:.1%} | {c['val_auroc']:.3f} | "
              f"{c['accepted']:.1%} | {c['rejected']:.1%} | {c['auroc']:.3f} | "
              f"{c['closed_set_accuracy']:.1%} | {c['accuracy_of_accepted']:.1%} | "
              f"{c['window_rejected']:.1%} | {c['window_auroc']:.3f} |")  # fmt: skip
    e = result["enrolment"]
    print(f"\nEnrolling {e['identities']} never-seen walkers ({e['probes']} test captures):\n")
    print("| score | captures each | gallery | new: rank-1 | new: named at threshold | known: "
          "rank-1 | known: named at threshold | strangers rejected |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for score, rows in e["scores"].items():
        for r in rows:
            new = (f"{r['enrolled_rank1']:.1%} | {r['enrolled_named_at_threshold']:.1%}"
                   if "enrolled_rank1" in r else "— | —")  # fmt: skip
            print(f"| {score} | {r['captures_per_person'] or 'none'} | {r['gallery']} | {new} | "
                  f"{r['known_rank1']:.1%} | {r['known_named_at_threshold']:.1%} | "
                  f"{r['strangers_rejected']:.1%} |")  # fmt: skip


def _curves(results: dict, out: Path) -> None:
    """Rejection against acceptance per score and run, one panel each (the scores behind it:
    `curves` in openset.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), squeeze=False)
    for axis in axes.flat[len(results) :]:
        axis.set_visible(False)
    for axis, (run, result) in zip(axes.flat, results.items(), strict=False):
        for score, values in result["curves"].items():
            known, strangers = np.asarray(values["known"]), np.asarray(values["strangers"])
            thresholds = np.unique(np.concatenate([known, strangers, [np.inf]]))
            accepted = [(known >= t).mean() for t in thresholds]
            rejected = [(strangers < t).mean() for t in thresholds]
            chosen = " (chosen)" if score == result["score"] else ""
            axis.plot(accepted, rejected, drawstyle="steps-post", label=score + chosen)
        axis.axvline(0.95, color="grey", linestyle=":", linewidth=1)
        axis.axhline(0.80, color="grey", linestyle="--", linewidth=1)
        axis.set(xlim=(0.5, 1.0), ylim=(0, 1.02), xlabel="known test captures accepted",
                 ylabel="test strangers rejected",
                 title=f"{result['method']}, {Path(run).name.rsplit('-', 1)[-1]}")  # fmt: skip
        axis.legend(loc="lower left", fontsize=8)
    figure.suptitle("Open set, capture level (synthetic laptop preset; dotted: the 95 % "
                    "acceptance calibrated on val, dashed: the 80 % goal)", fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(out / "openset_curves.png", dpi=120)


if __name__ == "__main__":
    main()
