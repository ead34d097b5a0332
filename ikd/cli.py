"""The `ikd` command line. User mistakes print one line (`ikd: error: …`) and exit 2."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ikd.allocator import keep_freed_memory
from ikd.config import BUILDER, PRESETS, STAGES, Config, load_config, split_override
from ikd.errors import Terminated, UserError, raise_if_stopped, stop, stopped

if TYPE_CHECKING:
    from ikd.storage import Location

log = logging.getLogger("ikd")
_LARGE = 2 * 2**30  # bytes of captures written without --force


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ikd` command line; returns the exit status."""
    parser = _parser()
    # Overrides may stand anywhere among the options: collect the key=value pairs argparse left.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*getattr(args, "overrides", []), *extra]
    keep_freed_memory()  # before anything allocates: training steps fault less (ikd.allocator)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Ctrl+C through ikd's handler, which also remembers it came (ikd.errors.stop) — unless
    # SIGINT is ignored (a background job of a script) or not Python's to handle
    main_thread = threading.current_thread() is threading.main_thread()
    ours = main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, stop) if ours else None
    try:
        status = args.handler(args) or 0
        raise_if_stopped()  # one lost after the last check (a report, a build)
        return status
    except UserError as error:
        print(f"ikd: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable output folder, a full disk, a path that is a file
        where = f"{error.filename}: " if error.filename else ""
        print(f"ikd: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        if Terminated.caused(interrupt):  # SIGTERM, also when it came during a Ray call
            print("ikd: terminated (SIGTERM)", file=sys.stderr)
            return 143
        print("ikd: interrupted", file=sys.stderr)
        return 130
    finally:
        stopped()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ikd",
        description="IdentityKD: person recognition from mmWave-radar gait, distilled from a frozen face teacher.",
        epilog="Config overrides are dotted key=value pairs, e.g. radar.num_chirps=100 dsp.image_size=64.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=lambda _: parser.print_help())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="the main job: the dataset, every paper artefact's study, results/<preset>/",
        description="Regenerate the paper's artefacts on a preset: spectrogram previews, the "
        "paired face-gait dataset (built or reused) and its report, then the studies of Table 3, "
        "Table 4, Table 5, Fig. 4, the joint search and Table 3 on a second population (tune on "
        "val, final runs over seeds, "
        "reports), each resumable: killed at any point, the same command continues. Says up front "
        "how long it will take here; prints Table 3 at the end. Run records go to "
        "<results>/runs/, the artefacts to <results>/<study>/. The smoke preset runs each study's "
        "test budget, a taste of the same path in minutes.",
    )
    _common(run)
    _ray_options(run)
    run.add_argument(
        "--results",
        default=None,
        help="results folder or URI, e.g. s3://bucket/ikd/results (default: results/<preset>)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="each study's test budget (the default on the smoke preset)",
    )
    run.add_argument(
        "--estimate",
        action="store_true",
        help="say how long the regeneration would take here (per study, from its runs left) "
        "and stop: builds the dataset if missing, trains nothing",
    )
    run.add_argument(
        "--out",
        default=None,
        help="previews go to <out>/preview, a folder or a URI (default: runs/<preset>; "
        "<results>/preview when the results are in an object store)",
    )
    run.set_defaults(handler=_run)

    data = commands.add_parser("data", help="captures and datasets").add_subparsers(
        title="data commands", metavar="COMMAND", required=True
    )
    simulate = data.add_parser(
        "simulate",
        help="write synthetic walks as DCA1000 .bin captures plus metadata.json",
        description="Simulate the preset's walkers with the exact FMCW path and write them as a capture "
        "folder laid out like a real recording (see README). Size it with overrides, e.g. "
        "synthetic.num_identities=4 synthetic.walks_per_identity=2.",
    )
    _common(simulate)
    simulate.add_argument(
        "--out", type=Path, default=None, help="capture folder (default: captures/<preset>)"
    )
    simulate.add_argument(
        "--force", action="store_true", help=f"write even when it takes over {_LARGE // 2**30} GiB"
    )
    simulate.add_argument(
        "--identities",
        type=_span,
        default=None,
        metavar="A:B",
        help="walkers A … B−1 instead of the preset's (≥ synthetic.num_identities: walkers a "
        "model trained on the preset's dataset never saw, for `ikd identify`)",
    )
    simulate.set_defaults(handler=_simulate)

    preview = data.add_parser(
        "preview",
        help="PNG previews of micro-Doppler spectrograms (grid + one labelled plot)",
        description="Render spectrograms of a capture folder, or of synthetic walks simulated in-stream "
        "when no folder is given.",
    )
    _common(preview)
    preview.add_argument(
        "--captures", type=Path, default=None, help="capture folder with metadata.json"
    )
    preview.add_argument(
        "--out", type=Path, default=None, help="output folder (default: previews/<preset>)"
    )
    preview.add_argument(
        "--identities", type=int, default=6, help="rows: first N identities (default 6)"
    )
    preview.add_argument("--walks", type=int, default=4, help="columns: first N walks (default 4)")
    preview.set_defaults(handler=_preview)

    build = data.add_parser(
        "build",
        help="build the paired face–gait Parquet dataset with Ray Data (resumable, idempotent)",
        description="Captures (synthetic in-stream, or data.captures=FOLDER) → gait windows + faces → "
        "teacher outputs for K views → Parquet under data.root, split by walk. Re-running a finished "
        "build does nothing; an interrupted one resumes at its first unfinished stage.",
    )
    _common(build)
    _ray_options(build)
    build.set_defaults(handler=_build)

    report = data.add_parser(
        "report",
        help="counts, dropped records and a PNG of paired samples of a built dataset",
        description="Write report.md and samples.png into the dataset folder and print the report.",
    )
    _common(report)
    report.add_argument(
        "--dataset", default=None, help="dataset folder, a path or a URI (default: the config's)"
    )
    report.set_defaults(handler=_report)

    teacher = commands.add_parser("teacher", help="the frozen FaceNet teacher").add_subparsers(
        title="teacher commands", metavar="COMMAND", required=True
    )
    train = teacher.add_parser(
        "train",
        help="train the teacher on the dataset's training faces (when no VGGFace2 weights are cached)",
        description="Builds the dataset's pairs stage if needed, then resolves the teacher: the cached "
        "VGGFace2 backbone, or InceptionResnetV1 trained on the training split's faces only; then fits "
        "the linear identity classifier (early-stopped on val) and records the teacher's provenance.",
    )
    _common(train)
    _ray_options(train)
    train.set_defaults(handler=_teacher_train)

    fit = commands.add_parser(
        "train",
        help="train a method on the built dataset with Ray Train; evaluate gait-only on val",
        description="Train one method (Table 3) on the preset's dataset with `train.workers` Ray Train "
        "workers (DDP: gloo on CPUs, nccl on GPUs; a dead worker is restarted and the run resumes "
        "from its last checkpoint). The run folder <train.runs_root>/<study>/<stage>/<variant>-"
        "<run hash>-seed<seed> holds config.json, run.json, metrics.jsonl (a line per epoch) and "
        "the last two checkpoints. A finished run is not trained again; an interrupted one resumes. "
        "Each method's settings are its own config section: identitykd.tau=0.1, "
        "vanilla_kd.temperature=2, cfkd.temperature=0.07, mkd.margin=0.3 (README, Settings).",
    )
    _common(fit)
    _ray_options(fit)
    fit.add_argument(
        "--method",
        default=None,
        help="baseline | vanilla_kd | cfkd | mkd | identitykd (default: train.method, identitykd)",
    )
    fit.add_argument("--study", default="train", help="run folder group (default: train)")
    fit.add_argument(
        "--stage",
        choices=list(STAGES),
        default="final",
        help="final (default) or tune: a tuning run never reads the test split",
    )
    fit.add_argument(
        "--name", default=None, help="variant name in the run folder (default: method[-student])"
    )
    fit.add_argument(
        "--dataset", default=None, help="dataset folder, a path or a URI (default: the config's)"
    )
    fit.add_argument(
        "--test", action="store_true", help="evaluate the test split once when done (test.json)"
    )
    fit.add_argument(
        "--no-ray", action="store_true", help="train in this process, one worker, without Ray"
    )
    fit.set_defaults(handler=_train)

    study = commands.add_parser(
        "study",
        help="tune and train one paper artefact's study (studies/*.py)",
        description="Run a study file's stages on a preset: tune (Ray Tune: Optuna's TPE proposes, "
        "ASHA stops, on val/acc; every trial an ordinary tuning run folder), final (each "
        "variant's best configuration × seeds, the test split read once per run), then report "
        "(tables, figures and provenance in <results>/<study>/, rendered from the run records). "
        "A missing dataset is built first; a finished trial or final run is never trained "
        "again, so the same command resumes. The overrides apply to every run of the study "
        "(your own data: data.captures=FOLDER). Joins the Ray cluster named by RAY_ADDRESS, "
        "else starts a local one.",
    )
    study.add_argument(
        "path", type=Path, metavar="STUDY", help="a study file, e.g. studies/table3_methods.py"
    )
    _common(study)
    _ray_options(study)
    study.add_argument(
        "--stage",
        choices=["tune", "final", "report", "all"],
        default="all",
        help="tune, final, report, or all (default): each is idempotent",
    )
    study.add_argument(
        "--results",
        default=None,
        help="results root, a folder or a URI (default: results/<preset>, where `ikd run` puts "
        "them)",
    )
    study.add_argument(
        "--storage",
        default=None,
        metavar="PATH|URI",
        help="where the study keeps its run folders and Tune's experiments: a path or a URI "
        "(s3://, gs://, file://, any fsspec scheme) (default: <results>/runs)",
    )
    study.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="the Optuna RDB the trials are mirrored into, for optuna-dashboard "
        "(default: sqlite:///<storage>/<study>/optuna.db; for storage in an object store, a "
        "local working copy of <storage>/<study>/optuna.db, written back after each trial)",
    )
    study.add_argument(
        "--quick",
        action="store_true",
        help="the study file's test budget (test_trials, test_seeds, test_variants)",
    )
    study.set_defaults(handler=_study)

    report = commands.add_parser(
        "report",
        help="re-render studies' results from their run records",
        description="Render <results>/<study>/ again from the run records (no training): tables, "
        "figures, runs.csv, provenance, and the overview README.md beside them. Names a study "
        "(table3_methods) or its results folder; without one, every study found in --results "
        "or one level below it (results/laptop/…).",
    )
    report.add_argument("studies", nargs="*", metavar="STUDY", help="studies to render")
    report.add_argument(
        "--results", default="results", help="results root, a folder or a URI (default: results)"
    )
    _verbose(report)
    report.set_defaults(handler=_study_report)

    evaluate = commands.add_parser(
        "eval",
        help="gait-only metrics of a run's newest checkpoint on val or test",
        description="Evaluate a run folder's newest checkpoint on a split, from gait alone. The test "
        "split is evaluated once: test.json is written the first time and shown afterwards.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (a path or a URI)")
    evaluate.add_argument("--split", choices=["val", "test"], default="val")
    _verbose(evaluate)
    evaluate.set_defaults(handler=_eval)

    export = commands.add_parser(
        "export",
        help="a run's gait-only student as one model file, with its open-set score and gallery",
        description="Write a run's evaluated student (no face model) as TorchScript — and ONNX "
        "beside it where torch's exporter works — holding the identity names, the radar and DSP "
        "settings its captures must have, the gallery of the trained identities' mean gait "
        "embeddings, and an open-set score with its 'unknown' threshold, both chosen on val: "
        "each score's threshold accepts 95% of known walkers' val captures, and the score kept "
        "rejects most of a val group of walkers never seen in training (new synthetic "
        "identities). For a finished final run it also reports every score on test, with a "
        "test group of such walkers.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (a path or a URI)")
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        help="model file (default: RUN_DIR/gait_model.pt; ./<run>.gait_model.pt for a run in "
        "an object store)",
    )
    export.add_argument(
        "--names", type=Path, default=None, help="identity names, one per line in label order"
    )
    export.add_argument(
        "--max-windows",
        type=int,
        default=8,
        help="gait windows per capture decision, evenly spread (0: all; default 8)",
    )
    export.add_argument(
        "--unknown",
        type=int,
        default=24,
        help="never-seen synthetic walkers, half to choose the open-set score on (val), half "
        "to report it (test) (default 24)",
    )
    _verbose(export)
    export.set_defaults(handler=_export)

    identify = commands.add_parser(
        "identify",
        help="who walked: identity, score or 'unknown' per radar capture",
        description="Run the DSP and an exported student on DCA1000 captures — .bin files "
        "(their folder's metadata.json gives frames and radar settings) or capture folders — and "
        "print one decision per capture: its windows scored by the model's open-set score, the "
        "person it points at when the score reaches the model's threshold, else 'unknown'. A capture "
        "that cannot be read is named and the rest go on (exit status 1); a folder recorded "
        "with other radar settings than the model's is refused, naming the fields.",
    )
    identify.add_argument("model", type=Path, metavar="MODEL", help="an `ikd export` model file")
    identify.add_argument("inputs", nargs="+", type=Path, metavar="CAPTURE", help=".bin or folder")
    identify.add_argument("--json", action="store_true", help="one JSON list on stdout")
    identify.add_argument("--windows", action="store_true", help="each window's own best identity")
    _verbose(identify)
    identify.set_defaults(handler=_identify)

    enroll = commands.add_parser(
        "enroll",
        help="add a person to an exported model's gallery from captures, or remove one",
        description="Add NAME to the model file's gallery from their captures (their gait "
        "embeddings' mean): `ikd identify` then names them, with no retraining. A model that "
        "decided by the classifier's score switches to the embedding score that rejected most "
        "never-seen walkers on val. Any unreadable capture, a name enrolled already or "
        "captures of other radar settings refuse the enrolment, naming why; the file is "
        "written whole or not at all.",
    )
    enroll.add_argument("model", type=Path, metavar="MODEL", help="an `ikd export` model file")
    enroll.add_argument("inputs", nargs="*", type=Path, metavar="CAPTURE", help=".bin or folder")
    who = enroll.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", help="the person the captures show")
    who.add_argument("--remove", metavar="NAME", help="take NAME out of the gallery")
    _verbose(enroll)
    enroll.set_defaults(handler=_enroll)

    gallery = commands.add_parser(
        "gallery",
        help="who an exported model knows",
        description="List the people in a model file's gallery: trained, or enrolled later, "
        "with the gait windows their mean embedding averages.",
    )
    gallery.add_argument("model", type=Path, metavar="MODEL", help="an `ikd export` model file")
    _verbose(gallery)
    gallery.set_defaults(handler=_gallery)
    return parser


def _export(args: argparse.Namespace) -> None:
    from ikd.deploy import default_model_file, export
    from ikd.storage import location

    names = None
    if args.names is not None:
        names = [line.strip() for line in args.names.read_text().splitlines() if line.strip()]
    if args.max_windows < 0 or args.unknown < 0:
        raise UserError("--max-windows and --unknown must be ≥ 0")
    out = args.out or default_model_file(location(args.run_dir))
    meta = export(
        args.run_dir,
        out,
        names=names,
        max_windows=args.max_windows,
        unknown_identities=args.unknown,
    )
    calibration = meta["calibration"]
    log.info(
        "wrote %s (%d identities; open-set score %s, chosen on %s; threshold %.3f: %.1f%% of "
        "val captures accepted)",
        out,
        len(meta["identities"]),
        meta["score"],
        calibration["chosen_on"],
        meta["threshold"],
        100 * calibration["val"]["accepted"],
    )
    if "test" in calibration:
        test = calibration["test"]
        log.info(
            "test: %.1f%% of known captures accepted; closed-set accuracy %.1f%%, %.1f%% at the "
            "threshold (accepted and right)",
            100 * test["accepted"],
            100 * test["closed_set_accuracy"],
            100 * test["accuracy_at_threshold"],
        )
    if "unknown" in calibration:
        unknown = calibration["unknown"]
        log.info(
            "never-seen walkers: %.1f%% of %d captures rejected as unknown",
            100 * unknown["rejected"],
            unknown["captures"],
        )


def _enroll(args: argparse.Namespace) -> None:
    from ikd.deploy import GaitModel

    model = GaitModel.load(args.model)
    if args.remove is not None:
        if args.inputs:
            raise UserError("--remove takes no captures")
        model.remove(args.remove)
        model.save()
        log.info("removed %s from %s", args.remove, args.model)
        return
    if not args.inputs:
        raise UserError(f"no captures to enrol {args.name!r} from")
    count = model.enroll(args.name, args.inputs)
    model.save()
    log.info("enrolled %s from %d capture(s) in %s (%d in its gallery; score %s)", args.name,
             count, args.model, len(model.gallery.names), model.score)  # fmt: skip


def _gallery(args: argparse.Namespace) -> None:
    from ikd.deploy import GaitModel

    model = GaitModel.load(args.model)
    if model.gallery is None:
        raise UserError(f"{args.model}: a model without a gallery (export the run again)")
    print("name\tsource\twindows")
    gallery = model.gallery
    for name, count, enrolled in zip(gallery.names, gallery.counts, gallery.enrolled, strict=True):
        print(f"{name}\t{'enrolled' if enrolled else 'trained'}\t{count}")


def _identify(args: argparse.Namespace) -> int:
    import json

    from ikd.deploy import GaitModel

    model = GaitModel.load(args.model)
    logging.getLogger("ikd.radar.captures").setLevel(logging.ERROR)  # each bad capture once, below
    decisions = []
    for decision in model.identify(args.inputs, windows=args.windows):
        decisions.append(decision)
        if decision.error:
            print(f"ikd: {decision.error}", file=sys.stderr)
        elif not args.json:
            print(f"{decision.source}\t{decision.identity}\t{decision.confidence:.3f}", flush=True)
            pairs = zip(decision.window_identities, decision.window_confidences, strict=True)
            for number, (name, confidence) in enumerate(pairs):
                print(f"  window {number}\t{name}\t{confidence:.3f}")
    if args.json:
        print(json.dumps([d.to_dict() for d in decisions], indent=1))
    return 1 if any(d.error for d in decisions) else 0


def _ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)"
    )


def _verbose(parser: argparse.ArgumentParser) -> None:
    """-v also after the command (`ikd eval RUN -v`), without resetting the top-level one."""
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=list(PRESETS), default="laptop", help="sizes (default: laptop)"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    _verbose(parser)


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.preset, args.overrides)
    if BUILDER.fullmatch(config.train.student):  # a student of one's own: importable here
        from ikd.models.students import builder

        builder(config.train.student)
    log.info("config %s (preset %s)", config.hash(), config.preset)
    return config


def _job_roots(config: Config, args: argparse.Namespace, **roots: object) -> None:
    """Inside a Ray job, the data root, the run root when set, and the given roots must be
    absolute (`ikd.cluster.require_absolute_in_job`); each one in an object store must name a
    bucket that answers (`ikd.storage.check_store`), before anything starts."""
    from ikd.cluster import require_absolute_in_job
    from ikd.storage import check_store

    given = dict(map(split_override, args.overrides))
    runs = {"train.runs_root": given["train.runs_root"]} if "train.runs_root" in given else {}
    named = {"data.root": config.data.root, **runs, **roots}
    require_absolute_in_job(named)
    for root in named.values():
        if root is not None:
            check_store(str(root))


def _run(args: argparse.Namespace) -> None:
    from ikd.data.dataset import open_dataset
    from ikd.provenance import hardware
    from ikd.report.compare import write_comparison
    from ikd.storage import location, staged
    from ikd.tune.regenerate import made_elsewhere, made_here_beside, regenerate, results_tree
    from ikd.tune.stages import RUNS

    config = _config(args)
    chosen = args.results or f"results/{config.preset}"
    # previews: <runs root>/<preset>/preview, or <results>/preview where the results are a URI
    out = args.out or (chosen if "://" in chosen else f"{config.train.runs_root}/{config.preset}")
    _job_roots(config, args, results=chosen, out=out)
    elsewhere = made_elsewhere(location(chosen))
    if elsewhere is not None:  # said before a build of minutes decides it
        beside = " or ".join(str(tree) for tree in made_here_beside(location(chosen)))
        log.warning(
            "%s was made on another CPU (%s; here: %s): this build will likely train a teacher "
            "of other bits, and then the regeneration %s rather than continuing %s (README, "
            "\"What is reproducible\")",
            chosen, elsewhere, hardware()["cpu"],
            f"continues {beside}, made on this CPU, if this build trains its teacher, else "
            "starts a tree of its own" if beside else "starts a tree of its own",
            chosen,
        )  # fmt: skip
    captures = Path(config.data.captures) if config.data.captures else None
    title = str(captures) if captures else f"synthetic, {config.preset} preset"
    if not args.estimate:
        with staged(location(out) / "preview") as previews:
            _render(config, captures, previews, 6, 4, title)
    folder = _build_dataset(config, args, "views")
    if not args.estimate:
        _print_report(folder)
    dataset = open_dataset(folder)
    results, reference = results_tree(location(chosen), dataset)
    runs = regenerate(
        preset=args.preset,
        overrides=dict(map(split_override, args.overrides)),
        results_root=results,
        quick=args.quick or args.preset == "smoke",
        train_windows=dataset.manifest["counts"]["per_split"]["train"],
        only_estimate=args.estimate,
    )
    if args.estimate:
        return
    print((runs[0].results / "table.md").read_text())
    if reference is not None:
        with (
            staged(results, skip=(RUNS,)) as here,
            staged(reference, skip=(RUNS,)) as there,
        ):
            print(
                write_comparison(
                    here,
                    there,
                    f"This regeneration against {reference.name}",
                    [run.study.name for run in runs],
                    names=(results.name, reference.name),
                )
            )
    log.info("results: %s", results)


def _build(args: argparse.Namespace) -> None:
    _build_dataset(_config(args), args, "views")


def _teacher_train(args: argparse.Namespace) -> None:
    from ikd.data.dataset import TEACHER
    from ikd.face.teacher import read_teacher_info

    folder = _build_dataset(_config(args), args, "teacher")
    info = read_teacher_info(folder / TEACHER)
    log.info("teacher: %s; face accuracy %.3f on val", info.source, info.face_accuracy_val)


def _train(args: argparse.Namespace) -> None:
    from ikd.storage import absolute
    from ikd.train.driver import train_driver

    if args.method is not None:
        args.overrides = [f"train.method={args.method}", *args.overrides]
    config = _config(args)  # a mistake in the overrides is reported before anything starts
    _job_roots(config, args, **{"train.runs_root": config.train.runs_root}, dataset=args.dataset)
    start = time.perf_counter()
    if not args.no_ray:
        from ikd.cluster import init_ray

        init_ray(args.num_cpus)
    run_dir = train_driver(
        {
            "preset": args.preset,
            "study": args.study,
            "stage": args.stage,
            "variant": args.name,
            "dataset": absolute(args.dataset) if args.dataset else None,
            "test": args.test,
            "loop": "plain" if args.no_ray else "ray",
            **dict(map(split_override, args.overrides)),
        }
    )
    log.info("%s in %.0f s", run_dir, time.perf_counter() - start)
    _show_metrics(run_dir)


def _study(args: argparse.Namespace) -> None:
    from ikd.cluster import init_ray
    from ikd.storage import location
    from ikd.tune.stages import STAGES, run_study

    config = _config(args)  # a mistake in the overrides is reported before anything starts
    _job_roots(config, args, results=args.results or f"results/{args.preset}", storage=args.storage)
    stages = STAGES if args.stage == "all" else (args.stage,)
    results = location(args.results or f"results/{args.preset}")
    if stages != ("report",):
        init_ray(args.num_cpus)
        if args.storage is None:  # its runs live in the results tree: is it this dataset's?
            from ikd.data.dataset import open_dataset
            from ikd.data.pipeline import build_dataset
            from ikd.tune.regenerate import results_tree

            results, _ = results_tree(results, open_dataset(build_dataset(config)))
    start = time.perf_counter()
    run = run_study(
        args.path,
        preset=args.preset,
        overrides=dict(map(split_override, args.overrides)),
        stages=stages,
        results_root=results,
        quick=args.quick,
        storage=args.storage,
        optuna_storage=args.optuna_storage,
        command=["ikd", *sys.argv[1:]],
    )
    print(run.summary(time.perf_counter() - start))


def _study_report(args: argparse.Namespace) -> None:
    from ikd.provenance import REPOSITORY
    from ikd.report.overview import write_overview
    from ikd.storage import check_store, location, staged
    from ikd.tune.stages import RUNS, STUDY_RECORD, StudyRun
    from ikd.tune.trials import unchanging

    root = location(args.results)
    check_store(root)
    levels = [root.folders()]  # a results root's studies, or a folder of results roots'
    levels.append([inner for outer in levels[0] for inner in outer.folders()])
    folders = sorted(f for level in levels for f in level if (f / STUDY_RECORD).exists())
    if args.studies:
        wanted = [Path(name) for name in args.studies]
        named = [f for f in folders if any(f.name == w.stem or f == location(w) for w in wanted)]
        missing = [str(w) for w in wanted if not any(f.name == w.stem for f in named)]
        if missing:
            raise UserError(f"{root}: no study results for {', '.join(missing)}")
        folders = named
    if not folders:
        raise UserError(f"{root}: no study results to render (run `ikd study` or `ikd run` first)")
    with unchanging():  # the studies read each other's tuning runs: each read once
        for folder in folders:
            run = StudyRun.from_record(folder, studies=REPOSITORY / "studies")
            written = run.report()
            log.info("%s: %d files in %s", run.study.name, len(written), run.results)
    for parent in sorted({folder.parent for folder in folders}):
        with staged(parent, skip=(RUNS,)) as folder:
            write_overview(folder, name=parent.name)
        log.info("overview: %s", parent / "README.md")


def _show_metrics(run_dir: Location) -> None:
    from ikd.storage import read_json
    from ikd.train.runs import METRICS, TEST, read_metrics

    _log_split(read_metrics(run_dir / METRICS)[-1], "val")
    if (run_dir / TEST).exists():
        _log_split(read_json(run_dir / TEST), "test")


def _log_split(metrics: dict, split: str) -> None:
    """One line of a split's metrics; with FAWA engaged, the live student's accuracy beside."""
    live = (
        f" (weight average of {metrics['fawa/epochs']} epochs; live student acc "
        f"{metrics[f'{split}/live_acc']:.4f})"
        if metrics.get("fawa/engaged")
        else ""
    )
    where = f"epoch {metrics['epoch'] + 1}: {split}"
    log.info(
        "%s acc %.4f, macro recall %.4f, macro F1 %.4f, worst identity %.4f%s",
        where if split == "val" else split,
        metrics[f"{split}/acc"],
        metrics[f"{split}/recall"],
        metrics[f"{split}/f1"],
        metrics[f"{split}/worst_acc"],
        live,
    )


def _eval(args: argparse.Namespace) -> None:
    import json

    from ikd.train.driver import evaluate_run

    metrics = evaluate_run(args.run_dir, args.split)
    print(json.dumps(metrics, indent=2))


def _report(args: argparse.Namespace) -> None:
    from ikd.data.dataset import dataset_folder

    _print_report(args.dataset or dataset_folder(_config(args)))


def _build_dataset(config: Config, args: argparse.Namespace, stop_after: str) -> Location:
    from ikd.cluster import init_ray
    from ikd.data.pipeline import build_dataset

    init_ray(args.num_cpus)
    start = time.perf_counter()
    folder = build_dataset(config, stop_after=stop_after)
    log.info("%s in %.0f s", folder, time.perf_counter() - start)
    return folder


def _print_report(folder: str | Location) -> None:
    from ikd.data.dataset import open_dataset
    from ikd.data.report import write_report

    markdown, png = write_report(open_dataset(folder))
    print(markdown.read_text())
    log.info("report: %s, %s", markdown, png)


def _simulate(args: argparse.Namespace) -> None:
    from ikd.data.export import capture_folder_bytes, simulate_captures

    config = _config(args)
    identities = args.identities or range(config.synthetic.num_identities)
    size = capture_folder_bytes(config) * len(identities) // config.synthetic.num_identities
    if size > _LARGE and not args.force:
        raise UserError(
            f"these captures would take {size / 2**30:.1f} GiB; pass --force, or simulate fewer "
            "(synthetic.num_identities=4 synthetic.walks_per_identity=2). Datasets never need them: "
            "they simulate in-stream."
        )
    out = (args.out or Path("captures") / config.preset).resolve()
    log.info("writing %.2f GiB of captures to %s", size / 2**30, out)
    simulate_captures(config, out, identities=identities)


def _span(text: str) -> range:
    """'A:B' → range(A, B), for argparse."""
    try:
        first, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not A:B (two integers)") from None
    if not 0 <= first < stop:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 ≤ A < B")
    return range(first, stop)


def _preview(args: argparse.Namespace) -> None:
    config = _config(args)
    if args.identities < 1 or args.walks < 1:
        raise UserError("--identities and --walks must be ≥ 1")
    title = str(args.captures) if args.captures else f"synthetic, {config.preset} preset"
    out = args.out or Path("previews") / config.preset
    _render(config, args.captures, out, args.identities, args.walks, title)


def _render(
    config: Config, captures: Path | None, out: Path, identities: int, walks: int, title: str
) -> None:
    from tqdm import tqdm

    from ikd.radar.captures import iter_walk_windows, read_metadata
    from ikd.radar.preview import render_previews

    start = time.perf_counter()
    radar = read_metadata(captures)[0] if captures else config.radar
    stream = iter_walk_windows(config, captures, identities, walks)
    results = list(tqdm(stream, desc="spectrograms", unit="walk"))
    failed = [w for w in results if w.error]
    if len(failed) == len(results):
        raise UserError(f"every walk failed; first: {failed[0].error}")
    paths = render_previews(results, radar, config.dsp, out.resolve(), title)
    windows = sum(len(w.images) for w in results)
    log.info(
        "%d walks (%d gait windows, %d failed) in %.1f s → %s",
        len(results),
        windows,
        len(failed),
        time.perf_counter() - start,
        ", ".join(map(str, paths)),
    )
