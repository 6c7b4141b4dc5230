"""The `scbloss` command: data, train, evaluate, detect, match-stats, show-matching, tables, curves."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _data_download(args: argparse.Namespace) -> int:
    from .data.prepare import prepare

    folder = prepare(args.dataset, Path(args.root), mirror=args.mirror, existing=args.existing)
    print(f"{args.dataset}: ready at {folder}")
    return 0


def error_line(error: Exception) -> str:
    """One line for the user: an OS error as "path: cause", a data loader worker's error without its traceback."""
    from .data.loader import worker_error

    if isinstance(error, OSError) and error.filename is not None:
        target = f" -> {error.filename2}" if error.filename2 is not None else ""
        return f"{error.filename}{target}: {error.strerror or error}"
    return worker_error(error)


def _given(args: argparse.Namespace, **names: str) -> dict:
    """Keyword arguments for the options given on the command line: the others keep the function's own defaults,
    so each default is written once, in the signature (the workflow passes every value from its config)."""
    return {keyword: getattr(args, name) for keyword, name in names.items() if getattr(args, name) is not None}


def _data_toy(args: argparse.Namespace) -> int:
    from .data.toy import ToyConfig, generate_toy

    config = ToyConfig(**_given(args, train_images="images", test_images="test_images", seed="seed"))
    print(f"toy dataset written to {generate_toy(Path(args.out), config)}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from .data.check import check_folder, summarize

    classes = args.classes.split(",") if args.classes else None
    found, problems = check_folder(
        Path(args.folder), workers=args.workers, annotations=args.annotations, classes=classes
    )
    for name, data in found:
        print(
            f"## {name}: {len(data.records)} images, "
            f"{sum(1 for r in data.records if len(r) == 0)} without objects, {data.num_classes} classes"
        )
        print(summarize(data).to_string())
        print()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems or not found else 0


def _train(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.hooks import Interrupted
    from .engine.train import train

    try:
        final = train(load_config(Path(args.config)), Path(args.out))
    except Interrupted as stop:
        print(f"scbloss: {stop}; run the same command again to resume", file=sys.stderr)
        return 128 + stop.signum
    print(f"trained model: {final}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .engine.evaluate import evaluate

    options = _given(
        args,
        name="name",
        coco_backend="coco_backend",
        batch_size="batch_size",
        num_workers="workers",
        annotations="annotations",
    )
    if args.classes:
        options["classes"] = args.classes.split(",")
    if args.thresholds is not None:
        options["thresholds"] = tuple(float(t) for t in args.thresholds.split(","))
    metrics = evaluate(
        Path(args.checkpoint),
        args.dataset,
        Path(args.root),
        args.split,
        Path(args.out),
        eleven_point=not args.all_point,
        **options,
    )
    summary = {k: metrics[k] for k in ("voc_map", "coco", "test_dev") if k in metrics}
    print(f"{args.out}/metrics.json: {summary}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from .engine.detect import detect

    options = _given(args, score="score", top_k="top_k", device="device", batch_size="batch_size")
    report = detect(Path(args.checkpoint), [Path(p) for p in args.images], Path(args.out), **options)
    failed = f"; {len(report.failed)} could not be read" if report.failed else ""
    print(f"{report.json}: {report.detections} detections on {report.images} images{failed}")
    return 1 if report.failed else 0


def _match_stats(args: argparse.Namespace) -> int:
    from . import detectors
    from .atomic import write_text
    from .data import load_dataset
    from .engine.matchstats import matching_statistics, plot_histograms
    from .recipes import recipe, training_augmentation

    classes = args.classes.split(",") if args.classes else None
    data = load_dataset(args.dataset, Path(args.root), args.split, classes=classes, annotations=args.annotations)
    layout = recipe(args.recipe).layout(detectors.get(args.model).layout(args.priors))
    stats = matching_statistics(
        data,
        layout,
        augment=args.augment,
        seed=args.seed,
        progress=True,
        recipe_name=args.recipe,
        augmentation=training_augmentation(args.recipe, args.model, args.priors),
    )
    print(f"{len(stats)} objects in {len(data.records)} images")
    csv, png = Path(args.csv), Path(args.png)
    for folder in {csv.parent, png.parent}:
        folder.mkdir(parents=True, exist_ok=True)
    write_text(csv, stats.to_csv(index=False))
    title = f"{args.model} priors ({args.priors}, {args.recipe} recipe) on {args.dataset}/{args.split}" + (
        ", augmented" if args.augment else ""
    )
    plot_histograms(stats, png, title)
    print(stats.groupby("bucket")["matches"].describe().to_string())
    return 0


def _show_matching(args: argparse.Namespace) -> int:
    from . import detectors
    from .data import load_dataset
    from .engine.show_matching import write_matching
    from .recipes import recipe

    classes = args.classes.split(",") if args.classes else None
    data = load_dataset(args.dataset, Path(args.root), args.split, classes=classes, annotations=args.annotations)
    layout = recipe(args.recipe).layout(detectors.get(args.model).layout(args.priors))
    title = (
        f"{args.model} priors ({args.priors}, {args.recipe} recipe) on {args.dataset}/{args.split}: "
        f"W = {args.weighting} (alpha {args.alpha:g}, beta {args.beta:g})"
    )
    try:
        table = write_matching(data, args.image, layout, Path(args.out), title, args.weighting, args.alpha, args.beta)
    except ValueError as error:
        raise ValueError(f"{args.root} ({args.dataset}/{args.split}): {error}") from error
    print(f"{args.out}.png, {args.out}.csv: {len(table)} objects in {table['image'].nunique()} images")
    return 0


def _tables_render(args: argparse.Namespace) -> int:
    from .experiments import load_table_spec
    from .tables import render

    spec = load_table_spec(Path(args.spec))
    if spec["kind"] == "comparison":
        from .comparison import render_comparison

        cells = render_comparison(spec, Path(args.runs_dir), args.seeds, Path(args.out_dir), Path(args.templates))
        print((Path(args.out_dir) / f"{spec['id']}.md").read_text())
        return 0
    cells = render(spec, Path(args.runs_dir), args.seeds, Path(args.out_dir), Path(args.templates), args.toy)
    compared = [c for c in cells if c["within"] is not None]
    print(f"{spec['id']}: {sum(c['within'] for c in compared)} / {len(compared)} cells within tolerance")
    return 0


def _tables_summary(args: argparse.Namespace) -> int:
    from .atomic import write_text
    from .tables import summary

    write_text(Path(args.out), summary([Path(p) for p in args.csv], args.toy, [Path(p) for p in args.comparison]))
    print(Path(args.out).read_text())
    return 0


def _curves(args: argparse.Namespace) -> int:
    from .curves import plot_curves

    plot_curves(Path(args.metrics), Path(args.out), args.title or Path(args.metrics).parent.name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data.registry import KINDS
    from .detection.weighting import WEIGHTINGS
    from .recipes import RECIPES

    parser = argparse.ArgumentParser(prog="scbloss", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="obtain, generate and check datasets").add_subparsers(
        dest="data_command", required=True
    )
    download = data.add_parser("download", help="download, verify and extract VOC or COCO")
    download.add_argument("--dataset", choices=["voc", "coco"], required=True)
    download.add_argument("--root", default="data", help="folder for archives and the extracted dataset")
    download.add_argument("--mirror", help="base URL replacing the official host (same folder structure)")
    download.add_argument("--existing", type=Path, help="use this already-extracted folder instead of downloading")
    download.set_defaults(handler=_data_download)

    toy = data.add_parser("toy", help="generate the toy dataset (VOC and COCO layouts)")
    toy.add_argument("--out", required=True)
    toy.add_argument("--seed", type=int, help="default: 0")
    toy.add_argument("--images", type=int, help="training images (default: 320)")
    toy.add_argument("--test-images", type=int, help="default: 120")
    toy.set_defaults(handler=_data_toy)

    check = data.add_parser("check", help="read a dataset folder whole; report counts and problems")
    check.add_argument("folder")
    check.add_argument("--workers", type=int, help="processes decoding images (default: one per CPU)")
    check.add_argument("--annotations", help="a COCO JSON of your own; the folder is then its image folder")
    check.add_argument("--classes", help="a VOC-layout folder's class names in label order, comma-separated")
    check.set_defaults(handler=_data_check)

    train = commands.add_parser("train", help="train a detector from a YAML config (resumes by itself)")
    train.add_argument("--config", required=True)
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.csv, model_final.pt")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="VOC mAP / COCO AP-AR, size-bucketed recall, detections")
    evaluate.add_argument(
        "--checkpoint", required=True, help="model_final.pt written by scbloss train, or torchvision_coco"
    )
    evaluate.add_argument("--dataset", required=True, choices=KINDS)
    evaluate.add_argument("--root", required=True)
    evaluate.add_argument("--classes", help="voc_folder: class names in label order, comma-separated")
    evaluate.add_argument("--annotations", help="coco_json: the split's COCO JSON")
    evaluate.add_argument("--split", required=True, help="test (VOC), val or test-dev (COCO)")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--name", help="tag in the test-dev submission file name (default: scbloss)")
    evaluate.add_argument("--thresholds", help="confidence thresholds for recall (default: 0.01,0.1,0.3)")
    evaluate.add_argument("--coco-backend", choices=["pycocotools", "faster-coco-eval"], help="default: pycocotools")
    evaluate.add_argument("--all-point", action="store_true", help="VOC all-point AP instead of VOC07 11-point")
    evaluate.add_argument("--batch-size", type=int, help="default: 16")
    evaluate.add_argument("--workers", type=int, help="default: 2")
    evaluate.set_defaults(handler=_evaluate)

    detect = commands.add_parser("detect", help="draw a trained detector's boxes on images; COCO-format JSON")
    detect.add_argument(
        "--checkpoint", required=True, help="model_final.pt written by scbloss train, or torchvision_coco"
    )
    detect.add_argument("--out", required=True, help="folder for <image>.png drawings and detections.json")
    detect.add_argument("--score", type=float, help="keep detections scoring at least this (default: 0.3)")
    detect.add_argument("--top-k", type=int, help="at most this many detections per image (default: 100)")
    detect.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    detect.add_argument("--batch-size", type=int, help="default: 8")
    detect.add_argument("images", nargs="+", help="image files and folders of images")
    detect.set_defaults(handler=_detect)

    stats = commands.add_parser("match-stats", help="priors matched per object (Figs. 1 and 3): CSV + PNG")
    stats.add_argument("--dataset", required=True, choices=KINDS)
    stats.add_argument("--root", required=True)
    stats.add_argument("--classes", help="voc_folder: class names in label order, comma-separated")
    stats.add_argument("--annotations", help="coco_json: the split's COCO JSON")
    stats.add_argument("--split", required=True)
    stats.add_argument("--model", default="ssd300")
    stats.add_argument("--priors", default="voc", choices=["voc", "coco"], help="which recipe's prior sizes")
    stats.add_argument("--recipe", default="original", choices=tuple(RECIPES), help="whose anchors and augmentation")
    stats.add_argument("--augment", action="store_true", help="through the recipe's training augmentation")
    stats.add_argument("--seed", type=int, default=0)
    stats.add_argument("--csv", required=True, help="per-object table: size bucket, matches")
    stats.add_argument("--png", required=True, help="histograms, overall and by size bucket")
    stats.set_defaults(handler=_match_stats)

    show = commands.add_parser("show-matching", help="the priors each object of an image matches, with M and W(M)")
    show.add_argument("--dataset", required=True, choices=KINDS)
    show.add_argument("--root", required=True)
    show.add_argument("--classes", help="voc_folder: class names in label order, comma-separated")
    show.add_argument("--annotations", help="coco_json: the split's COCO JSON")
    show.add_argument("--split", required=True)
    show.add_argument("--model", default="ssd300")
    show.add_argument("--priors", default="voc", choices=["voc", "coco"], help="which recipe's prior sizes")
    show.add_argument("--recipe", default="original", choices=tuple(RECIPES), help="whose anchors")
    show.add_argument("--weighting", default="scb", choices=tuple(WEIGHTINGS), help="the W(M) to label")
    show.add_argument("--alpha", type=float, default=1.0, help="scb's alpha")
    show.add_argument("--beta", type=float, default=3.0, help="scb's beta")
    show.add_argument(
        "--image",
        required=True,
        action="append",
        help="an image's name (or file stem), its position in the split, or smallest-object, largest-object or "
        "most-objects; repeat for one panel each",
    )
    show.add_argument("--out", required=True, help="PREFIX: writes PREFIX.png and PREFIX.csv (one row per object)")
    show.set_defaults(handler=_show_matching)

    tables = commands.add_parser("tables", help="render the paper's tables beside reproduced values").add_subparsers(
        dest="tables_command", required=True
    )
    render = tables.add_parser("render", help="one table to Markdown, LaTeX and a long-form CSV")
    render.add_argument("--spec", required=True, help="paper_tables/<table>.yaml")
    render.add_argument("--runs-dir", required=True, help="results/runs, or an imported metrics_dir")
    render.add_argument("--seeds", type=int, default=1)
    render.add_argument("--templates", default="paper_tables/templates")
    render.add_argument("--out-dir", required=True)
    render.add_argument("--toy", action="store_true", help="say that the values come from the toy dataset")
    render.set_defaults(handler=_tables_render)
    summarize = tables.add_parser("summary", help="cells within tolerance over every rendered table")
    summarize.add_argument("csv", nargs="+")
    summarize.add_argument("--out", required=True)
    summarize.add_argument("--toy", action="store_true")
    summarize.add_argument(
        "--comparison", action="append", default=[], help="a comparison table's Markdown, shown first (repeatable)"
    )
    summarize.set_defaults(handler=_tables_summary)

    curves = commands.add_parser("curves", help="plot a run's training curves")
    curves.add_argument("--metrics", required=True)
    curves.add_argument("--out", required=True)
    curves.add_argument("--title")
    curves.set_defaults(handler=_curves)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.handler(args)
    except (OSError, ValueError, RuntimeError) as error:
        if args.verbose:
            raise
        print(f"scbloss: error: {error_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
